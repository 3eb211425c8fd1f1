//! Results: the terminal tables, the bar check, CSV and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use hdrhistogram::Histogram;

use crate::cli::short_count;
use crate::maps::BASELINE;
use crate::ops::Dist;
use crate::runner::RunResult;
use crate::workloads::Workload;

/// One cell of the throughput matrix: every run of one map at one point.
pub struct Cell {
    pub workload: Workload,
    pub dist: Dist,
    pub key_type: &'static str,
    pub keys: usize,
    pub threads: usize,
    pub map: String,
    pub runs: Vec<RunResult>,
}

/// A table of the throughput matrix: one workload, distribution, key type and
/// key count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Group {
    pub workload: Workload,
    pub key_type: &'static str,
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
            self.key_type,
            short_count(self.keys)
        )
    }

    /// File-name stem: `read-heavy-zipf-u64-100k`.
    pub fn stem(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            self.workload.id(),
            self.dist.id(),
            self.key_type.to_lowercase(),
            short_count(self.keys)
        )
    }
}

impl Cell {
    pub fn group(&self) -> Group {
        Group {
            workload: self.workload,
            dist: self.dist,
            key_type: self.key_type,
            keys: self.keys,
        }
    }

    /// Median, min and max Mops/s over the runs.
    pub fn mops(&self) -> (f64, f64, f64) {
        let mut m: Vec<f64> = self.runs.iter().map(RunResult::mops).collect();
        m.sort_by(f64::total_cmp);
        (median(&m), m[0], m[m.len() - 1])
    }

