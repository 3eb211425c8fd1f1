//! Recording histories: each operation's invocation and response are stamped
//! from one global counter, so that "A responded before B was invoked" is a
//! comparison of two numbers that every thread agrees on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::spec::{KeyOp, Ret};

static CLOCK: AtomicU64 = AtomicU64::new(0);

/// A timestamp. Take one immediately before calling the map and one immediately
/// after it returns: the operation took effect somewhere in between.
pub fn tick() -> u64 {
    // SeqCst RMW: the stamps of all threads form one total order consistent with
    // real time (an RMW reads the latest value in the modification order).
    CLOCK.fetch_add(1, Ordering::SeqCst)
}

/// One operation's effect on one key.
#[derive(Clone, Debug)]
pub struct Event {
    pub thread: usize,
    /// Stamp taken before the call.
    pub call: u64,
    /// Stamp taken after the return.
    pub ret: u64,
    pub key: u8,
    pub op: KeyOp,
    pub result: Ret,
}

/// One thread's log.
pub struct Recorder {
    pub thread: usize,
    pub events: Vec<Event>,
}

impl Recorder {
    pub fn new(thread: usize) -> Self {
        Recorder {
            thread,
            events: Vec::new(),
        }
    }

    pub fn record(&mut self, call: u64, ret: u64, key: u8, op: KeyOp, result: Ret) {
        debug_assert!(call < ret);
        self.events.push(Event {
            thread: self.thread,
            call,
            ret,
            key,
            op,
            result,
        });
    }
}

/// Splits a history into its per-key sub-histories.
pub fn per_key(events: impl IntoIterator<Item = Event>) -> BTreeMap<u8, Vec<Event>> {
    let mut keys: BTreeMap<u8, Vec<Event>> = BTreeMap::new();
    for event in events {
        keys.entry(event.key).or_default().push(event);
    }
    keys
}
