//! The CDI back end's unit tests: generation, text, staleness and the report.

use std::path::Path;

use super::*;

/// Where the specs of these tests would be.
const SPEC: &str = "/etc/cdi/nvidia.com-gpu.yaml";
use crate::core::plan::nodes::tests::inventory;
use crate::core::request::DriverCapabilities;
use crate::host::inventory::Inventory;

fn opts(kind: &str) -> GenerateOptions {
    GenerateOptions {
        kind: kind.parse().unwrap(),
        hook_path: "/usr/bin/migcage".into(),
        config_path: None,
        driver_capabilities: DriverCapabilities::DEFAULT,
        driver_files: Default::default(),
    }
}

fn gen(inv: &Inventory, kind: &str) -> Spec {
    generate(inv, Path::new("/dev"), &opts(kind)).unwrap().spec
}

fn names(spec: &Spec) -> Vec<&str> {
    spec.devices.iter().map(|d| d.name.as_str()).collect()
}

fn device<'a>(spec: &'a Spec, name: &str) -> &'a Device {
    spec.devices.iter().find(|d| d.name == name).unwrap()
}

fn paths(e: &SpecEdits) -> Vec<&str> {
    e.device_nodes.iter().map(|n| n.path.as_str()).collect()
}

const MIG0: &str = "MIG-11111111-1111-1111-1111-111111111111";
const MIG1: &str = "MIG-22222222-2222-2222-2222-222222222222";
const GPU0: &str = "GPU-00000000-0000-0000-0000-000000000000";
const GPU1: &str = "GPU-11111111-0000-0000-0000-000000000000";

#[test]
fn every_device_by_index_and_uuid_plus_all() {
    let spec = gen(&inventory(), "nvidia.com/gpu");
    assert_eq!(spec.kind, "nvidia.com/gpu");
    assert_eq!(spec.cdi_version, "0.5.0");
    assert_eq!(
        names(&spec),
        ["0", GPU0, "0:0", MIG0, "0:1", MIG1, "1", GPU1, "all"]
    );
    let m = &device(&spec, "0:1").container_edits;
    assert_eq!(
        paths(m),
        [
            "/dev/nvidia0",
            "/dev/nvidia-caps/nvidia-cap21",
            "/dev/nvidia-caps/nvidia-cap22"
        ]
    );
    assert_eq!(device(&spec, MIG1).container_edits, *m);
    assert_eq!(device_id(m), Some(MIG1));
    assert!(m.env.is_empty() && m.hooks.is_empty());
    let n = &m.device_nodes[1];
    assert_eq!(
        (
            n.kind.as_deref(),
            n.major,
            n.minor,
            n.file_mode,
            n.permissions.as_deref()
        ),
        (Some("c"), Some(509), Some(21), Some(0o444), Some("rw"))
    );
    assert_eq!(
        n.host_path.as_deref(),
        Some("/dev/nvidia-caps/nvidia-cap21")
    );
    assert_eq!((n.uid, n.gid), (None, None));
    assert_eq!(paths(&device(&spec, "1").container_edits), ["/dev/nvidia1"]);
    assert_eq!(device_id(&device(&spec, "1").container_edits), Some(GPU1));
    let all = &device(&spec, "all").container_edits;
    assert_eq!(device_id(all), Some("all"));
    assert_eq!(all.device_nodes.len(), 2 + 4);
}

#[test]
fn common_edits_are_written_once() {
    let spec = gen(&inventory(), "nvidia.com/gpu");
    let top = &spec.container_edits;
    assert_eq!(
        paths(top),
        ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
    );
    for d in &spec.devices {
        for p in paths(top) {
            assert!(!paths(&d.container_edits).contains(&p), "{} {p}", d.name);
        }
    }
    assert_eq!(
        top.env,
        [
            "NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices",
            "NVIDIA_DRIVER_CAPABILITIES=compute,utility"
        ]
    );
    assert_eq!(top.hooks.len(), 2, "the hook and its poststop");
    let h = &top.hooks[0];
    assert_eq!(
        (h.hook_name.as_str(), h.path.as_str(), h.args.join(" ")),
        (
            "createRuntime",
            "/usr/bin/migcage",
            "migcage hook createRuntime".into()
        )
    );
    assert!(h.env.is_empty());
    assert!(is_migcage_spec(&spec));
}

