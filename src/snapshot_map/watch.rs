//! Waiting for the next version: [`Watcher`], blocking or as a future.
//!
//! Each publish, after the new version is visible to readers and after the
//! writer lock is released, records its number in `Watch` and wakes everyone
//! waiting: threads parked on the condition variable and tasks whose wakers are
//! registered. A waiter checks and registers under the same mutex that a
//! publish records under, so no wake-up falls between the check and the wait.
//!
//! No waker code runs under a lock: wakers are cloned before the state mutex is
//! taken, and woken or dropped after it is released — and after the writer lock
//! is released, so an executor that polls inline may write to the map.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use super::{Snapshot, SnapshotMap};
use crate::reclaim::{ArcSwapPublish, Publish};
use crate::sync::{self, Condvar, Mutex};

/// The map's side of waiting: the last published number and who waits for more.
pub(crate) struct Watch {
    state: Mutex<State>,
    published: Condvar,
}

struct State {
    /// The last version published (set after the version became current).
    version: u64,
    /// Tasks waiting for a version after the one they saw, by waiter id.
    wakers: Vec<(u64, Waker)>,
    next_id: u64,
    /// Threads blocked on the condition variable. A publish notifies only when
    /// there are some: `notify_all` is a system call even with no waiter.
    blocked: usize,
}

impl Watch {
    pub(crate) fn new(version: u64) -> Self {
        Watch {
            state: Mutex::new(State {
                version,
                wakers: Vec::new(),
                next_id: 0,
                blocked: 0,
            }),
            published: Condvar::new(),
        }
    }

    /// Records that `version` is now current and wakes every waiter. Called
    /// after the writer lock is released, so announcements of two publishes may
    /// arrive out of order: the recorded number only moves forward.
    ///
    /// A waker that panics does not keep the others asleep: every waker is woken,
    /// then the first panic is re-raised.
    pub(crate) fn published(&self, version: u64) {
        let (wakers, blocked) = {
            let mut state = sync::lock(&self.state);
            state.version = state.version.max(version);
            (core::mem::take(&mut state.wakers), state.blocked)
        };
        // A thread that blocks after we released the lock saw `version` first.
        if blocked > 0 {
            self.published.notify_all();
        }
        let mut first_panic = None;
        for (_, waker) in wakers {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| waker.wake())) {
                first_panic.get_or_insert(panic);
            }
        }
        if let Some(panic) = first_panic {
            resume_unwind(panic);
        }
    }

    /// Blocks until a version after `seen` is published, or `deadline` passes;
    /// returns whether one was.
    fn wait_after(&self, seen: u64, deadline: Option<Instant>) -> bool {
        let mut state = sync::lock(&self.state);
        while state.version <= seen {
            let left = match deadline {
                None => None,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return false,
                },
            };
            state.blocked += 1;
            state = match left {
                None => match self.published.wait(state) {
                    Ok(state) => state,
                    Err(poisoned) => poisoned.into_inner(),
                },
                Some(left) => match self.published.wait_timeout(state, left) {
                    Ok((state, _)) => state,
                    Err(poisoned) => poisoned.into_inner().0,
                },
            };
            state.blocked -= 1;
        }
        true
    }

    /// Registers `waker` under `*id` unless a version after `seen` is already
    /// published; returns whether one is.
    fn register(&self, seen: u64, id: &mut Option<u64>, waker: &Waker) -> bool {
        // Waker code (clone, drop) runs outside the lock.
        let mut waker = Some(waker.clone());
        let published = {
            let mut state = sync::lock(&self.state);
            if state.version > seen {
                true
            } else {
                let key = *id.get_or_insert_with(|| {
                    state.next_id += 1;
                    state.next_id
                });
                match state.wakers.iter_mut().find(|(k, _)| *k == key) {
                    // The replaced waker comes back out in `waker`.
                    Some((_, old)) => core::mem::swap(old, waker.as_mut().expect("set above")),
                    None => state.wakers.push((key, waker.take().expect("set above"))),
                }
                false
            }
        };
        drop(waker);
        published
    }

    /// Wakers registered and not yet woken or forgotten.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        sync::lock(&self.state).wakers.len()
    }

    /// Forgets the waker registered under `id`, if it is still there.
    fn forget(&self, id: u64) {
        let forgotten = {
            let mut state = sync::lock(&self.state);
            let at = state.wakers.iter().position(|(k, _)| *k == id);
            at.map(|at| state.wakers.swap_remove(at))
        };
        // The waker's drop (user code) runs outside the lock.
        drop(forgotten);
    }
}

