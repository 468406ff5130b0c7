//! Shared pieces of the end-to-end tests: simulated hosts, busybox bundles, runtimes in each
//! cgroup mode, and the isolation probe that runs inside the container.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

pub mod configure;
pub mod driver;
pub mod lab;
pub mod wrapper;

pub const MIGCAGE: &str = env!("CARGO_BIN_EXE_migcage");

/// Say that a test (or one mode of it) does not run here, and why: `line` is `NAME: REASON`.
///
/// The line goes straight to this process's stderr, past `cargo test`'s output capture, so a
/// skip is always visible in the test command's output, and, when `MIGCAGE_SKIP_LOG` names a
/// file, it is appended there too: `scripts/test.sh` fails on every logged skip that is not on
/// its allow-list (`tests/skips.allow`). A skipped test still reports `ok` to libtest, which is
/// why the list, not the pass count, is what says whether everything ran.
pub fn skip(line: &str) {
    use std::io::Write;
    let text = format!("SKIP {line}\n");
    let _ = std::io::stderr().write_all(text.as_bytes());
    if let Some(log) = std::env::var_os("MIGCAGE_SKIP_LOG").filter(|v| !v.is_empty()) {
        // O_APPEND: each line is one write, so parallel tests do not interleave.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log);
        if let Ok(mut f) = file {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// The running test's name (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string()
}

/// Why a test of the debug-only fault points cannot run ([`skip_unless`] with
/// `migcage::faultpoint::ENABLED`).
pub const FAULT_POINTS_OUT: &str =
    "fault points are compiled out of builds without debug assertions";

/// [`skip`] with `test: why` when `ok` is false; returns true when the caller must return.
/// CI runs as root with every runtime installed, so there these never skip.
pub fn skip_unless(ok: bool, test: &str, why: &str) -> bool {
    if !ok {
        skip(&format!("{test}: {why}"));
    }
    !ok
}

/// Whether this process has CAP_SYS_RESOURCE in its effective set (bit 24 of `CapEff`).
pub fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A unique name for a container or directory in this test process.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A simulated host made by `migcage simulate`.
pub struct SimHost {
    pub dir: tempfile::TempDir,
    pub topology: String,
}

impl SimHost {
    pub fn new(topology: &str) -> SimHost {
        let dir = tempfile::Builder::new()
            .prefix("migcage-sim-")
            .tempdir()
            .unwrap();
        let out = Command::new(MIGCAGE)
            .args(["simulate", "--topology", topology, "--root"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "simulate {topology}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SimHost {
            dir,
            topology: topology.to_string(),
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn dev(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    /// `migcage list --json` of this host.
    pub fn list(&self) -> Value {
        let out = Command::new(MIGCAGE)
            .arg("--config")
            .arg(self.config())
            .args(["list", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `migcage cdi generate ARGS` on this host, which must succeed.
    pub fn cdi_generate(&self, args: &[&str]) {
        let out = Command::new(MIGCAGE)
            .arg("--config")
            .arg(self.config())
            .args(["cdi", "generate"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cdi generate {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// No MIG device of this host is leased (`list --json`): what every container's poststop
    /// must leave.
    pub fn assert_no_leases(&self, ctx: &str) {
        let after = self.list();
        for g in after["gpus"].as_array().unwrap() {
            for m in g["mig_devices"].as_array().unwrap() {
                assert_eq!(
                    m["leases"],
                    serde_json::json!([]),
                    "{ctx}: {} left leased",
                    m["index"]
                );
            }
        }
    }

    /// Every device node of the host: path relative to dev/ -> (major, minor).
    pub fn all_nodes(&self) -> BTreeMap<String, (u32, u32)> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mut out = BTreeMap::new();
        for sub in ["", "nvidia-caps"] {
            let dir = self.dev().join(sub);
            for e in std::fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let m = std::fs::symlink_metadata(e.path()).unwrap();
                if m.file_type().is_char_device() {
                    let rel = Path::new(sub).join(e.file_name()).display().to_string();
                    let rdev = m.rdev();
                    out.insert(
                        rel,
                        (
                            nix::sys::stat::major(rdev) as u32,
                            nix::sys::stat::minor(rdev) as u32,
                        ),
                    );
                }
            }
        }
        out
    }
}

/// The OCI runtime and cgroup mode a container runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    RuncV1,
    RuncV2,
    CrunV1,
    /// crun on a private cgroup2 mount. It needs CAP_SYS_RESOURCE (crun raises RLIMIT_MEMLOCK
    /// before loading its eBPF program), which the hybrid machines this suite runs on do not
    /// grant. Its tests are `#[ignore]`d, named `*_crun_cgroup_v2`, and tests/vm.rs runs them in
    /// the systemd VM, where root has every capability; elsewhere the mode is unavailable, said
    /// by [`skip`].
    CrunV2,
}

/// Shell that makes /sys/fs/cgroup the unified hierarchy in the test's private mount namespace:
/// cgroup2 mounted there on a hybrid host; on a pure cgroup v2 host (the systemd VM) it already
/// is, and mounting it again over itself fails with EBUSY.
const UNIFIED: &str = "{ [ \"$(stat -f -c %T /sys/fs/cgroup)\" = cgroup2fs ] || mount -t cgroup2 none /sys/fs/cgroup; } && ";

impl Mode {
    /// Every mode but [`Mode::CrunV2`]: what tests looping over modes run on the hybrid hosts CI
    /// runs on. Each such test has a `*_crun_cgroup_v2` twin, `#[ignore]`d here, that tests/vm.rs
    /// runs in the systemd VM.
    pub const OUTSIDE_VM: [Mode; 3] = [Mode::RuncV1, Mode::RuncV2, Mode::CrunV1];

    pub fn runtime(self) -> &'static str {
        match self {
            Mode::RuncV1 | Mode::RuncV2 => "runc",
            Mode::CrunV1 | Mode::CrunV2 => "crun",
        }
    }

    pub fn is_crun(self) -> bool {
        self.runtime() == "crun"
    }

    /// Whether this machine can run the mode; the reason when not.
    pub fn unavailable(self) -> Option<String> {
        if !is_root() {
            return Some("needs root (runtimes, mknod, cgroups)".into());
        }
        if self == Mode::CrunV2 && !has_cap_sys_resource() {
            return Some(
                "crun on cgroup v2 needs CAP_SYS_RESOURCE to raise RLIMIT_MEMLOCK, not granted here"
                    .into(),
            );
        }
        for cmd in [self.runtime(), "busybox", "unshare"] {
            if !have(cmd) {
                return Some(format!(
                    "{cmd} is not installed (scripts/deps.sh installs it)"
                ));
            }
        }
        None
    }

    /// The shell command that runs bundle `b` as container `id` in this mode.
    fn command(self, bundle: &Path, id: &str) -> String {
        let b = bundle.display();
        match self {
            // This host's own hierarchy (hybrid: devices on v1).
            Mode::RuncV1 => format!("exec runc run --bundle {b} {id}"),
            // A private mount namespace with cgroup2 on /sys/fs/cgroup: runc goes unified and
            // attaches its eBPF device program.
            Mode::RuncV2 => format!("{UNIFIED}exec runc run --bundle {b} {id}"),
            // crun refuses hybrid hosts: hide the unified mount so that it runs as pure v1.
            Mode::CrunV1 => {
                format!("umount /sys/fs/cgroup/unified && exec crun run --bundle {b} {id}")
            }
            Mode::CrunV2 => format!("{UNIFIED}exec crun run --bundle {b} {id}"),
        }
    }
}

impl Mode {
    /// Shell that gives the test's private mount namespace this mode's cgroup view, to put in
    /// front of runtime commands (empty, or ending in `&&`): what [`Mode::command`] does before
    /// its `run`.
    pub fn prelude(self) -> &'static str {
        match self {
            Mode::RuncV1 => "",
            Mode::RuncV2 | Mode::CrunV2 => UNIFIED,
            Mode::CrunV1 => "umount /sys/fs/cgroup/unified && ",
        }
    }
}

/// Run `script` (shell, driving container `id` of `bundle`) in a private mount namespace set up
/// for `mode`, then check, as [`run`] does, that no mount or cgroup is left on the host.
pub fn run_script(mode: Mode, bundle: &Bundle, host: &SimHost, id: &str, script: &str) -> Run {
    let output = Command::new("timeout")
        .args([
            "60",
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(format!("{}{script}", mode.prelude()))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = Command::new(mode.runtime())
        .args(["delete", "-f", id])
        .output();
    let left = mounts_under(&[bundle.path(), host.dir.path()]);
    assert!(
        left.is_empty(),
        "{mode:?} {id}: mounts left on the host: {left:?}"
    );
    let cg = cgroups_named(id);
    assert!(
        cg.is_empty(),
        "{mode:?} {id}: cgroups left on the host: {cg:?}"
    );
    Run {
        id: id.to_string(),
        output,
    }
}

/// A busybox bundle.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

/// A probe run inside the container: lists the GPU nodes it has and tries to open every node of
/// the host (bind-mounted read-only on /hostdev): ENXIO means the cgroup let it through (no
/// driver behind a simulated node), EPERM means the cgroup refused it.
pub const PROBE: &str = r#"
probe() { out=$(cat "$1" 2>&1 </dev/null); case "$out" in
  *"No such device or address"*) r=ENXIO;; *"Operation not permitted"*) r=EPERM;;
  *"No such file"*) r=ENOENT;; *"Permission denied"*) r=EACCES;; *) r="OTHER";; esac; echo "OPEN $1 $r"; }
for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -e "$f" ] && [ ! -d "$f" ] && stat -c 'NODE %n %t:%T %a' "$f"; done
for f in /hostdev/nvidia* /hostdev/nvidia-caps/*; do [ -c "$f" ] && probe "$f"; done
for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -c "$f" ] && probe "$f"; done
[ -d /proc/driver/nvidia/gpus ] && for g in /proc/driver/nvidia/gpus/*; do echo "GPU ${g##*/}"; done
[ -d /proc/driver/nvidia/capabilities ] && find /proc/driver/nvidia/capabilities -name access | sed 's/^/CAP /'
[ -f /proc/driver/nvidia/params ] && grep ModifyDeviceFiles /proc/driver/nvidia/params | sed 's/^/PARAM /'
echo PROBE-DONE
"#;

impl Bundle {
    /// A busybox container running `script`, with the hook at `stage` using `host`'s config.
    pub fn new(host: &SimHost, env: &[&str], script: &str) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("migcage-bundle-")
            .tempdir()
            .unwrap();
        busybox_rootfs(&dir.path().join("rootfs"));
        let mut env_all = vec!["PATH=/bin".to_string()];
        env_all.extend(env.iter().map(|s| s.to_string()));
        let config = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["sh", "-c", script],
                "env": env_all,
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": false},
            "hostname": "migcage-test",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/hostdev", "type": "bind", "source": host.dev().display().to_string(), "options": ["rbind", "ro"]}
            ],
            "hooks": {
                "prestart": [{
                    "path": MIGCAGE,
                    "args": ["migcage", "hook", "prestart"],
                    "env": [format!("MIGCAGE_CONFIG={}", host.config().display())]
                }]
            },
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}],
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
            }
        });
        let b = Bundle { dir, config };
        b.write();
        b
    }

    pub fn write(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub fn which(cmd: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// What a container run left and printed.
pub struct Run {
    pub id: String,
    pub output: Output,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.output.status.success()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// `NODE` lines: container path -> "major:minor mode" (major/minor in hex as busybox prints).
    pub fn nodes(&self) -> BTreeMap<String, (u32, u32, String)> {
        self.stdout()
            .lines()
            .filter_map(|l| l.strip_prefix("NODE "))
            .map(|l| {
                let mut it = l.split_whitespace();
                let path = it.next().unwrap().to_string();
                let (ma, mi) = it.next().unwrap().split_once(':').unwrap();
                let mode = it.next().unwrap().to_string();
                (
                    path,
                    (
                        u32::from_str_radix(ma, 16).unwrap(),
                        u32::from_str_radix(mi, 16).unwrap(),
                        mode,
                    ),
                )
            })
            .collect()
    }

    /// `OPEN` lines: path -> ENXIO / EPERM / ENOENT / EACCES / OTHER.
    pub fn opens(&self) -> BTreeMap<String, String> {
        self.stdout()
            .lines()
            .filter_map(|l| l.strip_prefix("OPEN "))
            .map(|l| {
                let (p, r) = l.rsplit_once(' ').unwrap();
                (p.to_string(), r.to_string())
            })
            .collect()
    }

    pub fn prefixed(&self, prefix: &str) -> Vec<String> {
        self.stdout()
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(str::to_string)
            .collect()
    }
}

/// Mount points under any of `dirs` in this process's mount namespace.
pub fn mounts_under(dirs: &[&Path]) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|mp| {
            dirs.iter()
                .any(|d| mp.starts_with(&d.display().to_string()))
        })
        .collect()
}

