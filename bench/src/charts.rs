//! `rlock-bench charts`: the benchmarks as pictures. Reads the JSON results `make bench` leaves
//! in `target/bench/` (this crate's `rlock-bench.json`, the Python bench's `python-bench.json`,
//! `pair_cost.py`'s `pair-cost-*.json`) and writes SVG charts (plotters' SVG backend: text stays
//! SVG text, no fonts are needed). Every chart names the machine, the server and the date of
//! the run it draws. A missing optional input leaves its lines or charts out, with a note.

use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

use crate::cli::ChartOptions;
use crate::BenchResult;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 600;
/// Room above the plot for the title and the run's description.
const HEADER: u32 = 64;
const FONT: &str = "sans-serif";
const GREY: RGBColor = RGBColor(96, 96, 96);

type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;

pub fn run(options: &ChartOptions) -> BenchResult<()> {
    let rust = read_json(&options.data.join("rlock-bench.json"))?.ok_or_else(|| {
        format!(
            "no {} (run `make bench`, or rlock-bench --json)",
            options.data.join("rlock-bench.json").display()
        )
    })?;
    let python = read_json(&options.data.join("python-bench.json"))?;
    let pair_costs = pair_cost_files(&options.data)?;
    std::fs::create_dir_all(&options.out)
        .map_err(|e| format!("cannot create {}: {e}", options.out.display()))?;
    let charts = Charts {
        out: options.out.clone(),
        rust_run: RunInfo::of(&rust)?,
        python_run: python.as_ref().map(RunInfo::of).transpose()?,
    };
    if python.is_none() {
        println!("charts: no python-bench.json, the Python clients' lines are left out");
    }
    let mut written = Vec::new();
    if let Some(sweep) = rust.get("contention_sweep") {
        let lines = sweep_lines(sweep, python.as_ref())?;
        let limit = physical_limit(&rust)?;
        written.push(charts.locks_per_second(&lines, limit)?);
        written.push(charts.wait_p99(&lines)?);
    }
    if let Some(contention) = rust.get("contention") {
        written.push(charts.wait_cdf(contention, python.as_ref())?);
    }
    if let Some(handoff) = rust.get("handoff") {
        written.push(charts.handoff(handoff, python.as_ref())?);
    }
    if !pair_costs.is_empty() {
        written.push(charts.instructions(&pair_costs)?);
    }
    if let Some(memory) = rust.get("memory") {
        written.push(charts.bytes_per_lock(memory)?);
    }
    if let Some(scaling) = rust.get("scaling") {
        written.push(charts.scaling(scaling)?);
    }
    if let Some(kinds) = rust.get("scaling_kinds") {
        written.push(charts.kinds(kinds)?);
    }
    for path in &written {
        println!("chart: {}", path.display());
    }
    Ok(())
}

/// Where a run was made, as every chart states it.
#[derive(Clone, Debug)]
struct RunInfo {
    machine: String,
    server: String,
    date: String,
}

impl RunInfo {
    fn of(results: &Value) -> BenchResult<RunInfo> {
        let run = field(results, "run")?;
        Ok(RunInfo {
            machine: text(run, "machine")?,
            server: text(run, "server")?,
            date: text(run, "date")?,
        })
    }

    fn describe(&self) -> String {
        format!("{}; {}; {}", self.machine, self.server, self.date)
    }
}

struct Charts {
    out: PathBuf,
    rust_run: RunInfo,
    python_run: Option<RunInfo>,
}

/// One approach's line: its points and how it is drawn.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    /// The Python clients (processes) are dashed; this crate's clients (threads) solid.
    dashed: bool,
    /// A dot at every point (not for a CDF's hundreds of points).
    markers: bool,
}

/// 1/(hold + round trip): no lock hands over faster, in locks per second.
struct Limit {
    locks_per_s: f64,
    hold_ms: f64,
    round_trip_ms: f64,
}

