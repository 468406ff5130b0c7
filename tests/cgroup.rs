//! Device rules on a real kernel: cgroup v1 `devices.allow` and the cgroup v2 eBPF program.
//!
//! Each test makes a scratch cgroup, char nodes in a temporary directory (195:0, 195:1, 509:12,
//! which have no driver here, and 1:3, the real null device), and probes from a forked child
//! placed in the cgroup: a node the cgroup allows fails to open with ENXIO (no driver behind it),
//! one it denies with EPERM. They need root (CI runs as root) and print a skip line otherwise.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use migcage::backend::hook::cgroup::{self, v1, v2, DeviceCgroup, Granted};
use migcage::core::cgroup::{program, rules};
use migcage::core::edits::{Access, DeviceRule, DeviceType};
use migcage::sys::bpf;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};

const V1_DEVICES: &str = "/sys/fs/cgroup/devices";
const V2_UNIFIED: &str = "/sys/fs/cgroup/unified";
const RUNC_SPEC: &str = include_str!("../src/core/cgroup/testdata/runc-1.1.5-spec.json");

const OK: i32 = 0;
const EPERM: i32 = libc::EPERM;
const ENXIO: i32 = libc::ENXIO;

/// Skip (with a line saying why) unless root and `hierarchy` exists.
fn skip(hierarchy: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        common::skip(&format!(
            "{}: cgroup device tests need root (CI runs them as root)",
            common::test_name()
        ));
        return true;
    }
    if !Path::new(hierarchy).is_dir() {
        common::skip(&format!(
            "{}: {hierarchy} is not mounted on this host",
            common::test_name()
        ));
        return true;
    }
    false
}

