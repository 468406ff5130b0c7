//! [`OnDemand`] against a driver that keeps a GPU's layout in memory: what it creates,
//! destroys and records, in which order, and what a failure in the middle leaves.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

use migcage_topology::models::model;
use migcage_topology::{GiProfile, Placement};

use super::*;
use crate::core::mig::{CiState, GiState};
use crate::host::lease::{LeaseKind, Store};
use crate::sys::mig::ModeChange;

/// One A100 in MIG mode, kept in memory. Every mutating call is logged; `fail` makes the call
/// whose text starts with it fail; every create checks that the lease file already records
/// the instance being made (`store_file`).
struct FakeGpu {
    gpu: RefCell<GpuLayout>,
    next_gi: Cell<u32>,
    calls: RefCell<Vec<String>>,
    fail: Option<&'static str>,
    store_file: PathBuf,
}

impl FakeGpu {
    fn new(store_file: PathBuf, fail: Option<&'static str>) -> FakeGpu {
        FakeGpu {
            gpu: RefCell::new(GpuLayout {
                index: 0,
                uuid: "GPU-fake".into(),
                model: model("a100-sxm4-40gb").unwrap(),
                mig_enabled: true,
                instances: Vec::new(),
            }),
            next_gi: Cell::new(1),
            calls: RefCell::new(Vec::new()),
            fail,
            store_file,
        }
    }

    fn call(&self, text: String) -> Result<(), MigError> {
        let fails = self.fail.is_some_and(|f| text.starts_with(f));
        self.calls.borrow_mut().push(text);
        if fails {
            return Err(MigError::Call {
                call: "nvmlFake",
                target: "GPU 0".into(),
                error: "NVML_ERROR_INSUFFICIENT_RESOURCES".into(),
                hint: "test",
            });
        }
        Ok(())
    }

    fn records_on_disk(&self) -> usize {
        let text = std::fs::read_to_string(&self.store_file).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["created"].as_array().map_or(0, Vec::len)
    }
}

impl MigDriver for Rc<FakeGpu> {
    fn layouts(&self) -> Result<Vec<GpuLayout>, MigError> {
        Ok(vec![self.gpu.borrow().clone()])
    }
    fn set_mig_mode(&self, _: u32, _: bool) -> Result<ModeChange, MigError> {
        unreachable!("on-demand work never changes the MIG mode")
    }
    fn create_gpu_instance(&self, gpu: u32, p: &GiProfile, start: u32) -> Result<u32, MigError> {
        assert!(
            self.records_on_disk() > 0,
            "an instance is made before its record is on disk"
        );
        self.call(format!("create-gi {gpu} {} {start}", p.name))?;
        Ok(self.create_gpu_instance_unchecked(p.name, start))
    }
    fn create_compute_instance(&self, gpu: u32, gi: u32, p: &GiProfile) -> Result<u32, MigError> {
        self.call(format!("create-ci {gpu} {gi} {}", p.name))?;
        let mut g = self.gpu.borrow_mut();
        let gi = g.instances.iter_mut().find(|x| x.id == gi).unwrap();
        gi.compute_instances.push(CiState {
            id: 0,
            uuid: format!("MIG-fake-{}", gi.id),
        });
        Ok(0)
    }
    fn destroy_compute_instance(&self, gpu: u32, gi: u32, ci: u32) -> Result<(), MigError> {
        self.call(format!("destroy-ci {gpu} {gi} {ci}"))?;
        let mut g = self.gpu.borrow_mut();
        let gi = g.instances.iter_mut().find(|x| x.id == gi).unwrap();
        gi.compute_instances.retain(|c| c.id != ci);
        Ok(())
    }
    fn destroy_gpu_instance(&self, gpu: u32, gi: u32) -> Result<(), MigError> {
        self.call(format!("destroy-gi {gpu} {gi}"))?;
        self.gpu.borrow_mut().instances.retain(|x| x.id != gi);
        Ok(())
    }
    fn capacity(&self, _: u32, p: &GiProfile) -> Result<(Vec<Placement>, u32), MigError> {
        Ok((p.placements(), p.instance_count))
    }
}

