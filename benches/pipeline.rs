//! In-process benchmarks of what a container start computes: `cargo bench --bench pipeline`.
//!
//! Whole-process figures (the hook under runc, container start, RSS) come from
//! `scripts/bench.sh`; these isolate the parts so that a regression can be pinned on one:
//! request parse, plan resolve, the mig-minors parse, the snapshot load + check on a simulated
//! procfs (a100-7x1g and dgx-8x7), and the cgroup v2 program emitted for a plan. None of them needs
//! root, NVML or a GPU.

use std::path::{Path, PathBuf};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use migcage::config::{Config, RequestPolicy};
use migcage::host::inventory::snapshot::{self, Snapshot, Source};
use migcage::host::inventory::{self, Gpu, Inventory, Majors, MigDevice};
use migcage_topology::Topology;
use serde_json::{json, Value};

/// A simulated host's procfs in a temporary directory (the files `migcage simulate` writes, no
/// device nodes), the inventory discovery reports on it, and its snapshot written.
struct Host {
    _dir: tempfile::TempDir,
    config: Config,
    inventory: Inventory,
}

/// What NVML plus procfs report for `t` (the simulated NVML answers from the same topology).
fn inventory_of(t: &Topology) -> Inventory {
    Inventory {
        driver_version: t.driver_version.clone(),
        cuda_driver_version: t.cuda_driver_version,
        majors: Majors {
            frontend: 195,
            uvm: Some(t.majors.uvm),
            caps: Some(t.majors.caps),
        },
        gpus: t
            .gpus
            .iter()
            .map(|g| Gpu {
                index: g.index,
                minor: g.minor,
                uuid: g.uuid.clone(),
                name: g.model.name.to_string(),
                pci_bus_id: g.pci_bus_id.clone(),
                mig_enabled: g.mig,
                memory_mib: g.model.memory_mib,
                mig_devices: g
                    .mig_devices()
                    .iter()
                    .map(|m| MigDevice {
                        index: m.index,
                        gpu_index: g.index,
                        uuid: m.ci.uuid.clone(),
                        gpu_instance_id: m.gi.id,
                        compute_instance_id: m.ci.id,
                        profile: m.profile_name(),
                        memory_mib: m.gi.profile.memory_mib,
                        gi_caps_minor: migcage_topology::gi_access_minor(g.minor, m.gi.id),
                        ci_caps_minor: migcage_topology::ci_access_minor(g.minor, m.gi.id, m.ci.id),
                    })
                    .collect(),
            })
            .collect(),
        mig_config_minor: Some(1),
        mig_monitor_minor: Some(2),
    }
}

impl Host {
    fn new(name: &str) -> Host {
        let topology = Topology::load(name).expect("shipped topology");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            proc_root: dir.path().join("proc"),
            dev_root: dir.path().join("dev"),
            // Nothing there: a benchmark that reached NVML would fail, not measure it.
            nvml_library: dir.path().join("no-nvml/libnvidia-ml.so.1"),
            state_dir: dir.path().join("run"),
            ..Config::default()
        };
        for d in migcage::simulate::procfs::empty_dirs(&topology) {
            std::fs::create_dir_all(config.proc_path(&d)).expect("mkdir");
        }
        for f in migcage::simulate::procfs::files(&topology) {
            let path = config.proc_path(&f.path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, f.text).expect("write");
        }
        let inventory = inventory_of(&topology);
        let minors = snapshot::identity(&inventory::mig_minors_path(&config)).expect("mig-minors");
        let proc = inventory::read_procfs(&config).expect("procfs");
        inventory::verify(&config, &inventory, &proc).expect("the inventory matches procfs");
        let tree = snapshot::caps_tree(&config).expect("caps tree");
        snapshot::save(
            &config,
            &Snapshot::new(&config, inventory.clone(), &proc, minors, tree),
        )
        .expect("snapshot");
        let (_, source) = snapshot::inventory(&config).expect("snapshot inventory");
        assert_eq!(source, Source::Snapshot, "{name}: the snapshot must answer");
        Host {
            _dir: dir,
            config,
            inventory,
        }
    }
}

/// A config.json as runc's `spec` writes it, asking for `visible`.
fn spec(visible: &str) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm",
                    format!("NVIDIA_VISIBLE_DEVICES={visible}"),
                    "NVIDIA_DRIVER_CAPABILITIES=utility,compute"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

fn bench(c: &mut Criterion) {
    let policy = RequestPolicy::default();
    let hosts: Vec<(&str, Host)> = ["a100-7x1g", "dgx-8x7"]
        .into_iter()
        .map(|n| (n, Host::new(n)))
        .collect();

    let mut g = c.benchmark_group("request_parse");
    for visible in ["0:1", "MIG-0badcafe-1234-5678-9abc-def012345678"] {
        let s = spec(visible);
        g.bench_with_input(BenchmarkId::from_parameter(visible), &s, |b, s| {
            b.iter(|| migcage::core::request::parse(black_box(s), &policy))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("plan_resolve");
    for (name, host) in &hosts {
        // The last MIG device of the last GPU by UUID: the longest lookup.
        let last = host
            .inventory
            .gpus
            .iter()
            .flat_map(|g| &g.mig_devices)
            .last()
            .expect("a MIG device");
        let request = migcage::core::request::parse(&spec(&last.uuid), &policy).expect("request");
        g.bench_function(*name, |b| {
            b.iter(|| {
                migcage::core::plan::resolve(
                    black_box(&request),
                    black_box(&host.inventory),
                    &host.config.dev_root,
                )
                .expect("plan")
            })
        });
    }
    g.finish();

    let minors = migcage_topology::mig_minors_file();
    let file = PathBuf::from("/proc/driver/nvidia-caps/mig-minors");
    c.bench_function("procfs_parse_mig_minors", |b| {
        b.iter(|| inventory::procfs::parse_mig_minors(black_box(&minors), &file).expect("parse"))
    });

    let mut g = c.benchmark_group("read_procfs");
    for (name, host) in &hosts {
        g.bench_function(*name, |b| {
            b.iter(|| inventory::read_procfs(black_box(&host.config)).expect("procfs"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("snapshot_load_and_check");
    for (name, host) in &hosts {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let (inv, source) = snapshot::inventory(black_box(&host.config)).expect("inv");
                assert_eq!(source, Source::Snapshot);
                inv
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("cgroup_v2_program_emit");
    for (name, host) in &hosts {
        let uuid = &host.inventory.gpus[0].mig_devices[1].uuid;
        let s = spec(uuid);
        let request = migcage::core::request::parse(&s, &policy).expect("request");
        let plan = migcage::core::plan::resolve(&request, &host.inventory, Path::new("/dev"))
            .expect("plan");
        g.bench_function(*name, |b| {
            b.iter(|| {
                let rules = migcage::core::cgroup::rules::effective_rules_with(
                    black_box(&s),
                    &plan.edits.device_rules,
                )
                .expect("rules");
                migcage::core::cgroup::program::to_bytes(&migcage::core::cgroup::program::emit(
                    &rules,
                ))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
