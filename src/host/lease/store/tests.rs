//! Tests of the lease store: round trip, release, the lock and concurrent writers.

use std::time::{Duration, Instant};

use super::*;
use crate::core::plan::allocate::tests::lease;

#[test]
fn store_round_trip_release_and_atomic_write() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(d.path());
    // No store: no lease, and release creates nothing.
    assert!(store.read().unwrap().is_empty());
    assert!(store.release("a").unwrap().is_empty());
    assert!(!store.dir().exists());
    let leases = vec![lease(0, 0, "a"), lease(0, 1, "b"), lease(1, 0, "a")];
    {
        let locked = store.lock().unwrap();
        locked.write(&leases).unwrap();
        assert_eq!(locked.read().unwrap(), leases);
    }
    assert_eq!(store.read().unwrap(), leases);
    let names: Vec<String> = std::fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    let gone = store.release("a").unwrap();
    assert_eq!(gone, [leases[0].clone(), leases[2].clone()]);
    assert_eq!(store.read().unwrap(), [leases[1].clone()]);
    assert!(store.release("nobody").unwrap().is_empty());
    // A broken file is an error naming it, never an empty store.
    std::fs::write(store.file(), b"{\"version\":1,\"leases\":[{").unwrap();
    let e = store.read().unwrap_err().to_string();
    assert!(
        e.contains("leases.json is not valid") && !e.contains('\n'),
        "{e}"
    );
    std::fs::write(store.file(), b"").unwrap();
    assert!(store.read().unwrap().is_empty());
    std::fs::write(store.file(), b"{\"version\":9,\"leases\":[]}").unwrap();
    assert!(store
        .read()
        .unwrap_err()
        .to_string()
        .contains("format version 9"));
}

#[test]
fn the_lock_excludes_and_times_out_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(d.path());
    let held = store.lock().unwrap();
    // A second lock from another open file description waits; a thread shows it blocks
    // until the first is dropped.
    let s2 = store.clone();
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let _l = s2.lock().unwrap();
        t.elapsed()
    });
    std::thread::sleep(Duration::from_millis(200));
    // Meanwhile a short wait gives up with a one-line error naming the lock.
    let e = store
        .lock_within(Duration::from_millis(50))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("leases/lock stayed locked by another migcage for 0.05 s") && !e.contains('\n'),
        "{e}"
    );
    drop(held);
    let waited = waiter.join().unwrap();
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    // The lock that timed out is not kept by its waiting thread.
    std::thread::sleep(Duration::from_millis(50));
    drop(store.lock_within(Duration::from_millis(500)).unwrap());
}

#[test]
fn concurrent_writers_never_lose_a_lease() {
    // 8 threads x 25 read-modify-write cycles under the lock: every append survives.
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let store = Store::new(&dir);
                for i in 0..25 {
                    let locked = store.lock().unwrap();
                    let mut all = locked.read().unwrap();
                    all.push(lease(t, i, &format!("t{t}-{i}")));
                    locked.write(&all).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(Store::new(&dir).read().unwrap().len(), 200);
}

#[test]
fn releasing_what_is_not_held_takes_no_lock() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(d.path());
    store.lock().unwrap().write(&[lease(0, 0, "a")]).unwrap();
    // Another migcage holds the lock: a container with no lease here is released at once (a
    // rootless poststop, which may not take the lock, is such a container), one with a lease
    // waits for the lock.
    let held = store.lock().unwrap();
    let start = Instant::now();
    assert!(store.release("nobody").unwrap().is_empty());
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(store.lock_within(Duration::from_millis(50)).is_err());
    drop(held);
    assert_eq!(store.release("a").unwrap(), [lease(0, 0, "a")]);
}

#[test]
fn hand_over_moves_a_containers_leases_to_its_init() {
    let d = tempfile::tempdir().unwrap();
    let store = Store::new(d.path());
    // No store: nothing held, nothing made.
    assert!(!store.holds("a").unwrap());
    assert_eq!(store.hand_over("a", 42, 7).unwrap(), 0);
    assert!(!store.dir().exists());
    let leases = vec![lease(0, 0, "a"), lease(0, 1, "b"), lease(1, 0, "a")];
    store.lock().unwrap().write(&leases).unwrap();
    assert!(store.holds("a").unwrap() && !store.holds("c").unwrap());
    assert_eq!(store.hand_over("a", 42, 7).unwrap(), 2);
    let now = store.read().unwrap();
    for l in &now {
        let want = if l.container == "a" {
            (42, 7)
        } else {
            (leases[1].pid, leases[1].start_time)
        };
        assert_eq!((l.pid, l.start_time), want, "{l:?}");
    }
    // Again: nothing to change, and the other container's lease is untouched.
    assert_eq!(store.hand_over("a", 42, 7).unwrap(), 0);
    assert_eq!(store.hand_over("c", 42, 7).unwrap(), 0);
    assert_eq!(now.len(), 3);
}
