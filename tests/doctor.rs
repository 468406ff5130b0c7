//! `migcage doctor` on simulated hosts: a healthy one, and one broken in each way an admin meets
//! (made by editing a `migcage simulate` tree), plus the runtime, hooks.d and CDI findings read
//! from a scratch host root. Each test checks the exact line doctor prints for the break, that the
//! exit status says FAIL, and that a healthy host passes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{is_root, skip_unless, SimHost, MIGCAGE};
use migcage::config::Config;
use serde_json::Value;

/// What one doctor run printed.
struct Doctor {
    status: i32,
    stdout: String,
    /// From `--json`: (status, check, found, fix).
    checks: Vec<(String, String, String, String)>,
    elapsed: Duration,
}

impl Doctor {
    fn with(&self, status: &str, check: &str) -> Vec<&(String, String, String, String)> {
        self.checks
            .iter()
            .filter(|c| c.0 == status && c.1 == check)
            .collect()
    }

    /// The one check named `check`; panics (with the report) unless there is exactly one.
    fn one(&self, check: &str) -> &(String, String, String, String) {
        let found: Vec<_> = self.checks.iter().filter(|c| c.1 == check).collect();
        assert_eq!(found.len(), 1, "{check}: {}", self.stdout);
        found[0]
    }

    fn fails(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| c.0 == "FAIL")
            .map(|c| format!("{}: {}", c.1, c.2))
            .collect()
    }
}

/// Run doctor with `config` and host root `root` (no PATH: only `root`'s binary directories
/// count), once as text and once as JSON; check that both agree and that the text is one
/// `STATUS check: found; fix` line per check.
fn doctor(config: &Path, root: &Path) -> Doctor {
    doctor_with_path(config, root, "")
}

/// [`doctor`] with `path` as its PATH.
fn doctor_with_path(config: &Path, root: &Path, path: &str) -> Doctor {
    let run = |json: bool| {
        let mut c = Command::new(MIGCAGE);
        c.arg("--config")
            .arg(config)
            .arg("doctor")
            .arg("--host-root")
            .arg(root)
            .env("PATH", path)
            .env_remove("MIGCAGE_CONFIG");
        if json {
            c.arg("--json");
        }
        let start = Instant::now();
        let out = c.output().unwrap();
        (out, start.elapsed())
    };
    let (text, _) = run(false);
    let (json, elapsed) = run(true);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json: {e}: {}",
            String::from_utf8_lossy(&json.stdout)
        )
    });
    let checks: Vec<(String, String, String, String)> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap().to_string();
            (s("status"), s("check"), s("found"), s("fix"))
        })
        .collect();
    let stdout = String::from_utf8_lossy(&text.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), checks.len(), "{stdout}");
    for (line, (status, check, found, fix)) in lines.iter().zip(&checks) {
        let mut want = format!("{status} {check}: {found}");
        if !fix.is_empty() {
            want.push_str("; ");
            want.push_str(fix);
        }
        // The two runs differ only in how long NVML took.
        assert_eq!(without_timing(line), without_timing(&want));
        assert!(["OK", "WARN", "FAIL"].contains(&status.as_str()), "{line}");
    }
    let any_fail = checks.iter().any(|c| c.0 == "FAIL");
    assert_eq!(v["ok"], Value::Bool(!any_fail));
    assert_eq!(text.status.code(), json.status.code());
    let stderr = String::from_utf8_lossy(&text.stderr).into_owned();
    if any_fail {
        assert_eq!(text.status.code(), Some(1), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
        assert!(stderr.starts_with("migcage: doctor: "), "{stderr}");
    } else {
        assert_eq!(text.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(stderr.is_empty(), "{stderr}");
    }
    Doctor {
        status: text.status.code().unwrap_or(-1),
        stdout,
        checks,
        elapsed,
    }
}

/// `line` without the milliseconds of "loaded in N ms".
fn without_timing(line: &str) -> String {
    match line.split_once("loaded in ") {
        Some((a, b)) => format!("{a}loaded in _{}", &b[b.find(" ms").unwrap_or(0)..]),
        None => line.to_string(),
    }
}

fn skip(test: &str) -> bool {
    skip_unless(
        is_root(),
        test,
        "needs root: migcage simulate makes device nodes (CAP_MKNOD)",
    )
}

fn empty_root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("migcage-doctor-root-")
        .tempdir()
        .unwrap()
}