/// Cgroup directories named `id` in any hierarchy of the host.
pub fn cgroups_named(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for candidate in [e.path().join(id), e.path().join("system.slice").join(id)] {
            if candidate.exists() {
                out.push(candidate);
            }
        }
    }
    out
}

/// Run the bundle in `mode` and check the host is left clean afterwards.
pub fn run(mode: Mode, bundle: &Bundle, host: &SimHost) -> Run {
    let id = unique("mc");
    let output = Command::new("timeout")
        .args([
            "60",
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(mode.command(bundle.path(), &id))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    // `run` removes the container when it exits; make sure even after a failed start.
    let _ = Command::new(mode.runtime())
        .args(["delete", "-f", &id])
        .output();
    let left = mounts_under(&[bundle.path(), host.dir.path()]);
    assert!(
        left.is_empty(),
        "{mode:?} {id}: mounts left on the host: {left:?}"
    );
    let cg = cgroups_named(&id);
    assert!(
        cg.is_empty(),
        "{mode:?} {id}: cgroups left on the host: {cg:?}"
    );
    Run { id, output }
}

/// A busybox root filesystem in `root`: the static busybox with the applets the probe uses, and
/// the directories containers mount on (`/hostdev` for the host's nodes).
pub fn busybox_rootfs(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(which("busybox"), root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "cat", "ls", "stat", "find", "echo", "sed", "grep", "sleep", "true", "env",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    for d in ["dev", "proc", "sys", "tmp", "etc", "hostdev"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
}

/// `dir/busybox.tar`: a busybox root filesystem as one tar, what `docker import` and
/// `podman import` take.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let root = dir.join("busybox-rootfs");
    busybox_rootfs(&root);
    let tar = dir.join("busybox.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tar
}

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `dir/busybox-oci.tar`: an OCI image archive (image layout with one uncompressed layer, the
/// busybox tar) whose index names the image `name`: what `ctr image import` takes (it does not
/// take a plain root filesystem tar).
pub fn busybox_oci_archive(dir: &Path, name: &str) -> PathBuf {
    let layer = busybox_tar(dir);
    oci_archive(dir, name, &layer, &["PATH=/bin"], &["sh"])
}

/// `dir/<name's last part>-oci.tar`: an OCI image archive of the root filesystem tar `layer`,
/// with `env` and `cmd` in its config, named `name` in its index.
pub fn oci_archive(dir: &Path, name: &str, layer: &Path, env: &[&str], cmd: &[&str]) -> PathBuf {
    let stem: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = &dir.join(format!("oci-{stem}"));
    let layout = dir.join("oci-layout-dir");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    // Each blob under its digest; returns (digest, size).
    let blob = |path: &Path| -> (String, u64) {
        let digest = sha256_file(path);
        let size = std::fs::metadata(path).unwrap().len();
        std::fs::copy(path, blobs.join(&digest)).unwrap();
        (digest, size)
    };
    let json_blob = |name: &str, value: &Value| -> (String, u64) {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_vec(value).unwrap()).unwrap();
        blob(&p)
    };
    let (layer_digest, layer_size) = blob(layer);
    let (config_digest, config_size) = json_blob(
        "oci-config.json",
        &json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": env, "Cmd": cmd},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]}
        }),
    );
    let (manifest_digest, manifest_size) = json_blob(
        "oci-manifest.json",
        &json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{config_digest}"), "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": format!("sha256:{layer_digest}"), "size": layer_size}]
        }),
    );
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
                           "annotations": {"org.opencontainers.image.ref.name": name}}]
        }))
        .unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let archive = dir.join(format!("{stem}-oci.tar"));
    let out = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .args(["oci-layout", "index.json", "blobs"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    archive
}

/// `migcage list --json` node entries as container path -> (major, minor, mode as stat prints).
fn listed_nodes(list: &[Value]) -> BTreeMap<String, (u32, u32, String)> {
    list.iter()
        .map(|n| {
            let mode = u32::from_str_radix(n["mode"].as_str().unwrap(), 8).unwrap();
            (
                n["path"].as_str().unwrap().to_string(),
                (
                    n["major"].as_u64().unwrap() as u32,
                    n["minor"].as_u64().unwrap() as u32,
                    format!("{mode:o}"),
                ),
            )
        })
        .collect()
}

/// What a container given the devices `names` (GPU indexes and MIG `g:m`, as `list --json` names
/// them) must see: its nodes, its `/proc/driver/nvidia/gpus` entries and capability files.
pub struct Sees {
    pub nodes: BTreeMap<String, (u32, u32, String)>,
    pub gpus: std::collections::BTreeSet<String>,
    pub caps: std::collections::BTreeSet<String>,
}

pub fn sees(listing: &Value, names: &[&str]) -> Sees {
    let mut e = Sees {
        nodes: BTreeMap::new(),
        gpus: Default::default(),
        caps: Default::default(),
    };
    if names.is_empty() {
        return e;
    }
    e.nodes
        .extend(listed_nodes(listing["common_nodes"].as_array().unwrap()));
    for g in listing["gpus"].as_array().unwrap() {
        let minor = g["minor"].as_u64().unwrap();
        let bus = migcage_topology::proc_bus_id(g["pci_bus_id"].as_str().unwrap());
        if names.contains(&g["index"].to_string().as_str()) {
            e.nodes.extend(listed_nodes(g["nodes"].as_array().unwrap()));
            e.gpus.insert(bus.clone());
        }
        for m in g["mig_devices"].as_array().unwrap() {
            if names.contains(&m["index"].as_str().unwrap()) {
                e.nodes.extend(listed_nodes(m["nodes"].as_array().unwrap()));
                e.gpus.insert(bus.clone());
                let (gi, ci) = (
                    m["gpu_instance_id"].as_u64().unwrap(),
                    m["compute_instance_id"].as_u64().unwrap(),
                );
                let base = format!("/proc/driver/nvidia/capabilities/gpu{minor}/mig/gi{gi}");
                e.caps.insert(format!("{base}/access"));
                e.caps.insert(format!("{base}/ci{ci}/access"));
            }
        }
    }
    e
}

/// The `PROBE`'s output in `run` proves the container has exactly the devices `names` of `host`:
/// their nodes with the driver's numbers and modes, ENXIO opening them (the cgroup lets them
/// through; no driver behind a simulated node), EPERM opening every other node of the host
/// (bind-mounted on /hostdev), and a `/proc/driver/nvidia` with only their entries.
pub fn assert_sees_exactly(run: &Run, host: &SimHost, listing: &Value, names: &[&str], ctx: &str) {
    assert!(
        run.stdout().contains("PROBE-DONE"),
        "{ctx}: the probe did not finish: stdout {} stderr {}",
        run.stdout(),
        run.stderr()
    );
    let want = sees(listing, names);
    assert_eq!(run.nodes(), want.nodes, "{ctx}: device nodes");
    let opens = run.opens();
    let allowed: std::collections::BTreeSet<(u32, u32)> =
        want.nodes.values().map(|(a, b, _)| (*a, *b)).collect();
    for (rel, (major, minor)) in host.all_nodes() {
        let path = format!("/hostdev/{rel}");
        let result = if allowed.contains(&(major, minor)) {
            "ENXIO"
        } else {
            "EPERM"
        };
        assert_eq!(
            opens.get(&path).map(String::as_str),
            Some(result),
            "{ctx}: open {path} ({major}:{minor})"
        );
    }
    for path in want.nodes.keys() {
        assert_eq!(
            opens.get(path).map(String::as_str),
            Some("ENXIO"),
            "{ctx}: open {path}"
        );
    }
    let gpus: std::collections::BTreeSet<String> = run.prefixed("GPU ").into_iter().collect();
    assert_eq!(gpus, want.gpus, "{ctx}: /proc/driver/nvidia/gpus");
    let caps: std::collections::BTreeSet<String> = run.prefixed("CAP ").into_iter().collect();
    assert_eq!(caps, want.caps, "{ctx}: /proc/driver/nvidia/capabilities");
    let params = run.prefixed("PARAM ");
    if names.is_empty() {
        assert!(
            params.is_empty(),
            "{ctx}: untouched container has a driver procfs"
        );
    } else {
        assert_eq!(params, ["ModifyDeviceFiles: 0"], "{ctx}: params");
    }
}

/// A bundle edit asking for devices through `NVIDIA_VISIBLE_DEVICES=value`.
pub fn visible_devices(value: &str) -> impl Fn(&mut Bundle) + '_ {
    move |b: &mut Bundle| {
        b.config["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!(format!("NVIDIA_VISIBLE_DEVICES={value}")));
    }
}

/// `index` (`0:1`, `0`) -> UUID in `list --json`.
pub fn uuid_of(listing: &Value, index: &str) -> String {
    for g in listing["gpus"].as_array().unwrap() {
        if g["index"].as_u64().map(|i| i.to_string()).as_deref() == Some(index) {
            return g["uuid"].as_str().unwrap().to_string();
        }
        for m in g["mig_devices"].as_array().unwrap() {
            if m["index"].as_str() == Some(index) {
                return m["uuid"].as_str().unwrap().to_string();
            }
        }
    }
    panic!("no device {index} in the listing")
}

/// Where scripts/engine-releases.sh unpacks a Debian suite's engines (trixie: containerd 1.7 and
/// Docker 26; sid: containerd 2.x), not installed.
pub fn engine_release(suite: &str) -> PathBuf {
    std::env::var_os("MIGCAGE_ENGINE_RELEASES")
        .map_or_else(|| "/var/cache/migcage-engines".into(), PathBuf::from)
        .join(suite)
}

/// Whether a program is installed; prints the skip line naming the package when it is not.
pub fn need_programs(test: &str, programs: &[(&str, &str)]) -> bool {
    if !is_root() {
        skip(&format!(
            "{test}: needs root (daemons, mknod, mounts, cgroups)"
        ));
        return false;
    }
    for (cmd, package) in programs {
        if !have(cmd) {
            skip(&format!(
                "{test}: {cmd} is not installed (scripts/deps.sh installs {package})"
            ));
            return false;
        }
    }
    true
}

/// Wait until `ready` holds, polling every 100 ms for at most `secs`.
pub fn wait_for(secs: u64, mut ready: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        if ready() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ready()
}

/// The ids of the cgroup device eBPF programs loaded on the host (`bpftool prog show`).
pub fn device_progs() -> std::collections::BTreeSet<u64> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .unwrap();
    assert!(out.status.success(), "bpftool prog show failed");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(json!([]));
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["type"] == "cgroup_device")
                .filter_map(|p| p["id"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// Cgroup device programs loaded since `before` that stay for `secs` (a container of another
/// test may hold one for a moment: those go with it).
pub fn leaked_device_progs(before: &std::collections::BTreeSet<u64>, secs: u64) -> Vec<u64> {
    let mut new = Vec::new();
    wait_for(secs, || {
        new = device_progs().difference(before).copied().collect();
        new.is_empty()
    });
    new
}

/// The MIG instances leased to container `id` in `state_dir` whose holder process still lives.
pub fn live_leases(state_dir: &Path, id: &str) -> Vec<String> {
    let all = migcage::host::lease::Store::new(state_dir)
        .read()
        .unwrap_or_else(|e| panic!("lease store {}: {e}", state_dir.display()));
    migcage::host::lease::partition_live(all, Path::new("/proc"))
        .0
        .into_iter()
        .filter(|l| l.container == id)
        .map(|l| l.uuid)
        .collect()
}

/// A process standing in for a container's init, for tests that run `migcage hook` directly: in
/// a mount namespace of its own and, on a host whose devices are on cgroup v1, in a devices
/// cgroup of its own that denies everything (what a runtime gives a container). Killed, and its
/// cgroup removed, when dropped.
pub struct FakeInit {
    child: std::process::Child,
    pub pid: i32,
    /// Its devices cgroup (v1), when the host has that hierarchy.
    pub cgroup: Option<PathBuf>,
}

impl FakeInit {
    /// `sh -c script` runs in the new mount namespace before it sleeps.
    pub fn new(script: &str) -> FakeInit {
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!("{script} exec sleep 600"))
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(
            wait_for(5, || std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c == "sleep\n")),
            "the fake init did not start"
        );
        let devices = Path::new("/sys/fs/cgroup/devices");
        let cgroup = devices.join("cgroup.procs").exists().then(|| {
            let dir = devices.join(unique("migcage-fake-init"));
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("devices.deny"), "a").unwrap();
            std::fs::write(dir.join("cgroup.procs"), pid.to_string()).unwrap();
            dir
        });
        FakeInit { child, pid, cgroup }
    }
}

impl Drop for FakeInit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.cgroup {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