impl Charts {
    /// The run's description, with the Python run's when it differs.
    fn subtitle(&self, with_python: bool, note: &str) -> String {
        let mut description = self.rust_run.describe();
        if let Some(python) = self.python_run.as_ref().filter(|_| with_python) {
            if python.describe() != description {
                description = format!("{description}; Python clients: {}", python.describe());
            }
        }
        if note.is_empty() {
            description
        } else {
            format!("{description}. {note}")
        }
    }

    /// A white page with the title and the run's description on top; the rest for the plot.
    fn canvas<'b>(
        &self,
        svg: &'b mut String,
        title: &str,
        subtitle: &str,
    ) -> BenchResult<Area<'b>> {
        let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let (header, body) = root.split_vertically(HEADER);
        header.draw(&Text::new(
            title.to_string(),
            (12, 8),
            (FONT, 20).into_font().color(&BLACK),
        ))?;
        header.draw(&Text::new(
            subtitle.to_string(),
            (12, 36),
            (FONT, 12).into_font().color(&GREY),
        ))?;
        Ok(body)
    }

    fn save(&self, name: &str, svg: &str) -> BenchResult<PathBuf> {
        let path = self.out.join(name);
        std::fs::write(&path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    fn locks_per_second(&self, sweep: &[SweepLine], limit: Limit) -> BenchResult<PathBuf> {
        let lines = on_client_axis(&sweep.iter().map(|l| &l.line).collect::<Vec<_>>());
        let lines: Vec<&Line> = lines.iter().collect();
        let mut svg = String::new();
        let body = self.canvas(
            &mut svg,
            "Locks per second against contending clients (one lock, 1 ms hold)",
            &self.subtitle(
                true,
                "Solid: Rust threads, 1 ms pause between holds; dashed: Python processes.",
            ),
        )?;
        let top = lines
            .iter()
            .flat_map(|line| line.points.iter().map(|p| p.1))
            .fold(limit.locks_per_s, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&body)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(client_axis(&lines), 0f64..top)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(238, 238, 238))
            .x_desc("contending clients")
            .y_desc("locks per second")
            .x_labels(client_count(&lines))
            .x_label_formatter(&|x| client_label(*x))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        draw_lines(&mut chart, &lines)?;
        let (left, right) = (chart.x_range().start, chart.x_range().end);
        let label = format!(
            "limit 1/(hold {:.2} ms + round trip {:.3} ms) = {:.0}/s",
            limit.hold_ms, limit.round_trip_ms, limit.locks_per_s
        );
        chart
            .draw_series(DashedLineSeries::new(
                [(left, limit.locks_per_s), (right, limit.locks_per_s)],
                8,
                5,
                BLACK.stroke_width(2),
            ))?
            .label(label)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
        drop(chart);
        body.present()?;
        drop(body);
        self.save("contention-locks-per-second.svg", &svg)
    }

    fn wait_p99(&self, sweep: &[SweepLine]) -> BenchResult<PathBuf> {
        let p99_lines: Vec<Line> = sweep
            .iter()
            .map(|line| Line {
                label: line.line.label.clone(),
                points: line.p99.clone(),
                dashed: line.line.dashed,
                markers: true,
            })
            .collect();
        let p99_lines = on_client_axis(&p99_lines.iter().collect::<Vec<_>>());
        let lines: Vec<&Line> = p99_lines.iter().collect();
        let mut svg = String::new();
        let body = self.canvas(
            &mut svg,
            "Wait p99 against contending clients (ms, log scale)",
            &self.subtitle(
                true,
                "Wait: from wanting the lock to holding it. Solid: Rust threads; dashed: Python processes.",
            ),
        )?;
        let values = p99_lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
        let mut chart = ChartBuilder::on(&body)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(client_axis(&lines), log_range(values).log_scale())?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(238, 238, 238))
            .x_desc("contending clients")
            .y_desc("wait p99 (ms)")
            .x_labels(client_count(&lines))
            .x_label_formatter(&|x| client_label(*x))
            .y_label_formatter(&|y| short_number(*y))
            .draw()?;
        draw_lines(&mut chart, &lines)?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        drop(chart);
        body.present()?;
        drop(body);
        self.save("contention-wait-p99.svg", &svg)
    }

    fn wait_cdf(&self, contention: &Value, python: Option<&Value>) -> BenchResult<PathBuf> {
        let clients = number(contention, "clients")?;
        let mut lines = cdf_lines(list(contention, "approaches")?, "approach", false)?;
        let mut with_python = false;
        if let Some(python_cdf) = python.and_then(|p| p.get("wait_cdf")) {
            lines.extend(cdf_lines(list(python_cdf, "locks")?, "lock", true)?);
            with_python = true;
        }
        let mut svg = String::new();
        let body = self.canvas(
            &mut svg,
            &format!("Distribution of waits, {clients:.0} clients on one lock (CDF)"),
            &self.subtitle(
                with_python,
                "A steep line is a fair lock: everyone waits about as long. Solid: Rust; dashed: Python.",
            ),
        )?;
        let values = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
        let mut chart = ChartBuilder::on(&body)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(log_range(values).log_scale(), 0f64..1f64)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(238, 238, 238))
            .x_desc("wait (ms, log scale)")
            .y_desc("fraction of acquisitions that waited at most this long")
            .x_label_formatter(&|x| short_number(*x))
            .draw()?;
        let refs: Vec<&Line> = lines.iter().collect();
        draw_lines(&mut chart, &refs)?;
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        drop(chart);
        body.present()?;
        drop(body);
        self.save("wait-cdf.svg", &svg)
    }

    fn handoff(&self, handoff: &Value, python: Option<&Value>) -> BenchResult<PathBuf> {
        let approaches = list(handoff, "approaches")?;
        let ttl = number(handoff, "expiring_ttl_ms")?;
        let python_handoff = python
            .and_then(|p| p.get("handoff"))
            .and_then(Value::as_array)
            .filter(|entries| !entries.is_empty());
        let mut svg = String::new();
        let body = self.canvas(
            &mut svg,
            "Handoff latency: one holder, one waiter already waiting (ms, log scale)",
            &self.subtitle(
                python_handoff.is_some(),
                &format!(
                    "On release: from sending the release to the waiter's grant. On expiry: from the {ttl:.0} ms lock's expiry to the grant."
                ),
            ),
        )?;
        let panels = body.split_evenly((1, 2));
        for (panel, (scenario, key)) in panels.iter().zip([
            ("on release", "release_from_request"),
            ("on expiry", "expiry"),
        ]) {
            let mut bars = Vec::new();
            for approach in approaches {
                let summary = field(approach, key)?;
                bars.push(Bar {
                    category: text(approach, "approach")?,
                    values: vec![number(summary, "p50_ms")?, number(summary, "p99_ms")?],
                });
            }
            for entry in python_handoff.into_iter().flatten() {
                let summary = field(entry, key)?;
                let lease = number(entry, "expiry_ttl_ms")?;
                let mut category = format!("Python: {}", text(entry, "lock")?);
                if key == "expiry" && lease != ttl {
                    category = format!("{category} ({lease:.0} ms lease)");
                }
                bars.push(Bar {
                    category,
                    values: vec![number(summary, "p50_ms")?, number(summary, "p99_ms")?],
                });
            }
            horizontal_bars(
                panel,
                scenario,
                &bars,
                &["p50", "p99"],
                BarScale::Log,
                None,
                "ms",
            )?;
        }
        drop(panels);
        body.present()?;
        drop(body);
        self.save("handoff.svg", &svg)
    }

    fn instructions(&self, pair_costs: &[Value]) -> BenchResult<PathBuf> {
        let servers: Vec<String> = pair_costs
            .iter()
            .map(|cost| text(cost, "server"))
            .collect::<BenchResult<_>>()?;
        let date = text(&pair_costs[0], "date")?;
        let first = list(&pair_costs[0], "pairs")?;
        let mut bars = Vec::new();
        let mut floors = Vec::new();
        for pair in first {
            let kind = text(pair, "kind")?;
            let mut values = Vec::new();
            for cost in pair_costs {
                let per_server = list(cost, "pairs")?
                    .iter()
                    .find(|p| p.get("kind").and_then(Value::as_str) == Some(kind.as_str()));
                values.push(per_server.map_or(Ok(0.0), |p| number(p, "instructions"))?);
            }
            if kind == "floor" {
                floors = values.clone();
            }
            bars.push(Bar {
                category: text(pair, "label")?,
                values,
            });
        }
        let mut svg = String::new();
        let body = self.canvas(
            &mut svg,
            "Server instructions per lock/unlock pair (callgrind, processCommand)",
            &format!(
                "{}; {}; {date}. Dashed: the unsafe floor, SET NX PX + DEL. Counts repeat to the instruction.",
                self.rust_run.machine,
                servers.join(", ")
            ),
        )?;
        let series: Vec<&str> = servers.iter().map(String::as_str).collect();
        horizontal_bars(
            &body,
            "",
            &bars,
            &series,
            BarScale::Linear,
            Some(("floor", &floors)),
            "instructions",
        )?;
        body.present()?;
        drop(body);
        self.save("instructions-per-pair.svg", &svg)
    }

    fn bytes_per_lock(&self, memory: &Value) -> BenchResult<PathBuf> {
        let locks = number(memory, "locks")?;
        let mut bars = Vec::new();
        let mut floor = Vec::new();
        for layout in list(memory, "layouts")? {
            let bytes = number(layout, "bytes_per_lock")?;
            if layout.get("unsafe_floor").and_then(Value::as_bool) == Some(true) {
                floor = vec![bytes];
            }
            bars.push(Bar {
                category: text(layout, "layout")?,
                values: vec![bytes],
            });
        }
        let mut svg = String::new();
        let body = self.canvas(
            &mut svg,
            "Memory per held lock (bytes, used_memory delta)",
            &self.subtitle(
                false,
                &format!(
                    "{locks:.0} locks, 38-byte owner. Dashed: the unsafe floor, a plain SET NX PX string."
                ),
            ),
        )?;
        horizontal_bars(
            &body,
            "",
            &bars,
            &["bytes per lock"],
            BarScale::Linear,
            Some(("plain SET", &floor)),
            "bytes",
        )?;
        body.present()?;
        drop(body);
        self.save("bytes-per-lock.svg", &svg)
    }

    fn scaling(&self, scaling: &Value) -> BenchResult<PathBuf> {
        let pairs = number(scaling, "pairs")?;
        let mut svg = String::new();
        let body = self.canvas(
            &mut svg,
            "Cost as work grows: server µs per call (commandstats)",
            &self.subtitle(
                false,
                &format!("Each point: {pairs:.0} pairs on fresh keys, best of 3. Flat is good."),
            ),
        )?;
        let panels = body.split_evenly((1, 2));
        let held = list(scaling, "held")?;
        let waiters = list(scaling, "waiters")?;
        for (panel, (points, key, x_desc)) in panels.iter().zip([
            (
                held,
                "other_locks_held",
                "locks held (the probed one + others, log scale)",
            ),
            (
                waiters,
                "waiters_queued",
                "waiters queued on one other key (log scale)",
            ),
        ]) {
            // Nothing else held: the probed lock alone, drawn at 1.
            let x_of = |point: &Value| number(point, key).map(|x| x.max(1.0));
            let mut lines = Vec::new();
            for (label, series) in [
                ("rlock: LOCK.ACQUIRE", "rlock_acquire_us"),
                ("rlock: acquire + release pair", "rlock_pair_us"),
                ("floor: SET NX PX + DEL pair", "floor_pair_us"),
            ] {
                let points = points
                    .iter()
                    .map(|p| Ok((x_of(p)?, number(p, series)?)))
                    .collect::<BenchResult<Vec<_>>>()?;
                lines.push(Line {
                    label: label.to_string(),
                    points,
                    dashed: series == "floor_pair_us",
                    markers: true,
                });
            }
            line_panel(panel, &lines, x_desc, "server µs per call", false)?;
        }
        drop(panels);
        body.present()?;
        drop(body);
        self.save("scaling.svg", &svg)
    }

    fn kinds(&self, kinds: &Value) -> BenchResult<PathBuf> {
        let mut svg = String::new();
        let body = self.canvas(
            &mut svg,
            "Cost as work grows, the other kinds of hold: server µs per call (commandstats)",
            &self.subtitle(
                false,
                "Each line: its own measure of work on the x axis; slope 1 on these axes is a cost linear in n. LIMIT dashed (it lies on SHARED).",
            ),
        )?;
        let mut lines = Vec::new();
        for kind in list(kinds, "series")? {
            let points = list(kind, "points")?
                .iter()
                .map(|p| Ok((number(p, "n")?.max(1.0), number(p, "us")?)))
                .collect::<BenchResult<Vec<_>>>()?;
            lines.push(Line {
                label: text(kind, "label")?,
                points,
                dashed: kind
                    .get("label")
                    .and_then(Value::as_str)
                    .is_some_and(|l| l.starts_with("LIMIT")),
                markers: true,
            });
        }
        line_panel(
            &body,
            &lines,
            "n (see each line's label; log scale)",
            "server µs per call (log scale)",
            true,
        )?;
        body.present()?;
        drop(body);
        self.save("scaling-kinds.svg", &svg)
    }
}

