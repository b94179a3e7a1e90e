//! The flash-sale comparison's report (`benches/flash_sale/report.rs`): how
//! several rounds become one row per strategy and scenario, and what the
//! written reports say of them.

#[path = "../benches/flash_sale/report.rs"]
#[allow(dead_code)]
mod report;

use flashstock::loadtest::client::{Policy, Scheduling};
use report::{Row, Target, medians, targets, write_reports};

/// The loader as the comparison ran it before `--loader-scheduling`.
const NORMAL: Scheduling = Scheduling {
    policy: Policy::Normal,
    nice: 0,
};

fn row(strategy: &str, scenario: &str, orders_per_s: f64, p99_ms: f64) -> Row {
    Row {
        strategy: strategy.into(),
        scenario: scenario.into(),
        orders_per_s,
        requests_per_s: orders_per_s,
        p50_ms: p99_ms / 4.0,
        p99_ms,
        p999_ms: p99_ms * 2.0,
        errors: 0,
        oversold: Some(0),
        lost: Some(0),
        rounds: Vec::new(),
    }
}

#[test]
fn one_round_is_reported_as_it_ran() {
    let rows = vec![row("noop", "hot", 80_000.0, 8.0)];
    let reported = medians(std::slice::from_ref(&rows));
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0].orders_per_s, 80_000.0);
    assert!(reported[0].rounds.is_empty());
}

#[test]
fn each_row_is_its_median_round_and_faults_of_any_round_show() {
    let rounds = vec![
        vec![
            row("a", "hot", 30_000.0, 10.0),
            row("a", "drop", 3_000.0, 30.0),
        ],
        vec![
            row("a", "hot", 36_000.0, 9.0),
            Row {
                lost: Some(2),
                errors: 5,
                ..row("a", "drop", 2_000.0, 40.0)
            },
        ],
        vec![
            row("a", "hot", 33_000.0, 12.0),
            Row {
                oversold: Some(1),
                ..row("a", "drop", 4_000.0, 20.0)
            },
        ],
    ];
    let reported = medians(&rounds);
    assert_eq!(reported.len(), 2);

    let hot = &reported[0];
    assert_eq!((hot.strategy.as_str(), hot.scenario.as_str()), ("a", "hot"));
    // The median round's figures, all of them from that round.
    assert_eq!(hot.orders_per_s, 33_000.0);
    assert_eq!(hot.p99_ms, 12.0);
    assert_eq!(hot.rounds, vec![30_000.0, 36_000.0, 33_000.0]);
    assert_eq!((hot.errors, hot.oversold, hot.lost), (0, Some(0), Some(0)));

    let dropped = &reported[1];
    assert_eq!(dropped.orders_per_s, 3_000.0);
    assert_eq!(dropped.p99_ms, 30.0);
    assert_eq!(
        (dropped.errors, dropped.oversold, dropped.lost),
        (5, Some(1), Some(2))
    );
}

#[test]
fn an_even_number_of_rounds_reports_the_lower_middle_and_unchecked_stays_unchecked() {
    let unchecked = |rate| Row {
        oversold: None,
        lost: None,
        ..row("noop", "hot", rate, 5.0)
    };
    let rounds = vec![
        vec![unchecked(90_000.0)],
        vec![unchecked(70_000.0)],
        vec![unchecked(80_000.0)],
        vec![unchecked(100_000.0)],
    ];
    let reported = medians(&rounds);
    assert_eq!(reported[0].orders_per_s, 80_000.0);
    assert_eq!((reported[0].oversold, reported[0].lost), (None, None));
}

#[test]
fn reports_name_the_rounds() {
    let rounds = vec![
        vec![row("a", "hot", 30_000.0, 10.0)],
        vec![row("a", "hot", 34_000.0, 11.0)],
        vec![row("a", "hot", 32_000.0, 12.0)],
    ];
    let reported = medians(&rounds);
    let out = tempfile::tempdir().unwrap();
    let markdown = write_reports(out.path(), 256, 10.0, None, NORMAL, &reported).unwrap();
    assert!(markdown.contains("ran 3 times"), "{markdown}");
    assert!(markdown.contains("| a | hot | 32000 |"), "{markdown}");
    assert!(markdown.contains("30000, 34000, 32000 |"), "{markdown}");

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["rounds"], 3);
    assert_eq!(json["results"][0]["orders_per_s"], 32_000.0);
    assert_eq!(
        json["results"][0]["rounds"],
        serde_json::json!([30_000.0, 34_000.0, 32_000.0])
    );
    assert!(out.path().join("report.svg").exists());

    // A single round writes no per-round column and no per-round list.
    let single = medians(&[vec![row("a", "hot", 30_000.0, 10.0)]]);
    let markdown = write_reports(out.path(), 256, 10.0, None, NORMAL, &single).unwrap();
    assert!(!markdown.contains("each round"), "{markdown}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["rounds"], 1);
    assert!(json["results"][0].get("rounds").is_none());
    assert!(json["pinned"].is_null());
    assert_eq!(json["loader_nice"], 0);
    assert!(!markdown.contains("nice"), "{markdown}");
    assert_eq!(json["loader_policy"], "normal");
    assert!(!markdown.contains("SCHED_BATCH"), "{markdown}");
}

/// Each target's (measured, met), by what it asks.
fn verdicts(rows: &[Row]) -> Vec<(String, String, bool)> {
    targets(rows)
        .into_iter()
        .map(
            |Target {
                 asks,
                 measured,
                 met,
             }| (asks, measured, met),
        )
        .collect()
}

