use std::cell::RefCell;

use migcage_topology::models::model;
use migcage_topology::{GiProfile, Placement};

use super::*;
use crate::core::mig::{CiState, GiState};
use crate::host::lease::LeaseKind;

/// A driver that records every call and fails the one whose text starts with `fail`.
#[derive(Default)]
struct Recorder {
    calls: RefCell<Vec<String>>,
    fail: Option<&'static str>,
    pending: bool,
}

impl Recorder {
    fn record(&self, call: String) -> Result<(), MigError> {
        let fails = self.fail.is_some_and(|f| call.starts_with(f));
        self.calls.borrow_mut().push(call);
        if fails {
            return Err(MigError::Call {
                call: "nvmlTest",
                target: "GPU 0".into(),
                error: "NVML_ERROR_INSUFFICIENT_RESOURCES".into(),
                hint: "test",
            });
        }
        Ok(())
    }
}

impl MigDriver for Recorder {
    fn layouts(&self) -> Result<Vec<GpuLayout>, MigError> {
        Ok(Vec::new())
    }
    fn set_mig_mode(&self, gpu: u32, enabled: bool) -> Result<ModeChange, MigError> {
        self.record(format!("mode {gpu} {enabled}"))?;
        Ok(if self.pending {
            ModeChange::PendingReset
        } else {
            ModeChange::Active
        })
    }
    fn create_gpu_instance(&self, gpu: u32, p: &GiProfile, start: u32) -> Result<u32, MigError> {
        self.record(format!("create-gi {gpu} {} {start}", p.name))?;
        Ok(start + 10)
    }
    fn create_compute_instance(&self, gpu: u32, gi: u32, p: &GiProfile) -> Result<u32, MigError> {
        self.record(format!("create-ci {gpu} {gi} {}", p.name))?;
        Ok(0)
    }
    fn destroy_compute_instance(&self, gpu: u32, gi: u32, ci: u32) -> Result<(), MigError> {
        self.record(format!("destroy-ci {gpu} {gi} {ci}"))
    }
    fn destroy_gpu_instance(&self, gpu: u32, gi: u32) -> Result<(), MigError> {
        self.record(format!("destroy-gi {gpu} {gi}"))
    }
    fn capacity(&self, gpu: u32, p: &GiProfile) -> Result<(Vec<Placement>, u32), MigError> {
        self.record(format!("capacity {gpu} {}", p.name))?;
        Ok((p.placements(), p.instance_count))
    }
}

fn p(name: &str) -> &'static GiProfile {
    model("a100-sxm4-40gb").unwrap().gi_profile(name).unwrap()
}

fn plan() -> Plan {
    Plan {
        steps: vec![
            Step::DestroyCi {
                gpu: 0,
                gi: 3,
                ci: 0,
            },
            Step::DestroyGi {
                gpu: 0,
                gi: 3,
                profile: p("3g.20gb"),
                start: 4,
            },
            Step::CreateCi {
                gpu: 0,
                gi: 7,
                profile: p("1g.5gb"),
            },
            Step::CreateGi {
                gpu: 0,
                profile: p("1g.5gb"),
                start: 5,
            },
        ],
    }
}

#[test]
fn each_step_is_its_calls_in_order_and_reported() {
    let r = Recorder::default();
    let mut seen = Vec::new();
    execute(&r, &plan(), &mut |s| seen.push(s.clone())).unwrap();
    assert_eq!(
        *r.calls.borrow(),
        [
            "destroy-ci 0 3 0",
            "destroy-gi 0 3",
            "create-ci 0 7 1g.5gb",
            "create-gi 0 1g.5gb 5",
            // The new GPU instance's id, as the driver returned it.
            "create-ci 0 15 1g.5gb",
        ]
    );
    assert_eq!(seen, plan().steps);
}

#[test]
fn a_failed_step_stops_the_rest_and_says_how_far_it_got() {
    let r = Recorder {
        fail: Some("create-ci 0 7"),
        ..Recorder::default()
    };
    let e = execute(&r, &plan(), &mut |_| {}).unwrap_err().to_string();
    assert!(e.starts_with("step 3 of 4 (GPU 0: create the compute instance of 1g.5gb GPU instance 7) failed: nvmlTest on GPU 0"), "{e}");
    assert!(
        e.contains("2 steps done") && e.contains("run the command again"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    assert_eq!(r.calls.borrow().len(), 3);
}

#[test]
fn a_mode_change_waiting_for_a_reset_stops_and_says_what_to_do() {
    let r = Recorder {
        pending: true,
        ..Recorder::default()
    };
    let plan = Plan {
        steps: vec![
            Step::SetMigMode {
                gpu: 2,
                enabled: true,
            },
            Step::CreateGi {
                gpu: 2,
                profile: p("7g.40gb"),
                start: 0,
            },
        ],
    };
    let e = execute(&r, &plan, &mut |_| {}).unwrap_err().to_string();
    assert!(
        e.contains("GPU 2") && e.contains("nvidia-smi --gpu-reset -i 2"),
        "{e}"
    );
    assert_eq!(*r.calls.borrow(), ["mode 2 true"]);
}

#[test]
fn holders_come_from_the_leases_naming_a_compute_instance() {
    let gi = |id, uuid: &str| GiState {
        id,
        profile: p("1g.5gb"),
        start: id,
        compute_instances: vec![CiState {
            id: 0,
            uuid: uuid.into(),
        }],
        held_by: None,
    };
    let mut layouts = vec![GpuLayout {
        index: 0,
        uuid: "GPU-0".into(),
        model: model("a100-sxm4-40gb").unwrap(),
        mig_enabled: true,
        instances: vec![gi(1, "MIG-a"), gi(2, "MIG-b")],
    }];
    let lease = Lease {
        uuid: "MIG-b".into(),
        container: "c1".into(),
        pid: 1,
        start_time: 1,
        since: 0,
        kind: LeaseKind::Profile,
        asked: "profile:1g.5gb".into(),
    };
    attach_holders(&mut layouts, &[lease]);
    let held: Vec<_> = layouts[0]
        .instances
        .iter()
        .map(|i| i.held_by.clone())
        .collect();
    assert_eq!(held, [None, Some("c1".to_string())]);
}
