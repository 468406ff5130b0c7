//! Tests of reading /proc/<pid>/stat and telling live holders from stale ones.

use std::path::Path;

use super::*;
use crate::core::plan::allocate::tests::lease;
use crate::host::lease::PROCESS_PROC;

#[test]
fn stat_parsing_and_staleness() {
    let line = "4242 (sh (x) y) S 4100 4242 4242 0 -1 4194560 99 0 0 0 0 0 0 0 20 0 1 0 987654 2224128 218 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    let s = parse_stat(line).unwrap();
    assert_eq!(
        s,
        ProcStat {
            state: 'S',
            ppid: 4100,
            start_time: 987654
        }
    );
    assert!(parse_stat("garbage").is_none());
    assert!(parse_stat("1 (x) S 0").is_none());
    let mut l = lease(0, 0, "a");
    l.start_time = 987654;
    assert!(is_live(&l, Some(s)));
    // Gone, reused (another start time), or a zombie: stale.
    assert!(!is_live(&l, None));
    assert!(!is_live(&l, Some(ProcStat { start_time: 1, ..s })));
    assert!(!is_live(&l, Some(ProcStat { state: 'Z', ..s })));
}

#[test]
fn this_process_is_live_and_a_dead_child_is_not() {
    let proc = Path::new(PROCESS_PROC);
    let me = read_stat(proc, &std::process::id().to_string())
        .unwrap()
        .unwrap();
    let mut l = lease(0, 0, "a");
    l.pid = std::process::id() as i32;
    l.start_time = me.start_time;
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let child_pid = child.id() as i32;
    child.wait().unwrap();
    let mut dead = l.clone();
    dead.pid = child_pid;
    let mut reused = l.clone();
    reused.start_time += 1;
    let (live, stale) = partition_live(vec![l.clone(), dead.clone(), reused.clone()], proc);
    assert_eq!(live, [l]);
    assert_eq!(stale, [dead, reused]);
    assert_eq!(read_stat(proc, "999999999").unwrap(), None);
}
