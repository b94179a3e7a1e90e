//! The catalogue of metrics: every name the engine records, declared once with its
//! help text. Counters end in `_total`, durations are histograms in `_seconds`.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::Refusal;

pub const HTTP_REQUESTS_TOTAL: &str = "flashstock_http_requests_total";
pub const HTTP_REQUEST_SECONDS: &str = "flashstock_http_request_duration_seconds";
pub const RESERVATIONS_TOTAL: &str = "flashstock_reservations_total";
pub const COUPON_ISSUES_TOTAL: &str = "flashstock_coupon_issues_total";
pub const WRITER_BATCHES_TOTAL: &str = "flashstock_writer_batches_total";
pub const WRITER_BATCH_ROWS: &str = "flashstock_writer_batch_rows";
pub const WRITER_FLUSH_SECONDS: &str = "flashstock_writer_flush_duration_seconds";
pub const WRITER_QUEUE_ROWS: &str = "flashstock_writer_queue_rows";
pub const RESERVATIONS_EXPIRED_TOTAL: &str = "flashstock_reservations_expired_total";
pub const ACTIVE_ACTORS: &str = "flashstock_active_actors";
pub const ACTIVATIONS_TOTAL: &str = "flashstock_actor_activations_total";

/// Latency buckets from 100 us to 10 s: flash-sale replies live in the low
/// milliseconds, database stalls in seconds.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

const ROWS_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

/// Reservations by `result`: "placed" or the refusal's code.
pub static RESERVATIONS: OutcomeCounters = OutcomeCounters::new(RESERVATIONS_TOTAL, "placed");
/// Coupon issues by `result`: "issued" or the refusal's code.
pub static COUPON_ISSUES: OutcomeCounters = OutcomeCounters::new(COUPON_ISSUES_TOTAL, "issued");

/// A counter per outcome of an actor's decision, labelled `result`, each
/// registered with the recorder on first use (so after `install`, which a server
/// does before it serves). Every order placed is counted: through `counter!` that
/// built a key with its labels, hashed it and looked it up in the recorder's
/// registry under a lock, each time; here it is an index and an atomic add.
pub struct OutcomeCounters {
    name: &'static str,
    success: &'static str,
    /// The success first, then one per refusal, in `Refusal`'s order.
    series: [OnceLock<metrics::Counter>; Refusal::ALL.len() + 1],
}

impl OutcomeCounters {
    const fn new(name: &'static str, success: &'static str) -> OutcomeCounters {
        OutcomeCounters {
            name,
            success,
            series: [const { OnceLock::new() }; Refusal::ALL.len() + 1],
        }
    }

    pub fn count<T>(&self, outcome: &Result<T, Refusal>) {
        let (index, result) = match outcome {
            Ok(_) => (0, self.success),
            Err(refusal) => (*refusal as usize + 1, refusal.code()),
        };
        match self.series.get(index) {
            Some(series) => series
                .get_or_init(|| metrics::counter!(self.name, "result" => result))
                .increment(1),
            // A refusal missing from `Refusal::ALL`: counted all the same.
            None => metrics::counter!(self.name, "result" => result).increment(1),
        }
    }
}

/// Installs the process-wide Prometheus recorder (once) and describes every metric.
pub fn install() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_rows".into()), ROWS_BUCKETS)
                })
                .expect("bucket lists are not empty")
                .install_recorder()
                .expect("the metrics recorder is installed once per process");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests by route, method and status."
    );
    describe_histogram!(
        HTTP_REQUEST_SECONDS,
        Unit::Seconds,
        "HTTP request latency by route, method and status."
    );
    describe_counter!(
        RESERVATIONS_TOTAL,
        "Order requests decided by product actors, by result (placed or a refusal code)."
    );
    describe_counter!(
        COUPON_ISSUES_TOTAL,
        "Coupon requests decided by campaign actors, by result (issued or a refusal code)."
    );
    describe_counter!(WRITER_BATCHES_TOTAL, "Write-behind batches by result.");
    describe_histogram!(
        WRITER_BATCH_ROWS,
        "Mutations per committed write-behind batch."
    );
    describe_histogram!(
        WRITER_FLUSH_SECONDS,
        Unit::Seconds,
        "Time to commit one write-behind batch."
    );
    describe_counter!(
        RESERVATIONS_EXPIRED_TOTAL,
        "Unpaid reservations expired and returned to available stock."
    );
    describe_gauge!(WRITER_QUEUE_ROWS, "Mutations queued in a shard's writer.");
    describe_gauge!(ACTIVE_ACTORS, "Running item actors by kind.");
    describe_counter!(ACTIVATIONS_TOTAL, "Item actor activations by kind.");
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECLARED: &[&str] = &[
        HTTP_REQUESTS_TOTAL,
        HTTP_REQUEST_SECONDS,
        RESERVATIONS_TOTAL,
        COUPON_ISSUES_TOTAL,
        WRITER_BATCHES_TOTAL,
        WRITER_BATCH_ROWS,
        WRITER_FLUSH_SECONDS,
        WRITER_QUEUE_ROWS,
        RESERVATIONS_EXPIRED_TOTAL,
        ACTIVE_ACTORS,
        ACTIVATIONS_TOTAL,
    ];

    /// Outcomes are counted under their own label, each in its own series.
    #[test]
    fn outcome_counters_count_each_result() {
        let handle = install();
        // No decision of the engine gives these results, so no other test
        // running in this process counts them.
        let counters = OutcomeCounters::new(COUPON_ISSUES_TOTAL, "unit-test-success");
        for _ in 0..2 {
            counters.count(&Err::<(), _>(Refusal::InvalidSaleWindow));
        }
        counters.count(&Ok::<_, Refusal>(()));
        let text = handle.render();
        for line in [
            "flashstock_coupon_issues_total{result=\"invalid_sale_window\"} 2",
            "flashstock_coupon_issues_total{result=\"unit-test-success\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        for (index, refusal) in Refusal::ALL.into_iter().enumerate() {
            assert_eq!(
                refusal as usize, index,
                "Refusal::ALL is in declaration order"
            );
        }
    }

    /// The dashboard and the alert rules use only metrics this catalogue declares.
    #[test]
    fn dashboards_and_alerts_name_declared_metrics() {
        for (file, text) in [
            (
                "ops/grafana/flashstock.json",
                include_str!("../ops/grafana/flashstock.json"),
            ),
            (
                "ops/prometheus/alerts.yml",
                include_str!("../ops/prometheus/alerts.yml"),
            ),
        ] {
            let mut used = 0;
            for start in text.match_indices("flashstock_").map(|(i, _)| i) {
                let name: String = text[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .filter(|base| DECLARED.contains(base))
                    .unwrap_or(&name);
                assert!(DECLARED.contains(&base), "{file} uses undeclared {name}");
                used += 1;
            }
            assert!(used > 3, "{file} names too few metrics");
        }
    }
}
