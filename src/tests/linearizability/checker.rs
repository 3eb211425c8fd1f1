//! A linearizability checker for one key's history: the Wing–Gong search with
//! Lowe's memoization (the "WGL" algorithm, as in Knossos and Porcupine).
//!
//! The search builds a linearization one operation at a time. An operation may
//! come next only if it is *minimal*: no other not-yet-linearized operation
//! responded before it was invoked. It must also be legal: the specification,
//! applied to the state so far, returns what the operation returned. A
//! configuration (set of linearized operations, state) that failed once fails
//! again, so each is explored at most once; with few threads the number of
//! configurations stays small, since only operations overlapping the frontier
//! can be chosen.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::history::Event;
use super::spec::{step, Value};

/// What a successful check explored.
#[derive(Clone, Copy, Debug, Default)]
pub struct Checked {
    /// Configurations visited (a measure of the search's work).
    pub configurations: usize,
}

/// Checks one key's sub-history against the specification, starting from an
/// absent key. On failure, returns a report: the sub-history in invocation order
/// and the longest linearizable prefix the search found.
pub fn check_key(key: u8, events: &[Event]) -> Result<Checked, String> {
    let mut ops: Vec<&Event> = events.iter().collect();
    ops.sort_by_key(|e| e.call);
    let mut search = Search {
        ops: &ops,
        memo: HashSet::new(),
        path: Vec::with_capacity(ops.len()),
        best: Vec::new(),
    };
    let mut done = vec![0u64; ops.len().div_ceil(64)];
    if search.dfs(&mut done, None) {
        Ok(Checked {
            configurations: search.memo.len(),
        })
    } else {
        Err(report(key, &ops, &search.best))
    }
}

struct Search<'a> {
    /// Sorted by invocation.
    ops: &'a [&'a Event],
    /// Configurations already reached: (linearized set, state).
    memo: HashSet<(Box<[u64]>, Option<Value>)>,
    /// The linearization being built (indices into `ops`).
    path: Vec<usize>,
    /// The longest `path` that could not be extended, for the report.
    best: Vec<usize>,
}

impl Search<'_> {
    fn dfs(&mut self, done: &mut [u64], state: Option<Value>) -> bool {
        let n = self.ops.len();
        if self.path.len() == n {
            return true;
        }
        let is_done = |done: &[u64], i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        // Minimal operations were invoked before every pending response.
        let horizon = (0..n)
            .filter(|&i| !is_done(done, i))
            .map(|i| self.ops[i].ret)
            .min()
            .expect("an operation is pending");
        for i in 0..n {
            let op = self.ops[i];
            if op.call > horizon {
                break;
            }
            if is_done(done, i) {
                continue;
            }
            let Some(next) = step(&op.op, &op.result, state) else {
                continue;
            };
            done[i / 64] |= 1 << (i % 64);
            if self.memo.insert((done.to_vec().into_boxed_slice(), next)) {
                self.path.push(i);
                if self.dfs(done, next) {
                    return true;
                }
                self.path.pop();
            }
            done[i / 64] &= !(1 << (i % 64));
        }
        if self.path.len() >= self.best.len() {
            self.best = self.path.clone();
        }
        false
    }
}

fn report(key: u8, ops: &[&Event], best: &[usize]) -> String {
    let mut out = format!(
        "key {key}: not linearizable ({} operations; [call, return] stamps, thread)\n",
        ops.len()
    );
    for (i, e) in ops.iter().enumerate().take(400) {
        let _ = writeln!(
            out,
            "  #{i:<3} [{:>8}, {:>8}] t{} {} -> {}",
            e.call, e.ret, e.thread, e.op, e.result
        );
    }
    if ops.len() > 400 {
        let _ = writeln!(out, "  … {} more", ops.len() - 400);
    }
    let _ = write!(out, "longest linearizable prefix ({} ops):", best.len());
    let mut state = None;
    for &i in best {
        state = step(&ops[i].op, &ops[i].result, state).expect("legal step");
        let _ = write!(out, " #{i}");
    }
    let _ = writeln!(out, "\n  state after it: {state:x?}");
    let _ = writeln!(
        out,
        "  no pending operation that is minimal there returns what it returned"
    );
    out
}

#[cfg(test)]
mod tests {
    //! The checker itself: hand-written histories it must accept and reject.
    use super::super::spec::{KeyOp, Ret};
    use super::*;

    fn ev(thread: usize, call: u64, ret: u64, op: KeyOp, result: Ret) -> Event {
        Event {
            thread,
            call,
            ret,
            key: 0,
            op,
            result,
        }
    }