#[test]
fn hook_is_told_a_non_default_config() {
    let mut o = opts("nvidia.com/gpu");
    o.config_path = Some("/sim/config.toml".into());
    let spec = generate(&inventory(), Path::new("/dev"), &o).unwrap().spec;
    assert_eq!(
        spec.container_edits.hooks[0].env,
        ["MIGCAGE_CONFIG=/sim/config.toml"]
    );
}

#[test]
fn a_poststop_hook_releases_the_containers_leases() {
    let mut o = opts("nvidia.com/gpu");
    o.config_path = Some("/sim/config.toml".into());
    let spec = generate(&inventory(), Path::new("/dev"), &o).unwrap().spec;
    let poststop: Vec<_> = spec
        .container_edits
        .hooks
        .iter()
        .filter(|h| h.hook_name == "poststop")
        .collect();
    assert_eq!(poststop.len(), 1, "{:?}", spec.container_edits.hooks);
    let h = poststop[0];
    assert_eq!(
        (h.path.as_str(), h.args.join(" "), h.env.clone()),
        (
            "/usr/bin/migcage",
            "migcage hook poststop".into(),
            vec!["MIGCAGE_CONFIG=/sim/config.toml".to_string()]
        )
    );
    // Only at the top level, once: no device carries a hook of its own.
    assert!(spec
        .devices
        .iter()
        .all(|d| d.container_edits.hooks.is_empty()));
}

#[test]
fn class_mig_offers_mig_devices_only() {
    let spec = gen(&inventory(), "nvidia.com/mig");
    assert_eq!(spec.kind, "nvidia.com/mig");
    assert_eq!(names(&spec), ["0:0", MIG0, "0:1", MIG1]);
}

#[test]
fn kinds_are_checked() {
    for bad in [
        "nvidia.com",
        "nvidia.com/gds",
        "/gpu",
        "-x.com/gpu",
        "a b/gpu",
    ] {
        let e = bad.parse::<Kind>().unwrap_err().to_string();
        assert!(e.starts_with(&format!("CDI kind {bad:?}")), "{e}");
        assert!(!e.contains('\n'));
    }
    let k: Kind = "k8s.device-plugin.nvidia.com/gpu".parse().unwrap();
    assert_eq!(k.file_stem(), "k8s.device-plugin.nvidia.com-gpu");
}

#[test]
fn device_names_follow_cdi_rules() {
    for ok in ["0", "0:1", "all", MIG0, "GPU-abc_d.e"] {
        assert!(valid_device_name(ok), "{ok}");
    }
    for bad in ["", ":0", "0:", "MIG-GPU-1234/1/0", "a b", "-a"] {
        assert!(!valid_device_name(bad), "{bad}");
    }
    // An R450-style MIG UUID cannot be a name: the device stays reachable by index.
    let mut inv = inventory();
    inv.gpus[0].mig_devices[0].uuid = "MIG-GPU-00000000-0000-0000-0000-000000000000/1/0".into();
    let g = generate(&inv, Path::new("/dev"), &opts("nvidia.com/gpu")).unwrap();
    assert!(names(&g.spec).contains(&"0:0"));
    assert!(!names(&g.spec).iter().any(|n| n.contains('/')));
    assert_eq!(g.notes.len(), 1);
    assert_eq!(
        device_id(&device(&g.spec, "0:0").container_edits),
        Some("0:0")
    );
    assert!(
        g.notes[0].contains("ask for it as nvidia.com/gpu=0:0"),
        "{:?}",
        g.notes
    );
}

