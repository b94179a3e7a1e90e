//! Where the machine's time went while the loader ran: each process's CPU
//! (user and system time, from `/proc/PID/stat`) and the machine's idle,
//! stolen time and context switches (from `/proc/stat`), read before and after
//! and divided by the orders taken in between.
//!
//! The processes are this one (the loader; the comparison's own upkeep is
//! idle while it drives), the strategy's server, and every process on this
//! machine named as MariaDB's or Redis's server is (`mariadbd` or `mysqld`,
//! `redis-server`), summed: the comparison runs against local ones. A process
//! that cannot be read, or has gone, counts as not measured rather than as 0.

use procfs::CurrentSI as _;
use procfs::process::Process;

use crate::report::Cpu;

/// The processes a phase is measured over.
pub struct Processes {
    pub loader: i32,
    pub server: i32,
    pub mariadb: Vec<i32>,
    pub redis: Vec<i32>,
}

impl Processes {
    /// This process as the loader, `server` as the server, and this machine's
    /// MariaDB and Redis servers, found by name.
    pub fn find(server: u32) -> Processes {
        Processes {
            loader: std::process::id() as i32,
            server: server as i32,
            mariadb: pids_named(&["mariadbd", "mysqld"]),
            redis: pids_named(&["redis-server"]),
        }
    }

    /// The counters now.
    pub fn sample(&self) -> Sample {
        let ticks = |pids: &[i32]| -> Option<u64> {
            if pids.is_empty() {
                return None;
            }
            pids.iter()
                .map(|&pid| Process::new(pid).and_then(|p| p.stat()).ok())
                .map(|stat| stat.map(|s| s.utime + s.stime))
                .sum()
        };
        let machine = procfs::KernelStats::current().ok().map(|k| {
            let t = k.total;
            let idle = t.idle + t.iowait.unwrap_or(0);
            let steal = t.steal.unwrap_or(0);
            // `guest` time is counted in `user` already.
            let busy = t.user + t.nice + t.system + t.irq.unwrap_or(0) + t.softirq.unwrap_or(0);
            Machine {
                all: busy + idle + steal,
                idle,
                steal,
                switches: k.ctxt,
            }
        });
        Sample {
            loader: ticks(&[self.loader]),
            server: ticks(&[self.server]),
            mariadb: ticks(&self.mariadb),
            redis: ticks(&self.redis),
            machine,
        }
    }
}

/// The processes on this machine whose command name is one of `names`.
pub fn pids_named(names: &[&str]) -> Vec<i32> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(Result::ok)
        .filter(|p| p.stat().is_ok_and(|s| names.contains(&s.comm.as_str())))
        .map(|p| p.pid)
        .collect()
}

/// The machine's counters, in clock ticks summed over its cores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Machine {
    pub all: u64,
    pub idle: u64,
    pub steal: u64,
    pub switches: u64,
}

/// Each process's user and system time in clock ticks; None where it was not
/// found or could not be read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub loader: Option<u64>,
    pub server: Option<u64>,
    pub mariadb: Option<u64>,
    pub redis: Option<u64>,
    pub machine: Option<Machine>,
}

/// What went on between `before` and `after` for each of `orders` orders, with
/// `ticks_per_s` clock ticks a second; None without orders or without the
/// machine's counters, or if the loader or server could not be read.
pub fn between(before: &Sample, after: &Sample, orders: u64, ticks_per_s: u64) -> Option<Cpu> {
    if orders == 0 || ticks_per_s == 0 {
        return None;
    }
    let us_per_order = |a: Option<u64>, b: Option<u64>| -> Option<f64> {
        let ticks = b?.checked_sub(a?)?;
        Some(ticks as f64 * 1e6 / ticks_per_s as f64 / orders as f64)
    };
    let (m0, m1) = (before.machine?, after.machine?);
    let all = m1.all.checked_sub(m0.all)?.max(1) as f64;
    let share = |a: u64, b: u64| b.saturating_sub(a) as f64 * 100.0 / all;
    Some(Cpu {
        loader_us: us_per_order(before.loader, after.loader)?,
        server_us: us_per_order(before.server, after.server)?,
        mariadb_us: us_per_order(before.mariadb, after.mariadb),
        redis_us: us_per_order(before.redis, after.redis),
        idle_pct: share(m0.idle, m1.idle),
        steal_pct: share(m0.steal, m1.steal),
        switches: m1.switches.saturating_sub(m0.switches) as f64 / orders as f64,
    })
}

/// Clock ticks a second, as `/proc` counts them.
pub fn ticks_per_second() -> u64 {
    procfs::ticks_per_second()
}