/// A sweep line carries its p99 points beside the rate points.
struct SweepLine {
    line: Line,
    p99: Vec<(f64, f64)>,
}

fn sweep_lines(sweep: &Value, python: Option<&Value>) -> BenchResult<Vec<SweepLine>> {
    let mut lines: Vec<SweepLine> = Vec::new();
    let mut add = |label: String, x: f64, rate: f64, p99: f64, dashed: bool| match lines
        .iter_mut()
        .find(|l| l.line.label == label)
    {
        Some(line) => {
            line.line.points.push((x, rate));
            line.p99.push((x, p99));
        }
        None => lines.push(SweepLine {
            line: Line {
                label,
                points: vec![(x, rate)],
                dashed,
                markers: true,
            },
            p99: vec![(x, p99)],
        }),
    };
    for point in sweep.as_array().ok_or("contention_sweep is not a list")? {
        add(
            text(point, "approach")?,
            number(point, "clients")?,
            number(point, "locks_per_s")?,
            number(point, "wait_p99_ms")?,
            false,
        );
    }
    if let Some(python_sweep) = python.and_then(|p| p.get("sweep")) {
        for point in python_sweep
            .as_array()
            .ok_or("python sweep is not a list")?
        {
            add(
                format!("Python: {}", text(point, "lock")?),
                number(point, "processes")?,
                number(point, "grants_per_s")?,
                number(point, "wait_p99_ms")?,
                true,
            );
        }
    }
    Ok(lines)
}

