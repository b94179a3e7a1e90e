//! The flash-sale comparison's report (`benches/flash_sale/report.rs`): how
//! several rounds become one row per strategy and scenario, and what the
//! written reports say of them; and how it reads where the machine's time went
//! (`benches/flash_sale/cpu.rs`).

#[path = "../benches/flash_sale/report.rs"]
#[allow(dead_code)]
mod report;

#[path = "../benches/flash_sale/cpu.rs"]
#[allow(dead_code)]
mod cpu;

use cpu::{Machine, Processes, Sample};
use flashstock::loadtest::client::{Policy, Scheduling};
use report::{Cpu, Row, Target, medians, targets, write_reports};

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
        cpu: None,
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
                 ..
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

    // Where durable's round measured its CPU, each ratio also reads at its
    // rate with the machine busy all the time: 20% idle and 5% stolen make
    // 30,000 orders/s 40,000.
    let measured = vec![
        row("noop", "hot", 80_000.0, 8.0),
        row("mysql-for-update", "hot", 0.0, 5_000.0),
        Row {
            cpu: Some(Cpu {
                idle_pct: 20.0,
                steal_pct: 5.0,
                ..cpu(26.5)
            }),
            ..row("flashstock-durable", "hot", 30_000.0, 12.0)
        },
    ];
    assert_eq!(
        verdicts(&measured)[..2],
        [
            owned("at least 20x `mysql-for-update`", "over 0", true),
            owned(
                "at least 50% of `noop`'s orders/s",
                "37.5% (50.0% with no idle)",
                false
            ),
        ]
    );
    let markdown = write_reports(out.path(), 256, 10.0, None, NORMAL, &measured).unwrap();
    assert!(
        markdown.contains("\"with no idle\": what `flashstock-durable` would make"),
        "{markdown}"
    );
    let markdown = write_reports(out.path(), 256, 10.0, None, NORMAL, &rows).unwrap();
    assert!(!markdown.contains("with no idle"), "{markdown}");

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

fn cpu(server_us: f64) -> Cpu {
    Cpu {
        loader_us: 9.5,
        server_us,
        mariadb_us: Some(14.8),
        redis_us: None,
        idle_pct: 13.0,
        steal_pct: 0.4,
        switches: 0.52,
    }
}

#[test]
fn reports_say_where_the_time_went_in_the_median_round() {
    let round = |rate: f64, server_us: f64| {
        vec![
            Row {
                cpu: Some(cpu(server_us)),
                ..row("flashstock-durable", "hot", rate, 10.0)
            },
            row("flashstock-durable", "drop", 5_000.0, 10.0),
        ]
    };
    let rows = medians(&[
        round(30_000.0, 21.0),
        round(36_000.0, 19.7),
        round(33_000.0, 23.5),
    ]);
    assert_eq!(
        rows[0].cpu.map(|c| c.server_us),
        Some(23.5),
        "the median round's"
    );
    let out = tempfile::tempdir().unwrap();
    let markdown = write_reports(out.path(), 256, 10.0, None, NORMAL, &rows).unwrap();
    assert!(
        markdown.contains("Where the time went, per order"),
        "{markdown}"
    );
    // MariaDB measured, Redis not found; together is what was measured.
    assert!(
        markdown.contains(
            "| flashstock-durable | hot | 9.5 | 23.5 | 14.8 | n/a | 47.8 | 13.0% | 0.4% | 0.52 |"
        ),
        "{markdown}"
    );
    assert!(
        !markdown.contains("| flashstock-durable | drop | 9.5"),
        "{markdown}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["results"][0]["cpu"]["server_us"], 23.5);
    assert!(json["results"][0]["cpu"]["redis_us"].is_null());
    assert!(
        json["results"][1].get("cpu").is_none(),
        "drop is not measured"
    );
    // Rendering again from the JSON keeps the table; a report from before the
    // measurement has none.
    let again = tempfile::tempdir().unwrap();
    let rendered = report::render_again(&out.path().join("report.json"), again.path()).unwrap();
    assert_eq!(rendered, markdown);
    let plain = medians(&[vec![row("flashstock-durable", "hot", 30_000.0, 10.0)]]);
    let markdown = write_reports(out.path(), 256, 10.0, None, NORMAL, &plain).unwrap();
    assert!(!markdown.contains("Where the time went"), "{markdown}");
}

fn sample(loader: u64, server: Option<u64>, mariadb: Option<u64>, machine: Machine) -> Sample {
    Sample {
        loader: Some(loader),
        server,
        mariadb,
        redis: None,
        machine: Some(machine),
    }
}

#[test]
fn time_between_two_samples_is_shared_out_over_the_orders() {
    let m = |all, idle, steal, switches| Machine {
        all,
        idle,
        steal,
        switches,
    };
    let before = sample(1_000, Some(50), Some(7), m(10_000, 2_000, 10, 500));
    let after = sample(1_050, Some(250), Some(107), m(11_000, 2_130, 14, 2_500));
    // 100 ticks a second: 50 ticks over 1,000 orders is 500 us an order.
    let c = cpu::between(&before, &after, 1_000, 100).unwrap();
    assert_eq!(c.loader_us, 500.0);
    assert_eq!(c.server_us, 2_000.0);
    assert_eq!(c.mariadb_us, Some(1_000.0));
    assert_eq!(c.redis_us, None);
    assert_eq!(c.together_us(), 3_500.0);
    assert_eq!(c.idle_pct, 13.0);
    assert_eq!(c.steal_pct, 0.4);
    assert_eq!(c.switches, 2.0);
    // Nothing to share out, or the server gone: not measured.
    assert!(cpu::between(&before, &after, 0, 100).is_none());
    let gone = Sample {
        server: None,
        ..after
    };
    assert!(cpu::between(&before, &gone, 1_000, 100).is_none());
    // MariaDB found only afterwards (or restarted): not measured, not negative.
    let restarted = Sample {
        mariadb: Some(3),
        ..after
    };
    let c = cpu::between(&before, &restarted, 1_000, 100).unwrap();
    assert_eq!(c.mariadb_us, None);
}

#[test]
fn each_process_is_charged_its_own_time() {
    let mut idle = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    assert!(
        cpu::pids_named(&["sleep"]).contains(&(idle.id() as i32)),
        "found by its name"
    );
    let processes = Processes {
        loader: std::process::id() as i32,
        server: idle.id() as i32,
        mariadb: Vec::new(),
        redis: Vec::new(),
    };
    let ticks_per_s = cpu::ticks_per_second();
    let before = processes.sample();
    // Busy on this thread until this process has run for a fifth of a second.
    let busy_ticks = ticks_per_s / 5;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut spin = 0u64;
    while processes.sample().loader.unwrap() < before.loader.unwrap() + busy_ticks
        && std::time::Instant::now() < deadline
    {
        for i in 0..100_000u64 {
            spin = std::hint::black_box(spin.wrapping_mul(31).wrapping_add(i));
        }
    }
    let after = processes.sample();
    idle.kill().unwrap();
    idle.wait().unwrap();
    // One "order": the time itself, in microseconds.
    let c = cpu::between(&before, &after, 1, ticks_per_s).unwrap();
    assert!(c.loader_us >= 200_000.0, "{c:?}");
    assert!(c.server_us < c.loader_us / 4.0, "a sleeping server: {c:?}");
    assert_eq!((c.mariadb_us, c.redis_us), (None, None));
    assert!((0.0..=100.0).contains(&c.idle_pct), "{c:?}");
}
