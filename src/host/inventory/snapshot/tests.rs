//! Tests of the snapshot: trust, staleness and round trips on a simulated procfs.

use super::super::nvml::NvmlInfo;
use super::*;
use migcage_topology::Topology;

/// A procfs tree of `name` in the driver's formats (as `simulate` writes it), a state dir, and
/// an NVML library path that does not exist: any NVML use fails.
struct Host {
    dir: tempfile::TempDir,
    config: Config,
    topology: Topology,
}

impl Host {
    fn new(name: &str) -> Host {
        let topology = Topology::load(name).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            proc_root: dir.path().join("proc"),
            nvml_library: dir.path().join("no-nvml/libnvidia-ml.so.1"),
            state_dir: dir.path().join("run"),
            ..Config::default()
        };
        for d in migcage_simulate::procfs::empty_dirs(&topology) {
            std::fs::create_dir_all(config.proc_path(&d)).unwrap();
        }
        for f in migcage_simulate::procfs::files(&topology) {
            let p = config.proc_path(&f.path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f.text).unwrap();
        }
        Host {
            dir,
            config,
            topology,
        }
    }

    /// What NVML would say about the topology.
    fn nvml(&self) -> NvmlInfo {
        NvmlInfo::simulated(&self.topology)
    }

    /// Discover as `discover_and_save` does, with NVML's answer given.
    fn save_snapshot(&self) -> Snapshot {
        let minors = identity(&super::super::mig_minors_path(&self.config)).unwrap();
        let proc = super::super::read_procfs(&self.config).unwrap();
        let tree = caps_tree(&self.config).unwrap();
        let inv = super::super::assemble(&self.config, self.nvml(), &proc).unwrap();
        super::super::verify(&self.config, &inv, &proc).unwrap();
        let snap = Snapshot::new(&self.config, inv, &proc, minors, tree);
        let saved = save(&self.config, &snap).unwrap();
        assert_eq!(saved, path(&self.config));
        snap
    }

    fn proc_file(&self, rel: &str) -> PathBuf {
        self.config.proc_path(rel)
    }

    /// Remove a file and write it again with the same text: what re-creating an instance
    /// does to its procfs entries.
    fn recreate(&self, rel: &str) {
        let p = self.proc_file(rel);
        let text = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        // A different inode for certain: hold the old number while the new file is made.
        let hold = p.with_extension("hold");
        std::fs::write(&hold, b"").unwrap();
        std::fs::write(&p, text).unwrap();
        std::fs::remove_file(hold).unwrap();
    }
}

fn discovered_why(r: Result<(Inventory, Source), InventoryError>) -> String {
    match r {
        Err(e) => e.to_string(),
        Ok((_, Source::Snapshot)) => panic!("the snapshot was used"),
        Ok((_, Source::Discovered { why })) => why,
    }
}

#[test]
fn a_valid_snapshot_answers_without_nvml() {
    for name in ["a100-7x1g", "dgx-8x7", "two-gpus-one-mig", "a100-nomig"] {
        let h = Host::new(name);
        let snap = h.save_snapshot();
        // The NVML library does not exist: only the snapshot can answer.
        let (inv, source) = inventory(&h.config).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(source, Source::Snapshot, "{name}");
        assert_eq!(inv, snap.inventory, "{name}");
        assert_eq!(
            inv.gpus.iter().map(|g| g.mig_devices.len()).sum::<usize>(),
            h.topology.mig_devices().len()
        );
    }
}