#[test]
fn version_is_the_lowest_that_expresses_the_spec() {
    let mut spec = gen(&inventory(), "nvidia.com/gpu");
    assert_eq!(minimum_version(&spec), "0.5.0");
    // Names starting with a letter, no hostPath: 0.3.0; a mount type: 0.4.0.
    spec.devices
        .retain(|d| d.name.starts_with(|c: char| c.is_ascii_alphabetic()));
    for e in std::iter::once(&mut spec.container_edits)
        .chain(spec.devices.iter_mut().map(|d| &mut d.container_edits))
    {
        for n in &mut e.device_nodes {
            n.host_path = None;
        }
    }
    assert_eq!(minimum_version(&spec), "0.3.0");
    spec.devices[0].container_edits.mounts[0].kind = Some("bind".into());
    assert_eq!(minimum_version(&spec), "0.4.0");
    spec.devices[0].name = "0".into();
    assert_eq!(minimum_version(&spec), "0.5.0");
    spec.annotations.insert("a".into(), "b".into());
    assert_eq!(minimum_version(&spec), "0.6.0");
}

#[test]
fn json_and_yaml_round_trip() {
    let spec = gen(&inventory(), "nvidia.com/gpu");
    for (f, name) in [(Format::Json, "s.json"), (Format::Yaml, "s.yaml")] {
        let text = to_text(&spec, f).unwrap();
        assert_eq!(parse(&text, Path::new(name)).unwrap(), spec, "{f:?}");
    }
    let yaml = to_text(&spec, Format::Yaml).unwrap();
    assert!(yaml.contains("\n- name: '0:1'\n"), "{yaml}");
    assert!(yaml.contains("\n- name: '0'\n"), "{yaml}");
    let mut odd = spec.clone();
    odd.container_edits
        .env
        .push("X=a\n- name: 1:5\nname: 2:3".into());
    let text = to_text(&odd, Format::Yaml).unwrap();
    assert_eq!(parse(&text, Path::new("s.yaml")).unwrap(), odd, "{text}");
    assert!(
        yaml.starts_with("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n"),
        "{yaml}"
    );
    let e = parse("cdiVersion: [", Path::new("/etc/cdi/x.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("CDI spec /etc/cdi/x.yaml does not parse"),
        "{e}"
    );
}

#[test]
fn destinations() {
    let k: Kind = "nvidia.com/gpu".parse().unwrap();
    let d = destination(None, None, &k).unwrap();
    assert_eq!(
        d.path.as_deref(),
        Some(Path::new("/etc/cdi/nvidia.com-gpu.yaml"))
    );
    assert_eq!(d.format, Format::Yaml);
    let d = destination(Some(Path::new("/x/")), Some(Format::Json), &k).unwrap();
    assert_eq!(d.path.as_deref(), Some(Path::new("/x/nvidia.com-gpu.json")));
    let d = destination(Some(Path::new("/x/s.json")), None, &k).unwrap();
    assert_eq!(d.format, Format::Json);
    let d = destination(Some(Path::new("/x/s.yml")), Some(Format::Yaml), &k).unwrap();
    assert_eq!(d.format, Format::Yaml);
    let d = destination(Some(Path::new("-")), None, &k).unwrap();
    assert_eq!(
        d,
        Destination {
            path: None,
            format: Format::Yaml
        }
    );
    let e = destination(Some(Path::new("/x/s.txt")), None, &k).unwrap_err();
    assert!(
        e.to_string().contains("read only .json, .yaml and .yml"),
        "{e}"
    );
    let e = destination(Some(Path::new("/x/s.yaml")), Some(Format::Json), &k).unwrap_err();
    assert!(e.to_string().contains("disagrees"), "{e}");
}

#[test]
fn a_fresh_spec_is_not_stale() {
    // Whether /usr/bin/migcage exists depends on the machine (a package may be installed), so
    // the hook is a file that surely exists, then one that surely does not.
    let exe = std::env::current_exe().unwrap();
    let with_hook = |path: &str| {
        let mut o = opts("nvidia.com/gpu");
        o.hook_path = path.into();
        generate(&inventory(), Path::new("/dev"), &o).unwrap().spec
    };
    let spec = with_hook(exe.to_str().unwrap());
    let w = staleness(Path::new(SPEC), &spec, &spec);
    assert!(w.is_empty(), "{w:?}");

    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("migcage");
    let spec = with_hook(gone.to_str().unwrap());
    let w = staleness(Path::new(SPEC), &spec, &spec);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains(&format!("the hook {} does not exist", gone.display())),
        "{w:?}"
    );
}