fn physical_limit(rust: &Value) -> BenchResult<Limit> {
    let contention = field(rust, "contention")?;
    let hold_ms = number(contention, "measured_hold_ms")?;
    let round_trip_ms = number(contention, "round_trip_ms")?;
    Ok(Limit {
        locks_per_s: 1000.0 / (hold_ms + round_trip_ms),
        hold_ms,
        round_trip_ms,
    })
}

fn cdf_lines(entries: &[Value], name_key: &str, python: bool) -> BenchResult<Vec<Line>> {
    entries
        .iter()
        .map(|entry| {
            let quantiles = list(entry, "wait_quantiles_ms")?;
            let last = quantiles.len().saturating_sub(1).max(1) as f64;
            let points = quantiles
                .iter()
                .enumerate()
                .map(|(i, q)| {
                    let wait = q.as_f64().ok_or("a wait quantile is not a number")?;
                    Ok((wait, i as f64 / last))
                })
                .collect::<BenchResult<Vec<_>>>()?;
            let name = text(entry, name_key)?;
            Ok(Line {
                label: if python {
                    format!("Python: {name}")
                } else {
                    name
                },
                points,
                dashed: python,
                markers: false,
            })
        })
        .collect()
}

/// The clients axis is log2 of the count (1, 2, 4, ... evenly spaced): the range of it.
fn client_axis(lines: &[&Line]) -> Range<f64> {
    let most = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    -0.1..most + 0.1
}