#[test]
fn the_file_round_trips_and_is_replaced_whole() {
    let h = Host::new("two-gpus-one-mig");
    let first = h.save_snapshot();
    assert_eq!(load(&h.config).unwrap(), first);
    let second = h.save_snapshot();
    assert_eq!(load(&h.config).unwrap(), second);
    // No temporary file is left next to it.
    let names: Vec<_> = std::fs::read_dir(&h.config.state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, [FILE_NAME]);
    let mode = std::fs::metadata(path(&h.config)).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

/// Why the snapshot on disk does not match the host now (the check a container start makes).
fn stale(h: &Host) -> String {
    let snap = load(&h.config).unwrap();
    let proc = super::super::read_procfs(&h.config).unwrap();
    snap.check(&h.config, &proc).unwrap_err()
}

#[test]
fn a_recreated_instance_is_not_the_snapshot_s() {
    let h = Host::new("a100-7x1g");
    h.save_snapshot();
    // GI 9 destroyed and made again with the same ids (and, on a host, a new UUID): its
    // files read the same but are new.
    h.recreate("driver/nvidia/capabilities/gpu0/mig/gi9/ci0/access");
    let why = discovered_why(inventory(&h.config));
    assert!(
        why.contains("cannot initialize NVML") && why.contains("no-nvml"),
        "the fallback must reach NVML: {why}"
    );
    let why = stale(&h);
    assert!(
        why.contains("gpu0/mig/gi9/ci0/access was re-created"),
        "{why}"
    );
}

#[test]
fn added_and_removed_instances_are_changes() {
    let h = Host::new("a100-mixed");
    h.save_snapshot();
    let caps = "driver/nvidia/capabilities/gpu0/mig";
    // A new compute instance in an existing GPU instance: no file of the snapshot's changed,
    // its GPU instance's directory has one more subdirectory.
    let gi = h.topology.gpus[0].gpu_instances[0].id;
    let added = format!("{caps}/gi{gi}/ci7/access");
    std::fs::create_dir_all(h.proc_file(&added).parent().unwrap()).unwrap();
    std::fs::write(h.proc_file(&added), "DeviceFileMinor: 1\n").unwrap();
    let why = stale(&h);
    assert!(
        why.contains(&format!("gpu0/mig/gi{gi} has more or fewer entries")),
        "{why}"
    );

    // A GPU instance destroyed.
    let h = Host::new("a100-mixed");
    h.save_snapshot();
    let gi = h.topology.gpus[0].gpu_instances[1].id;
    std::fs::remove_dir_all(h.proc_file(&format!("{caps}/gi{gi}"))).unwrap();
    let why = stale(&h);
    assert!(why.contains("gpu0/mig has more or fewer entries"), "{why}");

    // A GPU instance created on a GPU that had none.
    let h = Host::new("two-gpus-one-mig");
    h.save_snapshot();
    let new = "driver/nvidia/capabilities/gpu1/mig/gi1/access";
    std::fs::create_dir_all(h.proc_file(new).parent().unwrap()).unwrap();
    std::fs::write(h.proc_file(new), "DeviceFileMinor: 147\n").unwrap();
    assert!(stale(&h).contains("gpu1/mig has more or fewer entries"));
    let why = discovered_why(inventory(&h.config));
    assert!(why.contains("cannot initialize NVML"), "{why}");

    // A capability tree where there was none (nvidia-caps loaded since).
    let h = Host::new("a100-nomig");
    std::fs::remove_dir_all(h.proc_file("driver/nvidia/capabilities")).unwrap();
    h.save_snapshot();
    assert_eq!(load(&h.config).unwrap().basis.caps_tree.len(), 0);
    std::fs::create_dir_all(h.proc_file("driver/nvidia/capabilities/gpu0/mig")).unwrap();
    assert!(stale(&h).contains("capabilities appeared"));
}

#[test]
fn unchanged_mig_minors_is_not_parsed_but_stands_in_exactly() {
    for name in ["a100-mixed", "dgx-8x7", "h100-mixed"] {
        let h = Host::new(name);
        let snap = h.save_snapshot();
        let full = super::super::read_mig_minors(&h.config).unwrap().unwrap();
        let entries = snap.mig_minors_entries();
        // Every entry it stands in with is the file's own.
        assert_eq!(
            (entries.config, entries.monitor),
            (full.config, full.monitor)
        );
        for (k, v) in &entries.gi_access {
            assert_eq!(full.gi_access.get(k), Some(v), "{name} gi {k:?}");
        }
        for (k, v) in &entries.ci_access {
            assert_eq!(full.ci_access.get(k), Some(v), "{name} ci {k:?}");
        }
        assert_eq!(
            entries.ci_access.len(),
            h.topology.mig_devices().len(),
            "{name}"
        );
    }
}

#[test]
fn a_changed_mig_minors_is_read_and_checked() {
    let h = Host::new("a100-7x1g");
    h.save_snapshot();
    // The driver reloaded with another caps table: gpu0/gi9/ci0 now has another minor.
    let minors = h.proc_file("driver/nvidia-caps/mig-minors");
    let text = std::fs::read_to_string(&minors).unwrap();
    let entry = "gpu0/gi9/ci0/access";
    let old = migcage_topology::ci_access_minor(0, 9, 0);
    let text = text.replace(&format!("{entry} {old}\n"), &format!("{entry} 4000\n"));
    std::fs::remove_file(&minors).unwrap();
    std::fs::write(&minors, text).unwrap();
    let why = stale(&h);
    assert!(
        why.contains(entry) && why.contains("4000") && why.contains(&old.to_string()),
        "{why}"
    );
    // Unchanged again (same text, new file): read, parsed, and the snapshot stands.
    let h = Host::new("a100-7x1g");
    h.save_snapshot();
    h.recreate("driver/nvidia-caps/mig-minors");
    let (_, source) = inventory(&h.config).unwrap();
    assert_eq!(source, Source::Snapshot);
}

#[test]
fn driver_and_gpu_changes_are_changes() {
    let h = Host::new("two-gpus-one-mig");
    h.save_snapshot();
    std::fs::write(
        h.proc_file("driver/nvidia/version"),
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  560.35.03  Fri Aug 16\n",
    )
    .unwrap();
    let why = stale(&h);
    assert!(why.contains("560.35.03"), "{why}");

    // A GPU appeared.
    let h = Host::new("two-gpus-one-mig");
    h.save_snapshot();
    let info = "driver/nvidia/gpus/0000:0f:00.0/information";
    let extra = "driver/nvidia/gpus/0000:90:00.0/information";
    std::fs::create_dir_all(h.proc_file(extra).parent().unwrap()).unwrap();
    std::fs::copy(h.proc_file(info), h.proc_file(extra)).unwrap();
    let why = stale(&h);
    assert!(why.contains("0000:90:00.0"), "{why}");

    // A GPU's information now names another UUID (another board in the slot).
    let h = Host::new("two-gpus-one-mig");
    h.save_snapshot();
    let text = std::fs::read_to_string(h.proc_file(info)).unwrap();
    let uuid = &h.topology.gpus[1].uuid;
    let other = "GPU-00000000-1111-2222-3333-444444444444";
    std::fs::write(h.proc_file(info), text.replace(uuid.as_str(), other)).unwrap();
    let why = stale(&h);
    assert!(why.contains(other), "{why}");
}

#[test]
fn another_config_or_version_is_not_trusted() {
    let h = Host::new("a100-7x1g");
    let snap = h.save_snapshot();
    let proc = super::super::read_procfs(&h.config).unwrap();
    snap.check(&h.config, &proc).unwrap();

    let other = Config {
        nvml_library: "/opt/other/libnvidia-ml.so.1".into(),
        ..h.config.clone()
    };
    let why = snap.check(&other, &proc).unwrap_err();
    assert!(why.contains("/opt/other/libnvidia-ml.so.1"), "{why}");

    let mut old = snap.clone();
    old.migcage_version = "0.0.1".into();
    assert!(old
        .check(&h.config, &proc)
        .unwrap_err()
        .contains("migcage 0.0.1"));
    let mut old = snap;
    old.format = FORMAT + 1;
    assert!(old.check(&h.config, &proc).unwrap_err().contains("format"));
}

#[test]
fn a_file_others_could_have_written_is_not_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let h = Host::new("a100-7x1g");
    h.save_snapshot();
    let p = path(&h.config);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    let why = load(&h.config).unwrap_err();
    assert!(why.contains("not trusted"), "{why}");
    // A symlink in its place is not followed.
    std::fs::rename(&p, h.dir.path().join("elsewhere.json")).unwrap();
    std::os::unix::fs::symlink(h.dir.path().join("elsewhere.json"), &p).unwrap();
    let why = load(&h.config).unwrap_err();
    assert!(why.contains("cannot open"), "{why}");
    // Garbage is a reason, not a failure.
    std::fs::remove_file(&p).unwrap();
    std::fs::write(&p, b"{\"format\": 1").unwrap();
    let why = load(&h.config).unwrap_err();
    assert!(why.contains("not a snapshot"), "{why}");
    assert!(discovered_why(inventory(&h.config)).contains("cannot initialize NVML"));
}

