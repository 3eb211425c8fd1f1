//! What a run prints and writes: markdown tables, CSV files, SVG time series.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::chart::{self, Axes, Series};
use crate::cli::{Config, SUBJECTS};
use crate::common::{short_count, write_csv};
use crate::scenarios::{BurstRow, ChurnRow, StallRow, TpRow, TsRow};

/// Everything one invocation measured.
#[derive(Default)]
pub struct Results {
    pub churn: Vec<ChurnRow>,
    pub stall: Vec<StallRow>,
    pub burst: Vec<BurstRow>,
    pub large: Vec<ChurnRow>,
    pub throughput: Vec<TpRow>,
    pub series: Vec<TsRow>,
}

/// `12.3 MiB`, `4.0 KiB`, `512 B`.
pub fn bytes(b: f64) -> String {
    let a = b.abs();
    if a >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / 1073741824.0)
    } else if a >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1048576.0)
    } else if a >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// `1.2M`, `34.5k`, `678`.
fn count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn table(s: &mut String, head: &[&str], rows: Vec<Vec<String>>) {
    let _ = writeln!(s, "| {} |", head.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(head.len()));
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s.push('\n');
}

/// `1M` or `100k, batches of 1000` (what differs for SnapshotMap, in the table).
fn keys_cell(keys: usize, write_batch: usize) -> String {
    if write_batch > 1 {
        format!("{}, writes in batches of {write_batch}", short_count(keys))
    } else {
        short_count(keys)
    }
}

fn churn_rows(rows: &[ChurnRow]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            vec![
                format!("`{}`", r.subject),
                keys_cell(r.keys, r.write_batch),
                format!("{:.2}", r.mops),
                format!(
                    "{} / {}",
                    count(r.mean_pending_objects),
                    count(r.peak_pending_objects as f64)
                ),
                format!(
                    "{} / {}",
                    bytes(r.mean_pending_bytes),
                    bytes(r.peak_pending_bytes as f64)
                ),
                bytes(r.peak_heap_over_start_bytes as f64),
                format!(
                    "{} ({})",
                    count(r.end_pending_objects as f64),
                    bytes(r.end_pending_bytes as f64)
                ),
            ]
        })
        .collect()
}

const CHURN_HEAD: [&str; 7] = [
    "subject",
    "keys",
    "Mops/s",
    "pending objects mean / peak",
    "pending bytes mean / peak",
    "peak heap over start",
    "pending at end",
];