    /// Median hit rate of gets.
    pub fn hit_rate(&self) -> f64 {
        let mut h: Vec<f64> = self.runs.iter().map(RunResult::hit_rate).collect();
        h.sort_by(f64::total_cmp);
        median(&h)
    }
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Get latencies of one map in one scenario, merged over its reader threads.
pub struct LatencyRow {
    pub scenario: Workload,
    pub dist: Dist,
    pub key_type: &'static str,
    pub keys: usize,
    pub threads: usize,
    pub map: String,
    pub hist: Histogram<u64>,
}

/// Memory of one map.
pub struct MemoryRow {
    pub map: String,
    pub key_type: &'static str,
    /// Keys of the live-bytes measurement.
    pub keys: usize,
    /// Heap bytes the map holds with `keys` keys.
    pub live: Option<isize>,
    /// Keys present at the start of the churn run.
    pub churn_keys: usize,
    /// Heap bytes held after the churn prefill, and the peak during the churn.
    pub churn_start: Option<isize>,
    pub churn_peak: Option<isize>,
}

/// Everything one lab invocation measured.
#[derive(Default)]
pub struct Report {
    pub header: Vec<(String, String)>,
    pub cells: Vec<Cell>,
    pub latency: Vec<LatencyRow>,
    pub memory: Vec<MemoryRow>,
    pub timer_overhead_ns: u64,
}

impl Report {
    /// Cells by table, maps in run order, thread counts ascending.
    pub fn groups(&self) -> BTreeMap<Group, Vec<&Cell>> {
        let mut groups: BTreeMap<Group, Vec<&Cell>> = BTreeMap::new();
        for cell in &self.cells {
            groups.entry(cell.group()).or_default().push(cell);
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

    /// Every throughput table.
    pub fn tables_text(&self) -> String {
        let mut s = String::new();
        for (group, cells) in self.groups() {
            s += &table(&group, &cells);
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
            let key = (row.scenario, row.dist, row.key_type, row.keys, row.threads);
            if last != Some(key) {
                let readers = if row.scenario == Workload::ConfigReload {
                    format!("{} readers + the reload writer", row.threads)
                } else {
                    format!("{} threads", row.threads)
                };
                let _ = writeln!(
                    s,
                    "\n  {} · {} · {} · {} keys · {}\n  {:<24}{:>9}{:>9}{:>9}{:>10}{:>12}",
                    row.scenario.id(),
                    row.dist.id(),
                    row.key_type,
                    short_count(row.keys),
                    readers,
                    "map",
                    "p50",
                    "p99",
                    "p99.9",
                    "max",
                    "gets"
                );
                last = Some(key);
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
        if self.memory.is_empty() {
            return String::new();
        }
        let first = &self.memory[0];
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
            let per_key = row.live.map_or("-".into(), |b| {
                format!("{:.0}", b as f64 / row.keys.max(1) as f64)
            });
            let ratio = match (row.churn_start, row.churn_peak) {
                (Some(a), Some(b)) if a > 0 => format!("{:.2}x", b as f64 / a as f64),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "  {:<24}{:>14}{:>10}{:>14}{:>14}{:>8}",
                row.map,
                mib(row.live),
                per_key,
                mib(row.churn_start),
                mib(row.churn_peak),
                ratio
            );
        }
        s
    }

    /// The bar, checked on this run's numbers: on `read-only` and
    /// `read-heavy`, SyncMap at least as fast as the best peer at every thread
    /// count, and at least 3x `RwLock<HashMap>` at 8 threads; SnapshotMap at least
    /// as fast as SyncMap on `read-only`.
    pub fn bar_text(&self) -> String {
        let mut s = String::from(
            "bar check (read-only and read-heavy): SyncMap >= best peer at every thread count, \
             >= 3x RwLock<HashMap> at 8 threads; SnapshotMap >= SyncMap on read-only\n",
        );
        let mut misses = 0;
        for (group, cells) in self.groups() {
            if !matches!(group.workload, Workload::ReadOnly | Workload::ReadHeavy) {
                continue;
            }
            let mut threads: Vec<usize> = cells.iter().map(|c| c.threads).collect();
            threads.sort_unstable();
            threads.dedup();
            for t in threads {
                let at: Vec<&&Cell> = cells.iter().filter(|c| c.threads == t).collect();
                let Some(sync) = at.iter().find(|c| c.map.starts_with("SyncMap")) else {
                    continue;
                };
                let sync_mops = sync.mops().0;
                let best = at
                    .iter()
                    .filter(|c| !c.map.contains("SyncMap") && !c.map.starts_with("SnapshotMap"))
                    .max_by(|a, b| a.mops().0.total_cmp(&b.mops().0));
                let mut verdicts = Vec::new();
                if let Some(best) = best {
                    let r = sync_mops / best.mops().0;
                    let ok = r >= 1.0;
                    misses += usize::from(!ok);
                    verdicts.push(format!(
                        "{} vs best peer {} {:.2}: {:.2}x {}",
                        fmt_mops(sync_mops),
                        best.map,
                        best.mops().0,
                        r,
                        if ok { "ok" } else { "MISS" }
                    ));
                }
                if t == 8 {
                    if let Some(base) = at.iter().find(|c| c.map == BASELINE) {
                        let r = sync_mops / base.mops().0;
                        let ok = r >= 3.0;
                        misses += usize::from(!ok);
                        verdicts.push(format!(
                            "vs {BASELINE} {:.2}x {}",
                            r,
                            if ok { "ok" } else { "MISS" }
                        ));
                    }
                }
                if group.workload == Workload::ReadOnly {
                    if let Some(snap) = at.iter().find(|c| c.map.starts_with("SnapshotMap")) {
                        let r = snap.mops().0 / sync_mops;
                        let ok = r >= 1.0;
                        misses += usize::from(!ok);
                        verdicts.push(format!(
                            "SnapshotMap/SyncMap {:.2}x {}",
                            r,
                            if ok { "ok" } else { "MISS" }
                        ));
                    }
                }
                let _ = writeln!(
                    s,
                    "  {:<40} {:>2}t  {}",
                    group.title(),
                    t,
                    verdicts.join("; ")
                );
            }
        }
        let _ = writeln!(s, "  {misses} miss(es)");
        s
    }

    /// Writes `results.csv`, `latency.csv`, `memory.csv`, `lab.json` and
    /// `summary.txt` under `dir`.
    pub fn write_files(&self, dir: &Path, summary: &str) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("results.csv"), self.results_csv())?;
        std::fs::write(dir.join("latency.csv"), self.latency_csv())?;
        std::fs::write(dir.join("memory.csv"), self.memory_csv())?;
        std::fs::write(dir.join("lab.json"), self.json())?;
        std::fs::write(dir.join("summary.txt"), summary)?;
        Ok(())
    }

    fn baseline_mops(&self, cell: &Cell) -> Option<f64> {
        self.cells
            .iter()
            .find(|c| c.group() == cell.group() && c.threads == cell.threads && c.map == BASELINE)
            .map(|c| c.mops().0)
    }

    fn results_csv(&self) -> String {
        let mut s = String::from(
            "workload,dist,key_type,keys,threads,map,runs,mops_median,mops_min,mops_max,\
             ratio_vs_rwlock,hit_rate,reloads_median,ops_total\n",
        );
        for c in &self.cells {
            let (med, min, max) = c.mops();
            let ratio = self
                .baseline_mops(c)
                .map_or(String::new(), |b| format!("{:.4}", med / b));
            let mut reloads: Vec<u64> = c.runs.iter().map(|r| r.reloads).collect();
            reloads.sort_unstable();
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{:.4},{:.4},{:.4},{},{:.4},{},{}",
                c.workload.id(),
                c.dist.id(),
                c.key_type,
                c.keys,
                c.threads,
                c.map,
                c.runs.len(),
                med,
                min,
                max,
                ratio,
                c.hit_rate(),
                reloads[reloads.len() / 2],
                c.runs.iter().map(|r| r.ops).sum::<u64>()
            );
        }
        s
    }

