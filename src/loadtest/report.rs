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
        let _ = writeln!(
            out,
            "verdict       {}: {}",
            if self.verdict.passed { "PASS" } else { "FAIL" },
            self.verdict.detail
        );
        out
    }
}