/// A scratch cgroup, removed on drop (also when the test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(hierarchy: &str, name: &str) -> Scratch {
        let dir = Path::new(hierarchy).join(format!("migcage-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Scratch(dir)
    }

    fn procs(&self) -> PathBuf {
        self.0.join("cgroup.procs")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for _ in 0..100 {
            match std::fs::remove_dir(&self.0) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        eprintln!("warning: could not remove {}", self.0.display());
    }
}

struct Nodes {
    _dir: tempfile::TempDir,
    gpu0: PathBuf,
    gpu1: PathBuf,
    cap12: PathBuf,
    null: PathBuf,
}

fn make_nodes() -> Nodes {
    let dir = tempfile::tempdir().unwrap();
    let node = |name: &str, major: u64, minor: u64| {
        let p = dir.path().join(name);
        mknod(
            &p,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .unwrap_or_else(|e| panic!("mknod {}: {e}", p.display()));
        p
    };
    let (gpu0, gpu1, cap12, null) = (
        node("nvidia0", 195, 0),
        node("nvidia1", 195, 1),
        node("cap12", 509, 12),
        node("null", 1, 3),
    );
    Nodes {
        _dir: dir,
        gpu0,
        gpu1,
        cap12,
        null,
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Fork a child that moves itself into the cgroup of `procs`, opens each `(path, flags)` and
/// reports 0 or the errno of each open. Everything is prepared before the fork; the child makes
/// only raw system calls.
fn probe(procs: &Path, opens: &[(&Path, libc::c_int)]) -> Vec<i32> {
    let procs = cstr(procs);
    let paths: Vec<(CString, libc::c_int)> = opens.iter().map(|(p, f)| (cstr(p), *f)).collect();
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is two writable c_ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let [rd, wr] = fds;
    // SAFETY: the child only calls async-signal-safe functions (open, write, close, _exit) on
    // memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let report = |v: i32| {
            let b = v.to_ne_bytes();
            // SAFETY: `b` is 4 readable bytes; `wr` is the pipe's open write end.
            unsafe { libc::write(wr, b.as_ptr().cast(), b.len()) };
        };
        let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(-1);
        // SAFETY: `procs` is a NUL-terminated path.
        let fd = unsafe { libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        // SAFETY: writes 2 bytes of a static string to the fd just opened.
        if fd < 0 || unsafe { libc::write(fd, b"0\n".as_ptr().cast(), 2) } != 2 {
            report(-errno());
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(1) };
        }
        for (p, flags) in &paths {
            // SAFETY: `p` is a NUL-terminated path.
            let fd = unsafe { libc::open(p.as_ptr(), *flags | libc::O_CLOEXEC | libc::O_NOCTTY) };
            if fd >= 0 {
                // SAFETY: closes the fd just opened.
                unsafe { libc::close(fd) };
                report(OK);
            } else {
                report(errno());
            }
        }
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: closes the parent's copy of the write end, which it owns.
    unsafe { libc::close(wr) };
    let mut out = Vec::new();
    let mut buf = [0u8; 4];
    loop {
        // SAFETY: reads at most 4 bytes into `buf`; `rd` is the pipe's read end.
        let n = unsafe { libc::read(rd, buf.as_mut_ptr().cast(), 4) };
        if n != 4 {
            break;
        }
        out.push(i32::from_ne_bytes(buf));
    }
    // SAFETY: closes the read end, which the parent owns.
    unsafe { libc::close(rd) };
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is a writable c_int.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        !matches!(out.first(), Some(v) if *v < 0),
        "child could not join {}: errno {}",
        procs.to_string_lossy(),
        -out[0]
    );
    assert_eq!(out.len(), opens.len(), "child exit status {status}");
    out
}

/// A child that sits in the cgroup of `procs` until killed.
fn sleeper(procs: &Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let procs = cstr(procs);
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("60");
    // SAFETY: the hook only makes raw system calls on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // SAFETY: `procs` is a NUL-terminated path.
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            // SAFETY: writes 2 bytes of a static string to the fd just opened.
            if fd < 0 || libc::write(fd, b"0\n".as_ptr().cast(), 2) != 2 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    cmd.spawn().expect("spawn sleep in the cgroup")
}

fn char_rule(major: u32, minor: u32, access: &str) -> DeviceRule {
    DeviceRule {
        allow: true,
        kind: DeviceType::Char,
        major: Some(major),
        minor: Some(minor),
        access: Access::parse(access).unwrap(),
    }
}

/// migcage's rules in these tests: 195:0 read-write, 509:12 read only.
fn ours() -> [DeviceRule; 2] {
    [char_rule(195, 0, "rw"), char_rule(509, 12, "r")]
}

const RD: libc::c_int = libc::O_RDONLY;
const WR: libc::c_int = libc::O_WRONLY;

/// The standard probe: null r, gpu0 r, gpu0 w, gpu1 r, cap12 r, cap12 w.
fn standard_probe(procs: &Path, n: &Nodes) -> Vec<i32> {
    probe(
        procs,
        &[
            (&n.null, RD),
            (&n.gpu0, RD),
            (&n.gpu0, WR),
            (&n.gpu1, RD),
            (&n.cap12, RD),
            (&n.cap12, WR),
        ],
    )
}

const BEFORE: [i32; 6] = [OK, EPERM, EPERM, EPERM, EPERM, EPERM];
const AFTER: [i32; 6] = [OK, ENXIO, ENXIO, EPERM, ENXIO, EPERM];

#[test]
fn v1_devices_allow_grants_exactly_our_nodes() {
    if skip(V1_DEVICES) {
        return;
    }
    let cg = Scratch::new(V1_DEVICES, "v1");
    let n = make_nodes();
    // A stand-in for the runtime: deny everything, allow /dev/null.
    std::fs::write(cg.0.join("devices.deny"), "a").unwrap();
    std::fs::write(cg.0.join("devices.allow"), "c 1:3 rwm").unwrap();
    assert_eq!(standard_probe(&cg.procs(), &n), BEFORE);

    // Found through /proc as the hook finds it, and granted through the top-level entry point.
    let mut child = sleeper(&cg.procs());
    let found = cgroup::find_device_cgroup(Path::new("/proc"), child.id());
    let spec: serde_json::Value = serde_json::from_str(RUNC_SPEC).unwrap();
    let runtime = cgroup::Runtime::RUNC_1_1;
    let granted = cgroup::grant_devices(Path::new("/proc"), child.id(), &spec, runtime, &ours());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(found.unwrap(), DeviceCgroup::V1(cg.0.clone()));
    assert_eq!(
        granted.unwrap(),
        Granted::V1 {
            dir: cg.0.clone(),
            rules: 2
        }
    );
    // Idempotent: a second application changes nothing.
    v1::allow_devices(&cg.0, &ours()).unwrap();
    let list = std::fs::read_to_string(cg.0.join("devices.list")).unwrap();
    let mut lines: Vec<&str> = list.lines().collect();
    lines.sort();
    let mut want = ["c 1:3 rwm", "c 195:0 rw", "c 509:12 r"];
    want.sort_unstable();
    assert_eq!(lines, want, "{list}");

    assert_eq!(standard_probe(&cg.procs(), &n), AFTER);

    // A wildcard is refused, naming the file, and nothing is written.
    let wild = DeviceRule {
        allow: true,
        kind: DeviceType::Char,
        major: Some(195),
        minor: None,
        access: Access::RW,
    };
    let e = v1::allow_devices(&cg.0, &[wild]).unwrap_err().to_string();
    assert!(
        e.contains(&cg.0.join("devices.allow").display().to_string()),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(cg.0.join("devices.list")).unwrap(),
        list
    );
}

/// Load and attach `rules` as a stand-in for a runtime's program.
fn attach_standin(dir: &Path, rules: &[DeviceRule], flags: u32) -> u32 {
    let cg = bpf::open_cgroup(dir).unwrap();
    let prog = bpf::load_device_program(&program::emit(rules), dir).unwrap();
    use std::os::fd::AsFd;
    bpf::attach_device_program(cg.as_fd(), prog.as_fd(), flags, None, dir).unwrap();
    bpf::program_id(prog.as_fd(), dir).unwrap()
}

fn runc_rules() -> (serde_json::Value, Vec<DeviceRule>) {
    let spec: serde_json::Value = serde_json::from_str(RUNC_SPEC).unwrap();
    let r = rules::effective_rules(&spec).unwrap();
    (spec, r)
}

#[test]
fn v2_runtime_program_is_replaced_by_the_full_rule_set() {
    if skip(V2_UNIFIED) {
        return;
    }
    let cg = Scratch::new(V2_UNIFIED, "v2");
    let n = make_nodes();
    let (spec, runc) = runc_rules();
    let runc_id = attach_standin(&cg.0, &runc, bpf::BPF_F_ALLOW_MULTI);
    assert_eq!(v2::attached_device_programs(&cg.0).unwrap(), [runc_id]);
    assert_eq!(standard_probe(&cg.procs(), &n), BEFORE);

    let full = rules::effective_rules_with(&spec, &ours()).unwrap();
    let first = v2::replace_device_program(&cg.0, &full).unwrap();
    assert_eq!(first.old_ids, [runc_id]);
    // Linux 5.5+ swaps atomically.
    assert_eq!(first.method, v2::Method::Replace);
    assert_eq!(
        v2::attached_device_programs(&cg.0).unwrap(),
        [first.prog_id]
    );
    assert_eq!(standard_probe(&cg.procs(), &n), AFTER);

    // Idempotent: again, and one program (the new one) is attached, with the same effect.
    let second = v2::replace_device_program(&cg.0, &full).unwrap();
    assert_eq!(second.old_ids, [first.prog_id]);
    assert_eq!(
        v2::attached_device_programs(&cg.0).unwrap(),
        [second.prog_id]
    );
    assert_eq!(standard_probe(&cg.procs(), &n), AFTER);
}

#[test]
fn v2_several_programs_are_attached_over_then_detached() {
    if skip(V2_UNIFIED) {
        return;
    }
    let cg = Scratch::new(V2_UNIFIED, "v2multi");
    let n = make_nodes();
    let (spec, runc) = runc_rules();
    let a = attach_standin(&cg.0, &runc, bpf::BPF_F_ALLOW_MULTI);
    let allow_all = [DeviceRule {
        allow: true,
        kind: DeviceType::All,
        major: None,
        minor: None,
        access: Access::ALL,
    }];
    let b = attach_standin(&cg.0, &allow_all, bpf::BPF_F_ALLOW_MULTI);
    // Two programs: a device must pass both, so the allow-all one grants nothing.
    assert_eq!(standard_probe(&cg.procs(), &n), BEFORE);

    let full = rules::effective_rules_with(&spec, &ours()).unwrap();
    let r = v2::replace_device_program(&cg.0, &full).unwrap();
    assert_eq!(r.method, v2::Method::AttachThenDetach);
    let mut old = r.old_ids.clone();
    old.sort_unstable();
    let mut want = vec![a, b];
    want.sort_unstable();
    assert_eq!(old, want);
    assert_eq!(v2::attached_device_programs(&cg.0).unwrap(), [r.prog_id]);
    assert_eq!(standard_probe(&cg.procs(), &n), AFTER);
}

#[test]
fn v2_exclusive_program_is_swapped_and_an_empty_cgroup_gets_ours() {
    if skip(V2_UNIFIED) {
        return;
    }
    let cg = Scratch::new(V2_UNIFIED, "v2excl");
    let n = make_nodes();
    let (spec, runc) = runc_rules();
    // Attached without BPF_F_ALLOW_MULTI, as some runtimes do.
    let old = attach_standin(&cg.0, &runc, 0);
    assert_eq!(standard_probe(&cg.procs(), &n), BEFORE);
    let full = rules::effective_rules_with(&spec, &ours()).unwrap();
    let r = v2::replace_device_program(&cg.0, &full).unwrap();
    assert_eq!(
        (r.method, r.old_ids.as_slice()),
        (v2::Method::Exclusive, [old].as_slice())
    );
    assert_eq!(v2::attached_device_programs(&cg.0).unwrap(), [r.prog_id]);
    assert_eq!(standard_probe(&cg.procs(), &n), AFTER);

    let empty = Scratch::new(V2_UNIFIED, "v2empty");
    assert_eq!(
        v2::attached_device_programs(&empty.0).unwrap(),
        Vec::<u32>::new()
    );
    let r = v2::replace_device_program(&empty.0, &full).unwrap();
    assert_eq!(
        (r.method, r.old_ids.len()),
        (v2::Method::AttachThenDetach, 0)
    );
    assert_eq!(v2::attached_device_programs(&empty.0).unwrap(), [r.prog_id]);
    assert_eq!(standard_probe(&empty.procs(), &n), AFTER);
}

#[test]
fn v2_errors_carry_the_cgroup_path_and_errno() {
    if skip(V2_UNIFIED) {
        return;
    }
    let missing = Path::new(V2_UNIFIED).join(format!("migcage-test-{}-absent", std::process::id()));
    let e = v2::replace_device_program(&missing, &ours()).unwrap_err();
    assert_eq!(e.errno(), Some(libc::ENOENT));
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );
    // A regular directory is not a cgroup: the query fails with the path in the error.
    let d = tempfile::tempdir().unwrap();
    let e = v2::attached_device_programs(d.path()).unwrap_err();
    assert!(
        e.errno().is_some() && e.to_string().contains(&d.path().display().to_string()),
        "{e}"
    );
}

/// Runs `runc ARGS` where runc sees cgroup2 on /sys/fs/cgroup (a private mount namespace, as
/// the project's v2 end-to-end runs do); returns (success, stderr).
/// Its stderr goes through a file: a detached container keeps the runtime's stdio open.
fn runc_v2(args: &str) -> (bool, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let status = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t cgroup2 none /sys/fs/cgroup && exec runc {args}"
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .status()
        .expect("run unshare");
    (
        status.success(),
        std::fs::read_to_string(log.path()).unwrap(),
    )
}

struct RuncContainer(String);

impl Drop for RuncContainer {
    fn drop(&mut self) {
        runc_v2(&format!("delete -f {}", self.0));
    }
}

fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// runc 1.1's own program on a real container is replaced by migcage's: the container then
/// opens our node (ENXIO) and is still refused the others (EPERM), and /dev/null still works.
#[test]
fn v2_real_runc_program_is_replaced() {
    if skip(V2_UNIFIED) {
        return;
    }
    if !(have("runc") && have("busybox") && have("unshare")) {
        common::skip("v2_real_runc_program_is_replaced: runc, busybox or unshare missing");
        return;
    }
    let n = make_nodes();
    let bundle = tempfile::tempdir().unwrap();
    let bin = bundle.path().join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let busybox = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v busybox"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::copy(busybox.trim(), bin.join("busybox")).unwrap();
    for applet in ["sh", "cat", "sleep"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let st = std::process::Command::new("runc")
        .arg("spec")
        .current_dir(bundle.path())
        .status()
        .unwrap();
    assert!(st.success());
    let config = bundle.path().join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["sleep", "60"]);
    let nodes_dir = n.gpu0.parent().unwrap().to_str().unwrap().to_owned();
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": "/nodes", "type": "bind", "source": nodes_dir, "options": ["rbind", "rw"]
        }));
    std::fs::write(&config, serde_json::to_string_pretty(&spec).unwrap()).unwrap();

    let id = format!("migcage-test-{}-runc", std::process::id());
    let (ok, err) = runc_v2(&format!("run -d --bundle {} {id}", bundle.path().display()));
    let _guard = RuncContainer(id.clone());
    assert!(ok, "runc run: {err}");
    let cat = |node: &str| runc_v2(&format!("exec {id} cat /nodes/{node}"));
    let dir = Path::new(V2_UNIFIED).join(&id);
    let runc_ids = v2::attached_device_programs(&dir).unwrap();
    assert_eq!(runc_ids.len(), 1, "runc attached one program");
    let (_, e) = cat("nvidia0");
    assert!(
        e.contains("Operation not permitted"),
        "nvidia0 under runc's program: {e}"
    );

    let full = rules::effective_rules_with(&spec, &ours()).unwrap();
    let r = v2::replace_device_program(&dir, &full).unwrap();
    assert_eq!(r.old_ids, runc_ids);
    assert_eq!(v2::attached_device_programs(&dir).unwrap(), [r.prog_id]);
    let (_, e0) = cat("nvidia0");
    let (_, e1) = cat("nvidia1");
    let (_, ec) = cat("cap12");
    let (null_ok, en) = cat("null");
    assert!(e0.contains("No such device or address"), "nvidia0: {e0}");
    assert!(e1.contains("Operation not permitted"), "nvidia1: {e1}");
    assert!(
        ec.contains("No such device or address"),
        "cap12 (read allowed): {ec}"
    );
    // 1:3 is runc's default /dev/null rule: kept by the rebuilt rule set.
    assert!(null_ok, "null: {en}");
    let (ok, e) = runc_v2(&format!("exec {id} sh -c 'echo x > /nodes/cap12'"));
    assert!(
        !ok && e.contains("Operation not permitted"),
        "cap12 write: {e}"
    );
}
