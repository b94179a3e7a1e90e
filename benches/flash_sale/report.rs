//! The comparison's outputs: `report.json` (one object per strategy and
//! scenario), `report.md` (a table) and `report.svg` (orders/s and p99 by
//! strategy in the `hot` scenario).

use std::fmt::Write as _;
use std::path::Path;

use flashstock::loadtest::Stats;
use plotters::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
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
    /// Orders beyond the stock.
    pub oversold: u64,
    /// Acknowledged orders missing from the database after the run.
    pub lost: u64,
}

impl Row {
    pub fn new(strategy: &str, scenario: &str, stats: &Stats, oversold: u64, lost: u64) -> Row {
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
            oversold,
            lost,
        }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    scenario: &'a str,
    connections: usize,
    duration_s: f64,
    results: &'a [Row],
}

/// Writes the three reports; returns the Markdown table.
pub fn write_reports(
    out: &Path,
    connections: usize,
    duration_s: f64,
    rows: &[Row],
) -> anyhow::Result<String> {
    std::fs::create_dir_all(out)?;
    let report = Report {
        scenario: "hot, then drop",
        connections,
        duration_s,
        results: rows,
    };
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    let markdown = markdown(connections, duration_s, rows);
    std::fs::write(out.join("report.md"), &markdown)?;
    chart(&out.join("report.svg"), rows)?;
    Ok(markdown)
}

fn markdown(connections: usize, duration_s: f64, rows: &[Row]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "`hot`: {duration_s:.0} s, {connections} connections; `drop`: every user orders once.\n"
    );
    let _ = writeln!(
        md,
        "| strategy | scenario | orders/s | requests/s | p50 ms | p99 ms | p99.9 ms | errors | oversold | lost |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            r.strategy,
            r.scenario,
            r.orders_per_s,
            r.requests_per_s,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.errors,
            r.oversold,
            r.lost
        );
    }
    md
}

fn chart(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let hot: Vec<&Row> = rows.iter().filter(|r| r.scenario == "hot").collect();
    if hot.is_empty() {
        return Ok(());
    }
    let root = SVGBackend::new(path, (1200, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let names: Vec<String> = hot.iter().map(|r| r.strategy.clone()).collect();
    let panel = |area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
                 title: &str,
                 values: Vec<f64>,
                 colour: RGBColor|
     -> anyhow::Result<()> {
        let top = values.iter().cloned().fold(0.0, f64::max).max(1e-3) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(130)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(values.len() as f64 - 0.5), 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(values.len())
            .x_label_formatter(&|x| {
                let i = x.round() as usize;
                names.get(i).cloned().unwrap_or_default()
            })
            .x_label_style(
                ("sans-serif", 12)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            )
            .draw()?;
        chart.draw_series(values.iter().enumerate().map(|(i, v)| {
            let x = i as f64;
            Rectangle::new([(x - 0.35, 0.0), (x + 0.35, *v)], colour.filled())
        }))?;
        Ok(())
    };
    panel(
        &left,
        "hot: orders/s",
        hot.iter().map(|r| r.orders_per_s).collect(),
        RGBColor(52, 101, 164),
    )?;
    panel(
        &right,
        "hot: p99 latency (ms)",
        hot.iter().map(|r| r.p99_ms).collect(),
        RGBColor(204, 0, 0),
    )?;
    root.present()?;
    Ok(())
}