/// A lease store in a temporary directory and an [`OnDemand`] over `fake`; `opened` counts
/// how often the driver was opened.
struct Bench {
    _dir: tempfile::TempDir,
    store: Store,
    fake: Rc<FakeGpu>,
    opened: Rc<Cell<u32>>,
}

impl Bench {
    fn new(fail: Option<&'static str>) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let fake = Rc::new(FakeGpu::new(store.file(), fail));
        Bench {
            _dir: dir,
            store,
            fake,
            opened: Rc::new(Cell::new(0)),
        }
    }

    fn demand(&self, destroy_unheld: bool) -> OnDemand<'static> {
        let (fake, opened) = (self.fake.clone(), self.opened.clone());
        OnDemand::with_driver(
            Box::new(move || {
                opened.set(opened.get() + 1);
                Ok(Box::new(fake.clone()) as Box<dyn MigDriver>)
            }),
            destroy_unheld,
        )
    }

    fn calls(&self) -> Vec<String> {
        self.fake.calls.borrow().clone()
    }

    fn instances(&self) -> usize {
        self.fake.gpu.borrow().instances.len()
    }
}

/// The record of a 1g.5gb at placement 6 of the fake GPU, made for container c1.
fn record_of_1g_at_6(gi: Option<u32>, uuid: Option<&str>) -> Created {
    Created {
        gpu_uuid: "GPU-fake".into(),
        gpu: 0,
        profile: "1g.5gb".into(),
        start: 6,
        gi,
        uuid: uuid.map(str::to_string),
        by: "c1".into(),
        since: 1,
    }
}

fn lease(uuid: &str, container: &str) -> Lease {
    Lease {
        uuid: uuid.into(),
        container: container.into(),
        pid: 1,
        start_time: 1,
        since: 0,
        kind: LeaseKind::Profile,
        asked: "profile:1g.5gb".into(),
    }
}

#[test]
fn a_new_instance_is_recorded_before_it_is_made_and_completed_after() {
    let b = Bench::new(None);
    let locked = b.store.lock().unwrap();
    let mut state = State::default();
    let mut d = b.demand(false);
    let r = d
        .create(&locked, &mut state, &[], ("1g.5gb", None), "c1", 42)
        .unwrap();
    // The A100's 1g.5gb placements fill from the top (least room lost for 3g/4g).
    assert_eq!(b.calls(), ["create-gi 0 1g.5gb 6", "create-ci 0 1 1g.5gb"]);
    assert_eq!(r.uuid.as_deref(), Some("MIG-fake-1"));
    assert_eq!(
        (r.gi, r.start, r.by.as_str(), r.since),
        (Some(1), 6, "c1", 42)
    );
    assert_eq!(state.created, [r]);
    assert!(d.changed);
    // The record on disk is the one written before the create (the caller writes the rest).
    assert_eq!(b.fake.records_on_disk(), 1);
}

#[test]
fn a_failed_gpu_instance_create_leaves_no_record_and_no_instance() {
    let b = Bench::new(Some("create-gi"));
    let locked = b.store.lock().unwrap();
    let mut state = State::default();
    let mut d = b.demand(false);
    let e = d
        .create(&locked, &mut state, &[], ("1g.5gb", None), "c1", 1)
        .unwrap_err();
    assert!(
        e.to_string().contains("NVML_ERROR_INSUFFICIENT_RESOURCES"),
        "{e}"
    );
    assert!(state.created.is_empty(), "{:?}", state.created);
    assert_eq!(b.instances(), 0);
}

#[test]
fn a_gpu_instance_left_without_its_compute_instance_is_destroyed_when_unheld_ones_go() {
    // destroy_on_release: the half-made instance is taken down again at once.
    let b = Bench::new(Some("create-ci"));
    let locked = b.store.lock().unwrap();
    let mut state = State::default();
    let mut d = b.demand(true);
    assert!(d
        .create(&locked, &mut state, &[], ("2g.10gb", None), "c1", 1)
        .is_err());
    assert_eq!(
        b.calls(),
        [
            "create-gi 0 2g.10gb 4",
            "create-ci 0 1 2g.10gb",
            "destroy-gi 0 1"
        ]
    );
    assert!(state.created.is_empty());
    assert_eq!(b.instances(), 0);
}