/// Waits for new versions of a [`SnapshotMap`], from
/// [`SnapshotMap::watch`]: the building block of a config watcher that needs no
/// polling loop.
///
/// It remembers the last version it returned (at first, the version current
/// when it was created) and each wait returns the newest version after that.
/// Versions published in quick succession may be seen as one: a watcher always
/// gets the latest, never a backlog. Wait by blocking ([`wait`](Watcher::wait),
/// [`wait_timeout`](Watcher::wait_timeout)) or in async code
/// ([`changed`](Watcher::changed), a runtime-agnostic future).
///
/// # Examples
///
/// ```
/// use readmostly::SnapshotMap;
/// use std::thread;
///
/// let config = SnapshotMap::new();
/// config.insert("level", "info");
/// thread::scope(|s| {
///     let mut watcher = config.watch();
///     let old = config.snapshot();
///     let reloader = s.spawn(|| config.insert("level", "debug"));
///     let new = watcher.wait(); // blocks until the reload is published
///     reloader.join().unwrap();
///     assert_eq!(new.get("level"), Some(&"debug"));
///     assert_eq!(old.diff(&new).count(), 1);
/// });
/// ```
pub struct Watcher<'m, K, V, S, P: Publish = ArcSwapPublish> {
    map: &'m SnapshotMap<K, V, S, P>,
    seen: u64,
}

impl<'m, K, V, S, P: Publish> Watcher<'m, K, V, S, P> {
    pub(crate) fn new(map: &'m SnapshotMap<K, V, S, P>) -> Self {
        Watcher {
            map,
            seen: map.version(),
        }
    }

    /// The number of the last version this watcher returned (or started at).
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// map.insert(1, 1);
    /// assert_eq!(map.watch().seen(), 1);
    /// ```
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The newest version if it is newer than the last one seen, without
    /// waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// let mut watcher = map.watch();
    /// assert!(watcher.try_next().is_none());
    /// map.insert(1, 1);
    /// map.insert(2, 2);
    /// assert_eq!(watcher.try_next().map(|s| s.version()), Some(2)); // the latest
    /// assert!(watcher.try_next().is_none());
    /// ```
    pub fn try_next(&mut self) -> Option<Snapshot<K, V, S>> {
        let snapshot = self.map.snapshot();
        if snapshot.version() > self.seen {
            self.seen = snapshot.version();
            Some(snapshot)
        } else {
            None
        }
    }

    /// Blocks the thread until a version newer than the last one seen is
    /// published, and returns the newest. Returns at once if one already was.
    ///
    /// # Panics
    ///
    /// If no newer version is published yet and this thread holds the map's
    /// writer lock (inside a [`batch`](SnapshotMap::batch) closure): no writer
    /// could publish until the closure returns, so the wait would never end.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    ///
    /// let map = SnapshotMap::new();
    /// let mut watcher = map.watch();
    /// map.insert("k", 1); // published before the wait: returns at once
    /// assert_eq!(watcher.wait().get("k"), Some(&1));
    /// ```
    pub fn wait(&mut self) -> Snapshot<K, V, S> {
        loop {
            if let Some(snapshot) = self.try_next() {
                return snapshot;
            }
            assert!(
                !self.map.writer.held_by_current_thread(),
                "SnapshotMap: Watcher::wait inside a batch of the same map would wait \
                 forever: no version can be published until the batch returns"
            );
            self.map.watch.wait_after(self.seen, None);
        }
    }

