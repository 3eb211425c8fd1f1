//! A watchdog for tests of code that used to hang (a deadlock, a lost wake-up):
//! the test body runs on a thread of its own, and the test fails if it has not
//! finished within a limit, instead of stalling the whole test run.
//!
//! Shared by the crate's unit tests (`crate::test_support` includes this file) and
//! the integration targets in `src/tests/` (through `common`), so it uses only std.

use std::panic::resume_unwind;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

/// How long a watched test body may run. Generous — the machine is shared and
/// may be loaded — because it only has to tell "finished" from "never will":
/// a deadlocked body waits forever. Under Miri, which runs code about a hundred
/// times slower, it is scaled up accordingly.
pub const HANG_LIMIT: Duration = if cfg!(miri) {
    Duration::from_secs(3000)
} else {
    Duration::from_secs(30)
};

/// Runs `body` on a new thread and returns what it returns. Panics — failing the
/// test — if `body` has not finished after `limit`, and re-raises `body`'s own
/// panic if it panicked.
///
/// A body that hangs cannot be stopped: its thread is left blocked (holding
/// whatever it holds) and dies with the test process. So a watched body should
/// own or share (`Arc`) what it uses, as `'static` requires anyway, and touch
/// nothing another test needs.
///
/// # Examples
///
/// ```ignore
/// let answer = watchdog(HANG_LIMIT, || 6 * 7);
/// assert_eq!(answer, 42);
/// ```
pub fn watchdog<T, F>(limit: Duration, body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (done, finished) = mpsc::channel();
    let worker = thread::Builder::new()
        .name("watched test body".into())
        .spawn(move || {
            let out = body();
            // The receiver is gone only if the watchdog already gave up.
            let _ = done.send(());
            out
        })
        .expect("spawn the watched thread");
    match finished.recv_timeout(limit) {
        // Finished (Ok) or panicked (the sender dropped while unwinding): join
        // returns the value or the panic, at once either way.
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(out) => out,
            Err(panic) => resume_unwind(panic),
        },
        Err(RecvTimeoutError::Timeout) => {
            panic!("the test body did not finish within {limit:?}: it hangs (a deadlock?)")
        }
    }
}

/// [`watchdog`] with [`HANG_LIMIT`].
pub fn no_hang<T, F>(body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    watchdog(HANG_LIMIT, body)
}
