//! Small helpers shared by both bench targets of the lab (`lab` and
//! `reclaim`): count parsing and printing, the output directory, CSV files.
//!
//! Both targets include this file as a module (`#[path]` from `reclaim/`), so
//! it depends on nothing else in either crate.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// `1000`, `1k`, `100k`, `1M`: a count flag's value.
pub fn count(s: &str) -> Result<usize, String> {
    let (digits, scale) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1_000),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1_000_000),
        _ => (s, 1),
    };
    digits
        .parse::<usize>()
        .map(|n| n * scale)
        .map_err(|_| format!("not a number: `{s}`"))
}

/// `1k`, `100k`, `1M`, or the plain number.
pub fn short_count(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// The workspace's target directory (`CARGO_TARGET_DIR` if set).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")))
}

/// `path` from the command line, relative to the repository root: `cargo bench`
/// runs a bench binary in its package's directory (`benches/lab/`), but the
/// README's commands (`--plots-dir docs/lab`) name paths from the root.
pub fn from_repo_root(path: PathBuf) -> PathBuf {
    if path.is_relative() {
        let lab = Path::new(env!("CARGO_MANIFEST_DIR"));
        lab.ancestors().nth(2).unwrap_or(lab).join(path)
    } else {
        path
    }
}

/// Writes `rows` to `dir/name` as CSV, a header from the first row's fields.
pub fn write_csv<T: Serialize>(
    dir: &Path,
    name: &str,
    rows: impl IntoIterator<Item = T>,
) -> io::Result<()> {
    let mut csv = csv::Writer::from_path(dir.join(name))?;
    for row in rows {
        csv.serialize(row)?;
    }
    csv.flush()
}