#[test]
fn reconcile_finishes_a_half_made_instance_and_keeps_it_as_a_free_one() {
    let b = Bench::new(None);
    // A run killed between the two creates: the record without a UUID, the GI without a CI.
    let made = b.fake.create_gpu_instance_unchecked("1g.5gb", 6);
    let mut state = State {
        leases: Vec::new(),
        created: vec![record_of_1g_at_6(None, None)],
    };
    let mut d = b.demand(false);
    d.reconcile(&mut state, &[]).unwrap();
    assert_eq!(b.calls(), [format!("create-ci 0 {made} 1g.5gb")]);
    assert_eq!(state.created.len(), 1);
    assert_eq!(state.created[0].uuid.as_deref(), Some("MIG-fake-1"));
    assert_eq!(state.created[0].gi, Some(made));
}

#[test]
fn reconcile_destroys_only_the_unheld_instances_it_made() {
    let b = Bench::new(None);
    let locked = b.store.lock().unwrap();
    let mut state = State::default();
    let mut d = b.demand(true);
    let first = d
        .create(&locked, &mut state, &[], ("1g.5gb", None), "c1", 1)
        .unwrap();
    let second = d
        .create(&locked, &mut state, &[], ("1g.5gb", None), "c2", 2)
        .unwrap();
    // An instance migcage did not make is never touched, held or not.
    b.fake.create_gpu_instance_unchecked("3g.20gb", 0);
    let live = [lease(second.uuid.as_deref().unwrap(), "c2")];
    b.fake.calls.borrow_mut().clear();
    d.reconcile(&mut state, &live).unwrap();
    assert_eq!(
        b.calls(),
        [
            format!("destroy-ci 0 {} 0", first.gi.unwrap()),
            format!("destroy-gi 0 {}", first.gi.unwrap())
        ]
    );
    assert_eq!(state.created, [second]);
    assert_eq!(b.instances(), 2);
}

#[test]
fn nothing_to_settle_never_opens_the_driver() {
    let b = Bench::new(None);
    let held = record_of_1g_at_6(Some(1), Some("MIG-fake-1"));
    let mut state = State {
        leases: Vec::new(),
        created: vec![held.clone()],
    };
    let live = [lease("MIG-fake-1", "c1")];
    let mut d = b.demand(true);
    d.reconcile(&mut state, &live).unwrap();
    assert_eq!(b.opened.get(), 0, "NVML was opened with nothing to settle");
    assert_eq!(state.created, [held]);
    assert!(!d.changed);
}

#[test]
fn a_full_gpu_is_refused_with_what_is_there() {
    let b = Bench::new(None);
    b.fake.create_gpu_instance_unchecked("4g.20gb", 0);
    b.fake.create_gpu_instance_unchecked("3g.20gb", 4);
    let locked = b.store.lock().unwrap();
    let mut state = State::default();
    let mut d = b.demand(false);
    match d.create(&locked, &mut state, &[], ("1g.5gb", None), "c1", 1) {
        Err(DemandError::NoRoom(room)) => assert!(!room.unknown_profile, "{}", room.why),
        other => panic!("a 4g.20gb at 0 and a 3g.20gb at 4 leave no room: {other:?}"),
    }
    assert!(state.created.is_empty());
    assert_eq!(b.fake.records_on_disk(), 0, "a refusal wrote a record");
}

impl FakeGpu {
    /// A GPU instance made by someone else (or by a run that was killed): no log, no check.
    fn create_gpu_instance_unchecked(&self, profile: &str, start: u32) -> u32 {
        let id = self.next_gi.get();
        self.next_gi.set(id + 1);
        let profile = self.gpu.borrow().model.gi_profile(profile).unwrap();
        self.gpu.borrow_mut().instances.push(GiState {
            id,
            profile,
            start,
            compute_instances: Vec::new(),
            held_by: None,
        });
        id
    }
}
