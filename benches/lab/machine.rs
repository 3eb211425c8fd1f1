//! What the numbers were measured on: the header of every table and file.

use std::process::Command;

/// Key–value lines describing the machine, toolchain and versions.
pub fn describe(hasher: &str, command: &str) -> Vec<(String, String)> {
    let mut lines = vec![
        ("command".into(), command.to_string()),
        (
            "cores".into(),
            std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into()),
        ),
        ("cpu".into(), cpu_model()),
        ("rustc".into(), rustc_version()),
        (
            "profile".into(),
            if cfg!(debug_assertions) {
                "debug (smoke check: numbers mean nothing)".into()
            } else {
                "bench (optimized)".into()
            },
        ),
        ("hasher".into(), hasher.to_string()),
        ("revision".into(), revision()),
        ("date".into(), date()),
        ("load average at start".into(), load_average()),
    ];
    lines.push(("crates".into(), crate_versions()));
    lines
}

/// `/proc/loadavg`'s first three fields (noise warning when others are busy).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The 1-minute load average (0 where unknown).
pub fn load_average_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The readmostly commit the lab was built from (`-dirty` with local changes):
/// which revision a table's figures are from.
fn revision() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=10", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!("{head}{}", if dirty { "-dirty" } else { "" })
        }
        None => "? (not a git checkout)".into(),
    }
}

fn date() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// The crates under test and their resolved versions, from `Cargo.lock`.
fn crate_versions() -> String {
    const CRATES: [&str; 12] = [
        "readmostly",
        "crossbeam-epoch",
        "seize",
        "parking_lot",
        "hashbrown",
        "dashmap",
        "papaya",
        "flurry",
        "scc",
        "arc-swap",
        "left-right",
        "foldhash",
    ];
    // The workspace's lock file, two levels up from this package. It lists a
    // crate's versions in ascending order: the last is the one the lab uses
    // (older ones come in through other dependencies).
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
        .unwrap_or_default();
    let versions: Vec<String> = CRATES
        .iter()
        .filter_map(|name| {
            let entry = format!("name = \"{name}\"\nversion = \"");
            let (at, _) = lock.rmatch_indices(&entry).next()?;
            let version = lock[at + entry.len()..].split('"').next()?;
            Some(format!("{name} {version}"))
        })
        .collect();
    versions.join(", ")
}
