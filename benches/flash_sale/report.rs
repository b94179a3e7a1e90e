//! The comparison's outputs: `report.json` (one object per strategy and
//! scenario), `report.md` (a table) and `report.svg` (orders/s and p99 by
//! strategy in the `hot` scenario).

use std::fmt::Write as _;
use std::path::Path;

use clap::ValueEnum as _;
use flashstock::loadtest::Stats;
use flashstock::loadtest::client::{Policy, Scheduling};
use plotters::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Row {
    pub strategy: String,
    pub scenario: String,
    pub orders_per_s: f64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Transport errors and 5xx replies.
    pub errors: u64,
    /// Orders beyond the stock; None where nothing is stored to check (noop).
    pub oversold: Option<u64>,
    /// Acknowledged orders missing from the database after the run; None where
    /// nothing is stored to check (noop).
    pub lost: Option<u64>,
    /// Orders per second of every round, in the order they ran, when the
    /// comparison ran more than once; the row is the median round's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<f64>,
    /// Where the machine's time went in this round, for `hot` (a phase long
    /// enough for `/proc`'s clock ticks to count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
}

/// Where the machine's time went during a phase, per order taken: each
/// process's user and system time, and the machine's idle and stolen shares.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct Cpu {
    /// Microseconds of CPU an order: the loader (this process).
    pub loader_us: f64,
    /// The strategy's server.
    pub server_us: f64,
    /// This machine's MariaDB; None where none was found.
    pub mariadb_us: Option<f64>,
    /// This machine's Redis; None where none was found.
    pub redis_us: Option<f64>,
    /// The machine's cores idle or waiting for the disk, percent of their time.
    pub idle_pct: f64,
    /// Time the cores' host gave to others (a virtual machine's steal), percent.
    pub steal_pct: f64,
    /// The machine's context switches an order.
    pub switches: f64,
}

impl Cpu {
    /// The measured processes' CPU an order, together.
    pub fn together_us(&self) -> f64 {
        self.loader_us
            + self.server_us
            + self.mariadb_us.unwrap_or(0.0)
            + self.redis_us.unwrap_or(0.0)
    }
}

impl Row {
    pub fn new(strategy: &str, scenario: &str, stats: &Stats, checked: Option<(u64, u64)>) -> Row {
        let seconds = stats.elapsed.as_secs_f64().max(1e-9);
        let h = &stats.latency_us;
        Row {
            strategy: strategy.into(),
            scenario: scenario.into(),
            orders_per_s: stats.with_status(201) as f64 / seconds,
            requests_per_s: stats.requests() as f64 / seconds,
            p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
            p999_ms: h.value_at_quantile(0.999) as f64 / 1000.0,
            errors: stats.errors(),
            oversold: checked.map(|c| c.0),
            lost: checked.map(|c| c.1),
            rounds: Vec::new(),
            cpu: None,
        }
    }
}

/// One row per strategy and scenario from several rounds of the whole
/// comparison: the figures of the round with the median orders/s, with every
/// round's orders/s beside them. Errors, oversold and lost are the worst of
/// any round, so a fault in one round is never hidden by the others.
pub fn medians(rounds: &[Vec<Row>]) -> Vec<Row> {
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    if rounds.len() == 1 {
        return first.clone();
    }
    first
        .iter()
        .map(|row| {
            let mut runs: Vec<&Row> = rounds
                .iter()
                .filter_map(|rows| {
                    rows.iter()
                        .find(|r| r.strategy == row.strategy && r.scenario == row.scenario)
                })
                .collect();
            let rates = runs.iter().map(|r| r.orders_per_s).collect();
            let errors = runs.iter().map(|r| r.errors).max().unwrap_or(0);
            let worst = |count: fn(&Row) -> Option<u64>| runs.iter().filter_map(|r| count(r)).max();
            let (oversold, lost) = (worst(|r| r.oversold), worst(|r| r.lost));
            runs.sort_by(|a, b| a.orders_per_s.total_cmp(&b.orders_per_s));
            Row {
                errors,
                oversold,
                lost,
                rounds: rates,
                ..runs[(runs.len() - 1) / 2].clone()
            }
        })
        .collect()
}

/// Where servers and loader ran (`--pin`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Pinning {
    pub servers: Vec<usize>,
    pub loader: Vec<usize>,
}

/// A policy as `--loader-scheduling` names it.
fn policy_name(policy: Policy) -> String {
    policy
        .to_possible_value()
        .expect("every policy has a name")
        .get_name()
        .to_string()
}

