//! A run's summary: counts by status and `code`, rates, latency percentiles and
//! the correctness verdict, as a table for people and as JSON for tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::client::Stats;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub passed: bool,
    pub detail: String,
}

/// What the loader itself spent: whether the run measured the server or the
/// loader.
#[derive(Debug, Clone, Serialize)]
pub struct Loader {
    /// Threads that sent the requests.
    pub threads: usize,
    /// Their CPU time (user and system), together.
    pub cpu_s: f64,
    /// That time over the requests, in microseconds.
    pub cpu_us_per_request: f64,
    /// How busy the threads were over the run, percent of their time.
    pub busy_pct: f64,
}

impl Loader {
    /// Busier than this, the loader may be what limits the run.
    pub const NEAR_LIMIT_PCT: f64 = 90.0;
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub url: String,
    pub connections: usize,
    pub duration_s: f64,
    pub requests: u64,
    /// Replies by `"<status>"` or `"<status> <code>"`, and `"transport_error"`.
    pub replies: BTreeMap<String, u64>,
    /// Successful orders (or coupons) per second.
    pub orders_per_s: f64,
    pub requests_per_s: f64,
    pub latency: Latency,
    pub errors: u64,
    pub loader: Loader,
    pub verdict: Verdict,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Report {
    pub fn new(
        scenario: &str,
        url: &str,
        connections: usize,
        stats: &Stats,
        verdict: Verdict,
    ) -> Report {
        let seconds = stats.elapsed.as_secs_f64().max(1e-9);
        let successes = stats.with_status(201) + stats.with_status(200);
        let h = &stats.latency_us;
        Report {
            scenario: scenario.into(),
            url: url.into(),
            connections,
            duration_s: seconds,
            requests: stats.requests(),
            replies: stats.named_replies(),
            orders_per_s: successes as f64 / seconds,
            requests_per_s: stats.requests() as f64 / seconds,
            latency: Latency {
                p50_ms: ms(h.value_at_quantile(0.50)),
                p90_ms: ms(h.value_at_quantile(0.90)),
                p99_ms: ms(h.value_at_quantile(0.99)),
                p999_ms: ms(h.value_at_quantile(0.999)),
                max_ms: ms(h.max()),
            },
            errors: stats.errors(),
            loader: Loader {
                threads: stats.threads,
                cpu_s: stats.cpu.as_secs_f64(),
                cpu_us_per_request: stats.cpu.as_secs_f64() * 1e6 / stats.requests().max(1) as f64,
                busy_pct: stats.cpu.as_secs_f64() * 100.0 / (seconds * stats.threads.max(1) as f64),
            },
            verdict,
        }
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario      {} against {}", self.scenario, self.url);
        let _ = writeln!(out, "connections   {}", self.connections);
        let _ = writeln!(out, "duration      {:.2} s", self.duration_s);
        let _ = writeln!(out, "requests      {}", self.requests);
        for (reply, n) in &self.replies {
            let _ = writeln!(out, "  {reply:<34} {n:>10}");
        }
        let _ = writeln!(out, "orders/s      {:.0}", self.orders_per_s);
        let _ = writeln!(out, "requests/s    {:.0}", self.requests_per_s);
        let l = &self.latency;
        let _ = writeln!(
            out,
            "latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
        let _ = writeln!(out, "errors        {}", self.errors);
        let loader = &self.loader;
        let _ = writeln!(
            out,
            "loader        {} thread(s), {:.1} us of CPU a request, busy {:.0}% of the run{}",
            loader.threads,
            loader.cpu_us_per_request,
            loader.busy_pct,
            if loader.busy_pct >= Loader::NEAR_LIMIT_PCT {
                " (near its limit: the rate may be the loader's, not the server's)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "verdict       {}: {}",
            if self.verdict.passed { "PASS" } else { "FAIL" },
            self.verdict.detail
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn report(requests: u64, elapsed_s: u64, threads: usize, cpu_ms: u64) -> Report {
        let mut stats = Stats::new();
        stats.replies.push((201, String::new(), requests));
        stats.latency_us.record(1_000).unwrap();
        stats.elapsed = Duration::from_secs(elapsed_s);
        stats.threads = threads;
        stats.cpu = Duration::from_millis(cpu_ms);
        let verdict = Verdict {
            passed: true,
            detail: String::new(),
        };
        Report::new("hot", "http://127.0.0.1:1", 256, &stats, verdict)
    }

    #[test]
    fn the_loader_says_what_it_spent() {
        // Two threads, 10 s, 2 s of CPU over 200,000 requests: 10 us a request,
        // busy a tenth of their time.
        let calm = report(200_000, 10, 2, 2_000);
        assert_eq!(calm.loader.threads, 2);
        assert_eq!(calm.loader.cpu_us_per_request, 10.0);
        assert_eq!(calm.loader.busy_pct, 10.0);
        let table = calm.table();
        assert!(
            table.contains(
                "loader        2 thread(s), 10.0 us of CPU a request, busy 10% of the run\n"
            ),
            "{table}"
        );
        let json = serde_json::to_value(&calm).unwrap();
        assert_eq!(json["loader"]["cpu_s"], 2.0);

        // Busy 95% of the run: the table says the rate may be the loader's.
        let busy = report(200_000, 10, 2, 19_000);
        assert_eq!(busy.loader.busy_pct, 95.0);
        assert!(busy.table().contains("near its limit"), "{}", busy.table());
        assert!(!table.contains("near its limit"));
    }
}
