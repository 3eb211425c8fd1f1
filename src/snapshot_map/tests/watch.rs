//! Waiting for versions: blocking, with a timeout, and as a future.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use crate::SnapshotMap;

/// Counts wake-ups; unparks a thread if given one.
struct CountingWaker {
    wakes: AtomicUsize,
    thread: Option<thread::Thread>,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        if let Some(thread) = &self.thread {
            thread.unpark();
        }
    }
}

fn counting_waker(thread: Option<thread::Thread>) -> (Arc<CountingWaker>, Waker) {
    let inner = Arc::new(CountingWaker {
        wakes: AtomicUsize::new(0),
        thread,
    });
    (Arc::clone(&inner), Waker::from(inner))
}

/// A minimal executor: polls, parks until woken, polls again.
fn block_on<F: Future>(future: F) -> F::Output {
    let (_, waker) = counting_waker(Some(thread::current()));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

#[test]
fn wait_returns_the_version_published_by_another_thread() {
    let map = SnapshotMap::new();
    let mut watcher = map.watch();
    thread::scope(|s| {
        let waiter = s.spawn(move || watcher.wait());
        map.insert("k", 1);
        let snapshot = waiter.join().unwrap();
        assert_eq!(snapshot.version(), 1);
        assert_eq!(snapshot.get("k"), Some(&1));
    });
}

#[test]
fn a_watcher_sees_the_latest_version_not_a_backlog() {
    let map = SnapshotMap::new();
    let mut watcher = map.watch();
    for i in 0..10 {
        map.insert(i, i);
    }
    assert_eq!(watcher.wait().version(), 10);
    assert_eq!(watcher.seen(), 10);
    assert!(watcher.try_next().is_none());
}

#[test]
fn wait_timeout_gives_up_without_a_publish() {
    let map: SnapshotMap<u8, u8> = SnapshotMap::new();
    let mut watcher = map.watch();
    assert!(watcher.wait_timeout(Duration::from_millis(5)).is_none());
    map.insert(1, 1);
    let got = watcher
        .wait_timeout(Duration::from_secs(3600))
        .map(|s| s.version());
    assert_eq!(got, Some(1));
}

#[test]
fn a_watcher_follows_every_publish_of_a_writer_thread() {
    let map = SnapshotMap::new();
    let mut watcher = map.watch();
    thread::scope(|s| {
        s.spawn(|| {
            for i in 1..=200u32 {
                map.insert(0, i);
            }
        });
        let mut last = 0;
        while last < 200 {
            let snapshot = watcher.wait();
            let value = *snapshot.get(&0).unwrap();
            assert!(value > last, "versions only move forward");
            assert_eq!(u64::from(value), snapshot.version());
            last = value;
        }
    });
}

#[test]
fn changed_resolves_on_publish_in_async_code() {
    let map = SnapshotMap::new();
    thread::scope(|s| {
        let mut watcher = map.watch();
        let consumer = s.spawn(move || {
            block_on(async {
                let mut versions = Vec::new();
                while watcher.seen() < 50 {
                    versions.push(watcher.changed().await.version());
                }
                versions
            })
        });
        for i in 0..50 {
            map.insert(i, i);
        }
        let versions = consumer.join().unwrap();
        assert_eq!(versions.last(), Some(&50));
        assert!(versions.windows(2).all(|w| w[0] < w[1]));
    });
    assert_eq!(map.watch.waiting(), 0);
}

#[test]
fn a_pending_future_is_woken_once_by_a_publish_and_repolls_register_once() {
    let map = SnapshotMap::new();
    let mut watcher = map.watch();
    let (count, waker) = counting_waker(None);
    let mut cx = Context::from_waker(&waker);
    let mut changed = pin!(watcher.changed());
    for _ in 0..5 {
        assert!(changed.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(
        map.watch.waiting(),
        1,
        "re-polls replace the waker, not add one"
    );
    map.insert(1, 1);
    assert_eq!(count.wakes.load(Ordering::SeqCst), 1);
    assert!(matches!(changed.as_mut().poll(&mut cx), Poll::Ready(s) if s.version() == 1));
}

#[test]
fn dropping_a_pending_future_unregisters_it() {
    let map: SnapshotMap<u8, u8> = SnapshotMap::new();
    let mut watcher = map.watch();
    let (count, waker) = counting_waker(None);
    {
        let mut changed = pin!(watcher.changed());
        assert!(changed
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        assert_eq!(map.watch.waiting(), 1);
    }
    assert_eq!(map.watch.waiting(), 0);
    map.insert(1, 1);
    assert_eq!(count.wakes.load(Ordering::SeqCst), 0);
    // The watcher itself still works.
    assert_eq!(watcher.try_next().map(|s| s.version()), Some(1));
}