/// Lines whose x, a count of clients, becomes its log2.
fn on_client_axis(lines: &[&Line]) -> Vec<Line> {
    lines
        .iter()
        .map(|line| Line {
            label: line.label.clone(),
            points: line.points.iter().map(|&(x, y)| (x.log2(), y)).collect(),
            dashed: line.dashed,
            markers: line.markers,
        })
        .collect()
}

/// How many x labels: one per power of two up to the most clients.
fn client_count(lines: &[&Line]) -> usize {
    client_axis(lines).end.floor() as usize + 1
}

fn client_label(log2: f64) -> String {
    format!("{:.0}", log2.exp2())
}

/// A range for a log axis around positive values (a decade of room at either end rounded).
fn log_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (low, high) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if low > high {
        return 0.001..1.0;
    }
    let low = 10f64.powf(low.log10().floor());
    let high = 10f64.powf(high.log10().ceil()).max(low * 10.0);
    low..high
}

/// "0.01", "5", "2k", "1M": tick labels that stay short on a log axis.
fn short_number(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{}k", value / 1e3)
    } else if value >= 1.0 {
        format!("{value:.0}")
    } else if value <= 0.0 {
        "0".to_string()
    } else {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The colour of a series by label, the same on every chart.
fn colour_of(label: &str) -> RGBColor {
    const PALETTE: [(&str, RGBColor); 14] = [
        ("Python: rlock", RGBColor(106, 61, 154)),
        ("Python: redis-py Lock sleep", RGBColor(166, 86, 40)),
        ("Python: redis-py", RGBColor(227, 26, 28)),
        ("Python: python-redis-lock", RGBColor(231, 41, 138)),
        ("rlock: acquire + release", RGBColor(23, 190, 207)),
        ("rlock", RGBColor(31, 119, 180)),
        ("SET NX PX + Lua", RGBColor(255, 127, 14)),
        ("SET NX PX", RGBColor(255, 127, 14)),
        ("Redisson", RGBColor(44, 160, 44)),
        ("floor", RGBColor(120, 120, 120)),
        ("SHARED", RGBColor(148, 103, 189)),
        ("LIMIT", RGBColor(140, 86, 75)),
        ("LOCK.MACQUIRE", RGBColor(188, 189, 34)),
        ("a release that wakes", RGBColor(214, 39, 40)),
    ];
    PALETTE
        .iter()
        .find(|(prefix, _)| label.starts_with(prefix))
        .map_or(RGBColor(23, 190, 207), |(_, colour)| *colour)
}

fn series_colour(index: usize) -> RGBColor {
    const SERIES: [RGBColor; 4] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ];
    SERIES[index % SERIES.len()]
}