#[derive(Serialize)]
struct Report<'a> {
    scenario: &'a str,
    connections: usize,
    duration_s: f64,
    /// None: servers and loader shared every core.
    pinned: Option<&'a Pinning>,
    /// The loader's threads' nice value (everything else at its own).
    loader_nice: i32,
    /// The loader's threads' scheduling policy: "batch" or "normal".
    loader_policy: String,
    /// How many times each strategy ran; each result is its median round.
    rounds: usize,
    results: &'a [Row],
}

/// How many rounds the rows are medians of (1 for a single run).
fn rounds_of(rows: &[Row]) -> usize {
    rows.iter()
        .map(|r| r.rounds.len())
        .max()
        .unwrap_or(0)
        .max(1)
}

/// Writes the three reports; returns the Markdown table.
pub fn write_reports(
    out: &Path,
    connections: usize,
    duration_s: f64,
    pinned: Option<&Pinning>,
    loader: Scheduling,
    rows: &[Row],
) -> anyhow::Result<String> {
    std::fs::create_dir_all(out)?;
    let report = Report {
        scenario: "hot, then drop",
        connections,
        duration_s,
        pinned,
        loader_nice: loader.nice,
        loader_policy: policy_name(loader.policy),
        rounds: rounds_of(rows),
        results: rows,
    };
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    let markdown = markdown(connections, duration_s, pinned, loader, rows);
    std::fs::write(out.join("report.md"), &markdown)?;
    chart(&out.join("report.svg"), rows)?;
    Ok(markdown)
}

/// Writes `report.md` and `report.svg` again from a `report.json`.
pub fn render_again(json: &Path, out: &Path) -> anyhow::Result<String> {
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(json)?)?;
    let rows: Vec<Row> = serde_json::from_value(report["results"].clone())?;
    let connections = report["connections"].as_u64().unwrap_or(0) as usize;
    let duration_s = report["duration_s"].as_f64().unwrap_or(0.0);
    let pinned: Option<Pinning> = serde_json::from_value(report["pinned"].clone()).unwrap_or(None);
    // Reports from before the settings ran the loader at 0, under the
    // kernel's usual policy.
    let loader = Scheduling {
        nice: report["loader_nice"].as_i64().unwrap_or(0) as i32,
        policy: report["loader_policy"]
            .as_str()
            .and_then(|name| Policy::from_str(name, false).ok())
            .unwrap_or(Policy::Normal),
    };
    std::fs::create_dir_all(out)?;
    let markdown = markdown(connections, duration_s, pinned.as_ref(), loader, &rows);
    std::fs::write(out.join("report.md"), &markdown)?;
    chart(&out.join("report.svg"), &rows)?;
    Ok(markdown)
}

fn markdown(
    connections: usize,
    duration_s: f64,
    pinned: Option<&Pinning>,
    loader: Scheduling,
    rows: &[Row],
) -> String {
    let mut md = String::new();
    let rounds = rounds_of(rows);
    let _ = write!(
        md,
        "`hot`: {duration_s:.0} s, {connections} connections; `drop`: every user orders once."
    );
    if let Some(p) = pinned {
        let _ = write!(
            md,
            " Servers on cores {:?}, the loader on cores {:?}; MariaDB and Redis anywhere.",
            p.servers, p.loader
        );
    }
    if loader.policy == Policy::Batch {
        let _ = write!(
            md,
            " The loader's threads under `SCHED_BATCH`: woken by a reply, they wait \
             for the running thread's turn to end rather than preempting it."
        );
    }
    if loader.nice != 0 {
        let _ = write!(
            md,
            " The loader at nice {}; servers, MariaDB and Redis at their own.",
            loader.nice
        );
    }
    if rounds > 1 {
        let _ = write!(
            md,
            " Each strategy ran {rounds} times in turn; each row is its median round, \
             with every round's orders/s in the last column; errors, oversold and lost \
             are the worst of any round."
        );
    }
    let _ = writeln!(md, "\n");
    let (extra_head, extra_rule) = if rounds > 1 {
        (" orders/s, each round |", " ---: |")
    } else {
        ("", "")
    };
    let _ = writeln!(
        md,
        "| strategy | scenario | orders/s | requests/s | p50 ms | p99 ms | p99.9 ms | errors | oversold | lost |{extra_head}"
    );
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |{extra_rule}"
    );
    for r in rows {
        let each = if rounds > 1 {
            let all: Vec<String> = r.rounds.iter().map(|x| format!("{x:.0}")).collect();
            format!(" {} |", all.join(", "))
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |{each}",
            r.strategy,
            r.scenario,
            r.orders_per_s,
            r.requests_per_s,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.errors,
            checked(r.oversold),
            checked(r.lost)
        );
    }
    cpu_table(&mut md, rows);
    let targets = targets(rows);
    if !targets.is_empty() {
        let _ = writeln!(
            md,
            "\n`{DURABLE}` in `hot` against its targets:\n\n| target | measured | met |\n| --- | ---: | --- |"
        );
        for t in &targets {
            let met = if t.met { "yes" } else { "**no**" };
            let _ = writeln!(md, "| {} | {} | {met} |", t.asks, t.measured);
        }
        if targets.iter().any(|t| t.reads_no_idle) {
            let _ = writeln!(
                md,
                "\n\"{NO_IDLE}\": what `{DURABLE}` would make at the same CPU an order \
                 with the machine busy all the time (its orders/s over the share of \
                 the cores neither idle nor stolen), against the others as measured."
            );
        }
    }
    md
}