/// `migcage system create-dev-char-links` for `config`'s nodes into `<root>/dev/char`, the
/// /dev/char doctor checks under `--host-root root`.
fn link_nodes(config: &Path, root: &Path) {
    let out = Command::new(MIGCAGE)
        .arg("--config")
        .arg(config)
        .args(["system", "create-dev-char-links", "--dev-char-dir"])
        .arg(root.join("dev/char"))
        .env_remove("MIGCAGE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn load(host: &SimHost) -> Config {
    let path = host.config();
    Config::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap()
}

fn save(host: &SimHost, c: &Config) {
    std::fs::write(host.config(), toml::to_string_pretty(c).unwrap()).unwrap();
}

/// The caps node and mig-minors entry of MIG device 0:1 of the simulated host.
fn caps_node(host: &SimHost) -> (PathBuf, u32, u32) {
    let list = host.list();
    let m = &list["gpus"][0]["mig_devices"][1];
    let node = m["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["path"].as_str().unwrap().contains("nvidia-caps"))
        .unwrap();
    let rel = node["path"].as_str().unwrap().trim_start_matches("/dev/");
    (
        host.dev().join(rel),
        node["major"].as_u64().unwrap() as u32,
        node["minor"].as_u64().unwrap() as u32,
    )
}

fn mknod(path: &Path, major: u32, minor: u32) {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    mknod(
        path,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o444),
        makedev(major.into(), minor.into()),
    )
    .unwrap();
}

#[test]
fn healthy_hosts_pass() {
    if skip("healthy_hosts_pass") {
        return;
    }
    for topology in ["a100-7x1g", "two-gpus-one-mig", "a100-nomig", "h100-mixed"] {
        let host = SimHost::new(topology);
        let root = empty_root();
        // The links doctor checks are the host's /dev/char (here the host root's).
        link_nodes(&host.config(), root.path());
        let d = doctor(&host.config(), root.path());
        assert_eq!(d.status, 0, "{topology}: {}", d.stdout);
        assert!(d.fails().is_empty(), "{topology}: {:?}", d.fails());
        for check in [
            "config",
            "driver",
            "NVML",
            "inventory",
            "GPU nodes",
            "cgroup",
            "/dev/char links",
            "state dir",
            "log",
        ] {
            assert_eq!(d.one(check).0, "OK", "{topology} {check}: {}", d.stdout);
        }
        let list = host.list();
        for g in list["gpus"].as_array().unwrap() {
            let line = d.one(&format!("MIG mode (GPU {})", g["index"]));
            assert_eq!(line.0, "OK", "{}", d.stdout);
            let mig = g["mig_enabled"].as_bool().unwrap();
            assert!(
                line.2
                    .contains(if mig { "MIG enabled" } else { "MIG disabled" }),
                "{line:?}"
            );
            for m in g["mig_devices"].as_array().unwrap() {
                assert!(
                    line.2.contains(m["index"].as_str().unwrap()),
                    "{line:?} lacks {}",
                    m["index"]
                );
            }
        }
        // Distinct GI and CI access minors (two compute instances share their GI's node).
        let caps_nodes = list["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["mig_devices"].as_array().unwrap().clone())
            .flat_map(|m| [m["gi_caps_minor"].as_u64(), m["ci_caps_minor"].as_u64()])
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if caps_nodes > 0 {
            let caps = d.one("caps nodes");
            assert_eq!(caps.0, "OK");
            // Plus mig/config and mig/monitor.
            assert!(
                caps.2.starts_with(&format!("{} node(s)", caps_nodes + 2)),
                "{caps:?}"
            );
        }
        // Nothing is configured under the empty host root: the runtime lines say so, the
        // hooks.d line warns, and none of that fails.
        assert_eq!(d.one("hooks.d").0, "WARN");
        assert_eq!(
            d.one("runtimes").0,
            "WARN",
            "no runtime under an empty root"
        );
    }
}

#[test]
fn a_missing_caps_node_fails() {
    if skip("a_missing_caps_node_fails") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let (node, major, minor) = caps_node(&host);
    std::fs::remove_file(&node).unwrap();
    let d = doctor(&host.config(), empty_root().path());
    let fails = d.with("FAIL", "caps node");
    assert_eq!(fails.len(), 1, "{}", d.stdout);
    assert!(
        fails[0]
            .2
            .starts_with(&format!("{} (gpu0/gi", node.display()))
            && fails[0]
                .2
                .ends_with(&format!("access, {major}:{minor}) is missing")),
        "{:?}",
        fails[0]
    );
    assert!(
        fails[0]
            .3
            .contains(&format!("nvidia-modprobe -f -c {minor}")),
        "{:?}",
        fails[0]
    );
    // The other nodes are fine, and their /dev/char links are not blamed for the missing one.
    assert!(d.with("OK", "GPU nodes").len() == 1);
    assert!(d.with("OK", "caps nodes").is_empty());
}

#[test]
fn a_caps_node_with_the_wrong_number_or_type_fails() {
    if skip("a_caps_node_with_the_wrong_number_or_type_fails") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let (node, major, minor) = caps_node(&host);
    std::fs::remove_file(&node).unwrap();
    mknod(&node, major + 1, minor);
    let d = doctor(&host.config(), empty_root().path());
    let fails = d.with("FAIL", "caps node");
    assert_eq!(fails.len(), 1, "{}", d.stdout);
    assert!(
        fails[0].2.ends_with(&format!(
            "is char {}:{minor}, the driver says {major}:{minor}",
            major + 1
        )),
        "{:?}",
        fails[0]
    );
    assert!(fails[0]
        .3
        .starts_with(&format!("rm {} && ", node.display())));

    std::fs::remove_file(&node).unwrap();
    std::fs::write(&node, "not a node").unwrap();
    let d = doctor(&host.config(), empty_root().path());
    let fails = d.with("FAIL", "caps node");
    assert_eq!(fails.len(), 1, "{}", d.stdout);
    assert!(
        fails[0].2.ends_with(&format!(
            "is a regular file, not character device {major}:{minor}"
        )),
        "{:?}",
        fails[0]
    );
}

#[test]
fn a_missing_gpu_node_fails() {
    if skip("a_missing_gpu_node_fails") {
        return;
    }
    let host = SimHost::new("two-gpus-one-mig");
    std::fs::remove_file(host.dev().join("nvidia1")).unwrap();
    let d = doctor(&host.config(), empty_root().path());
    let fails = d.with("FAIL", "GPU node");
    assert_eq!(fails.len(), 1, "{}", d.stdout);
    assert!(fails[0].2.contains("nvidia1") && fails[0].2.ends_with("195:1) is missing"));
}

#[test]
fn no_driver_fails_and_skips_the_node_checks() {
    if skip("no_driver_fails_and_skips_the_node_checks") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    std::fs::remove_dir_all(host.dir.path().join("proc/driver/nvidia")).unwrap();
    let d = doctor(&host.config(), empty_root().path());
    let driver = d.one("driver");
    assert_eq!(driver.0, "FAIL");
    assert_eq!(
        driver.2,
        format!(
            "not loaded: {} is missing",
            host.dir.path().join("proc/driver/nvidia").display()
        )
    );
    assert!(driver.3.contains("modprobe nvidia"), "{driver:?}");
    assert_eq!(d.one("device nodes").0, "WARN");
    // NVML itself still answers (the simulated library does not need the procfs).
    assert_eq!(d.one("NVML").0, "OK");
    assert!(d.with("OK", "inventory").is_empty());
}

#[test]
fn a_wrong_nvml_library_fails() {
    if skip("a_wrong_nvml_library_fails") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let mut c = load(&host);
    c.nvml_library = host.dir.path().join("no/libnvidia-ml.so.1");
    save(&host, &c);
    let d = doctor(&host.config(), empty_root().path());
    let nvml = d.one("NVML");
    assert_eq!(nvml.0, "FAIL");
    assert!(
        nvml.2.starts_with(&format!(
            "cannot initialize NVML from {}",
            c.nvml_library.display()
        )),
        "{nvml:?}"
    );
    assert!(d.with("OK", "MIG mode (GPU 0)").is_empty());
    // The procfs side is still checked.
    assert_eq!(d.one("driver").0, "OK");
    assert_eq!(d.one("caps nodes").0, "OK");
}

#[test]
fn a_hanging_nvml_init_fails_within_the_timeout() {
    if skip("a_hanging_nvml_init_fails_within_the_timeout") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    // The simulated NVML reads its topology beside itself: make nvmlInit sleep for 60 s.
    let topo = host
        .dir
        .path()
        .join("usr/lib/x86_64-linux-gnu/nvidia-sim-topology.toml");
    let text = std::fs::read_to_string(&topo).unwrap();
    let mut doc: toml::Table = text.parse().unwrap();
    let faults = doc
        .entry("faults")
        .or_insert(toml::Value::Table(Default::default()));
    faults
        .as_table_mut()
        .unwrap()
        .insert("init_delay_ms".into(), toml::Value::Integer(60_000));
    std::fs::write(&topo, toml::to_string(&doc).unwrap()).unwrap();
    let mut c = load(&host);
    c.nvml_timeout_ms = 500;
    save(&host, &c);
    let d = doctor(&host.config(), empty_root().path());
    let nvml = d.one("NVML");
    assert_eq!(nvml.0, "FAIL");
    assert_eq!(
        nvml.2,
        format!(
            "{} did not answer within 500 ms (nvml_timeout_ms)",
            c.nvml_library.display()
        )
    );
    assert!(nvml.3.contains("nvidia-smi -pm 1"), "{nvml:?}");
    assert!(
        d.elapsed < Duration::from_secs(10),
        "doctor waited {:?} for a hanging NVML",
        d.elapsed
    );
    assert_eq!(d.one("caps nodes").0, "OK", "procfs checks still run");
}

#[test]
fn an_unwritable_state_dir_fails() {
    if skip("an_unwritable_state_dir_fails") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let blocker = host.dir.path().join("run-file");
    std::fs::write(&blocker, "a file where a directory should be").unwrap();
    let mut c = load(&host);
    c.state_dir = blocker.join("migcage");
    save(&host, &c);
    let d = doctor(&host.config(), empty_root().path());
    let state = d.one("state dir");
    assert_eq!(state.0, "FAIL");
    assert_eq!(
        state.2,
        format!(
            "{} (or a directory above it) is not a directory",
            c.state_dir.display()
        )
    );

    // A read-only mount: root may not write there either (checked by writing, not by mode).
    if !common::have("unshare") {
        common::skip("an_unwritable_state_dir_fails (read-only part): unshare is not installed");
        return;
    }
    let dir = host.dir.path().join("run/migcage");
    c.state_dir = dir.clone();
    save(&host, &c);
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec {MIGCAGE} --config {c} doctor --host-root /nonexistent",
            d = dir.display(),
            c = host.config().display()
        ))
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("state dir:"))
        .unwrap_or_default();
    assert!(
        line.starts_with(&format!(
            "FAIL state dir: cannot create a file in {}: Read-only file system",
            dir.display()
        )),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_caps_file_that_disagrees_with_mig_minors_fails() {
    if skip("a_caps_file_that_disagrees_with_mig_minors_fails") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let caps = host
        .dir
        .path()
        .join("proc/driver/nvidia/capabilities/gpu0/mig");
    let gi = std::fs::read_dir(&caps)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .min()
        .unwrap();
    let access = gi.join("access");
    let text = std::fs::read_to_string(&access).unwrap();
    let minor: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("DeviceFileMinor:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::fs::set_permissions(&access, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(
        &access,
        text.replace(
            &format!("DeviceFileMinor: {minor}"),
            &format!("DeviceFileMinor: {}", minor + 1000),
        ),
    )
    .unwrap();
    let d = doctor(&host.config(), empty_root().path());
    let table = d.with("FAIL", "caps table");
    assert_eq!(table.len(), 1, "{}", d.stdout);
    assert!(
        table[0].2.starts_with(&format!(
            "{} says DeviceFileMinor {} but ",
            access.display(),
            minor + 1000
        )) && table[0].2.contains(&format!("maps it to {minor}")),
        "{:?}",
        table[0]
    );
    // Discovery itself refuses the host too.
    assert_eq!(d.one("inventory").0, "FAIL");
}

#[test]
fn char_links_matter_only_under_systemd() {
    if skip("char_links_matter_only_under_systemd") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let (node, major, minor) = caps_node(&host);
    let root = empty_root();
    link_nodes(&host.config(), root.path());
    let link = root.path().join(format!("dev/char/{major}:{minor}"));
    std::fs::remove_file(&link).unwrap();
    let d = doctor(&host.config(), root.path());
    let line = d.one("/dev/char links");
    assert_eq!(line.0, "WARN", "{line:?}");
    assert!(
        line.2
            .contains(&format!("{} for {}", link.display(), node.display())),
        "{line:?}"
    );
    assert_eq!(d.status, 0);

    // systemd as init (sd_booted: /run/systemd/system exists): the daemon-reload pitfall.
    std::fs::create_dir_all(root.path().join("run/systemd/system")).unwrap();
    let d = doctor(&host.config(), root.path());
    let line = d.one("/dev/char links");
    assert_eq!(line.0, "FAIL", "{line:?}");
    assert!(line.2.starts_with("1 of "), "{line:?}");
    assert!(
        line.3.contains("daemon-reload")
            && line
                .3
                .contains(&format!("ln -s {} {}", node.display(), link.display()))
            && line.3.contains("migcage system create-dev-char-links"),
        "{line:?}"
    );
    assert!(d.one("cgroup").2.contains("systemd is init"));
}

#[test]
fn char_links_are_checked_in_the_dev_char_runc_reads_not_the_simulated_tree() {
    if skip("char_links_are_checked_in_the_dev_char_runc_reads_not_the_simulated_tree") {
        return;
    }
    // The simulated tree has every link in its own dev/char; the host root has none.
    let host = SimHost::new("a100-7x1g");
    assert!(host.dev().join("char").read_dir().unwrap().next().is_some());
    let root = empty_root();
    let host_char = root.path().join("dev/char");
    let d = doctor(&host.config(), root.path());
    let line = d.one("/dev/char links");
    assert_eq!(line.0, "WARN", "{line:?}");
    assert!(
        line.2.contains(&format!(
            "link in the /dev/char runc and systemd read (first: {}/",
            host_char.display()
        )),
        "{line:?}"
    );
    link_nodes(&host.config(), root.path());
    let d = doctor(&host.config(), root.path());
    let line = d.one("/dev/char links");
    assert_eq!(line.0, "OK", "{line:?}");
    assert!(
        line.2.contains(&format!(
            "in {} (the /dev/char runc and systemd read)",
            host_char.display()
        )),
        "{line:?}"
    );
}

#[test]
fn a_broken_config_file_is_reported_and_the_rest_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "driver_rot = \"/\"\n").unwrap();
    let d = doctor(&config, empty_root().path());
    let c = d.one("config");
    assert_eq!(c.0, "FAIL");
    assert!(
        c.2.contains(&config.display().to_string()) && c.2.contains("driver_rot"),
        "{c:?}"
    );
    // The defaults (a real host) were checked after it.
    assert!(d.checks.iter().any(|c| c.1 == "driver"));
    assert!(d.checks.iter().any(|c| c.1 == "state dir"));
}

