//! Results: the terminal tables, the markdown tables, CSV and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::short_count;
use crate::common::write_csv;
use crate::keys::KeyType;
use crate::maps::BASELINE;
use crate::ops::Dist;
use crate::runner::RunResult;
use crate::workloads::Workload;

/// Runs of one cell whose fastest is more than this many times its slowest are
/// marked `~`: the median of such a cell is noise as much as measurement.
pub const SPREAD_MARK: f64 = 1.5;

/// One cell of the throughput matrix: every run of one map at one point.
pub struct Cell {
    pub group: Group,
    pub threads: usize,
    pub map: String,
    /// Whether the map is a peer (not one of readmostly's own).
    pub peer: bool,
    pub runs: Vec<RunResult>,
    /// The 1-minute load average when the cell's first run started.
    pub load: f64,
}

/// A table of the throughput matrix: one workload, key type, key count and
/// distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Group {
    pub workload: Workload,
    pub key_type: KeyType,
    pub keys: usize,
    pub dist: Dist,
}

impl Group {
    /// `read-heavy · zipf · u64 · 100k keys`.
    pub fn title(&self) -> String {
        format!(
            "{} · {} · {} · {} keys",
            self.workload.id(),
            self.dist.id(),
            self.key_type.name(),
            short_count(self.keys)
        )
    }

    /// File-name stem: `read-heavy-zipf-u64-100k`.
    pub fn stem(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            self.workload.id(),
            self.dist.id(),
            self.key_type.name().to_lowercase(),
            short_count(self.keys)
        )
    }
}

impl Cell {
    fn sorted(&self, f: impl Fn(&RunResult) -> f64) -> Vec<f64> {
        let mut v: Vec<f64> = self.runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    /// Median, min and max Mops/s over the runs.
    pub fn mops(&self) -> (f64, f64, f64) {
        let m = self.sorted(RunResult::mops);
        (median(&m), m[0], m[m.len() - 1])
    }

    /// Fastest run over slowest run.
    pub fn spread(&self) -> f64 {
        let (_, min, max) = self.mops();
        if min > 0.0 {
            max / min
        } else {
            f64::INFINITY
        }
    }

    /// Median hit rate of gets.
    pub fn hit_rate(&self) -> f64 {
        median(&self.sorted(RunResult::hit_rate))
    }

    /// Median share of their cores the stream threads got.
    pub fn cpu_share(&self) -> f64 {
        median(&self.sorted(|r| r.cpu_share))
    }

    /// Gets over all runs, and those that found nothing.
    pub fn gets_and_misses(&self) -> (u64, u64) {
        let gets = self.runs.iter().map(|r| r.gets).sum();
        (gets, self.runs.iter().map(RunResult::misses).sum())
    }

    /// Misses where every get asks for a key present throughout: wrong answers.
    pub fn wrong_misses(&self) -> u64 {
        if self.group.workload.gets_always_hit() {
            self.gets_and_misses().1
        } else {
            0
        }
    }
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Get latencies of one map in one scenario, merged over its reader threads.
pub struct LatencyRow {
    pub group: Group,
    pub threads: usize,
    pub map: String,
    pub hist: Histogram<u64>,
}

/// Memory of one map.
#[derive(Serialize)]
pub struct MemoryRow {
    pub map: String,
    pub key_type: &'static str,
    /// Keys of the live-bytes measurement.
    pub keys: usize,
    /// Heap bytes the map holds with `keys` keys.
    pub live_bytes: Option<isize>,
    /// Keys present at the start of the churn run.
    pub churn_keys: usize,
    /// Heap bytes held after the churn prefill, and the peak during the churn.
    pub churn_start_bytes: Option<isize>,
    pub churn_peak_bytes: Option<isize>,
}

/// Everything one lab invocation measured.
#[derive(Default)]
pub struct Report {
    pub header: Vec<(String, String)>,
    pub cores: usize,
    pub cells: Vec<Cell>,
    pub latency: Vec<LatencyRow>,
    pub memory: Vec<MemoryRow>,
    pub timer_overhead_ns: u64,
    /// The map of the "against the best peer" table (its name).
    pub subject: Option<String>,
}

/// One row of `results.csv` and of `lab.json`'s `throughput`.
#[derive(Serialize)]
struct CellRow<'a> {
    workload: String,
    dist: String,
    key_type: &'static str,
    keys: usize,
    threads: usize,
    map: &'a str,
    runs: usize,
    mops_median: f64,
    mops_min: f64,
    mops_max: f64,
    spread: f64,
    ratio_vs_rwlock: Option<f64>,
    hit_rate: f64,
    gets: u64,
    misses: u64,
    wrong_misses: u64,
    cpu_share: f64,
    load_average: f64,
    reloads_median: u64,
    ops_total: u64,
    #[serde(skip_serializing)]
    mops_runs: Vec<f64>,
}

/// One row of `latency.csv` and of `lab.json`'s `latency`.
#[derive(Serialize)]
struct LatencyCsvRow<'a> {
    scenario: String,
    dist: String,
    key_type: &'static str,
    keys: usize,
    threads: usize,
    map: &'a str,
    gets: u64,
    p50_ns: u64,
    p90_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    max_ns: u64,
    timer_overhead_ns: u64,
}