    fn latency_csv(&self) -> String {
        let mut s = String::from(
            "scenario,dist,key_type,keys,threads,map,gets,p50_ns,p90_ns,p99_ns,p999_ns,max_ns,timer_overhead_ns\n",
        );
        for r in &self.latency {
            let h = &r.hist;
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{},{},{},{}",
                r.scenario.id(),
                r.dist.id(),
                r.key_type,
                r.keys,
                r.threads,
                r.map,
                h.len(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max(),
                self.timer_overhead_ns
            );
        }
        s
    }

    fn memory_csv(&self) -> String {
        let opt = |v: Option<isize>| v.map_or(String::new(), |v| v.to_string());
        let mut s = String::from(
            "map,key_type,keys,live_bytes,churn_keys,churn_start_bytes,churn_peak_bytes\n",
        );
        for r in &self.memory {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{}",
                r.map,
                r.key_type,
                r.keys,
                opt(r.live),
                r.churn_keys,
                opt(r.churn_start),
                opt(r.churn_peak)
            );
        }
        s
    }

    fn json(&self) -> String {
        let mut s = String::from("{\n  \"header\": {");
        let header: Vec<String> = self
            .header
            .iter()
            .map(|(k, v)| format!("\n    {}: {}", json_str(k), json_str(v)))
            .collect();
        s += &header.join(",");
        s += "\n  },\n  \"throughput\": [";
        let cells: Vec<String> = self
            .cells
            .iter()
            .map(|c| {
                let (med, min, max) = c.mops();
                let runs: Vec<String> = c.runs.iter().map(|r| format!("{:.4}", r.mops())).collect();
                format!(
                    "\n    {{\"workload\": {}, \"dist\": {}, \"key_type\": {}, \"keys\": {}, \
                     \"threads\": {}, \"map\": {}, \"mops_median\": {:.4}, \"mops_min\": {:.4}, \
                     \"mops_max\": {:.4}, \"mops_runs\": [{}], \"ratio_vs_rwlock\": {}, \
                     \"hit_rate\": {}}}",
                    json_str(c.workload.id()),
                    json_str(c.dist.id()),
                    json_str(c.key_type),
                    c.keys,
                    c.threads,
                    json_str(&c.map),
                    med,
                    min,
                    max,
                    runs.join(", "),
                    self.baseline_mops(c)
                        .map_or("null".into(), |b| format!("{:.4}", med / b)),
                    json_num(c.hit_rate())
                )
            })
            .collect();
        s += &cells.join(",");
        s += "\n  ],\n  \"latency\": [";
        let lat: Vec<String> = self
            .latency
            .iter()
            .map(|r| {
                let h = &r.hist;
                format!(
                    "\n    {{\"scenario\": {}, \"dist\": {}, \"key_type\": {}, \"keys\": {}, \
                     \"threads\": {}, \"map\": {}, \"gets\": {}, \"p50_ns\": {}, \"p99_ns\": {}, \
                     \"p999_ns\": {}, \"max_ns\": {}}}",
                    json_str(r.scenario.id()),
                    json_str(r.dist.id()),
                    json_str(r.key_type),
                    r.keys,
                    r.threads,
                    json_str(&r.map),
                    h.len(),
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.99),
                    h.value_at_quantile(0.999),
                    h.max()
                )
            })
            .collect();
        s += &lat.join(",");
        let _ = write!(
            s,
            "\n  ],\n  \"timer_overhead_ns\": {},\n  \"memory\": [",
            self.timer_overhead_ns
        );
        let opt = |v: Option<isize>| v.map_or("null".to_string(), |v| v.to_string());
        let mem: Vec<String> = self
            .memory
            .iter()
            .map(|r| {
                format!(
                    "\n    {{\"map\": {}, \"key_type\": {}, \"keys\": {}, \"live_bytes\": {}, \
                     \"churn_keys\": {}, \"churn_start_bytes\": {}, \"churn_peak_bytes\": {}}}",
                    json_str(&r.map),
                    json_str(r.key_type),
                    r.keys,
                    opt(r.live),
                    r.churn_keys,
                    opt(r.churn_start),
                    opt(r.churn_peak)
                )
            })
            .collect();
        s += &mem.join(",");
        s += "\n  ]\n}\n";
        s
    }
}

