//! Shared pieces of the end-to-end tests: simulated hosts, busybox bundles, runtimes in each
//! cgroup mode, and the isolation probe that runs inside the container.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

pub const MIGCAGE: &str = env!("CARGO_BIN_EXE_migcage");

/// Print why a test does not run here and return true (the caller returns). CI runs as root
/// with every runtime installed, so there these never skip.
pub fn skip_unless(ok: bool, test: &str, why: &str) -> bool {
    if !ok {
        eprintln!("SKIP {test}: {why}");
    }
    !ok
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
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::RuncV1, Mode::RuncV2, Mode::CrunV1];

    pub fn runtime(self) -> &'static str {
        match self {
            Mode::RuncV1 | Mode::RuncV2 => "runc",
            Mode::CrunV1 => "crun",
        }
    }

    /// Whether this machine can run the mode; the reason when not.
    pub fn unavailable(self) -> Option<String> {
        if !is_root() {
            return Some("needs root (runtimes, mknod, cgroups)".into());
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
            Mode::RuncV2 => {
                format!("mount -t cgroup2 none /sys/fs/cgroup && exec runc run --bundle {b} {id}")
            }
            // crun refuses hybrid hosts: hide the unified mount so that it runs as pure v1.
            Mode::CrunV1 => {
                format!("umount /sys/fs/cgroup/unified && exec crun run --bundle {b} {id}")
            }
        }
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
  *"No such file"*) r=ENOENT;; *) r="OTHER";; esac; echo "OPEN $1 $r"; }
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
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        let busybox = which("busybox");
        std::fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
        for applet in [
            "sh", "cat", "ls", "stat", "find", "echo", "sed", "grep", "sleep", "true",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        for d in ["dev", "proc", "sys", "tmp", "etc", "hostdev"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
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

    /// `OPEN` lines: path -> ENXIO / EPERM / ENOENT / OTHER.
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