    /// As [`wait`](Watcher::wait), giving up after `timeout`. (Inside a batch
    /// of the same map it returns a version published before the batch began
    /// that the watcher has not seen, and otherwise can only time out: nothing
    /// is published until the batch returns.)
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    /// use std::time::Duration;
    ///
    /// let map: SnapshotMap<u8, u8> = SnapshotMap::new();
    /// let mut watcher = map.watch();
    /// assert!(watcher.wait_timeout(Duration::from_millis(1)).is_none());
    /// ```
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Snapshot<K, V, S>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(snapshot) = self.try_next() {
                return Some(snapshot);
            }
            if !self.map.watch.wait_after(self.seen, deadline) {
                return self.try_next();
            }
        }
    }

    /// A future that resolves to the newest version once one newer than the last
    /// one seen is published. Works with any executor (it registers the task's
    /// waker; it spawns nothing and needs no timer). Dropping it cancels the wait.
    ///
    /// # Examples
    ///
    /// ```
    /// use readmostly::SnapshotMap;
    /// # use std::{future::Future, sync::Arc, task::{Context, Poll, Wake, Waker}, thread::Thread};
    /// # fn block_on<F: Future>(f: F) -> F::Output {
    /// #     // Any executor works; this one parks the thread until woken.
    /// #     struct Unpark(Thread);
    /// #     impl Wake for Unpark { fn wake(self: Arc<Self>) { self.0.unpark() } }
    /// #     let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let Poll::Ready(out) = f.as_mut().poll(&mut Context::from_waker(&waker)) { return out; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    ///
    /// let flags = SnapshotMap::new();
    /// let mut watcher = flags.watch();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| flags.insert("beta", true));
    ///     let snapshot = block_on(async { watcher.changed().await });
    ///     assert_eq!(snapshot.get("beta"), Some(&true));
    /// });
    /// ```
    pub fn changed(&mut self) -> Changed<'_, 'm, K, V, S, P> {
        Changed {
            watcher: self,
            id: None,
        }
    }
}

impl<K, V, S, P: Publish> fmt::Debug for Watcher<'_, K, V, S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher").field("seen", &self.seen).finish()
    }
}

/// The future of [`Watcher::changed`]: resolves to the newest [`Snapshot`] once
/// a version newer than the watcher's last one is published.
///
/// # Examples
///
/// ```
/// use readmostly::SnapshotMap;
/// use std::future::Future;
/// use std::sync::Arc;
/// use std::task::{Context, Poll, Wake, Waker};
///
/// struct Noop;
/// impl Wake for Noop {
///     fn wake(self: Arc<Self>) {}
/// }
///
/// let map = SnapshotMap::new();
/// let mut watcher = map.watch();
/// let mut changed = std::pin::pin!(watcher.changed());
/// let waker = Waker::from(Arc::new(Noop));
/// let mut cx = Context::from_waker(&waker);
/// assert!(changed.as_mut().poll(&mut cx).is_pending());
/// map.insert(1, 1);
/// assert!(matches!(changed.poll(&mut cx), Poll::Ready(s) if s.version() == 1));
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Changed<'w, 'm, K, V, S, P: Publish = ArcSwapPublish> {
    watcher: &'w mut Watcher<'m, K, V, S, P>,
    /// This future's waker slot in the map's `Watch`, once registered.
    id: Option<u64>,
}

impl<K, V, S, P: Publish> Future for Changed<'_, '_, K, V, S, P> {
    type Output = Snapshot<K, V, S>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Snapshot<K, V, S>> {
        let this = self.get_mut();
        loop {
            if let Some(snapshot) = this.watcher.try_next() {
                return Poll::Ready(snapshot);
            }
            let watch = &this.watcher.map.watch;
            if !watch.register(this.watcher.seen, &mut this.id, cx.waker()) {
                return Poll::Pending;
            }
        }
    }
}

impl<K, V, S, P: Publish> Drop for Changed<'_, '_, K, V, S, P> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.watcher.map.watch.forget(id);
        }
    }
}

impl<K, V, S, P: Publish> fmt::Debug for Changed<'_, '_, K, V, S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changed")
            .field("seen", &self.watcher.seen)
            .finish()
    }
}