/// `lab.json`.
#[derive(Serialize)]
struct Json<'a> {
    header: BTreeMap<&'a str, &'a str>,
    throughput: Vec<JsonCell<'a>>,
    latency: Vec<LatencyCsvRow<'a>>,
    memory: &'a [MemoryRow],
}

#[derive(Serialize)]
struct JsonCell<'a> {
    #[serde(flatten)]
    row: CellRow<'a>,
    /// Every run's Mops/s, in run order (runs are interleaved across maps).
    mops_runs: Vec<f64>,
    cpu_share_runs: Vec<f64>,
    /// Moves of the measured threads between cores, per run.
    migrations_runs: Vec<u64>,
}

impl Report {
    /// Cells by table, maps in run order, thread counts ascending.
    pub fn groups(&self) -> BTreeMap<Group, Vec<&Cell>> {
        let mut groups: BTreeMap<Group, Vec<&Cell>> = BTreeMap::new();
        for cell in &self.cells {
            groups.entry(cell.group).or_default().push(cell);
        }
        groups
    }

    /// The header block.
    pub fn header_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.header {
            let _ = writeln!(s, "{k:>22}: {v}");
        }
        s
    }

    /// The line under each table's title: what the figures are and what they
    /// were measured under.
    fn conditions(&self, cells: &[&Cell]) -> String {
        let loads = cells.iter().map(|c| c.load);
        let (lo, hi) = loads.fold((f64::INFINITY, 0f64), |(lo, hi), l| (lo.min(l), hi.max(l)));
        let runs = cells.iter().map(|c| c.runs.len()).max().unwrap_or(0);
        let mut cpu: Vec<f64> = cells.iter().map(|c| c.cpu_share()).collect();
        cpu.sort_by(f64::total_cmp);
        format!(
            "{} cores · load average {lo:.2}–{hi:.2} · {runs} run(s) per cell · stream threads \
             got {:.0}% of their cores (median)",
            self.cores,
            median(&cpu) * 100.0
        )
    }

    /// Every throughput table.
    pub fn tables_text(&self) -> String {
        let mut s = String::new();
        for (group, cells) in self.groups() {
            s += &self.table(&group, &cells);
            s.push('\n');
        }
        s
    }

    /// One throughput table: maps down, thread counts across; each cell is the
    /// median Mops/s and the ratio to `RwLock<HashMap>` at the same thread count.
    fn table(&self, group: &Group, cells: &[&Cell]) -> String {
        let grid = Grid::new(cells);
        let mut s = format!(
            "{}  ({})\n  {}\n  Mops/s, median (x = ratio to {BASELINE}; ~ = runs spread over \
             {SPREAD_MARK}x; hits = share of gets that found their key)\n",
            group.title(),
            group.workload.describe(),
            self.conditions(cells)
        );
        for row in grid.rows(group) {
            let _ = write!(s, "  {:<24}", row[0]);
            for cell in &row[1..row.len() - 1] {
                let _ = write!(s, "{cell:>18}");
            }
            let _ = writeln!(s, "  {}", row[row.len() - 1]);
        }
        for line in grid.wrong_answers() {
            let _ = writeln!(s, "  {line}");
        }
        s
    }

    /// The markdown tables (`tables.md`), to paste into docs/performance.md.
    pub fn markdown(&self) -> String {
        let mut s =
            String::from("<!-- generated by the lab (tables.md): paste, do not edit -->\n\n");
        for (k, v) in &self.header {
            if ["command", "revision", "date", "cores", "cpu", "hasher"].contains(&k.as_str()) {
                let _ = writeln!(s, "- {k}: `{v}`");
            }
        }
        for (group, cells) in self.groups() {
            let grid = Grid::new(&cells);
            let _ = writeln!(
                s,
                "\n#### {}\n\n{}. {}. Mops/s, median, and the ratio to `{BASELINE}`; `~` = \
                 runs spread over {SPREAD_MARK}x.\n",
                group.title(),
                group.workload.describe(),
                self.conditions(&cells)
            );
            for (i, row) in grid.rows(&group).iter().enumerate() {
                // Map names in code spans: `RwLock<HashMap>` is not an HTML tag.
                let cells: Vec<String> = row
                    .iter()
                    .enumerate()
                    .map(|(j, c)| match (i, j) {
                        (1.., 0) => format!("`{c}`"),
                        _ => c.trim().replace('|', "\\|"),
                    })
                    .collect();
                let _ = writeln!(s, "| {} |", cells.join(" | "));
                if i == 0 {
                    let _ = writeln!(s, "|---|{}", "---:|".repeat(row.len() - 1));
                }
            }
            for line in grid.wrong_answers() {
                let _ = writeln!(s, "\n`{line}`");
            }
        }
        let subject = self.subject_text();
        if !subject.is_empty() {
            let _ = write!(s, "\n#### Against the best peer\n\n```text\n{subject}```\n");
        }
        s
    }

    /// The subject (SyncMap by default) against the fastest peer of each cell,
    /// as the median of per-run ratios (runs are interleaved, so run `i` of
    /// every map met the same moment of the machine).
    pub fn subject_text(&self) -> String {
        let Some(subject) = &self.subject else {
            return String::new();
        };
        let mut s = format!(
            "{subject} against the fastest peer of each cell (by median): median of per-run \
             ratios, and their range\n"
        );
        for (group, cells) in self.groups() {
            let grid = Grid::new(&cells);
            for &t in &grid.threads {
                let Some(ours) = grid.find(subject, t) else {
                    continue;
                };
                let best = cells
                    .iter()
                    .filter(|c| c.threads == t && c.peer)
                    .max_by(|a, b| a.mops().0.total_cmp(&b.mops().0));
                let Some(best) = best else { continue };
                let mut ratios: Vec<f64> = ours
                    .runs
                    .iter()
                    .zip(&best.runs)
                    .map(|(a, b)| a.mops() / b.mops().max(1e-12))
                    .collect();
                ratios.sort_by(f64::total_cmp);
                let _ = writeln!(
                    s,
                    "  {:<44}{:>3}t  {:.2}x {} ({:.2}–{:.2}; {} {} vs {})",
                    group.title(),
                    t,
                    median(&ratios),
                    best.map,
                    ratios[0],
                    ratios[ratios.len() - 1],
                    subject,
                    fmt_mops(ours.mops().0),
                    fmt_mops(best.mops().0)
                );
            }
        }
        s
    }

    /// Maps that answered a get for a present key with nothing.
    pub fn wrong_answers_text(&self) -> String {
        let lines: Vec<String> = self
            .groups()
            .iter()
            .flat_map(|(group, cells)| {
                Grid::new(cells)
                    .wrong_answers()
                    .into_iter()
                    .map(move |l| format!("  {}: {l}", group.title()))
            })
            .collect();
        let checked: u64 = self
            .cells
            .iter()
            .filter(|c| c.group.workload.gets_always_hit())
            .map(|c| c.gets_and_misses().0)
            .sum();
        if checked == 0 {
            return String::new();
        }
        let mut s = format!(
            "correctness: {} gets for keys present throughout (read-only, routing) checked, \
             {} map(s) answered some with nothing\n",
            approx(checked),
            lines.len()
        );
        for l in lines {
            s += &l;
            s.push('\n');
        }
        s
    }

    /// The latency table.
    pub fn latency_text(&self) -> String {
        if self.latency.is_empty() {
            return String::new();
        }
        let mut s = format!(
            "get latency, ns (every get timed; the timer alone costs ~{} ns, included)\n",
            self.timer_overhead_ns
        );
        let mut last = None;
        for row in &self.latency {
            if last != Some((row.group, row.threads)) {
                let readers = if row.group.workload == Workload::ConfigReload {
                    format!("{} readers + the reload writer", row.threads)
                } else {
                    format!("{} threads", row.threads)
                };
                let _ = writeln!(
                    s,
                    "\n  {} · {}\n  {:<24}{:>9}{:>9}{:>9}{:>10}{:>12}",
                    row.group.title(),
                    readers,
                    "map",
                    "p50",
                    "p99",
                    "p99.9",
                    "max",
                    "gets"
                );
                last = Some((row.group, row.threads));
            }
            let h = &row.hist;
            let _ = writeln!(
                s,
                "  {:<24}{:>9}{:>9}{:>9}{:>10}{:>12}",
                row.map,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max(),
                h.len()
            );
        }
        s
    }

    /// The memory table.
    pub fn memory_text(&self) -> String {
        let Some(first) = self.memory.first() else {
            return String::new();
        };
        let mut s = format!(
            "memory, heap bytes (counting allocator)\n  live: the map holding {} {} keys \
             (u64 values), after its reclaimer was flushed\n  churn: {} keys at the start, \
             then the churn mix; peak = highest live bytes during it\n",
            short_count(first.keys),
            first.key_type,
            short_count(first.churn_keys)
        );
        let _ = writeln!(
            s,
            "  {:<24}{:>14}{:>10}{:>14}{:>14}{:>8}",
            "map", "live", "B/key", "churn start", "churn peak", "peak/"
        );
        let mib = |b: Option<isize>| {
            b.map_or("-".to_string(), |b| {
                format!("{:.1} MiB", b as f64 / 1048576.0)
            })
        };
        for row in &self.memory {
            let per_key = row.live_bytes.map_or("-".into(), |b| {
                format!("{:.0}", b as f64 / row.keys.max(1) as f64)
            });
            let ratio = match (row.churn_start_bytes, row.churn_peak_bytes) {
                (Some(a), Some(b)) if a > 0 => format!("{:.2}x", b as f64 / a as f64),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "  {:<24}{:>14}{:>10}{:>14}{:>14}{:>8}",
                row.map,
                mib(row.live_bytes),
                per_key,
                mib(row.churn_start_bytes),
                mib(row.churn_peak_bytes),
                ratio
            );
        }
        s
    }

    /// Writes `results.csv`, `latency.csv`, `memory.csv`, `lab.json`,
    /// `tables.md` and `summary.txt` under `dir`.
    pub fn write_files(&self, dir: &Path, summary: &str) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        write_csv(dir, "results.csv", self.cell_rows())?;
        write_csv(dir, "latency.csv", self.latency_rows())?;
        write_csv(dir, "memory.csv", &self.memory)?;
        let json = Json {
            header: self
                .header
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            throughput: self
                .cell_rows()
                .zip(&self.cells)
                .map(|(row, cell)| JsonCell {
                    mops_runs: row.mops_runs.clone(),
                    cpu_share_runs: cell.runs.iter().map(|r| r.cpu_share).collect(),
                    migrations_runs: cell.runs.iter().map(|r| r.migrations).collect(),
                    row,
                })
                .collect(),
            latency: self.latency_rows().collect(),
            memory: &self.memory,
        };
        std::fs::write(dir.join("lab.json"), serde_json::to_string_pretty(&json)?)?;
        std::fs::write(dir.join("tables.md"), self.markdown())?;
        std::fs::write(dir.join("summary.txt"), summary)?;
        Ok(())
    }

    fn baseline_mops(&self, cell: &Cell) -> Option<f64> {
        self.cells
            .iter()
            .find(|c| c.group == cell.group && c.threads == cell.threads && c.map == BASELINE)
            .map(|c| c.mops().0)
    }

    fn cell_rows(&self) -> impl Iterator<Item = CellRow<'_>> {
        self.cells.iter().map(|c| {
            let (med, min, max) = c.mops();
            let mut reloads: Vec<u64> = c.runs.iter().map(|r| r.reloads).collect();
            reloads.sort_unstable();
            let (gets, misses) = c.gets_and_misses();
            CellRow {
                workload: c.group.workload.id(),
                dist: c.group.dist.id(),
                key_type: c.group.key_type.name(),
                keys: c.group.keys,
                threads: c.threads,
                map: &c.map,
                runs: c.runs.len(),
                mops_median: med,
                mops_min: min,
                mops_max: max,
                spread: c.spread(),
                ratio_vs_rwlock: self.baseline_mops(c).map(|b| med / b),
                hit_rate: c.hit_rate(),
                gets,
                misses,
                wrong_misses: c.wrong_misses(),
                cpu_share: c.cpu_share(),
                load_average: c.load,
                reloads_median: reloads[reloads.len() / 2],
                ops_total: c.runs.iter().map(|r| r.ops).sum(),
                mops_runs: c.runs.iter().map(RunResult::mops).collect(),
            }
        })
    }

    fn latency_rows(&self) -> impl Iterator<Item = LatencyCsvRow<'_>> {
        self.latency.iter().map(|r| {
            let h = &r.hist;
            LatencyCsvRow {
                scenario: r.group.workload.id(),
                dist: r.group.dist.id(),
                key_type: r.group.key_type.name(),
                keys: r.group.keys,
                threads: r.threads,
                map: &r.map,
                gets: h.len(),
                p50_ns: h.value_at_quantile(0.5),
                p90_ns: h.value_at_quantile(0.9),
                p99_ns: h.value_at_quantile(0.99),
                p999_ns: h.value_at_quantile(0.999),
                max_ns: h.max(),
                timer_overhead_ns: self.timer_overhead_ns,
            }
        })
    }
}

