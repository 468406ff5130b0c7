//! The bad-input matrix: every malformed or hostile input a container start can bring to the hook,
//! and every host fault it can meet, run through the real `migcage hook prestart` (and, where a
//! case marks it, a real runc container). Each case must end with a non-zero exit, exactly one
//! line on stderr that starts with `migcage:` and names the problem, nothing on stdout, and
//! nothing left on the host: no mount, no device node in the container's rootfs, no cgroup, no
//! new cgroup device eBPF program, no lease.
//!
//! docs/bad-input.md is generated from this table and the messages the hook really printed; the
//! test fails when the two differ. `MIGCAGE_BLESS=1 cargo test --test bad_input` rewrites it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Bundle, SimHost, MIGCAGE};
use serde_json::{json, Value};

/// A hook run longer than this is a hang: the case fails.
const HOOK_DEADLINE: Duration = Duration::from_secs(30);

/// The simulated hosts the cases run on; the faulty ones are made once, before any discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Host {
    /// a100-7x1g.
    A100,
    /// two-gpus-one-mig: GPU 0 in MIG mode, GPU 1 whole.
    TwoGpus,
    /// a100-empty: MIG mode on, no instance (`create_on_demand` off, as by default).
    Empty,
    /// a100-7x1g whose GPU 0 fell off the bus (NVML answers GPU_IS_LOST).
    LostGpu,
    /// a100-7x1g whose nvmlInit fails with DRIVER_NOT_LOADED.
    InitError,
    /// a100-7x1g whose nvmlInit sleeps 60 s, with `nvml_timeout_ms = 400`.
    InitHang,
    /// a100-7x1g with nvml_library pointing at nothing.
    NoNvml,
    /// a100-7x1g without `<proc>/driver/nvidia`.
    NoDriver,
    /// a100-7x1g without `<proc>/driver/nvidia-caps/mig-minors`.
    NoMigMinors,
    /// a100-7x1g whose MIG device 0:3 lost its capabilities/.../gi<G>/access file.
    NoAccessFile,
    /// a100-7x1g whose /proc/devices lacks `nvidia-caps`.
    NoCapsMajor,
    /// a100-7x1g whose capabilities/mig/config names another minor than mig-minors.
    ConfigCapMismatch,
    /// a100-7x1g whose dev/nvidia0 is a regular file.
    BadNode,
    /// a100-7x1g where `cdi generate` ran, then MIG device 0:6 was destroyed.
    Destroyed,
    /// a100-7x1g whose lease file is garbage.
    BadLeaseFile,
    /// a100-7x1g whose migcage config file does not parse.
    BadConfig,
}

/// The inputs of one hook run; a case's setup changes them.
struct Ctx<'a> {
    host: &'a SimHost,
    listing: &'a Value,
    id: String,
    holder: Holder,
    bundle: Bundle,
    /// None: the state a runtime would write for `id`, `holder` and `bundle`.
    stdin: Option<Vec<u8>>,
    /// The bundle path the default state names (default: the bundle's).
    state_bundle: Option<PathBuf>,
    /// Replaces the bundle's config.json bytes.
    raw_spec: Option<Vec<u8>>,
    /// Leave the bundle without config.json.
    no_spec: bool,
    /// The migcage config (default: the host's).
    config: PathBuf,
    /// Shell run first, in a private mount namespace of the hook's own.
    prelude: Option<String>,
    /// Scratch space of this case.
    scratch: tempfile::TempDir,
}

impl Ctx<'_> {
    fn spec(&mut self) -> &mut Value {
        &mut self.bundle.config
    }
    fn env(&mut self, kv: &str) {
        self.spec()["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(kv));
    }
    fn annotate(&mut self, key: &str, value: &str) {
        let spec = self.spec();
        if !spec["annotations"].is_object() {
            spec["annotations"] = json!({});
        }
        spec["annotations"][key] = json!(value);
    }
    fn mount(&mut self, destination: &str) {
        self.spec()["mounts"].as_array_mut().unwrap().push(json!({
            "destination": destination, "type": "bind", "source": "/dev/null",
            "options": ["bind", "ro"]
        }));
    }
    fn privileged(&mut self) {
        for set in ["bounding", "effective", "permitted"] {
            self.spec()["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_ADMIN"));
        }
    }
    fn gpu_uuid(&self, gpu: usize) -> String {
        self.listing["gpus"][gpu]["uuid"]
            .as_str()
            .unwrap()
            .to_string()
    }
    /// A copy of the host's config with `key = value` set (a top-level key).
    fn config_with(&mut self, key: &str, value: &str) {
        let text = std::fs::read_to_string(self.host.config()).unwrap();
        let mut out = String::new();
        let mut done = false;
        for line in text.lines() {
            if line.split('=').next().map(str::trim) == Some(key) {
                writeln!(out, "{key} = {value}").unwrap();
                done = true;
            } else {
                writeln!(out, "{line}").unwrap();
            }
        }
        assert!(done, "the host config has no {key}");
        let path = self.scratch.path().join("config.toml");
        std::fs::write(&path, out).unwrap();
        self.config = path;
    }
    fn state(&self) -> Vec<u8> {
        let bundle = self
            .state_bundle
            .clone()
            .unwrap_or_else(|| self.bundle.path().to_path_buf());
        serde_json::to_vec(&json!({
            "ociVersion": "1.0.2", "id": self.id, "status": "created",
            "pid": self.holder.pid, "bundle": bundle,
        }))
        .unwrap()
    }
}

type Setup = Box<dyn Fn(&mut Ctx)>;

/// One bad input.
struct Case {
    /// Short name, unique.
    name: &'static str,
    /// The section of docs/bad-input.md.
    group: &'static str,
    /// What is wrong, for the table.
    what: &'static str,
    host: Host,
    setup: Setup,
    /// A part of the message that must be there.
    want: &'static str,
    /// Also start a real runc container with this input (cgroup v1).
    runc: bool,
}

fn case(
    group: &'static str,
    name: &'static str,
    what: &'static str,
    host: Host,
    want: &'static str,
    setup: impl Fn(&mut Ctx) + 'static,
) -> Case {
    Case {
        name,
        group,
        what,
        host,
        setup: Box::new(setup),
        want,
        runc: false,
    }
}

fn with_runc(mut c: Case) -> Case {
    c.runc = true;
    c
}

fn env_case(
    group: &'static str,
    name: &'static str,
    what: &'static str,
    env: &'static [&'static str],
    want: &'static str,
) -> Case {
    case(group, name, what, Host::A100, want, move |c| {
        for kv in env {
            c.env(kv);
        }
    })
}

const STATE: &str = "State on stdin";
const BUNDLE: &str = "Bundle and config.json";
const ENV: &str = "NVIDIA_VISIBLE_DEVICES and the other variables";
const ANNOT: &str = "Annotations";
const MOUNTS: &str = "Device-list mounts";
const SHAPE: &str = "Shape of the fields migcage reads";
const CONFLICT: &str = "Conflicting sources";
const RESOLVE: &str = "Devices the host does not have";
const FAULTS: &str = "Host faults";