/// Where the time went in each row that measured it (its round's, for a
/// median row).
fn cpu_table(md: &mut String, rows: &[Row]) {
    let measured: Vec<(&Row, &Cpu)> = rows
        .iter()
        .filter_map(|r| r.cpu.as_ref().map(|c| (r, c)))
        .collect();
    if measured.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\nWhere the time went, per order: each process's CPU (user and system, `/proc`) \
         in microseconds, the machine's idle and stolen time as shares of its cores, \
         its context switches. MariaDB and Redis are this machine's, whichever \
         strategy uses them.\n\n\
         | strategy | scenario | loader us | server us | MariaDB us | Redis us | together us | idle | stolen | switches |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (r, c) in measured {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {} | {} | {:.1} | {:.1}% | {:.1}% | {:.2} |",
            r.strategy,
            r.scenario,
            c.loader_us,
            c.server_us,
            micros(c.mariadb_us),
            micros(c.redis_us),
            c.together_us(),
            c.idle_pct,
            c.steal_pct,
            c.switches
        );
    }
}

/// Microseconds to a tenth, or `n/a` where not measured.
pub fn micros(us: Option<f64>) -> String {
    us.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}"))
}

/// The strategy the targets hold to the others.
const DURABLE: &str = "flashstock-durable";
/// How a target's ratio reads at durable's rate with no idle.
const NO_IDLE: &str = "with no idle";

/// One target of flashstock-durable's `hot` row: what it asks, what the run
/// measured, whether that meets it.
#[derive(Debug)]
pub struct Target {
    pub asks: String,
    pub measured: String,
    pub met: bool,
    /// Whether `measured` also gives the ratio at durable's rate with no idle.
    pub reads_no_idle: bool,
}