/// An executable stand-in for a runtime binary under `root`.
fn fake_binary(root: &Path, rel: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn runtimes_and_hooks_d_as_configured() {
    if skip("runtimes_and_hooks_d_as_configured") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let root = empty_root();
    let r = root.path();
    for bin in [
        "usr/sbin/runc",
        "usr/bin/podman",
        "usr/bin/dockerd",
        "usr/bin/containerd",
        "usr/bin/crio",
    ] {
        fake_binary(r, bin);
    }
    let d = doctor(&host.config(), r);
    assert_eq!(d.one("runtimes").0, "OK");
    assert!(
        d.one("runtimes").2.contains("runc ("),
        "{:?}",
        d.one("runtimes")
    );
    assert_eq!(d.one("runtime runc").0, "OK");
    for (rt, target) in [
        ("docker", "docker"),
        ("podman", "podman"),
        ("containerd", "containerd"),
        ("cri-o", "crio"),
    ] {
        let line = d.one(&format!("runtime {rt}"));
        assert_eq!(line.0, "WARN", "{line:?}");
        assert!(
            line.3.contains(&format!("migcage configure {target}")),
            "{line:?}"
        );
    }

    // Configured: docker and containerd through migcage-runtime, podman and cri-o through the
    // hooks.d file (the repository's own, pointing at an executable migcage).
    write(
        r,
        "etc/docker/daemon.json",
        r#"{"runtimes": {"migcage": {"path": "/usr/bin/migcage-runtime"}}}"#,
    );
    write(
        r,
        "etc/containerd/config.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.migcage.options]\nBinaryName = \"/usr/bin/migcage-runtime\"\n",
    );
    let hook = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/hooks/oci-migcage-hook.json"
    ))
    .unwrap()
    .replace("/usr/bin/migcage", MIGCAGE);
    write(
        r,
        "usr/share/containers/oci/hooks.d/oci-migcage-hook.json",
        &hook,
    );
    let d = doctor(&host.config(), r);
    for rt in ["docker", "podman", "containerd", "cri-o"] {
        let line = d.one(&format!("runtime {rt}"));
        assert_eq!(line.0, "OK", "{line:?}");
        assert!(line.2.starts_with("configured: "), "{line:?}");
    }
    assert!(d
        .one("runtime docker")
        .2
        .contains("runtimes.migcage = /usr/bin/migcage-runtime"));
    assert!(d.one("runtime podman").2.contains("oci-migcage-hook.json"));
    let hooks = d.one("hooks.d");
    assert_eq!(hooks.0, "OK");
    assert!(
        hooks.2.ends_with(&format!("runs {MIGCAGE} at prestart")),
        "{hooks:?}"
    );

    // Broken: a daemon.json dockerd refuses, a hook file whose binary is gone, NVIDIA's own hook
    // file beside migcage's.
    write(r, "etc/docker/daemon.json", "{\"runtimes\": ");
    write(
        r,
        "usr/share/containers/oci/hooks.d/oci-migcage-hook.json",
        &hook.replace(MIGCAGE, "/nonexistent/migcage"),
    );
    write(
        r,
        "etc/containers/oci/hooks.d/oci-nvidia-hook.json",
        r#"{"version": "1.0.0", "hook": {"path": "/usr/bin/nvidia-container-toolkit", "args": ["nvidia-container-toolkit", "prestart"]}, "when": {"always": true}, "stages": ["prestart"]}"#,
    );
    let d = doctor(&host.config(), r);
    let docker = d.one("runtime docker");
    assert_eq!(docker.0, "FAIL");
    assert!(
        docker.2.contains("daemon.json: not valid JSON"),
        "{docker:?}"
    );
    let hooks = d.with("FAIL", "hooks.d");
    assert_eq!(hooks.len(), 1, "{}", d.stdout);
    assert!(hooks[0]
        .2
        .ends_with("runs /nonexistent/migcage, which is not an executable file"));
    let nvidia = d.with("WARN", "hooks.d");
    assert!(
        nvidia.iter().any(|h| h
            .2
            .contains("runs NVIDIA's /usr/bin/nvidia-container-toolkit")),
        "{}",
        d.stdout
    );
    // A hook file that does not run migcage does not configure podman.
    assert_eq!(d.one("runtime podman").0, "WARN");
}

