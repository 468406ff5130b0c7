//! End to end: runtime mode gives a container exactly what hook mode (the `prestart` hook
//! alone) gives it, for every way of asking, both ways the wrapper works: `run` (config.json
//! edited, then its `createRuntime` hook) and `create`, `start`, `delete` as engines send them
//! (config.json edited, no hook: the wrapper works inside the container itself), on real runc (cgroup v1 and v2) and crun (v1) over a simulated host.
//! "Exactly" is what the container itself sees: its device nodes (numbers and modes) and which
//! of them and of the host's it can open (its cgroup rules at work), its driver files with
//! their sizes, its symlinks, its ld cache, every file of its procfs view, and the options of
//! every driver mount. crun on cgroup v2 runs only in the systemd VM (see common's `Mode`).

mod common;

use common::{Bundle, Mode, SimHost, PROBE};
use serde_json::json;

/// What the container sees, one fact a line, beyond the probe's nodes and opens.
const VIEW: &str = r#"
for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/bin /lib/firmware /etc /usr/share; do
  [ -d "$d" ] && find "$d" \( -name '*nvidia*' -o -name 'libcuda*' -o -name '*vdpau*' \)
done | sort -u | while read -r f; do
  if [ -L "$f" ]; then echo "LINK $f -> $(readlink "$f")";
  elif [ -f "$f" ]; then echo "FILE $f $(stat -c %s "$f")"; fi
done
[ -f /etc/ld.so.cache ] && echo "LDCACHE $(md5sum < /etc/ld.so.cache)"
[ -d /proc/driver/nvidia ] && find /proc/driver/nvidia -type f | sort | while read -r f; do
  echo "PROC $f $(md5sum < "$f")"; done
awk '$5 ~ /nvidia|cuda|vdpau/ { print "MOUNT", $5, $6 }' /proc/self/mountinfo | sort
"#;

/// The container's view (sorted lines) with `setup` applied: in hook mode, in runtime mode by
/// `run`, and in runtime mode by `create`/`start`/`delete`.
fn all_views(mode: Mode, host: &SimHost, what: &str, setup: &dyn Fn(&mut Bundle)) -> [String; 3] {
    let script = format!("{PROBE}{VIEW}");
    let view = |run: common::Run, how: &str| {
        let ctx = format!("{mode:?} {} {what}, {how} ({})", host.topology, run.id);
        assert!(run.ok(), "{ctx}: container failed: {}", run.stderr());
        assert!(
            run.stdout().contains("PROBE-DONE"),
            "{ctx}: {}",
            run.stdout()
        );
        let mut lines: Vec<String> = run.stdout().lines().map(str::to_string).collect();
        lines.sort();
        lines.join("\n")
    };
    let mut hooked = Bundle::new(host, &[], &script);
    setup(&mut hooked);
    hooked.write();
    let hook_view = view(common::run(mode, &hooked, host), "hook mode");

    let wrapped = || {
        let mut b = Bundle::new(host, &[], &script);
        b.config.as_object_mut().unwrap().remove("hooks");
        setup(&mut b);
        b.write();
        b
    };
    let runtime_view = view(
        common::wrapper::run(mode, &wrapped(), host, "mcpar"),
        "runtime mode, run",
    );
    let create_view = view(
        common::wrapper::create_start_delete(mode, &wrapped(), host, "mcpac"),
        "runtime mode, create/start/delete",
    );
    [hook_view, runtime_view, create_view]
}

/// What a case does to its bundle before the run.
type Setup = Box<dyn Fn(&mut Bundle)>;

fn env(vars: &'static [&'static str]) -> impl Fn(&mut Bundle) {
    move |b: &mut Bundle| {
        let list = b.config["process"]["env"].as_array_mut().unwrap();
        list.extend(vars.iter().map(|v| json!(v)));
    }
}

fn parity(mode: Mode) {
    if let Some(why) = mode.unavailable() {
        common::skip(&format!("mode parity {mode:?}: {why}"));
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let uuid = common::uuid_of(&host.list(), "0:3");
    let by_uuid = format!("NVIDIA_VISIBLE_DEVICES={uuid}");
    let two = SimHost::new("two-gpus-one-mig");
    let cases: Vec<(&SimHost, &str, Setup)> = vec![
        (
            &host,
            "index 0:1",
            Box::new(env(&["NVIDIA_VISIBLE_DEVICES=0:1"])),
        ),
        (
            &host,
            "MIG uuid",
            Box::new(move |b: &mut Bundle| {
                b.config["process"]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!(by_uuid))
            }),
        ),
        (
            &host,
            "profile",
            Box::new(env(&["NVIDIA_VISIBLE_DEVICES=profile:1g.5gb"])),
        ),
        (
            &host,
            "annotation",
            Box::new(|b: &mut Bundle| {
                b.config["annotations"] = json!({"migcage.io/devices": "0:6"})
            }),
        ),
        (
            &host,
            "all capabilities",
            Box::new(env(&[
                "NVIDIA_VISIBLE_DEVICES=0:2",
                "NVIDIA_DRIVER_CAPABILITIES=all",
            ])),
        ),
        (
            &host,
            "devices only",
            Box::new(env(&[
                "NVIDIA_VISIBLE_DEVICES=0:4",
                "NVIDIA_DRIVER_CAPABILITIES=",
            ])),
        ),
        (
            &host,
            "driver files, no device",
            Box::new(env(&["NVIDIA_VISIBLE_DEVICES=none"])),
        ),
        (&host, "nothing asked", Box::new(|_: &mut Bundle| {})),
        (
            &two,
            "MIG device and a whole GPU",
            Box::new(env(&["NVIDIA_VISIBLE_DEVICES=0:1,1"])),
        ),
    ];
    for (host, what, setup) in &cases {
        let [hook, runtime, created] = all_views(mode, host, what, setup.as_ref());
        assert_eq!(
            hook, runtime,
            "{mode:?} {} {what}: hook mode (left) and runtime mode by run (right) differ",
            host.topology
        );
        assert_eq!(
            hook, created,
            "{mode:?} {} {what}: hook mode (left) and runtime mode by create (right) differ",
            host.topology
        );
    }
    // The views are not empty agreements: a device request shows its nodes and procfs view.
    let [view, _, _] = all_views(
        mode,
        &host,
        "index 0:1 again",
        &env(&["NVIDIA_VISIBLE_DEVICES=0:1"]),
    );
    for want in [
        "NODE /dev/nvidia0 ",
        "NODE /dev/nvidia-caps/",
        "PROC /proc/driver/nvidia/gpus/",
        "MOUNT ",
    ] {
        assert!(
            view.contains(want),
            "{mode:?}: {want:?} missing from the view:\n{view}"
        );
    }
}

#[test]
fn mode_parity_runc_cgroup_v1() {
    parity(Mode::RuncV1);
}

#[test]
fn mode_parity_runc_cgroup_v2() {
    parity(Mode::RuncV2);
}

#[test]
fn mode_parity_crun_cgroup_v1() {
    parity(Mode::CrunV1);
}