fn without_hook_warning(w: Vec<String>) -> Vec<String> {
    w.into_iter().filter(|l| !l.contains("the hook ")).collect()
}

#[test]
fn recreated_instance_is_reported_once() {
    let inv = inventory();
    let disk = gen(&inv, "nvidia.com/mig");
    let mut now_inv = inv.clone();
    now_inv.gpus[0].mig_devices[1].uuid = "MIG-33333333-3333-3333-3333-333333333333".into();
    let now = gen(&now_inv, "nvidia.com/mig");
    let w = without_hook_warning(staleness(Path::new(SPEC), &disk, &now));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(&format!(
            "nvidia.com/mig=0:1, {MIG1}: {MIG1} is gone from this host"
        )),
        "{w:?}"
    );
    assert!(
        w[0].contains("0:1 is now MIG-33333333-3333-3333-3333-333333333333"),
        "{w:?}"
    );
    assert!(!w[0].contains('\n'));
}

#[test]
fn destroyed_instance_shifts_the_indexes() {
    let inv = inventory();
    let disk = gen(&inv, "nvidia.com/gpu");
    let mut now_inv = inv.clone();
    now_inv.gpus[0].mig_devices.remove(0);
    now_inv.gpus[0].mig_devices[0].index = 0;
    let now = gen(&now_inv, "nvidia.com/gpu");
    let w = without_hook_warning(staleness(Path::new(SPEC), &disk, &now));
    assert!(
        w.iter()
            .any(|l| l.contains(&format!("{MIG0} is gone"))
                && l.contains(&format!("0:0 is now {MIG1}"))),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|l| l.starts_with("nvidia.com/gpu=0:1: the spec names")
                && l.contains("the host now calls it 0:0")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|l| l.starts_with("nvidia.com/gpu=all")),
        "{w:?}"
    );
}

#[test]
fn changed_nodes_and_new_devices_are_reported() {
    let inv = inventory();
    let disk = gen(&inv, "nvidia.com/gpu");
    let mut now_inv = inv.clone();
    now_inv.majors.caps = Some(508);
    now_inv.majors.uvm = Some(511);
    let mut extra = now_inv.gpus[0].mig_devices[1].clone();
    extra.index = 2;
    extra.gpu_instance_id = 9;
    extra.gi_caps_minor = 84;
    extra.ci_caps_minor = 85;
    extra.uuid = "MIG-44444444-4444-4444-4444-444444444444".into();
    now_inv.gpus[0].mig_devices.push(extra);
    let now = gen(&now_inv, "nvidia.com/gpu");
    let w = without_hook_warning(staleness(Path::new(SPEC), &disk, &now));
    assert!(
        w.iter().any(|l| l.starts_with(&format!(
            "nvidia.com/gpu=0:1, {MIG1} ({MIG1}): the spec gives"
        )) && l.contains("(508:21)")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|l| l.contains(
            "MIG-44444444-4444-4444-4444-444444444444 is on this host but not in the spec"
        )),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|l| l.starts_with("nvidia.com/gpu: every device comes with")
                && l.contains("(511:0)")),
        "{w:?}"
    );
}

#[test]
fn report_groups_names_of_one_device() {
    let spec = gen(&inventory(), "nvidia.com/gpu");
    let r = report(Path::new("/etc/cdi/nvidia.com-gpu.yaml"), &spec, None);
    assert_eq!(r.offers.len(), 5);
    assert_eq!(
        r.offers[1].names,
        [
            "nvidia.com/gpu=0:0".to_string(),
            format!("nvidia.com/gpu={MIG0}")
        ]
    );
    let text = render(&r);
    assert!(
        text.starts_with(
            "/etc/cdi/nvidia.com-gpu.yaml: kind nvidia.com/gpu, cdiVersion 0.5.0, 9 device names\n"
        ),
        "{text}"
    );
    assert!(text.contains(&format!("  nvidia.com/gpu=0:1 | nvidia.com/gpu={MIG1}  [{MIG1}] -> /dev/nvidia0 (195:0), /dev/nvidia-caps/nvidia-cap21 (509:21), /dev/nvidia-caps/nvidia-cap22 (509:22)")), "{text}");
    assert!(
        text.contains("hook: /usr/bin/migcage (createRuntime): hook createRuntime"),
        "{text}"
    );
}

