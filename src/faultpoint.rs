//! Deterministic fault points for the reliability tests (tests/fault_e2e.rs).
//!
//! The hook calls [`hit`] at each step of a container start. In a build with debug assertions
//! (what `cargo test` runs), when `MIGCAGE_TEST_KILL_AT` names that step, the hook kills itself
//! there with SIGKILL: the fault a hook cannot catch (the OOM killer, a runtime's hook timeout),
//! at a point chosen by the test instead of by chance. Inside the namespace helper (a forked
//! child of the hook) the helper kills the hook first, then itself, so that the whole hook dies
//! mid-work as it would under a real SIGKILL of both.
//!
//! In a build without debug assertions (a release build, what gets installed) [`hit`] is empty
//! and the variable's name is not even in the binary: the check and the string live only in the
//! `cfg(debug_assertions)` branch.

/// The environment variable that names the step to die at.
#[cfg(any(test, debug_assertions))]
const KILL_AT_ENV: &str = "MIGCAGE_TEST_KILL_AT";

/// Every step the hook has a fault point at, in the order a container start passes them.
pub const STEPS: [&str; 7] = [
    // The state (stdin) and the bundle's config.json are read and parsed.
    "after-parse",
    // The request is resolved against the inventory (snapshot or NVML), and its leases taken.
    "after-inventory",
    // In the container's mount namespace, before the first node is made.
    "ns-before-nodes",
    // In the container's mount namespace, after the nodes and the procfs view are made.
    "ns-after-nodes",
    // Before the cgroup grants the nodes.
    "before-cgroup",
    // After the cgroup grants them (v2: the runtime's program replaced).
    "after-cgroup",
    // The hook is done; only the exit is left.
    "done",
];

/// The steps of `migcage mig apply` (and of an on-demand creation) with a fault point: after a
/// GPU instance is destroyed, and between a GPU instance's creation and its compute instance's.
pub const MIG_STEPS: [&str; 2] = ["mig-after-destroy", "mig-after-create-gi"];

/// The steps of an on-demand creation (`[allocation] create_on_demand`) with a fault point: the
/// record written (nothing made yet), between the GPU instance and its compute instance
/// (`mig-after-create-gi`, shared with `migcage mig apply`), and the instance made but not yet
/// leased.
pub const DEMAND_STEPS: [&str; 3] = [
    "demand-after-record",
    "mig-after-create-gi",
    "demand-after-create",
];

/// Whether fault points are compiled in (builds with debug assertions only).
pub const ENABLED: bool = cfg!(debug_assertions);

/// A fault point of the hook process itself: die here when the test asks for `step`.
#[inline]
pub fn hit(step: &'static str) {
    debug_assert!(
        STEPS.contains(&step) || MIG_STEPS.contains(&step) || DEMAND_STEPS.contains(&step),
        "unknown fault point {step}"
    );
    #[cfg(debug_assertions)]
    if asked_for(step) {
        crate::sys::signal::die_hard();
    }
}

/// A fault point inside work that may run in a forked helper of the hook process `hook_pid`:
/// when the test asks for `step`, kill the hook (when this is not the hook) and then this
/// process.
#[inline]
pub fn hit_in_helper(step: &'static str, hook_pid: u32) {
    debug_assert!(STEPS.contains(&step), "unknown fault point {step}");
    #[cfg(debug_assertions)]
    if asked_for(step) {
        if std::process::id() != hook_pid {
            crate::sys::signal::kill_hard(hook_pid);
        }
        crate::sys::signal::die_hard();
    }
    #[cfg(not(debug_assertions))]
    let _ = hook_pid;
}

#[cfg(debug_assertions)]
fn asked_for(step: &str) -> bool {
    std::env::var_os(KILL_AT_ENV).is_some_and(|v| v == step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_only_with_debug_assertions() {
        assert_eq!(ENABLED, cfg!(debug_assertions));
        // A step nobody asked for does nothing (this test process goes on).
        hit("after-parse");
        hit_in_helper("ns-before-nodes", std::process::id());
    }

    #[test]
    fn steps_are_unique_and_named_like_options() {
        let mut s: Vec<&str> = STEPS.iter().chain(&MIG_STEPS).copied().collect();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), STEPS.len() + MIG_STEPS.len());
        assert!(s
            .iter()
            .all(|s| s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')));
    }

    /// The fault point really kills: a child process (this test binary, re-run on this test
    /// alone) with the variable set dies by SIGKILL at the step, and only at that step.
    #[test]
    fn kills_at_the_named_step() {
        use std::os::unix::process::ExitStatusExt;
        if let Some(step) = std::env::var_os("MIGCAGE_FAULTPOINT_CHILD") {
            let step = step.to_string_lossy().into_owned();
            for s in STEPS {
                hit(s);
                if s == step {
                    // Not killed at its own step: report it through the exit code.
                    std::process::exit(3);
                }
            }
            std::process::exit(4);
        }
        if !ENABLED {
            crate::testing::skip("kills_at_the_named_step: fault points are compiled out of builds without debug assertions");
            return;
        }
        let me = std::env::current_exe().unwrap();
        for step in ["after-parse", "after-cgroup"] {
            let status = std::process::Command::new(&me)
                .args([
                    "--exact",
                    "faultpoint::tests::kills_at_the_named_step",
                    "--nocapture",
                ])
                .env("MIGCAGE_FAULTPOINT_CHILD", step)
                .env(KILL_AT_ENV, step)
                .output()
                .unwrap()
                .status;
            assert_eq!(status.signal(), Some(9), "{step}: {status:?}");
        }
        // Another value kills nowhere.
        let status = std::process::Command::new(&me)
            .args(["--exact", "faultpoint::tests::kills_at_the_named_step"])
            .env("MIGCAGE_FAULTPOINT_CHILD", "done")
            .env(KILL_AT_ENV, "nowhere")
            .output()
            .unwrap()
            .status;
        assert_eq!(status.code(), Some(3), "{status:?}");
    }
}
