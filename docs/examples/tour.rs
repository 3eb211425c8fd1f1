//! A tour of `SyncMap`: a feature-flag table read by many threads while a writer
//! flips flags and adds new ones. Run with `cargo run --release --example tour`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use readmostly::{LoadOrStore, SyncMap};

fn main() {
    let flags: Arc<SyncMap<String, bool>> = Arc::new(
        (0..1_000)
            .map(|i| (format!("flag-{i}"), i % 2 == 0))
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));

    // Readers: each holds a guard for a batch of lookups, as a request handler would.
    let readers: Vec<_> = (0..4)
        .map(|t| {
            let (flags, stop, reads) = (flags.clone(), stop.clone(), reads.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                let mut key = String::new();
                while !stop.load(Ordering::Relaxed) {
                    let pinned = flags.pin();
                    for i in 0..256 {
                        key.clear();
                        use std::fmt::Write;
                        let _ = write!(key, "flag-{}", (i * 7 + t) % 1_000);
                        n += u64::from(pinned.get(key.as_str()).is_some());
                    }
                }
                reads.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();

    // The writer flips existing flags (one CAS each, no lock) and adds a few new
    // ones (the dirty table, promoted by readers' misses or explicitly).
    let start = Instant::now();
    let mut flips = 0u64;
    while start.elapsed() < Duration::from_millis(500) {
        let key = format!("flag-{}", flips % 1_000);
        flags.pin().update(key.as_str(), |on| !on);
        flips += 1;
        if flips.is_multiple_of(10_000) {
            let pinned = flags.pin();
            let new_key = format!("new-flag-{flips}");
            assert!(matches!(
                pinned.get_or_insert(new_key, true),
                LoadOrStore::Stored(_)
            ));
        }
    }
    flags.promote();
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }

    let stats = flags.stats();
    println!("keys:            {}", flags.len());
    println!("reads (4 thr):   {}", reads.load(Ordering::Relaxed));
    println!("flips:           {flips}");
    println!("promotions:      {}", stats.promotions);
    println!("dirty copies:    {}", stats.dirty_copies);
    println!("values retired:  {}", stats.values_retired);
    println!("freed so far:    {}", stats.freed);
    println!(
        "still pending:   {} ({} bytes)",
        stats.pending, stats.pending_bytes
    );
}