    #[test]
    fn a_sequential_legal_history_passes() {
        let h = [
            ev(0, 0, 1, KeyOp::Insert(1), Ret::Val(None)),
            ev(0, 2, 3, KeyOp::Get, Ret::Val(Some(1))),
            ev(0, 4, 5, KeyOp::Remove, Ret::Val(Some(1))),
            ev(0, 6, 7, KeyOp::Get, Ret::Val(None)),
        ];
        assert!(check_key(0, &h).is_ok());
    }

    #[test]
    fn a_lost_insert_fails() {
        let h = [
            ev(0, 0, 1, KeyOp::Insert(1), Ret::Val(None)),
            ev(0, 2, 3, KeyOp::Get, Ret::Val(None)),
        ];
        let err = check_key(0, &h).unwrap_err();
        assert!(err.contains("not linearizable"), "{err}");
    }

    #[test]
    fn a_stale_read_after_a_completed_overwrite_fails() {
        let h = [
            ev(0, 0, 1, KeyOp::Insert(1), Ret::Val(None)),
            ev(0, 2, 3, KeyOp::Insert(2), Ret::Val(Some(1))),
            ev(1, 4, 5, KeyOp::Get, Ret::Val(Some(1))),
        ];
        assert!(check_key(0, &h).is_err());
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // t1's get overlaps both inserts: it may see either value, or none.
        for seen in [None, Some(1), Some(2)] {
            let h = [
                ev(0, 0, 3, KeyOp::Insert(1), Ret::Val(None)),
                ev(1, 1, 5, KeyOp::Get, Ret::Val(seen)),
                ev(0, 4, 6, KeyOp::Insert(2), Ret::Val(Some(1))),
            ];
            assert!(check_key(0, &h).is_ok(), "{seen:?}");
        }
    }

    #[test]
    fn two_readers_must_agree_on_one_order() {
        // Two writes concurrent with each other; two later readers, each after both
        // writes completed, disagree on the final value: impossible.
        let h = [
            ev(0, 0, 3, KeyOp::Set(Some(1)), Ret::Unit),
            ev(1, 1, 2, KeyOp::Set(Some(2)), Ret::Unit),
            ev(2, 4, 5, KeyOp::Get, Ret::Val(Some(1))),
            ev(3, 6, 7, KeyOp::Get, Ret::Val(Some(2))),
        ];
        assert!(check_key(0, &h).is_err());
    }

    #[test]
    fn read_your_own_cas_and_get_or_insert() {
        let ok = [
            ev(
                0,
                0,
                1,
                KeyOp::GetOrInsert(5),
                Ret::LoadOrStore {
                    stored: true,
                    value: 5,
                },
            ),
            ev(
                1,
                2,
                3,
                KeyOp::GetOrInsert(6),
                Ret::LoadOrStore {
                    stored: false,
                    value: 5,
                },
            ),
            ev(
                0,
                4,
                5,
                KeyOp::CompareExchange {
                    expected: 5,
                    new: 7,
                },
                Ret::Cas(Ok(5)),
            ),
            ev(
                1,
                6,
                7,
                KeyOp::CompareExchange {
                    expected: 5,
                    new: 8,
                },
                Ret::Cas(Err(Some(7))),
            ),
            ev(0, 8, 9, KeyOp::RemoveIf(7), Ret::Val(Some(7))),
            ev(0, 10, 11, KeyOp::Update(3), Ret::Val(None)),
        ];
        assert!(check_key(0, &ok).is_ok());
        // Both get_or_insert calls claiming to have stored: one of them lies.
        let both_stored = [
            ev(
                0,
                0,
                3,
                KeyOp::GetOrInsert(5),
                Ret::LoadOrStore {
                    stored: true,
                    value: 5,
                },
            ),
            ev(
                1,
                1,
                2,
                KeyOp::GetOrInsert(6),
                Ret::LoadOrStore {
                    stored: true,
                    value: 6,
                },
            ),
        ];
        assert!(check_key(0, &both_stored).is_err());
    }

    #[test]
    fn batches_are_atomic_per_key() {
        // A batch inserting then removing the key: nobody may observe the insert.
        let batch = KeyOp::Atomic(vec![
            (KeyOp::Insert(1), Ret::Val(None)),
            (KeyOp::Remove, Ret::Val(Some(1))),
        ]);
        let torn = [
            ev(0, 0, 3, batch.clone(), Ret::Unit),
            ev(1, 1, 2, KeyOp::Get, Ret::Val(Some(1))),
        ];
        assert!(check_key(0, &torn).is_err());
        let fine = [
            ev(0, 0, 3, batch, Ret::Unit),
            ev(1, 1, 2, KeyOp::Get, Ret::Val(None)),
        ];
        assert!(check_key(0, &fine).is_ok());
    }
}