#[test]
fn no_snapshot_means_discovery_and_driver_errors_stay_first() {
    let h = Host::new("a100-7x1g");
    let why = discovered_why(inventory(&h.config));
    assert!(why.contains("cannot initialize NVML"), "{why}");
    // A host without the driver says so, snapshot or not.
    h.save_snapshot();
    std::fs::remove_dir_all(h.proc_file("driver/nvidia")).unwrap();
    let e = inventory(&h.config).unwrap_err();
    assert!(matches!(e, InventoryError::NoDriver { .. }), "{e}");
}

#[test]
fn bounded_nvml_read_passes_nvml_errors_through() {
    let lib = Path::new("/nonexistent/libnvidia-ml.so.1");
    // Zero waits without a thread; otherwise a thread answers long before the limit.
    for ms in [0, 60_000] {
        let started = std::time::Instant::now();
        let e =
            super::super::read_nvml_bounded(lib, std::time::Duration::from_millis(ms)).unwrap_err();
        assert!(matches!(e, InventoryError::NvmlInit { .. }), "{e}");
        assert!(
            e.to_string().contains("/nonexistent/libnvidia-ml.so.1"),
            "{e}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }
}

#[test]
fn an_unwritable_state_dir_is_one_line() {
    let h = Host::new("a100-nomig");
    let file = h.dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let config = Config {
        state_dir: file.join("run"),
        ..h.config.clone()
    };
    let proc = super::super::read_procfs(&config).unwrap();
    let inv = super::super::assemble(&config, h.nvml(), &proc).unwrap();
    let snap = Snapshot::new(&config, inv, &proc, None, BTreeMap::new());
    let e = save(&config, &snap).unwrap_err().to_string();
    assert!(
        e.contains("not-a-dir/run") && e.contains("state_dir"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn a_scoped_check_covers_its_gpus_and_the_host_wide_facts_only() {
    let h = Host::new("dgx-8x7");
    let snap = h.save_snapshot();
    let gpu = |i: u32| snap.inventory.gpus.iter().find(|g| g.index == i).unwrap();
    let only = |v: &[u32]| -> Option<BTreeSet<u32>> { Some(v.iter().copied().collect()) };
    let scoped = |v: &[u32]| {
        let scope = only(v);
        inventory_for(&h.config, move |_| scope)
    };
    // An instance of GPU 3 re-created: a request for GPU 0 still gets the snapshot, and reads
    // no other GPU's information (those of GPUs 1, 2 and 4 are directories here, which no read
    // gets past, root or not).
    let gi = h.topology.gpus[3].gpu_instances[0].id;
    let minor3 = gpu(3).minor;
    h.recreate(&format!(
        "driver/nvidia/capabilities/gpu{minor3}/mig/gi{gi}/access"
    ));
    let unreadable: Vec<(PathBuf, String)> = [1, 2, 4]
        .iter()
        .map(|g| {
            let info = h.proc_file(&format!(
                "driver/nvidia/gpus/{}/information",
                gpu(*g).proc_bus_id()
            ));
            let text = std::fs::read_to_string(&info).unwrap();
            std::fs::remove_file(&info).unwrap();
            std::fs::create_dir(&info).unwrap();
            (info, text)
        })
        .collect();
    let (inv, source) = scoped(&[0]).unwrap();
    assert_eq!((source, &inv), (Source::Snapshot, &snap.inventory));
    // A request for none of the GPUs (driver files only) too.
    assert_eq!(scoped(&[]).unwrap().1, Source::Snapshot);
    // Reading GPU 1 is an error here: it is read when the request names it.
    assert!(scoped(&[1])
        .unwrap_err()
        .to_string()
        .contains("Is a directory"));
    for (info, text) in unreadable {
        std::fs::remove_dir(&info).unwrap();
        std::fs::write(&info, text).unwrap();
    }
    // A request that names GPU 3, or every GPU, finds the change and goes to NVML.
    let proc = super::super::read_procfs(&h.config).unwrap();
    for scope in [only(&[0, 3]), None] {
        let why = snap
            .check_scoped(&h.config, &proc, scope.as_ref())
            .unwrap_err();
        // (Here the GPU instance's directory shows it first: its change time moved too.)
        let re_created = format!("gpu{minor3}/mig/gi{gi} was re-created");
        assert!(why.contains(&re_created), "{why}");
        let why = discovered_why(inventory_for(&h.config, move |_| scope));
        assert!(why.contains("cannot initialize NVML"), "{why}");
    }
    // Host-wide facts count for every scope: a GPU directory added, the driver version.
    let h = Host::new("dgx-8x7");
    let snap = h.save_snapshot();
    let none = Some(BTreeSet::new());
    let extra = h.proc_file("driver/nvidia/gpus/0000:f0:00.0");
    std::fs::create_dir_all(&extra).unwrap();
    let proc = super::super::read_procfs(&h.config).unwrap();
    let why = snap
        .check_scoped(&h.config, &proc, none.as_ref())
        .unwrap_err();
    assert!(why.contains("0000:f0:00.0"), "{why}");
    std::fs::remove_dir(&extra).unwrap();
    std::fs::write(
        h.proc_file("driver/nvidia/version"),
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  560.35.03  Fri Aug 16\n",
    )
    .unwrap();
    let proc = super::super::read_procfs(&h.config).unwrap();
    let why = snap
        .check_scoped(&h.config, &proc, none.as_ref())
        .unwrap_err();
    assert!(why.contains("560.35.03"), "{why}");
}