/// flashstock-durable's `hot` row against the targets it is held to, each
/// for which the run has what it needs (a run of `--only` some strategies has
/// fewer); none without a durable `hot` row.
pub fn targets(rows: &[Row]) -> Vec<Target> {
    let hot = |strategy: &str| {
        rows.iter()
            .find(|r| r.strategy == strategy && r.scenario == "hot")
    };
    let Some(durable) = hot(DURABLE) else {
        return Vec::new();
    };
    // Durable's rate with the machine busy all the time, where measured.
    let busy_rate = durable.cpu.and_then(|c| {
        let busy = 1.0 - (c.idle_pct + c.steal_pct) / 100.0;
        (busy > 0.05).then(|| durable.orders_per_s / busy)
    });
    let mut targets = Vec::new();
    // At least `times` the orders/s of `strategy`.
    let mut at_least = |times: f64, strategy: &str| {
        let Some(other) = hot(strategy) else { return };
        let ratio = durable.orders_per_s / other.orders_per_s;
        let asks = if times > 1.0 {
            format!("at least {times:.0}x `{strategy}`")
        } else if times < 1.0 {
            format!("at least {:.0}% of `{strategy}`'s orders/s", times * 100.0)
        } else {
            format!("at least `{strategy}`'s orders/s")
        };
        let shown = |ratio: f64| {
            if times > 1.0 {
                format!("{ratio:.1}x")
            } else {
                format!("{:.1}%", ratio * 100.0)
            }
        };
        let (measured, met, reads_no_idle) = if other.orders_per_s <= 0.0 {
            // A strategy that took no orders is beaten by any that took some.
            ("over 0".to_string(), durable.orders_per_s > 0.0, false)
        } else if let Some(busy) = busy_rate {
            let no_idle = shown(busy / other.orders_per_s);
            (
                format!("{} ({no_idle} {NO_IDLE})", shown(ratio)),
                ratio >= times,
                true,
            )
        } else {
            (shown(ratio), ratio >= times, false)
        };
        targets.push(Target {
            asks,
            measured,
            met,
            reads_no_idle,
        });
    };
    at_least(20.0, "mysql-for-update");
    at_least(20.0, "redis-lock");
    at_least(1.0, "redis-lua");
    at_least(0.5, "noop");
    targets.push(Target {
        asks: "p99 under 20 ms".into(),
        measured: format!("{:.1} ms", durable.p99_ms),
        met: durable.p99_ms < 20.0,
        reads_no_idle: false,
    });
    let flashstock: Vec<&Row> = rows
        .iter()
        .filter(|r| r.strategy.starts_with("flashstock-"))
        .collect();
    let worst = |count: fn(&Row) -> Option<u64>| {
        flashstock
            .iter()
            .map(|r| count(r))
            .max_by_key(|c| c.map_or(u64::MAX, |c| c))
    };
    let (oversold, lost) = (worst(|r| r.oversold).flatten(), worst(|r| r.lost).flatten());
    targets.push(Target {
        asks: "`oversold` and `lost` 0 in every flashstock row".into(),
        measured: format!("oversold {}, lost {}", checked(oversold), checked(lost)),
        met: oversold == Some(0) && lost == Some(0),
        reads_no_idle: false,
    });
    targets
}

/// A correctness count, or `n/a` where there was nothing to check.
fn checked(count: Option<u64>) -> String {
    count.map_or_else(|| "n/a".to_string(), |c| c.to_string())
}

fn chart(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let hot: Vec<&Row> = rows.iter().filter(|r| r.scenario == "hot").collect();
    if hot.is_empty() {
        return Ok(());
    }
    let root = SVGBackend::new(path, (1200, 80 + 48 * hot.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let names: Vec<String> = hot.iter().map(|r| r.strategy.clone()).collect();
    let rows_range = -0.5f64..(hot.len() as f64 - 0.5);
    let label = |y: &f64| {
        let i = y.round();
        if (y - i).abs() > 0.01 {
            return String::new();
        }
        names.get(i as usize).cloned().unwrap_or_default()
    };

    // Orders per second, linear.
    let top = hot.iter().map(|r| r.orders_per_s).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&left)
        .caption("hot: orders/s (higher is better)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(150)
        .build_cartesian_2d(0f64..top, rows_range.clone())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(hot.len() * 2 + 1)
        .y_label_formatter(&label)
        .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
        .draw()?;
    chart.draw_series(hot.iter().enumerate().map(|(i, r)| {
        let y = i as f64;
        Rectangle::new(
            [(0.0, y - 0.35), (r.orders_per_s, y + 0.35)],
            RGBColor(52, 101, 164).filled(),
        )
    }))?;
    chart.draw_series(hot.iter().enumerate().map(|(i, r)| {
        Text::new(
            format!(" {:.0}", r.orders_per_s),
            (r.orders_per_s, i as f64 + 0.15),
            ("sans-serif", 12),
        )
    }))?;

    // p99 latency, logarithmic: the lock-based designs are seconds, the rest ms.
    let top = hot.iter().map(|r| r.p99_ms).fold(1.0, f64::max) * 4.0;
    let mut chart = ChartBuilder::on(&right)
        .caption(
            "hot: p99 latency, ms (log scale, lower is better)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(150)
        .build_cartesian_2d((0.1f64..top).log_scale(), rows_range)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(hot.len() * 2 + 1)
        .y_label_formatter(&label)
        .draw()?;
    chart.draw_series(hot.iter().enumerate().map(|(i, r)| {
        let y = i as f64;
        Rectangle::new(
            [(0.1, y - 0.35), (r.p99_ms.max(0.1), y + 0.35)],
            RGBColor(204, 0, 0).filled(),
        )
    }))?;
    chart.draw_series(hot.iter().enumerate().map(|(i, r)| {
        Text::new(
            format!(" {:.1}", r.p99_ms),
            (r.p99_ms.max(0.1), i as f64 + 0.15),
            ("sans-serif", 12),
        )
    }))?;
    root.present()?;
    Ok(())
}