#[test]
fn cdi_spec_fresh_then_stale() {
    if skip("cdi_spec_fresh_then_stale") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let root = empty_root();
    let cdi_dir = root.path().join("etc/cdi");
    let out = Command::new(MIGCAGE)
        .arg("--config")
        .arg(host.config())
        .args(["cdi", "generate", "--output"])
        .arg(format!("{}/", cdi_dir.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = doctor(&host.config(), root.path());
    let spec = d.one("CDI spec");
    assert_eq!(spec.0, "OK", "{spec:?}");
    assert!(spec.2.ends_with("matches the host"), "{spec:?}");

    // The MIG instances change (the host is re-made with another split): the spec is stale.
    let again = Command::new(MIGCAGE)
        .args(["simulate", "--topology", "a100-mixed", "--root"])
        .arg(host.dir.path())
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let d = doctor(&host.config(), root.path());
    let spec = d.one("CDI spec");
    assert_eq!(spec.0, "FAIL", "{spec:?}");
    assert!(spec.2.contains("is stale: "), "{spec:?}");
    assert!(spec.3.contains("migcage cdi generate"), "{spec:?}");
}

#[test]
fn docker_gpus_finds_the_hook_on_the_running_dockerds_path() {
    if skip("docker_gpus_finds_the_hook_on_the_running_dockerds_path") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // A process named dockerd (a copy of sleep) whose environment has a PATH, as dockerd's does.
    let sleep = common::which("sleep");
    std::fs::copy(&sleep, bin.join("dockerd")).unwrap();
    let start = |hooks: &Path| {
        Command::new(bin.join("dockerd"))
            .arg("60")
            .env_clear()
            .env("PATH", hooks)
            .spawn()
            .unwrap()
    };
    let ours = dir.path().join("migcage-hooks");
    std::fs::create_dir_all(&ours).unwrap();
    std::os::unix::fs::symlink(MIGCAGE, ours.join("nvidia-container-runtime-hook")).unwrap();
    let mut d1 = start(&ours);
    let theirs = dir.path().join("nvidia-hooks");
    fake_binary(&theirs, "nvidia-container-runtime-hook");
    let mut d2 = start(&theirs);

    let d = doctor_with_path(&host.config(), Path::new("/"), &bin.display().to_string());
    let _ = (d1.kill(), d2.kill(), d1.wait(), d2.wait());
    let line = d.one("runtime docker");
    assert!(
        line.2.contains(&format!(
            "docker run --gpus runs {}/nvidia-container-runtime-hook (migcage), found on the PATH of the running dockerd (pid {})",
            ours.display(),
            d1.id()
        )),
        "{line:?}"
    );
    assert!(
        line.2.contains(&format!(
            "docker run --gpus runs NVIDIA's {}/nvidia-container-runtime-hook (on the PATH of the running dockerd (pid {})), not migcage",
            theirs.display(),
            d2.id()
        )),
        "{line:?}"
    );
    assert_eq!(line.0, "WARN", "one dockerd runs NVIDIA's hook: {line:?}");
}

#[test]
fn the_configured_dev_char_dir_is_where_links_are_made_and_checked() {
    if skip("the_configured_dev_char_dir_is_where_links_are_made_and_checked") {
        return;
    }
    // host.dev_char_dir moves /dev/char: `system create-dev-char-links` (with no flag) writes
    // there and doctor reads there (under the host root: `/` here, so the path as it is).
    let host = SimHost::new("a100-7x1g");
    let elsewhere = tempfile::tempdir().unwrap();
    let dir = elsewhere.path().join("char");
    let text = std::fs::read_to_string(host.config()).unwrap();
    assert!(text.contains("dev_char_dir = \"/dev/char\""), "{text}");
    let text = text.replace(
        "dev_char_dir = \"/dev/char\"",
        &format!("dev_char_dir = {:?}", dir.display().to_string()),
    );
    std::fs::write(host.config(), text).unwrap();
    let d = doctor(&host.config(), Path::new("/"));
    let line = d.one("/dev/char links");
    assert_eq!(line.0, "WARN", "{line:?}");
    assert!(line.2.contains(&dir.display().to_string()), "{line:?}");
    let out = Command::new(MIGCAGE)
        .arg("--config")
        .arg(host.config())
        .args(["system", "create-dev-char-links"])
        .env_remove("MIGCAGE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.read_dir().unwrap().next().is_some());
    let d = doctor(&host.config(), Path::new("/"));
    let line = d.one("/dev/char links");
    assert_eq!(line.0, "OK", "{line:?}");
    assert!(line.2.contains(&dir.display().to_string()), "{line:?}");
}