type LineChart<'a, 'b, X, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>;

fn draw_lines<X, Y>(chart: &mut LineChart<'_, '_, X, Y>, lines: &[&Line]) -> BenchResult<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for line in lines {
        let colour = colour_of(&line.label);
        let style = colour.stroke_width(2);
        let points = line.points.clone();
        let series = if line.dashed {
            chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))?
        } else {
            chart.draw_series(LineSeries::new(points.clone(), style))?
        };
        series
            .label(line.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
        if line.markers {
            chart.draw_series(
                points
                    .iter()
                    .map(|&point| Circle::new(point, 3, colour.filled())),
            )?;
        }
    }
    Ok(())
}

fn legend<'a, 'b: 'a, X, Y>(
    chart: &mut LineChart<'a, 'b, X, Y>,
    position: SeriesLabelPosition,
) -> BenchResult<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .label_font((FONT, 12))
        .draw()?;
    Ok(())
}

/// A chart of lines against a log x axis, and a y axis from 0 (linear) or log.
fn line_panel(
    area: &Area<'_>,
    lines: &[Line],
    x_desc: &str,
    y_desc: &str,
    y_log: bool,
) -> BenchResult<()> {
    let x_values = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let y_values = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let x_range = log_range(x_values).log_scale();
    let refs: Vec<&Line> = lines.iter().collect();
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56);
    if y_log {
        let mut chart = builder.build_cartesian_2d(x_range, log_range(y_values).log_scale())?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(238, 238, 238))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x| short_number(*x))
            .y_label_formatter(&|y| short_number(*y))
            .draw()?;
        draw_lines(&mut chart, &refs)?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    } else {
        let top = y_values.fold(0.0, f64::max) * 1.25;
        let mut chart = builder.build_cartesian_2d(x_range, 0f64..top.max(0.1))?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(238, 238, 238))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x| short_number(*x))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .draw()?;
        draw_lines(&mut chart, &refs)?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    }
    Ok(())
}