fn cases() -> Vec<Case> {
    let v = vec![
        // --- The state a runtime passes on stdin.
        case(
            STATE,
            "state-empty",
            "empty stdin",
            Host::A100,
            "the container state on stdin is empty",
            |c| c.stdin = Some(Vec::new()),
        ),
        case(
            STATE,
            "state-blank",
            "only whitespace on stdin",
            Host::A100,
            "the container state on stdin is empty",
            |c| c.stdin = Some(b" \n\t\n".to_vec()),
        ),
        case(
            STATE,
            "state-truncated",
            "state JSON cut in the middle",
            Host::A100,
            "is not valid OCI state JSON",
            // A fixed text: the message quotes the column, which must not depend on the paths.
            |c| {
                c.stdin = Some(
                    br#"{"ociVersion":"1.0.2","id":"c1","status":"created","pid":42,"bund"#.to_vec(),
                )
            },
        ),
        case(
            STATE,
            "state-not-json",
            "not JSON at all",
            Host::A100,
            "is not valid OCI state JSON",
            |c| c.stdin = Some(b"prestart\n".to_vec()),
        ),
        case(
            STATE,
            "state-array",
            "a JSON array instead of an object",
            Host::A100,
            "is not valid OCI state JSON",
            |c| c.stdin = Some(b"[1,2,3]".to_vec()),
        ),
        case(
            STATE,
            "state-no-id",
            "no `id`",
            Host::A100,
            "missing field `id`",
            |c| c.stdin = Some(br#"{"ociVersion":"1.0.2","pid":1,"bundle":"/b"}"#.to_vec()),
        ),
        case(
            STATE,
            "state-no-bundle",
            "no `bundle`",
            Host::A100,
            "missing field `bundle`",
            |c| c.stdin = Some(br#"{"ociVersion":"1.0.2","id":"x","pid":1}"#.to_vec()),
        ),
        case(
            STATE,
            "state-bad-id",
            "an id with a `/`",
            Host::A100,
            "has id \"../../etc\"",
            |c| {
                c.stdin = Some(
                    br#"{"ociVersion":"1.0.2","id":"../../etc","pid":1,"bundle":"/b"}"#.to_vec(),
                )
            },
        ),
        case(
            STATE,
            "state-relative-bundle",
            "a relative bundle path",
            Host::A100,
            "the bundle must be an absolute path",
            |c| {
                c.stdin =
                    Some(br#"{"ociVersion":"1.0.2","id":"x","pid":1,"bundle":"b"}"#.to_vec())
            },
        ),
        case(
            STATE,
            "state-bad-pid",
            "a negative pid",
            Host::A100,
            "has pid \"-5\"",
            |c| {
                c.stdin =
                    Some(br#"{"ociVersion":"1.0.2","id":"x","pid":-5,"bundle":"/b"}"#.to_vec())
            },
        ),
        case(
            STATE,
            "state-pid-string",
            "a pid that is a string",
            Host::A100,
            "is not valid OCI state JSON",
            |c| {
                c.stdin = Some(
                    br#"{"ociVersion":"1.0.2","id":"x","pid":"12","bundle":"/b"}"#.to_vec(),
                )
            },
        ),
        case(
            STATE,
            "state-huge",
            "more than 1 MiB on stdin",
            Host::A100,
            "larger than 1048576 bytes",
            |c| c.stdin = Some(vec![b' '; (1 << 20) + 10]),
        ),
        case(
            STATE,
            "state-no-pid",
            "no pid (a device is asked for)",
            Host::A100,
            "the runtime passed no pid",
            |c| {
                c.env("NVIDIA_VISIBLE_DEVICES=0:1");
                let s = format!(
                    r#"{{"ociVersion":"1.0.2","id":"{}","bundle":"{}"}}"#,
                    c.id,
                    c.bundle.path().display()
                );
                c.stdin = Some(s.into_bytes());
            },
        ),
        case(
            STATE,
            "state-dead-pid",
            "the pid of a process that is gone",
            Host::A100,
            "its process is gone",
            |c| {
                c.env("NVIDIA_VISIBLE_DEVICES=0:1");
                let s = format!(
                    r#"{{"ociVersion":"1.0.2","id":"{}","pid":{},"bundle":"{}"}}"#,
                    c.id,
                    i32::MAX - 3,
                    c.bundle.path().display()
                );
                c.stdin = Some(s.into_bytes());
            },
        ),
        // --- The bundle.
        case(
            BUNDLE,
            "bundle-missing",
            "the bundle directory does not exist",
            Host::A100,
            "No such file or directory",
            |c| c.state_bundle = Some(c.scratch.path().join("no-such-bundle")),
        ),
        case(
            BUNDLE,
            "config-missing",
            "the bundle has no config.json",
            Host::A100,
            "config.json: No such file or directory",
            |c| c.no_spec = true,
        ),
        case(
            BUNDLE,
            "config-unreadable",
            "config.json is a directory",
            Host::A100,
            "Is a directory",
            |c| {
                c.no_spec = true;
                let p = c.bundle.path().join("config.json");
                std::fs::remove_file(&p).unwrap();
                std::fs::create_dir(&p).unwrap();
            },
        ),
        case(
            BUNDLE,
            "config-empty",
            "config.json is empty",
            Host::A100,
            "is not valid JSON",
            |c| c.raw_spec = Some(Vec::new()),
        ),
        case(
            BUNDLE,
            "config-truncated",
            "config.json cut in the middle",
            Host::A100,
            "is not valid JSON",
            |c| {
                c.raw_spec = Some(
                    br#"{"ociVersion":"1.0.2","process":{"env":["PATH=/bin","NVIDIA_VISIBLE_DEV"#
                        .to_vec(),
                )
            },
        ),
        case(
            BUNDLE,
            "config-not-object",
            "config.json is a JSON array",
            Host::A100,
            "the top level is not an object",
            |c| c.raw_spec = Some(b"[]".to_vec()),
        ),
        case(
            BUNDLE,
            "config-huge",
            "config.json larger than 32 MiB",
            Host::A100,
            "is larger than 33554432 bytes",
            |c| {
                c.no_spec = true;
                let f = std::fs::File::create(c.bundle.path().join("config.json")).unwrap();
                f.set_len((32 << 20) + 10).unwrap();
            },
        ),
        case(
            BUNDLE,
            "config-no-root",
            "config.json without `root.path` (a device is asked for)",
            Host::A100,
            "config.json has no root.path",
            |c| {
                c.env("NVIDIA_VISIBLE_DEVICES=0:1");
                c.spec().as_object_mut().unwrap().remove("root");
            },
        ),
        case(
            BUNDLE,
            "migcage-config-bad",
            "migcage's own config file has an unknown key",
            Host::BadConfig,
            "unknown field `driver_rot`",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=0:1"),
        ),
        case(
            BUNDLE,
            "migcage-config-missing",
            "MIGCAGE_CONFIG names a file that does not exist",
            Host::A100,
            "cannot read config file",
            |c| c.config = c.scratch.path().join("nonexistent.toml"),
        ),
        // --- NVIDIA_VISIBLE_DEVICES and friends.
        env_case(
            ENV,
            "env-bad-mig-index",
            "`0:x`",
            &["NVIDIA_VISIBLE_DEVICES=0:x"],
            "\"x\" is not a MIG device index",
        ),
        env_case(
            ENV,
            "env-empty-item",
            "`0,,1` (a stray comma)",
            &["NVIDIA_VISIBLE_DEVICES=0,,1"],
            "empty item",
        ),
        env_case(
            ENV,
            "env-two-colons",
            "`0:1:2`",
            &["NVIDIA_VISIBLE_DEVICES=0:1:2"],
            "more than one \":\"",
        ),
        env_case(
            ENV,
            "env-leading-zero",
            "`01`",
            &["NVIDIA_VISIBLE_DEVICES=01"],
            "has a leading zero; write 1",
        ),
        env_case(
            ENV,
            "env-index-too-large",
            "`256`",
            &["NVIDIA_VISIBLE_DEVICES=256"],
            "larger than 255",
        ),
        env_case(
            ENV,
            "env-negative",
            "`-1`",
            &["NVIDIA_VISIBLE_DEVICES=-1"],
            "is not a device",
        ),
        env_case(
            ENV,
            "env-lowercase-uuid",
            "`mig-…` (lower-case prefix)",
            &["NVIDIA_VISIBLE_DEVICES=mig-5c89852c-d268-c3f3-1b07-005d5ae1dc3f"],
            "UUIDs start with upper-case GPU- or MIG-",
        ),
        env_case(
            ENV,
            "env-short-uuid",
            "a MIG UUID with too few digits",
            &["NVIDIA_VISIBLE_DEVICES=MIG-5c89852c-d268-c3f3-1b07"],
            "is not a MIG UUID",
        ),
        env_case(
            ENV,
            "env-bad-gpu-uuid",
            "a GPU UUID with a non-hex digit",
            &["NVIDIA_VISIBLE_DEVICES=GPU-zc89852c-d268-c3f3-1b07-005d5ae1dc3f"],
            "is not a GPU UUID",
        ),
        env_case(
            ENV,
            "env-bad-r450",
            "`MIG-GPU-<uuid>/x/0` (the R450 form, broken)",
            &["NVIDIA_VISIBLE_DEVICES=MIG-GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90/x/0"],
            "is not a MIG UUID",
        ),
        env_case(
            ENV,
            "env-all-and-more",
            "`all,0`",
            &["NVIDIA_VISIBLE_DEVICES=all,0"],
            "\"all\" cannot be combined with other items",
        ),
        env_case(
            ENV,
            "env-none-and-more",
            "`none,0:1`",
            &["NVIDIA_VISIBLE_DEVICES=none,0:1"],
            "\"none\" cannot be combined with other items",
        ),
        env_case(
            ENV,
            "env-void-and-more",
            "`void,0`",
            &["NVIDIA_VISIBLE_DEVICES=void,0"],
            "\"void\" cannot be combined with other items",
        ),
        env_case(
            ENV,
            "env-duplicate",
            "`0:1,0:1`",
            &["NVIDIA_VISIBLE_DEVICES=0:1,0:1"],
            "\"0:1\" appears twice",
        ),
        env_case(
            ENV,
            "env-duplicate-uuid",
            "the same MIG UUID twice (one upper-case)",
            &["NVIDIA_VISIBLE_DEVICES=MIG-5c89852c-d268-c3f3-1b07-005d5ae1dc3f,MIG-5C89852C-D268-C3F3-1B07-005D5AE1DC3F"],
            "appears twice",
        ),
        env_case(
            ENV,
            "env-word",
            "`gpu0`",
            &["NVIDIA_VISIBLE_DEVICES=gpu0"],
            "\"gpu0\" is not a device",
        ),
        env_case(
            ENV,
            "env-profile-empty",
            "`profile:`",
            &["NVIDIA_VISIBLE_DEVICES=profile:"],
            "names no profile",
        ),
        env_case(
            ENV,
            "env-profile-bad",
            "`profile:1g.5`",
            &["NVIDIA_VISIBLE_DEVICES=profile:1g.5"],
            "is not a MIG profile name",
        ),
        env_case(
            ENV,
            "env-profile-zero",
            "`profile:1g.5gb*0`",
            &["NVIDIA_VISIBLE_DEVICES=profile:1g.5gb*0"],
            "is not a device count",
        ),
        env_case(
            ENV,
            "env-profile-too-many",
            "`profile:1g.5gb*65`",
            &["NVIDIA_VISIBLE_DEVICES=profile:1g.5gb*65"],
            "is more than 64 devices",
        ),
        env_case(
            ENV,
            "env-profile-twice",
            "`profile:1g.5gb,profile:1g.5gb`",
            &["NVIDIA_VISIBLE_DEVICES=profile:1g.5gb,profile:1g.5gb"],
            "ask for the same profile twice",
        ),
        env_case(
            ENV,
            "env-list-marker-no-mounts",
            "`/var/run/nvidia-container-devices` but no device mount",
            &["NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices"],
            "but no mount is there",
        ),
        env_case(
            ENV,
            "caps-unknown",
            "`NVIDIA_DRIVER_CAPABILITIES=compute,bogus`",
            &[
                "NVIDIA_VISIBLE_DEVICES=0:1",
                "NVIDIA_DRIVER_CAPABILITIES=compute,bogus",
            ],
            "\"bogus\" is not a driver capability",
        ),
        env_case(
            ENV,
            "caps-empty-item",
            "`NVIDIA_DRIVER_CAPABILITIES=compute,,utility`",
            &[
                "NVIDIA_VISIBLE_DEVICES=0:1",
                "NVIDIA_DRIVER_CAPABILITIES=compute,,utility",
            ],
            "empty item",
        ),
        env_case(
            ENV,
            "mig-config-unprivileged",
            "`NVIDIA_MIG_CONFIG_DEVICES=all` in an unprivileged container",
            &["NVIDIA_VISIBLE_DEVICES=0:1", "NVIDIA_MIG_CONFIG_DEVICES=all"],
            "requires a privileged container (CAP_SYS_ADMIN)",
        ),
        env_case(
            ENV,
            "mig-monitor-unprivileged",
            "`NVIDIA_MIG_MONITOR_DEVICES=0` in an unprivileged container",
            &["NVIDIA_VISIBLE_DEVICES=0:1", "NVIDIA_MIG_MONITOR_DEVICES=0"],
            "requires a privileged container (CAP_SYS_ADMIN)",
        ),
        case(
            ENV,
            "mig-config-mig-device",
            "`NVIDIA_MIG_CONFIG_DEVICES=0:1` (a MIG device, privileged)",
            Host::A100,
            "is a MIG device; the MIG capabilities are per GPU",
            |c| {
                c.privileged();
                c.env("NVIDIA_VISIBLE_DEVICES=0:1");
                c.env("NVIDIA_MIG_CONFIG_DEVICES=0:1");
            },
        ),
        case(
            ENV,
            "mig-monitor-bad",
            "`NVIDIA_MIG_MONITOR_DEVICES=x` (privileged)",
            Host::A100,
            "NVIDIA_MIG_MONITOR_DEVICES=\"x\"",
            |c| {
                c.privileged();
                c.env("NVIDIA_VISIBLE_DEVICES=0:1");
                c.env("NVIDIA_MIG_MONITOR_DEVICES=x");
            },
        ),
        // --- Annotations.
        case(
            ANNOT,
            "cdi-not-qualified",
            "`cdi.k8s.io/x: nvidia.com/gpu` (no `=id`)",
            Host::A100,
            "is not a fully qualified CDI device name",
            |c| c.annotate("cdi.k8s.io/x", "nvidia.com/gpu"),
        ),
        case(
            ANNOT,
            "cdi-mig-class-whole-gpu",
            "`nvidia.com/mig=0` (a whole GPU in the class mig)",
            Host::A100,
            "is a whole GPU, not a MIG device",
            |c| c.annotate("cdi.k8s.io/x", "nvidia.com/mig=0"),
        ),
        case(
            ANNOT,
            "cdi-mig-class-all",
            "`nvidia.com/mig=all`",
            Host::A100,
            "\"all\" names whole GPUs",
            |c| c.annotate("cdi.k8s.io/x", "nvidia.com/mig=all"),
        ),
        case(
            ANNOT,
            "cdi-duplicate",
            "`nvidia.com/gpu=0:1,nvidia.com/gpu=0:1`",
            Host::A100,
            "\"0:1\" appears twice",
            |c| c.annotate("cdi.k8s.io/x", "nvidia.com/gpu=0:1,nvidia.com/gpu=0:1"),
        ),
        case(
            ANNOT,
            "cdi-profile",
            "`nvidia.com/gpu=profile:1g.5gb` (CDI ids take no profile)",
            Host::A100,
            "asks for a profile, which only",
            |c| c.annotate("cdi.k8s.io/x", "nvidia.com/gpu=profile:1g.5gb"),
        ),
        case(
            ANNOT,
            "devices-annotation-bad",
            "`migcage.io/devices: 0:x`",
            Host::A100,
            "annotation migcage.io/devices=\"0:x\"",
            |c| c.annotate("migcage.io/devices", "0:x"),
        ),
        case(
            ANNOT,
            "profile-annotation-prefix",
            "`migcage.io/profile: profile:1g.5gb`",
            Host::A100,
            "which migcage.io/profile does not take",
            |c| c.annotate("migcage.io/profile", "profile:1g.5gb"),
        ),
        case(
            ANNOT,
            "profile-annotation-bad",
            "`migcage.io/profile: 1g`",
            Host::A100,
            "is not a MIG profile name",
            |c| c.annotate("migcage.io/profile", "1g"),
        ),
        // --- Device-list mounts.
        case(
            MOUNTS,
            "mount-bad-id",
            "a mount on `/var/run/nvidia-container-devices/0:x`",
            Host::A100,
            "mount destination=\"/var/run/nvidia-container-devices/0:x\"",
            |c| c.mount("/var/run/nvidia-container-devices/0:x"),
        ),
        case(
            MOUNTS,
            "mount-nested",
            "a mount on `/var/run/nvidia-container-devices/a/b`",
            Host::A100,
            "is not one device id",
            |c| c.mount("/var/run/nvidia-container-devices/a/b"),
        ),
        // --- The shape of the fields migcage reads.
        case(
            SHAPE,
            "env-not-array",
            "`process.env` is a string",
            Host::A100,
            "config.json process.env: is not an array",
            |c| c.spec()["process"]["env"] = json!("NVIDIA_VISIBLE_DEVICES=0"),
        ),
        case(
            SHAPE,
            "env-not-string",
            "`process.env` holds a number",
            Host::A100,
            "config.json process.env: holds a non-string",
            |c| c.spec()["process"]["env"] = json!(["PATH=/bin", 7]),
        ),
        case(
            SHAPE,
            "process-not-object",
            "`process` is an array",
            Host::A100,
            "config.json process: is not an object",
            |c| c.spec()["process"] = json!([]),
        ),
        case(
            SHAPE,
            "bounding-not-array",
            "`process.capabilities.bounding` is a string",
            Host::A100,
            "config.json process.capabilities.bounding: is not an array",
            |c| c.spec()["process"]["capabilities"]["bounding"] = json!("CAP_SYS_ADMIN"),
        ),
        case(
            SHAPE,
            "annotations-not-object",
            "`annotations` is an array",
            Host::A100,
            "config.json annotations: is not an object",
            |c| c.spec()["annotations"] = json!(["migcage.io/devices=0:1"]),
        ),
        case(
            SHAPE,
            "annotation-not-string",
            "an annotation value is a number",
            Host::A100,
            "config.json annotations: holds a non-string value",
            |c| c.spec()["annotations"] = json!({"migcage.io/devices": 1}),
        ),
        case(
            SHAPE,
            "mounts-not-array",
            "`mounts` is an object",
            Host::A100,
            "config.json mounts: is not an array",
            |c| c.spec()["mounts"] = json!({}),
        ),
        case(
            SHAPE,
            "mount-no-destination",
            "a mount without `destination`",
            Host::A100,
            "config.json mounts: holds a mount without a string destination",
            |c| {
                c.spec()["mounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "tmpfs", "source": "tmpfs"}))
            },
        ),
        // --- Sources that disagree.
        with_runc(case(
            CONFLICT,
            "env-vs-annotation",
            "`NVIDIA_VISIBLE_DEVICES=0:1` and `migcage.io/devices: 0:2`",
            Host::A100,
            "name different devices",
            |c| {
                c.env("NVIDIA_VISIBLE_DEVICES=0:1");
                c.annotate("migcage.io/devices", "0:2");
            },
        )),
        with_runc(case(
            CONFLICT,
            "uuid-vs-index",
            "`NVIDIA_VISIBLE_DEVICES=<MIG UUID of 0:0>` and `migcage.io/devices: 0:1` (compared once resolved)",
            Host::A100,
            "name different devices",
            |c| {
                let m = c.listing["gpus"][0]["mig_devices"][0]["uuid"].as_str().unwrap().to_string();
                c.env(&format!("NVIDIA_VISIBLE_DEVICES={m}"));
                c.annotate("migcage.io/devices", "0:1");
            },
        )),
        case(
            CONFLICT,
            "env-vs-cdi",
            "`NVIDIA_VISIBLE_DEVICES=0:1` and `cdi.k8s.io/x: nvidia.com/gpu=0:2`",
            Host::A100,
            "name different devices",
            |c| {
                c.env("NVIDIA_VISIBLE_DEVICES=0:1");
                c.annotate("cdi.k8s.io/x", "nvidia.com/gpu=0:2");
            },
        ),
        case(
            CONFLICT,
            "cdi-vs-mounts",
            "a CDI annotation and a device-list mount naming other devices",
            Host::A100,
            "name different devices",
            |c| {
                c.annotate("cdi.k8s.io/x", "nvidia.com/gpu=0:2");
                c.mount("/var/run/nvidia-container-devices/0:3");
            },
        ),
        case(
            CONFLICT,
            "devices-none-vs-profile",
            "`migcage.io/devices: none` and `migcage.io/profile: 1g.5gb`",
            Host::A100,
            "name different devices",
            |c| {
                c.annotate("migcage.io/devices", "none");
                c.annotate("migcage.io/profile", "1g.5gb");
            },
        ),
        // --- Devices the host does not have.
        case(
            RESOLVE,
            "unknown-mig-uuid",
            "a MIG UUID no device has",
            Host::A100,
            "no MIG device has that UUID",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=MIG-deadbeef-0000-0000-0000-000000000000"),
        ),
        case(
            RESOLVE,
            "unknown-gpu-uuid",
            "a GPU UUID no GPU has",
            Host::A100,
            "no GPU has that UUID",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=GPU-deadbeef-0000-0000-0000-000000000000"),
        ),
        case(
            RESOLVE,
            "unknown-r450",
            "`MIG-GPU-<uuid>/<gi>/<ci>` of a GPU instance that does not exist",
            Host::A100,
            "asks for MIG-GPU-",
            |c| {
                let g = c.gpu_uuid(0);
                c.env(&format!("NVIDIA_VISIBLE_DEVICES=MIG-{g}/1/0"));
            },
        ),
        env_case(
            RESOLVE,
            "no-such-gpu",
            "GPU `7` on a one-GPU host",
            &["NVIDIA_VISIBLE_DEVICES=7"],
            "there is no GPU 7, this host has only GPU 0",
        ),
        env_case(
            RESOLVE,
            "no-such-mig",
            "MIG device `0:9` of a GPU with seven",
            &["NVIDIA_VISIBLE_DEVICES=0:9"],
            "GPU 0 has MIG devices 0:0 to 0:6",
        ),
        case(
            RESOLVE,
            "not-mig-mode",
            "`1:0` on a GPU without MIG",
            Host::TwoGpus,
            "GPU 1 is not in MIG mode",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=1:0"),
        ),
        env_case(
            RESOLVE,
            "no-such-profile",
            "`profile:7g.40gb` on a host of 1g.5gb instances",
            &["NVIDIA_VISIBLE_DEVICES=profile:7g.40gb"],
            "7g.40gb",
        ),
        case(
            RESOLVE,
            "on-demand-off",
            "`profile:3g.20gb` on a GPU with room for one, `[allocation] create_on_demand` off",
            Host::Empty,
            "create_on_demand = true",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=profile:3g.20gb"),
        ),
        env_case(
            RESOLVE,
            "profile-too-many",
            "`profile:1g.5gb*8` on a host of seven",
            &["NVIDIA_VISIBLE_DEVICES=profile:1g.5gb*8"],
            "1g.5gb",
        ),
        case(
            RESOLVE,
            "mig-config-no-mig-gpu",
            "`NVIDIA_MIG_CONFIG_DEVICES=1` for a GPU without MIG (privileged)",
            Host::TwoGpus,
            "GPU 1 is not in MIG mode",
            |c| {
                c.privileged();
                c.env("NVIDIA_VISIBLE_DEVICES=0:0");
                c.env("NVIDIA_MIG_CONFIG_DEVICES=1");
            },
        ),
        // --- Host faults.
        with_runc(case(
            FAULTS,
            "destroyed-after-cdi-generate",
            "MIG device 0:6 destroyed after `cdi generate`; the container names it as CDI injection does (a device-list mount of its UUID)",
            Host::Destroyed,
            "no MIG device has that UUID; it may have been destroyed or re-created",
            |c| {
                let uuid = std::fs::read_to_string(c.host.dir.path().join("destroyed-uuid"))
                    .unwrap();
                c.env("NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices");
                c.mount(&format!("/var/run/nvidia-container-devices/{}", uuid.trim()));
            },
        )),
        with_runc(case(
            FAULTS,
            "gpu-lost",
            "GPU 0 fell off the bus (NVML: GPU_IS_LOST)",
            Host::LostGpu,
            "fell off the bus",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=0:1"),
        )),
        case(
            FAULTS,
            "nvml-init-error",
            "nvmlInit fails (DRIVER_NOT_LOADED)",
            Host::InitError,
            "cannot initialize NVML",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=0:1"),
        ),
        with_runc(case(
            FAULTS,
            "nvml-hangs",
            "nvmlInit hangs for 60 s (nvml_timeout_ms = 400)",
            Host::InitHang,
            "did not answer within 400 ms",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=0:1"),
        )),
        case(
            FAULTS,
            "nvml-missing",
            "nvml_library names a file that does not exist",
            Host::NoNvml,
            "cannot initialize NVML",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=0:1"),
        ),
        case(
            FAULTS,
            "driver-not-loaded",
            "no `<proc>/driver/nvidia` (driver not loaded)",
            Host::NoDriver,
            "NVIDIA driver not loaded",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=0:1"),
        ),
        case(
            FAULTS,
            "no-mig-minors",
            "no `<proc>/driver/nvidia-caps/mig-minors`",
            Host::NoMigMinors,
            "mig-minors",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=0:1"),
        ),
        case(
            FAULTS,
            "no-access-file",
            "the capabilities `access` file of MIG device 0:3 is gone",
            Host::NoAccessFile,
            "access",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=0:3"),
        ),
        case(
            FAULTS,
            "no-caps-major",
            "`/proc/devices` has no `nvidia-caps`",
            Host::NoCapsMajor,
            "nvidia-caps",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=0:1"),
        ),
        case(
            FAULTS,
            "config-cap-minor-mismatch",
            "`capabilities/mig/config` says DeviceFileMinor 99, mig-minors says 1",
            Host::ConfigCapMismatch,
            "says DeviceFileMinor 99",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=0:1"),
        ),
        case(
            FAULTS,
            "host-node-not-a-device",
            "the host's /dev/nvidia0 is a regular file (a container with a user namespace, whose nodes are bind mounts of the host's)",
            Host::BadNode,
            "invalid device node",
            |c| {
                c.env("NVIDIA_VISIBLE_DEVICES=0:1");
                c.spec()["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "user"}));
            },
        ),
        case(
            FAULTS,
            "lease-file-garbage",
            "the lease file is not JSON",
            Host::BadLeaseFile,
            "is not valid",
            |c| c.env("NVIDIA_VISIBLE_DEVICES=0:1"),
        ),
        with_runc(case(
            FAULTS,
            "state-dir-read-only",
            "state_dir on a read-only mount",
            Host::A100,
            "Read-only file system",
            |c| {
                c.env("NVIDIA_VISIBLE_DEVICES=0:2");
                let state = c.scratch.path().join("state");
                std::fs::create_dir_all(&state).unwrap();
                c.config_with("state_dir", &format!("{:?}", state.display().to_string()));
                c.prelude = Some(format!("mount --bind -o ro {0} {0}", state.display()));
            },
        )),
        with_runc(case(
            FAULTS,
            "state-dir-full",
            "state_dir on a full tmpfs",
            Host::A100,
            "No space left on device",
            |c| {
                c.env("NVIDIA_VISIBLE_DEVICES=0:2");
                let state = c.scratch.path().join("state");
                std::fs::create_dir_all(&state).unwrap();
                c.config_with("state_dir", &format!("{:?}", state.display().to_string()));
                c.prelude = Some(format!(
                    "mount -t tmpfs -o size=16k,nr_inodes=64 tmpfs {0} && (dd if=/dev/zero of={0}/fill bs=4k 2>/dev/null; true) && (i=0; while touch {0}/f$i 2>/dev/null; do i=$((i+1)); done)",
                    state.display()
                ));
            },
        )),
    ];
    // Names are unique (they are the doc's row keys).
    let mut names: Vec<&str> = v.iter().map(|c| c.name).collect();
    names.sort_unstable();
    let n = names.len();
    names.dedup();
    assert_eq!(n, names.len(), "duplicate case names");
    v
}

/// A process standing in for the container's init: in a mount namespace of its own, so that the
/// hook's namespace helper really enters another namespace (and mounts die with it).
struct Holder {
    child: Child,
    pid: i32,
    /// Its own cgroup v1 devices directory, which denies every device: a hook that granted
    /// anything would show there.
    cgroup: PathBuf,
}

/// Where the holders' device cgroups are made.
const DEVICES_V1: &str = "/sys/fs/cgroup/devices";

impl Holder {
    /// A holder for the container of `rootfs`, whose /dev is a tmpfs of its own (as runc makes
    /// it): what the hook makes there dies with the container.
    fn new(rootfs: &Path) -> Holder {
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o mode=755 tmpfs {}/dev && exec sleep 600",
                rootfs.display()
            ))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default() != "sleep\n"
        {
            assert!(Instant::now() < deadline, "the holder did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        let cgroup = Path::new(DEVICES_V1).join(common::unique("migcage-bad-input"));
        std::fs::create_dir(&cgroup).unwrap();
        std::fs::write(cgroup.join("devices.deny"), "a").unwrap();
        std::fs::write(cgroup.join("cgroup.procs"), pid.to_string()).unwrap();
        Holder { child, pid, cgroup }
    }

    /// The device rules of its cgroup (empty: none granted).
    fn granted(&self) -> String {
        std::fs::read_to_string(self.cgroup.join("devices.list")).unwrap_or_default()
    }
}

impl Holder {
    /// The container's end: its init is gone.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.cgroup.exists() {
            // An empty cgroup goes at once.
            std::fs::remove_dir(&self.cgroup).unwrap();
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Leases of container `id` in `state_dir` (only those whose holder lives, when `live`).
fn leases_of(state_dir: &Path, id: &str, live: bool) -> Vec<String> {
    let all = match migcage::host::lease::Store::new(state_dir).read() {
        Ok(all) => all,
        // A case that broke the store on purpose.
        Err(_) => return Vec::new(),
    };
    let all = if live {
        migcage::host::lease::partition_live(all, Path::new("/proc")).0
    } else {
        all
    };
    all.into_iter()
        .filter(|l| l.container == id)
        .map(|l| l.uuid)
        .collect()
}

fn state_dir_of(config: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap_or_default();
    migcage::config::Config::parse(&text, config)
        .map(|c| c.state_dir)
        .unwrap_or_default()
}

/// What one run of the hook did.
struct HookRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn run_hook(c: &Ctx) -> HookRun {
    if let Some(raw) = &c.raw_spec {
        std::fs::write(c.bundle.path().join("config.json"), raw).unwrap();
    } else if !c.no_spec {
        c.bundle.write();
    } else if c.bundle.path().join("config.json").is_file() && c.raw_spec.is_none() {
        // Bundle::new wrote one; a case that wants none (or its own) set no_spec.
        let meta = std::fs::metadata(c.bundle.path().join("config.json")).unwrap();
        if meta.len() <= 32 << 20 {
            std::fs::remove_file(c.bundle.path().join("config.json")).unwrap();
        }
    }
    let stdin = c.stdin.clone().unwrap_or_else(|| c.state());
    let mut cmd = match &c.prelude {
        None => {
            let mut cmd = Command::new(MIGCAGE);
            cmd.args(["hook", "prestart"]);
            cmd
        }
        Some(p) => {
            let mut cmd = Command::new("unshare");
            cmd.args(["-m", "--propagation", "private", "sh", "-c"])
                .arg(format!("{p} && exec {MIGCAGE} hook prestart"));
            cmd
        }
    };
    let start = Instant::now();
    let mut child = cmd
        .env("MIGCAGE_CONFIG", &c.config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut w = child.stdin.take().unwrap();
        // The hook may stop reading early (a state too large): a broken pipe is fine.
        let _ = w.write_all(&stdin);
    }
    let deadline = start + HOOK_DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{}: the hook ran longer than {HOOK_DEADLINE:?}", c.id);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    HookRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: start.elapsed(),
    }
}

/// The message with this run's paths and ids replaced by names, for the doc.
fn normalized(c: &Ctx, line: &str) -> String {
    let mut s = line.to_string();
    for (from, to) in [
        (c.scratch.path().display().to_string(), "$TMP"),
        (c.bundle.path().display().to_string(), "$BUNDLE"),
        (c.host.dir.path().display().to_string(), "$SIM"),
        (c.id.clone(), "$ID"),
    ] {
        s = s.replace(&from, to);
    }
    s.replace(&format!("process {} ", c.holder.pid), "process $PID ")
        .replace(&format!("/proc/{}/", c.holder.pid), "/proc/$PID/")
        .replace(&format!("{}", i32::MAX - 3), "$DEAD_PID")
}

/// Make the hosts the cases need.
fn make_hosts(needed: &BTreeSet<Host>, scratch: &Path) -> BTreeMap<Host, (SimHost, Value)> {
    let base = migcage_topology::builtin("a100-7x1g").unwrap();
    let with_faults = |name: &str, faults: &str| -> SimHost {
        let path = scratch.join(format!("{name}.toml"));
        std::fs::write(&path, format!("{base}\n[faults]\n{faults}\n")).unwrap();
        SimHost::new(path.to_str().unwrap())
    };
    let mut out = BTreeMap::new();
    for &h in needed {
        let host = match h {
            Host::A100 | Host::NoNvml | Host::NoDriver | Host::NoMigMinors => {
                SimHost::new("a100-7x1g")
            }
            Host::NoAccessFile | Host::NoCapsMajor | Host::ConfigCapMismatch | Host::BadNode => {
                SimHost::new("a100-7x1g")
            }
            Host::Destroyed | Host::BadLeaseFile | Host::BadConfig => SimHost::new("a100-7x1g"),
            Host::TwoGpus => SimHost::new("two-gpus-one-mig"),
            Host::Empty => SimHost::new("a100-empty"),
            Host::LostGpu => with_faults("lost", "lost_gpus = [0]"),
            Host::InitError => with_faults("initerr", "init_error = \"DRIVER_NOT_LOADED\""),
            Host::InitHang => with_faults("hang", "init_delay_ms = 60000"),
        };
        // The listing of the healthy host (before any fault is applied).
        let listing = match h {
            Host::LostGpu | Host::InitError | Host::InitHang => {
                let healthy = SimHost::new("a100-7x1g");
                healthy.list()
            }
            _ => host.list(),
        };
        let root = host.dir.path();
        let rewrite_config = |key: &str, value: &str| {
            let p = host.config();
            let text = std::fs::read_to_string(&p).unwrap();
            let mut out = String::new();
            for line in text.lines() {
                if line.split('=').next().map(str::trim) == Some(key) {
                    writeln!(out, "{key} = {value}").unwrap();
                } else {
                    writeln!(out, "{line}").unwrap();
                }
            }
            std::fs::write(&p, out).unwrap();
        };
        // `list` above wrote an inventory snapshot: the faults below must meet a fresh start.
        let _ = std::fs::remove_file(root.join("run/migcage/inventory.json"));
        match h {
            Host::InitHang => rewrite_config("nvml_timeout_ms", "400"),
            Host::NoNvml => rewrite_config(
                "nvml_library",
                &format!("{:?}", root.join("nonexistent/libnvidia-ml.so.1")),
            ),
            Host::NoDriver => std::fs::remove_dir_all(root.join("proc/driver/nvidia")).unwrap(),
            Host::NoMigMinors => {
                std::fs::remove_file(root.join("proc/driver/nvidia-caps/mig-minors")).unwrap()
            }
            Host::NoAccessFile => {
                let m = &listing["gpus"][0]["mig_devices"][3];
                let gi = m["gpu_instance_id"].as_u64().unwrap();
                std::fs::remove_file(root.join(format!(
                    "proc/driver/nvidia/capabilities/gpu0/mig/gi{gi}/access"
                )))
                .unwrap();
            }
            Host::NoCapsMajor => {
                let p = root.join("proc/devices");
                let text = std::fs::read_to_string(&p).unwrap();
                let kept: String = text
                    .lines()
                    .filter(|l| !l.ends_with(" nvidia-caps"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                std::fs::write(&p, kept).unwrap();
            }
            Host::ConfigCapMismatch => std::fs::write(
                root.join("proc/driver/nvidia/capabilities/mig/config"),
                "DeviceFileMinor: 99\nDeviceFileMode: 256\nDeviceFileModify: 1\n",
            )
            .unwrap(),
            Host::BadNode => {
                let p = root.join("dev/nvidia0");
                std::fs::remove_file(&p).unwrap();
                std::fs::write(&p, b"not a device").unwrap();
            }
            Host::BadLeaseFile => {
                let d = root.join("run/migcage/leases");
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("leases.json"), b"{\"version\": 1, \"leases\": [").unwrap();
            }
            Host::BadConfig => {
                let p = host.config();
                let text = std::fs::read_to_string(&p).unwrap();
                std::fs::write(&p, text.replacen("driver_root", "driver_rot", 1)).unwrap();
            }
            Host::Destroyed => destroy_after_cdi_generate(&host, &listing, scratch),
            _ => {}
        }
        out.insert(h, (host, listing));
    }
    out
}

/// `cdi generate`, then MIG device 0:6 destroyed (the host re-simulated without its GPU
/// instance); the UUID the spec gave it goes to `<sim>/destroyed-uuid`.
fn destroy_after_cdi_generate(host: &SimHost, listing: &Value, scratch: &Path) {
    let out = Command::new(MIGCAGE)
        .arg("--config")
        .arg(host.config())
        .args(["cdi", "generate", "--format", "json", "--output", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cdi generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec: Value = serde_json::from_slice(&out.stdout).unwrap();
    let dev = spec["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "0:6")
        .expect("the CDI spec has device 0:6");
    let dest = dev["containerEdits"]["mounts"][0]["containerPath"]
        .as_str()
        .unwrap();
    let uuid = dest.rsplit('/').next().unwrap();
    assert_eq!(uuid, listing["gpus"][0]["mig_devices"][6]["uuid"]);
    // Six of the seven instances: the last one created is gone.
    let base = migcage_topology::builtin("a100-7x1g").unwrap();
    let six = base.replacen("{ profile = \"1g.5gb\" },\n]", "]", 1);
    assert_ne!(six, base, "the a100-7x1g topology changed its layout");
    let path = scratch.join("six.toml");
    std::fs::write(&path, six).unwrap();
    let out = Command::new(MIGCAGE)
        .args(["simulate", "--topology"])
        .arg(&path)
        .arg("--root")
        .arg(host.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "re-simulate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // After simulate, which clears what it did not make.
    std::fs::write(host.dir.path().join("destroyed-uuid"), uuid).unwrap();
}

/// The doc, from the cases and their messages.
fn render_doc(rows: &[(&Case, String)]) -> String {
    let mut s = String::from(
        "# Bad input: every case and its message\n\n\
         Generated by `tests/bad_input.rs` from the messages the hook really printed; that test \
         fails when this file and the hook disagree (`MIGCAGE_BLESS=1 cargo test --test \
         bad_input` rewrites it).\n\n\
         Each case runs the real `migcage hook prestart` with the input below (the state on \
         stdin, the bundle, the simulated host, the migcage config); cases marked *runc* also \
         start a real runc container with it, which must not start. In every case the hook exits \
         non-zero, prints exactly one line on stderr starting with `migcage:` and nothing on \
         stdout, and leaves nothing on the host: no mount, no device node in the container's \
         rootfs, no cgroup, no device rule granted, no new cgroup device eBPF program, and no lease \
         (a hook that fails after taking one gives it back before it exits).\n\n\
         In the messages, `$SIM` is the simulated host's root, `$BUNDLE` the bundle, `$TMP` a \
         scratch directory of the case, `$ID` the container id and `$PID` the container's \
         process.\n",
    );
    let mut group = "";
    for (c, msg) in rows {
        if c.group != group {
            group = c.group;
            write!(
                s,
                "\n## {group}\n\n| Case | Input | Message |\n|---|---|---|\n"
            )
            .unwrap();
        }
        let runc = if c.runc { " (*runc*)" } else { "" };
        writeln!(
            s,
            "| `{}`{runc} | {} | {} |",
            c.name,
            c.what.replace('|', "\\|"),
            cell(msg)
        )
        .unwrap();
    }
    s
}

/// A message as a table cell: `|` escaped, and `<` so that nothing reads as HTML.
fn cell(msg: &str) -> String {
    msg.replace('|', "\\|").replace('<', "&lt;")
}

/// Start a real runc container (cgroup v1) with the case's bundle: it must not start, and
/// runc's error must carry the hook's line.
fn run_in_runc(c: &Ctx, want: &str) {
    let id = format!("{}-runc", c.id);
    let mut b = c.bundle.config.clone();
    b["process"]["args"] = json!(["sh", "-c", "echo STARTED"]);
    b["hooks"]["prestart"][0]["env"] = json!([format!("MIGCAGE_CONFIG={}", c.config.display())]);
    std::fs::write(
        c.bundle.path().join("config.json"),
        serde_json::to_vec_pretty(&b).unwrap(),
    )
    .unwrap();
    let prelude = c
        .prelude
        .as_ref()
        .map(|p| format!("{p} && "))
        .unwrap_or_default();
    let out = Command::new("timeout")
        .args([
            "60",
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(format!(
            "{prelude}exec runc run --bundle {} {id}",
            c.bundle.path().display()
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new("runc").args(["delete", "-f", &id]).output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).replace("\\\"", "\"");
    assert!(!out.status.success(), "{id}: runc started the container");
    assert!(
        !stdout.contains("STARTED"),
        "{id}: the container's process ran"
    );
    assert!(
        stderr.contains("migcage: ") && stderr.contains(want),
        "{id}: runc's error lacks the hook's line ({want:?}): {stderr}"
    );
    let cg = common::cgroups_named(&id);
    assert!(cg.is_empty(), "{id}: cgroups left: {cg:?}");
}

#[test]
fn every_bad_input_fails_with_one_line_and_leaves_nothing() {
    let test = "every_bad_input_fails_with_one_line_and_leaves_nothing";
    if common::skip_unless(
        common::is_root(),
        test,
        "needs root (mknod for the simulated host, mount namespaces, cgroups, runc)",
    ) {
        return;
    }
    if common::skip_unless(
        Path::new(DEVICES_V1).join("devices.allow").exists(),
        test,
        "needs the cgroup v1 devices controller at /sys/fs/cgroup/devices (a hybrid or v1 host, as CI)",
    ) {
        return;
    }
    for cmd in ["runc", "busybox", "unshare", "bpftool"] {
        if common::skip_unless(
            common::have(cmd),
            test,
            &format!("{cmd} is not installed (scripts/deps.sh installs it)"),
        ) {
            return;
        }
    }
    let scratch = tempfile::Builder::new()
        .prefix("migcage-bad-input-")
        .tempdir()
        .unwrap();
    let all = cases();
    let needed: BTreeSet<Host> = all.iter().map(|c| c.host).collect();
    let hosts = make_hosts(&needed, scratch.path());
    let bpf_before = common::device_progs();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for case in &all {
        let (host, listing) = &hosts[&case.host];
        let bundle = Bundle::new(host, &[], "true");
        let mut ctx = Ctx {
            host,
            listing,
            id: common::unique(&format!("bi-{}", case.name)),
            holder: Holder::new(&bundle.path().join("rootfs")),
            bundle,
            stdin: None,
            state_bundle: None,
            raw_spec: None,
            no_spec: false,
            config: host.config(),
            prelude: None,
            scratch: tempfile::Builder::new()
                .prefix("migcage-case-")
                .tempdir()
                .unwrap(),
        };
        (case.setup)(&mut ctx);
        let r = run_hook(&ctx);
        let lines: Vec<&str> = r.stderr.lines().collect();
        let line = lines.first().copied().unwrap_or_default();
        let mut problems = Vec::new();
        if r.code == Some(0) || r.code.is_none() {
            problems.push(format!("exit {:?}, want a non-zero exit code", r.code));
        }
        if lines.len() != 1 {
            problems.push(format!("{} lines on stderr, want one", lines.len()));
        }
        if !line.starts_with("migcage: ") {
            problems.push("the line does not start with \"migcage: \"".into());
        }
        if !line.contains(case.want) {
            problems.push(format!("the line lacks {:?}", case.want));
        }
        if !r.stdout.is_empty() {
            problems.push(format!("stdout is not empty: {:?}", r.stdout));
        }
        if r.took > Duration::from_secs(10) {
            problems.push(format!("took {:?}", r.took));
        }
        // Nothing left: mounts (the host's namespace), nodes in the rootfs, cgroups, leases.
        let mounts =
            common::mounts_under(&[host.dir.path(), ctx.bundle.path(), ctx.scratch.path()]);
        if !mounts.is_empty() {
            problems.push(format!("mounts left: {mounts:?}"));
        }
        let nodes: Vec<String> = std::fs::read_dir(ctx.bundle.path().join("rootfs/dev"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !nodes.is_empty() {
            problems.push(format!("left in the rootfs's /dev: {nodes:?}"));
        }
        let cg = common::cgroups_named(&ctx.id);
        if !cg.is_empty() {
            problems.push(format!("cgroups left: {cg:?}"));
        }
        let granted = ctx.holder.granted();
        if !granted.trim().is_empty() {
            problems.push(format!("device rules granted: {granted:?}"));
        }
        if problems.is_empty() && case.runc {
            run_in_runc(&ctx, case.want);
        }
        // Leases: a failed hook gives back what it took at once, while the container's init
        // still lives (not only once the runtime has killed it and the lease is stale).
        let state_dir = state_dir_of(&ctx.config);
        let held = leases_of(&state_dir, &ctx.id, false);
        ctx.holder.stop();
        let live = leases_of(&state_dir, &ctx.id, true);
        if !live.is_empty() {
            problems.push(format!("live leases left: {live:?}"));
        }
        if !held.is_empty() {
            problems.push(format!("the failed hook kept its leases: {held:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({}): {}\n    stderr: {:?}",
                case.name,
                case.what,
                problems.join("; "),
                r.stderr
            ));
        }
        rows.push((case, normalized(&ctx, line)));
    }
    let leaked = common::leaked_device_progs(&bpf_before, 10);
    assert!(
        leaked.is_empty(),
        "cgroup device eBPF programs left: {leaked:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n  {}",
        failures.len(),
        all.len(),
        failures.join("\n  ")
    );

    let doc = render_doc(&rows);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bad-input.md");
    if std::env::var_os("MIGCAGE_BLESS").is_some() {
        std::fs::write(&path, &doc).unwrap();
        eprintln!("wrote {}", path.display());
    } else {
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        if on_disk != doc {
            let first = on_disk
                .lines()
                .zip(doc.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(on_disk.lines().count().min(doc.lines().count()));
            panic!(
                "docs/bad-input.md does not match the hook's messages (first difference at line {}: {:?}); rewrite it with MIGCAGE_BLESS=1 cargo test --test bad_input",
                first + 1,
                doc.lines().nth(first)
            );
        }
    }
}
