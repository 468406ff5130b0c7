//! The OCI state a runtime passes on stdin (`hook::state::State`): errors are one line, and a
//! state that parses has a usable id, an absolute bundle and a valid pid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migcage::backend::hook::state::State;
use migcage_fuzz::assert_one_line;

fuzz_target!(|data: &[u8]| {
    let parsed = State::parse(data);
    let read = State::read(data);
    match (&parsed, &read) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert!(
                !a.id.is_empty() && !a.id.contains(['/', '\n', '\0']),
                "{a:?}"
            );
            assert!(a.bundle.is_absolute(), "{a:?}");
            if let Some(pid) = a.pid {
                assert!(pid > 0 && pid <= i64::from(i32::MAX), "{a:?}");
                assert_eq!(i64::from(a.require_pid().unwrap()), pid);
            }
        }
        (Err(a), Err(b)) => {
            assert_one_line("State::parse", &a.to_string());
            assert_eq!(a.to_string(), b.to_string());
        }
        _ => panic!("parse and read disagree: {parsed:?} / {read:?}"),
    }
});