/// The summary: one markdown section per scenario that ran.
pub fn markdown(header: &[(String, String)], cfg: &Config, r: &Results) -> String {
    let mut s = String::from("# Reclamation lab\n\n");
    for (k, v) in header {
        let _ = writeln!(s, "- {k}: `{v}`");
    }
    s.push('\n');
    let _ = writeln!(
        s,
        "Pending = retired, not yet freed, as each map's ledger reports it: `Stats::pending` \
         / `pending_bytes` for SyncMap (a value cell counts `size_of::<V>()`, a table its \
         bucket array), `SnapshotStats::held` / `held_bytes` for SnapshotMap (one object = one \
         whole retired version). Heap = the process heap above its level after the prefill \
         (counting allocator; includes the reclaimers' own records). SnapshotMap runs on \
         fewer keys and gathers its writes into batches (one copy and one publish per batch): \
         the keys column says so.\n"
    );
    if !r.churn.is_empty() {
        let first = &r.churn[0];
        let _ = writeln!(
            s,
            "## 1. Churn\n\n{} threads, {}, {:.1} s, {} values; sampled every {} ms \
             (`churn-objects.svg`, `churn-bytes.svg`). Ops/s with the counting allocator on.\n",
            first.threads,
            first.mix,
            first.seconds,
            first.value,
            cfg.sample.as_millis()
        );
        table(&mut s, &CHURN_HEAD, churn_rows(&r.churn));
    }
    if !r.stall.is_empty() {
        let _ = writeln!(
            s,
            "## 2. Stalled reader\n\nThe main thread holds a guard (`map.pin()`; SnapshotMap: a \
             `Snapshot`) while {} writer threads run writes only (half overwrite, half \
             remove+insert). Baseline = highest pending sampled in the last two thirds of the \
             warm-up before the pin (300 ms; `--quick`: 60 ms); release = how long dropping the guard took on the stalled thread itself; drain = from \
             the start of the release until the first sample at or below the baseline (objects \
             and bytes); `-` = not within the timeout (`stall-*-objects.svg`, `stall-*-bytes.svg`, \
             t = 0 at the pin).\n",
            cfg.stall_writers
        );
        let rows = r
            .stall
            .iter()
            .map(|x| {
                vec![
                    format!("`{}`", x.subject),
                    format!("{} ms", x.stall_ms),
                    keys_cell(x.keys, x.write_batch),
                    count(x.writer_ops as f64),
                    format!(
                        "{} ({})",
                        count(x.baseline_objects as f64),
                        bytes(x.baseline_bytes as f64)
                    ),
                    format!(
                        "{} ({})",
                        count(x.peak_objects as f64),
                        bytes(x.peak_bytes as f64)
                    ),
                    bytes(x.peak_heap_over_start_bytes as f64),
                    format!("{:.1} ms", x.release_ms),
                    x.drain_ms
                        .map_or(format!("- (> {} ms)", x.timeout_ms), |d| {
                            format!("{d:.0} ms")
                        }),
                ]
            })
            .collect();
        table(
            &mut s,
            &[
                "subject",
                "stall",
                "keys",
                "writer ops",
                "baseline pending",
                "peak pending",
                "peak heap over start",
                "release",
                "drain",
            ],
            rows,
        );
    }
    if !r.burst.is_empty() {
        let _ = writeln!(
            s,
            "## 3. Burst, then idle\n\n{} writer threads overwrite, then exit. Phase A: nothing \
             runs for {} ms (the sampler reads stats only). Phase B: one thread does gets for {} \
             ms. Phase C: up to 100 `flush()` calls from the main thread. Pending objects \
             (bytes) at the end of each. Gets may retire again after pending first reached 0 \
             (a read that spends SyncMap's read budget promotes, retiring the old table). \
             `burst-*.svg` plot them (t = 0 when the writers exited).\n",
            cfg.threads,
            cfg.phase.as_millis(),
            cfg.phase.as_millis()
        );
        let pend = |o: u64, b: u64| format!("{} ({})", count(o as f64), bytes(b as f64));
        let rows = r
            .burst
            .iter()
            .map(|x| {
                vec![
                    format!("`{}`", x.subject),
                    keys_cell(x.keys, x.write_batch),
                    format!("{} in {:.2} s", count(x.burst_ops as f64), x.burst_seconds),
                    pend(x.after_burst_objects, x.after_burst_bytes),
                    pend(x.after_idle_objects, x.after_idle_bytes),
                    pend(x.after_gets_objects, x.after_gets_bytes),
                    match (x.gets_to_zero, x.gets_ms_to_zero) {
                        (Some(g), Some(ms)) => format!("{} ({ms:.0} ms)", count(g as f64)),
                        _ => "-".into(),
                    },
                    pend(x.after_flush_objects, x.after_flush_bytes),
                    x.flushes_to_zero.map_or("-".into(), |f| f.to_string()),
                    match (x.drains_with, x.idle_ms_to_zero) {
                        ("idle", Some(ms)) => format!("idle ({ms:.0} ms)"),
                        (d, _) => d.to_string(),
                    },
                    bytes(x.heap_after_drop_bytes as f64),
                ]
            })
            .collect();
        table(
            &mut s,
            &[
                "subject",
                "keys",
                "burst",
                "after burst",
                "A: after idle",
                "B: after gets",
                "gets until first 0",
                "C: after flushes",
                "flushes to 0",
                "drains with",
                "heap after drop vs before build",
            ],
            rows,
        );
    }
    if !r.large.is_empty() {
        let first = &r.large[0];
        let _ = writeln!(
            s,
            "## 4. Large values\n\nThe churn mix on {} threads for {:.1} s with values stored \
             inline (`[u8; N]`, so the ledgers' bytes include them), {} MiB of values per map \
             (keys = {} MiB / N). `large-*-bytes.svg` (ledger), `large-*-heap.svg` (heap).\n",
            first.threads, first.seconds, cfg.large_mib, cfg.large_mib
        );
        let mut head = vec!["value"];
        head.extend(CHURN_HEAD);
        let rows = r
            .large
            .iter()
            .zip(churn_rows(&r.large))
            .map(|(x, row)| {
                let mut v = vec![format!("`{}`", x.value)];
                v.extend(row);
                v
            })
            .collect();
        table(&mut s, &head, rows);
    }
    if !r.throughput.is_empty() {
        let first = &r.throughput[0];
        let _ = writeln!(
            s,
            "## 5. Throughput\n\n{} keys, {} threads, {} ms x {} run(s) per cell, subjects \
             interleaved run by run; Mops/s, median (min–max). fresh = a guard per operation \
             (SyncMap `pin()`, SnapshotMap `get`), held = one guard (snapshot) per thread \
             refreshed every 1,024 operations. SnapshotMap's writes in batches of {}. Counting \
             allocator off.\n",
            short_count(first.keys),
            first.threads,
            cfg.tp_duration.as_millis(),
            first.runs,
            cfg.snapshot_batch
        );
        let mut cols: Vec<(&str, &str, String)> = Vec::new();
        for row in &r.throughput {
            if !cols.iter().any(|c| c.0 == row.mix && c.1 == row.guard) {
                cols.push((row.mix, row.guard, row.mix_ops.clone()));
            }
        }
        let mut head = vec!["subject".to_string()];
        head.extend(cols.iter().map(|c| format!("{} · {}", c.0, c.1)));
        let rows = SUBJECTS
            .iter()
            .filter(|id| r.throughput.iter().any(|x| x.subject == **id))
            .map(|id| {
                let mut v = vec![format!("`{id}`")];
                v.extend(cols.iter().map(|c| {
                    r.throughput
                        .iter()
                        .find(|x| x.subject == *id && x.mix == c.0 && x.guard == c.1)
                        .map_or("-".into(), |x| {
                            format!("{:.2} ({:.2}–{:.2})", x.mops_median, x.mops_min, x.mops_max)
                        })
                }));
                v
            })
            .collect();
        let head: Vec<&str> = head.iter().map(String::as_str).collect();
        table(&mut s, &head, rows);
        for c in &cols {
            if c.1 == "fresh" {
                let _ = writeln!(s, "- {}: {}", c.0, c.2);
            }
        }
        s.push('\n');
    }
    s
}