/// One category of a bar chart: one value per series.
struct Bar {
    category: String,
    values: Vec<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BarScale {
    Linear,
    Log,
}

/// Horizontal bars, one row per category and one bar per series in it, the value printed at
/// the bar's end; `marker`: a dashed vertical line per series at the given value (a floor).
fn horizontal_bars(
    area: &Area<'_>,
    caption: &str,
    bars: &[Bar],
    series: &[&str],
    scale: BarScale,
    marker: Option<(&str, &[f64])>,
    unit: &str,
) -> BenchResult<()> {
    let values = bars.iter().flat_map(|b| b.values.iter().copied());
    let label_width = bars
        .iter()
        .map(|b| b.category.chars().count())
        .max()
        .unwrap_or(10) as u32
        * 6
        + 12;
    let rows = bars.len() as f64;
    let categories: Vec<String> = bars.iter().map(|b| b.category.clone()).collect();
    let y_range = -0.5..rows - 0.5;
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(label_width.min(area.dim_in_pixel().0 / 2));
    if !caption.is_empty() {
        builder.caption(caption, (FONT, 15));
    }
    let band = 0.8 / series.len().max(1) as f64;
    let format_category = |y: &f64| {
        let index = (rows - 1.0 - y.round()) as usize;
        if (y - y.round()).abs() < 1e-6 {
            categories.get(index).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let layout = BarLayout {
        bars,
        series,
        rows,
        band,
    };
    match scale {
        BarScale::Log => {
            let low_high = log_range(values.clone());
            let low = low_high.start;
            let mut chart = builder.build_cartesian_2d(low_high.log_scale(), y_range)?;
            bar_mesh(&mut chart, bars.len(), &format_category, unit)?;
            layout.draw(&mut chart, low)?;
            bar_legend(&mut chart)?;
        }
        BarScale::Linear => {
            let top = values.fold(0.0, f64::max) * 1.3;
            let mut chart = builder.build_cartesian_2d(0f64..top.max(1.0), y_range)?;
            bar_mesh(&mut chart, bars.len(), &format_category, unit)?;
            layout.draw(&mut chart, 0.0)?;
            if let Some((marker_name, floors)) = marker {
                for (s, &floor) in floors.iter().enumerate() {
                    let RGBColor(r, g, b) = series_colour(s);
                    let style = RGBColor(r / 2, g / 2, b / 2).stroke_width(2);
                    chart
                        .draw_series(DashedLineSeries::new(
                            [(floor, -0.5), (floor, rows - 0.5)],
                            6,
                            4,
                            style,
                        ))?
                        .label(format!("{marker_name}: {}", value_text(floor)))
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
                }
            }
            bar_legend(&mut chart)?;
        }
    }
    Ok(())
}

/// A bar chart's rows as drawn: one row per bar (the first at the top), `band` of a row per
/// series.
struct BarLayout<'s> {
    bars: &'s [Bar],
    series: &'s [&'s str],
    rows: f64,
    band: f64,
}

impl BarLayout<'_> {
    fn row_of(&self, index: usize) -> f64 {
        self.rows - 1.0 - index as f64
    }