/// The cells of one table, by map and thread count.
struct Grid<'a> {
    cells: &'a [&'a Cell],
    threads: Vec<usize>,
    maps: Vec<&'a str>,
}

impl<'a> Grid<'a> {
    fn new(cells: &'a [&'a Cell]) -> Self {
        let mut threads: Vec<usize> = cells.iter().map(|c| c.threads).collect();
        threads.sort_unstable();
        threads.dedup();
        let mut maps: Vec<&str> = Vec::new();
        for c in cells {
            if !maps.contains(&c.map.as_str()) {
                maps.push(&c.map);
            }
        }
        Grid {
            cells,
            threads,
            maps,
        }
    }

    fn find(&self, map: &str, t: usize) -> Option<&'a Cell> {
        self.cells
            .iter()
            .find(|c| c.map == map && c.threads == t)
            .copied()
    }

    /// The table's text: a header row, then one row per map (map, one cell per
    /// thread count, hits).
    fn rows(&self, group: &Group) -> Vec<Vec<String>> {
        let reload = group.workload == Workload::ConfigReload;
        let mut header = vec!["map".to_string()];
        header.extend(self.threads.iter().map(|t| match reload {
            true => format!("{t} thr (r+w)"),
            false => format!("{t} thr"),
        }));
        header.push("hits".into());
        let mut rows = vec![header];
        for map in &self.maps {
            let mut row = vec![map.to_string()];
            row.extend(self.threads.iter().map(|&t| match self.find(map, t) {
                Some(c) => format!(
                    "{:>7}{} {:>5}",
                    fmt_mops(c.mops().0),
                    mark(c),
                    self.ratio(c)
                ),
                None => "-".into(),
            }));
            row.push(self.hits(map));
            rows.push(row);
        }
        rows
    }

    /// `0.45x` against the baseline at the same thread count, or empty.
    fn ratio(&self, c: &Cell) -> String {
        self.find(BASELINE, c.threads)
            .map(|b| format!("{:.2}x", c.mops().0 / b.mops().0))
            .unwrap_or_default()
    }

    /// The hit-rate column: the map's rate at its highest thread count, and `!`
    /// where a get for a present key found nothing.
    fn hits(&self, map: &str) -> String {
        let cells: Vec<&Cell> = self
            .threads
            .iter()
            .filter_map(|&t| self.find(map, t))
            .collect();
        let wrong = cells.iter().any(|c| c.wrong_misses() > 0);
        match cells.last() {
            Some(c) if !c.hit_rate().is_nan() => {
                format!(
                    "{:>6.2}%{}",
                    c.hit_rate() * 100.0,
                    if wrong { " !" } else { "" }
                )
            }
            _ => format!("{:>7}", "-"),
        }
    }

    /// One line per map that answered a get for a present key with nothing.
    fn wrong_answers(&self) -> Vec<String> {
        self.maps
            .iter()
            .filter_map(|map| {
                let per_thread: Vec<String> = self
                    .threads
                    .iter()
                    .filter_map(|&t| self.find(map, t))
                    .filter(|c| c.wrong_misses() > 0)
                    .map(|c| {
                        let (gets, misses) = c.gets_and_misses();
                        format!("{misses} of {} gets at {} threads", approx(gets), c.threads)
                    })
                    .collect();
                (!per_thread.is_empty()).then(|| {
                    format!(
                        "! {map} missed keys present throughout the run: {}",
                        per_thread.join(", ")
                    )
                })
            })
            .collect()
    }
}

/// `~` for a cell whose runs spread more than [`SPREAD_MARK`].
fn mark(c: &Cell) -> &'static str {
    if c.runs.len() > 1 && c.spread() > SPREAD_MARK {
        "~"
    } else {
        " "
    }
}

/// Mops/s with 3 significant digits.
pub fn fmt_mops(m: f64) -> String {
    if m >= 100.0 {
        format!("{m:.0}")
    } else if m >= 10.0 {
        format!("{m:.1}")
    } else if m >= 1.0 {
        format!("{m:.2}")
    } else if m >= 0.01 {
        format!("{m:.3}")
    } else {
        format!("{m:.5}")
    }
}

/// `40.1M`, `812k`, or the plain number.
fn approx(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0}k", n / 1e3)
    } else {
        format!("{n}")
    }
}