/// Writes the CSV files and `summary.md` under `dir`.
pub fn write_files(dir: &Path, r: &Results, summary: &str) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_csv(dir, "churn.csv", &r.churn)?;
    write_csv(dir, "stall.csv", &r.stall)?;
    write_csv(dir, "burst.csv", &r.burst)?;
    write_csv(dir, "large_values.csv", &r.large)?;
    write_csv(dir, "throughput.csv", &r.throughput)?;
    write_csv(dir, "timeseries.csv", &r.series)?;
    std::fs::write(dir.join("summary.md"), summary)
}

/// One SVG per time-series scenario and measure (`<scenario>-objects.svg`,
/// `<scenario>-bytes.svg`, `<scenario>-heap.svg`), one line per subject.
pub fn write_plots(dir: &Path, cfg: &Config, r: &Results) -> Result<(), String> {
    let names: Vec<String> = SUBJECTS.iter().map(|s| s.to_string()).collect();
    let mut scenarios: Vec<&str> = Vec::new();
    for row in &r.series {
        if !scenarios.contains(&row.scenario.as_str()) {
            scenarios.push(&row.scenario);
        }
    }
    for scenario in scenarios {
        let rows: Vec<&TsRow> = r.series.iter().filter(|x| x.scenario == scenario).collect();
        let mut markers: Vec<(f64, &str)> = Vec::new();
        let stall_ms = scenario
            .strip_prefix("stall-")
            .and_then(|s| s.strip_suffix("ms"))
            .and_then(|s| s.parse::<f64>().ok());
        let x_label = if let Some(ms) = stall_ms {
            markers.extend([(0.0, "pin"), (ms, "release")]);
            "ms since the pin"
        } else if scenario == "burst" {
            let phase = cfg.phase.as_secs_f64() * 1e3;
            markers.extend([
                (0.0, "A: idle"),
                (phase, "B: gets"),
                (phase * 2.0, "C: flush"),
            ]);
            "ms since the writers exited"
        } else {
            "ms"
        };
        for (measure, y_label) in [
            ("objects", "pending objects (SnapshotMap: held versions)"),
            ("bytes", "pending bytes (ledger)"),
            ("heap", "heap bytes over start (counting allocator)"),
        ] {
            let series: Vec<Series> = names
                .iter()
                .map(|name| Series {
                    name: name.clone(),
                    points: rows
                        .iter()
                        .filter(|x| x.subject == name)
                        .map(|x| {
                            let y = match measure {
                                "objects" => x.pending_objects as f64,
                                "bytes" => x.pending_bytes as f64,
                                // Below the start only by frees of older
                                // blocks: drawn at 0.
                                _ => x.heap_over_start_bytes.max(0) as f64,
                            };
                            (x.t_ms, y)
                        })
                        .collect(),
                })
                .collect();
            let title = format!("{scenario}: {y_label}");
            let axes = Axes {
                title: &title,
                x: x_label,
                y: y_label,
                markers: &markers,
            };
            chart::lines(
                dir,
                &format!("{scenario}-{measure}.svg"),
                &axes,
                &series,
                &names,
            )
            .map_err(|e| format!("plot {scenario}-{measure}: {e}"))?;
        }
    }
    Ok(())
}