#[test]
fn written_atomically_and_found_by_its_hook() {
    let d = tempfile::tempdir().unwrap();
    let spec = gen(&inventory(), "nvidia.com/gpu");
    let p = d.path().join("sub/nvidia.com-gpu.yaml");
    write_atomic(&p, &to_text(&spec, Format::Yaml).unwrap()).unwrap();
    std::fs::write(
        d.path().join("sub/other.json"),
        r#"{"cdiVersion":"0.5.0","kind":"x.com/y","devices":[]}"#,
    )
    .unwrap();
    std::fs::write(d.path().join("sub/junk.yaml"), "::: not yaml").unwrap();
    let found = find_specs(&[d.path().join("sub"), d.path().join("missing")]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, p);
    assert_eq!(found[0].1, spec);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let left: Vec<_> = std::fs::read_dir(d.path().join("sub"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
}

#[test]
fn driver_files_are_the_top_levels_mounts_with_the_hooks_options() {
    use crate::core::driver_files::{Caps, DriverFiles, FileKind, HostFile, Library};
    use crate::core::edits::LibArch;
    let file = |kind, caps, path: &str, soname: Option<&str>| HostFile {
        kind,
        caps,
        host_path: format!("/sim{path}").into(),
        path: path.into(),
        library: soname.map(|s| Library {
            soname: s.into(),
            arch: LibArch::X86_64,
            dev_link: None,
            in_ld_cache: true,
        }),
        sim_only: false,
    };
    let lib = "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15";
    let mut o = opts("nvidia.com/gpu");
    o.driver_files = DriverFiles {
        driver_version: "550.54.15".into(),
        files: vec![
            file(FileKind::Library, Caps::COMPUTE, lib, Some("libcuda.so.1")),
            file(FileKind::Binary, Caps::UTILITY, "/usr/bin/nvidia-smi", None),
            file(
                FileKind::Firmware,
                Caps::COMPUTE,
                "/lib/firmware/nvidia/550.54.15/gsp.bin",
                None,
            ),
            // Not asked for (utility,compute): left out.
            file(
                FileKind::Library,
                Caps::VIDEO,
                "/usr/lib/x86_64-linux-gnu/libnvcuvid.so.550.54.15",
                Some("libnvcuvid.so.1"),
            ),
        ],
        missing: Vec::new(),
    };
    let spec = generate(&inventory(), Path::new("/dev"), &o).unwrap().spec;
    let mounts: Vec<(&str, &str, Vec<&str>)> = spec
        .container_edits
        .mounts
        .iter()
        .map(|m| {
            (
                m.host_path.as_str(),
                m.container_path.as_str(),
                m.options.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let exec = vec!["ro", "nosuid", "nodev", "bind"];
    let noexec = vec!["ro", "nosuid", "nodev", "noexec", "bind"];
    assert_eq!(
        mounts,
        [
            (
                "/sim/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15",
                lib,
                exec.clone()
            ),
            ("/sim/usr/bin/nvidia-smi", "/usr/bin/nvidia-smi", exec),
            (
                "/sim/lib/firmware/nvidia/550.54.15/gsp.bin",
                "/lib/firmware/nvidia/550.54.15/gsp.bin",
                noexec
            ),
        ]
    );
    // The soname link and the ld cache stay the hook's (no other edit kind); the other hook is
    // the poststop one that gives the leases back.
    let stages: Vec<&str> = spec
        .container_edits
        .hooks
        .iter()
        .map(|h| h.hook_name.as_str())
        .collect();
    assert_eq!(stages, [super::HOOK_STAGE, super::POSTSTOP_STAGE]);
    // Devices keep only their own edits.
    assert!(spec
        .devices
        .iter()
        .all(|d| d.container_edits.mounts.len() == 1));
}