/// One throughput table: maps down, thread counts across; each cell is the median
/// Mops/s and the ratio to `RwLock<HashMap>` at the same thread count.
fn table(group: &Group, cells: &[&Cell]) -> String {
    let mut threads: Vec<usize> = cells.iter().map(|c| c.threads).collect();
    threads.sort_unstable();
    threads.dedup();
    let mut maps: Vec<&str> = Vec::new();
    for c in cells {
        if !maps.contains(&c.map.as_str()) {
            maps.push(&c.map);
        }
    }
    let find = |map: &str, t: usize| cells.iter().find(|c| c.map == map && c.threads == t);
    let mut s = format!(
        "{}  ({})\n  Mops/s, median of {} run(s) (x = ratio to {BASELINE}; hits = share of gets that found their key)\n",
        group.title(),
        group.workload.describe(),
        cells.first().map_or(0, |c| c.runs.len())
    );
    let _ = write!(s, "  {:<24}", "map");
    for t in &threads {
        let label = if group.workload == Workload::ConfigReload {
            format!("{t} thr (r+w)")
        } else {
            format!("{t} thr")
        };
        let _ = write!(s, "{label:>17}");
    }
    s += "    hits\n";
    for map in &maps {
        let _ = write!(s, "  {map:<24}");
        let mut hit = f64::NAN;
        for &t in &threads {
            match find(map, t) {
                Some(c) => {
                    let med = c.mops().0;
                    let ratio = find(BASELINE, t)
                        .map(|b| format!("{:.2}x", med / b.mops().0))
                        .unwrap_or_default();
                    let _ = write!(s, "{:>10} {:>6}", fmt_mops(med), ratio);
                    hit = c.hit_rate();
                }
                None => {
                    let _ = write!(s, "{:>17}", "-");
                }
            }
        }
        if hit.is_nan() {
            s += "       -\n";
        } else {
            let _ = writeln!(s, "  {:>5.1}%", hit * 100.0);
        }
    }
    s
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

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "null".into()
    }
}