    /// Every series' bars from `base` (the axis' low end) with their values printed at the
    /// end, on a linear or a log axis alike.
    fn draw<'a, 'b: 'a, X>(
        &self,
        chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, RangedCoordf64>>,
        base: f64,
    ) -> BenchResult<()>
    where
        X: Ranged<ValueType = f64>,
    {
        for (s, name) in self.series.iter().enumerate() {
            let colour = series_colour(s);
            let value_of = |bar: &Bar| bar.values.get(s).copied().unwrap_or(base).max(base);
            let rects = self.bars.iter().enumerate().map(|(i, bar)| {
                let top = self.row_of(i) + 0.4 - self.band * s as f64;
                Rectangle::new(
                    [(base, top), (value_of(bar), top - self.band)],
                    colour.filled(),
                )
            });
            chart
                .draw_series(rects)?
                .label(name.to_string())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled())
                });
            chart.draw_series(self.bars.iter().enumerate().map(|(i, bar)| {
                let value = value_of(bar);
                let middle = self.row_of(i) + 0.4 - self.band * (s as f64 + 0.5);
                Text::new(
                    format!(" {}", value_text(value)),
                    (value, middle),
                    (FONT, 11)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                )
            }))?;
        }
        Ok(())
    }
}

/// The mesh of a bar chart: categories on the y axis, no horizontal lines.
fn bar_mesh<'a, 'b: 'a, X>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, RangedCoordf64>>,
    bars: usize,
    format_category: &dyn Fn(&f64) -> String,
    unit: &str,
) -> BenchResult<()>
where
    X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .light_line_style(RGBColor(238, 238, 238))
        .disable_y_mesh()
        .y_labels(bars + 1)
        .y_label_formatter(format_category)
        .x_label_formatter(&|x| short_number(*x))
        .x_desc(unit)
        .draw()?;
    Ok(())
}

fn bar_legend<'a, 'b: 'a, X>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, RangedCoordf64>>,
) -> BenchResult<()>
where
    X: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(GREY)
        .label_font((FONT, 12))
        .draw()?;
    Ok(())
}

/// A bar's value as printed beside it: three significant digits, thousands separated.
fn value_text(value: f64) -> String {
    if value >= 1000.0 {
        let whole = format!("{:.0}", value);
        let mut out = String::new();
        for (i, digit) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(digit);
        }
        out
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else if value >= 0.1 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn read_json(path: &Path) -> BenchResult<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("cannot read {}: {error}", path.display()).into()),
    }
}

/// `pair-cost-*.json` in the data directory, by name (so the servers keep their order).
fn pair_cost_files(dir: &Path) -> BenchResult<Vec<Value>> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("pair-cost-") && n.ends_with(".json"))
            })
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(format!("cannot list {}: {error}", dir.display()).into()),
    };
    paths.sort();
    let mut costs = Vec::new();
    for path in paths {
        if let Some(cost) = read_json(&path)? {
            costs.push(cost);
        }
    }
    Ok(costs)
}

fn field<'a>(value: &'a Value, key: &str) -> BenchResult<&'a Value> {
    value
        .get(key)
        .ok_or_else(|| format!("the results have no {key:?}").into())
}

fn number(value: &Value, key: &str) -> BenchResult<f64> {
    field(value, key)?
        .as_f64()
        .ok_or_else(|| format!("{key:?} is not a number").into())
}

fn text(value: &Value, key: &str) -> BenchResult<String> {
    field(value, key)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{key:?} is not a string").into())
}

fn list<'a>(value: &'a Value, key: &str) -> BenchResult<&'a Vec<Value>> {
    field(value, key)?
        .as_array()
        .ok_or_else(|| format!("{key:?} is not a list").into())
}