#[test]
fn the_report_holds_flashstock_durable_to_its_targets() {
    let rows = vec![
        row("noop", "hot", 80_000.0, 8.0),
        row("mysql-for-update", "hot", 2_000.0, 190.0),
        row("redis-lock", "hot", 3_000.0, 5_000.0),
        row("redis-lua", "hot", 50_000.0, 15.0),
        row("flashstock-durable", "hot", 45_000.0, 19.9),
        row("flashstock-durable", "drop", 4_000.0, 30.0),
        Row {
            lost: Some(1),
            ..row("flashstock-memory", "drop", 4_000.0, 20.0)
        },
    ];
    let owned = |asks: &str, measured: &str, met| (asks.to_string(), measured.to_string(), met);
    assert_eq!(
        verdicts(&rows),
        vec![
            owned("at least 20x `mysql-for-update`", "22.5x", true),
            owned("at least 20x `redis-lock`", "15.0x", false),
            owned("at least `redis-lua`'s orders/s", "90.0%", false),
            owned("at least 50% of `noop`'s orders/s", "56.2%", true),
            owned("p99 under 20 ms", "19.9 ms", true),
            // One flashstock row that lost an order fails it, whichever row.
            owned(
                "`oversold` and `lost` 0 in every flashstock row",
                "oversold 0, lost 1",
                false
            ),
        ]
    );

    let out = tempfile::tempdir().unwrap();
    let markdown = write_reports(out.path(), 256, 10.0, None, NORMAL, &rows).unwrap();
    assert!(
        markdown.contains("`flashstock-durable` in `hot` against its targets"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| at least 20x `mysql-for-update` | 22.5x | yes |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| at least 20x `redis-lock` | 15.0x | **no** |"),
        "{markdown}"
    );

    // A run of some strategies holds durable only to the targets it can; a
    // baseline that took no orders is beaten by any orders at all; an
    // unchecked flashstock row meets nothing.
    let some = vec![
        row("mysql-for-update", "hot", 0.0, 5_000.0),
        row("flashstock-durable", "hot", 30_000.0, 25.0),
        Row {
            oversold: None,
            ..row("flashstock-sqlite", "hot", 20_000.0, 30.0)
        },
    ];
    assert_eq!(
        verdicts(&some),
        vec![
            owned("at least 20x `mysql-for-update`", "over 0", true),
            owned("p99 under 20 ms", "25.0 ms", false),
            owned(
                "`oversold` and `lost` 0 in every flashstock row",
                "oversold n/a, lost 0",
                false
            ),
        ]
    );

    // Without a durable `hot` row there is nothing to hold to them.
    let none = vec![
        row("noop", "hot", 80_000.0, 8.0),
        row("flashstock-durable", "drop", 4_000.0, 9.0),
    ];
    assert!(targets(&none).is_empty());
    let markdown = write_reports(out.path(), 256, 10.0, None, NORMAL, &none).unwrap();
    assert!(!markdown.contains("targets"), "{markdown}");
}

#[test]
fn reports_say_where_servers_and_loader_ran() {
    let out = tempfile::tempdir().unwrap();
    let pinned = report::Pinning {
        servers: vec![0],
        loader: vec![1],
    };
    let rows = medians(&[vec![row("a", "hot", 30_000.0, 10.0)]]);
    let markdown = write_reports(out.path(), 256, 10.0, Some(&pinned), NORMAL, &rows).unwrap();
    assert!(
        markdown.contains("Servers on cores [0], the loader on cores [1]"),
        "{markdown}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(
        json["pinned"],
        serde_json::json!({"servers": [0], "loader": [1]})
    );
    // Rendering again from the JSON keeps it.
    let again = tempfile::tempdir().unwrap();
    let rendered = report::render_again(&out.path().join("report.json"), again.path()).unwrap();
    assert_eq!(rendered, markdown);
}

#[test]
fn reports_say_how_the_loader_yielded() {
    let out = tempfile::tempdir().unwrap();
    let rows = medians(&[vec![row("a", "hot", 30_000.0, 10.0)]]);
    let markdown = write_reports(
        out.path(),
        256,
        10.0,
        None,
        Scheduling { nice: 5, ..NORMAL },
        &rows,
    )
    .unwrap();
    assert!(markdown.contains("The loader at nice 5"), "{markdown}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["loader_nice"], 5);
    // A report from before the setting (no `loader_nice`) renders as the
    // loader at 0.
    let rendered = render_without(out.path(), &markdown, "loader_nice");
    assert!(!rendered.contains("nice"), "{rendered}");
}

#[test]
fn reports_say_how_the_loader_was_scheduled() {
    let out = tempfile::tempdir().unwrap();
    let rows = medians(&[vec![row("a", "hot", 30_000.0, 10.0)]]);
    let batch = Scheduling {
        policy: Policy::Batch,
        ..NORMAL
    };
    let markdown = write_reports(out.path(), 256, 10.0, None, batch, &rows).unwrap();
    assert!(
        markdown.contains("The loader's threads under `SCHED_BATCH`"),
        "{markdown}"
    );
    assert!(!markdown.contains("nice"), "{markdown}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["loader_policy"], "batch");
    // A report from before the setting (no `loader_policy`) ran the loader
    // under the usual policy.
    let rendered = render_without(out.path(), &markdown, "loader_policy");
    assert!(!rendered.contains("SCHED_BATCH"), "{rendered}");
}

/// Checks that `out`'s `report.json` renders again as `markdown`, then returns
/// how it renders without `field`, as a report from before that setting.
fn render_without(out: &std::path::Path, markdown: &str, field: &str) -> String {
    let again = tempfile::tempdir().unwrap();
    let rendered = report::render_again(&out.join("report.json"), again.path()).unwrap();
    assert_eq!(rendered, markdown);
    let mut old: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove(field);
    let old_json = out.join("old.json");
    std::fs::write(&old_json, serde_json::to_vec(&old).unwrap()).unwrap();
    report::render_again(&old_json, again.path()).unwrap()
}
