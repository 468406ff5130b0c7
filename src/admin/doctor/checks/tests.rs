//! The checks on facts built by hand: no host is read.

use std::path::PathBuf;

use super::*;
use crate::config::Config;
use crate::host::cgroup::DeviceCgroup;

/// A host with no driver, no runtimes and a writable state directory.
fn facts() -> Facts {
    Facts {
        config: ConfigFact::Loaded(None),
        roots: Config::default(),
        driver: DriverFact::NotLoaded {
            path: PathBuf::from("/proc/driver/nvidia"),
        },
        nvml: NvmlFact::Failed("no libnvidia-ml.so.1".into()),
        inventory: None,
        nodes: Vec::new(),
        cap_mismatches: Vec::new(),
        cgroup: CgroupFact {
            devices: Ok(DeviceCgroup::V2(PathBuf::from("/sys/fs/cgroup/x"))),
            cgroup2_mounts: vec![PathBuf::from("/sys/fs/cgroup")],
            systemd_init: false,
        },
        runtimes: Vec::new(),
        docker_hooks: Vec::new(),
        hook_files: Vec::new(),
        hook_dirs: vec![PathBuf::from("/etc/containers/oci/hooks.d")],
        cdi_specs: Vec::new(),
        cdi_dirs: vec![PathBuf::from("/etc/cdi")],
        state_dir: WritableFact::Writable,
        log_dir: None,
    }
}

fn line<'a>(checks: &'a [Check], check: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.check == check)
        .unwrap_or_else(|| panic!("no {check} line in {checks:?}"))
}

#[test]
fn no_driver_fails_and_skips_the_nodes() {
    let checks = evaluate(&facts());
    let driver = line(&checks, "driver");
    assert_eq!(driver.status, Status::Fail);
    assert_eq!(driver.found, "not loaded: /proc/driver/nvidia is missing");
    assert!(driver.fix.starts_with("load the nvidia kernel module"));
    assert_eq!(line(&checks, "device nodes").status, Status::Warn);
    assert_eq!(line(&checks, "NVML").status, Status::Fail);
    assert_eq!(line(&checks, "state dir").status, Status::Ok);
    assert_eq!(
        line(&checks, "log").to_string(),
        "OK log: off (log.file is empty)"
    );
}

fn node(char_link_ok: bool) -> NodeFact {
    NodeFact {
        path: PathBuf::from("/dev/nvidia0"),
        what: "GPU 0 (minor 0)".into(),
        caps: false,
        major: 195,
        minor: 0,
        found: NodeState::CharDevice {
            major: 195,
            minor: 0,
        },
        char_link: PathBuf::from("/dev/char/195:0"),
        char_link_ok,
    }
}

#[test]
fn char_links_matter_only_under_systemd() {
    let mut f = facts();
    f.nodes = vec![node(false)];
    let c = &check_char_links(&f)[0];
    assert_eq!(c.status, Status::Warn);
    assert!(c.fix.contains("ln -s ../nvidia0 /dev/char/195:0"), "{c}");
    f.cgroup.systemd_init = true;
    assert_eq!(check_char_links(&f)[0].status, Status::Fail);
    f.nodes = vec![node(true)];
    assert_eq!(check_char_links(&f)[0].status, Status::Ok);
}

#[test]
fn a_wrong_node_names_its_fix() {
    let mut f = facts();
    let mut n = node(true);
    n.found = NodeState::Missing;
    f.nodes = vec![n];
    // check_nodes looks at nodes only once the driver is read.
    assert_eq!(check_nodes(&f)[0].status, Status::Warn);
    let c = node_line(&f.nodes[0]);
    assert_eq!(c.0, "/dev/nvidia0 (GPU 0 (minor 0), 195:0) is missing");
    assert_eq!(
        c.1,
        "nvidia-modprobe -c 0 -u (or mknod -m 666 /dev/nvidia0 c 195 0)"
    );
}

fn node_line(n: &NodeFact) -> (String, String) {
    (nodes::node_problem(n).unwrap(), nodes::node_fix(n))
}

fn docker(configs: Vec<(PathBuf, Result<RuntimeConfig, String>)>) -> RuntimeFact {
    RuntimeFact {
        name: "docker",
        binary: Some(PathBuf::from("/usr/bin/dockerd")),
        configs,
    }
}

#[test]
fn runtimes_configured_broken_or_shadowed() {
    let mut f = facts();
    let daemon = PathBuf::from("/etc/docker/daemon.json");
    f.runtimes = vec![docker(vec![(daemon.clone(), Err("not valid JSON".into()))])];
    let checks = check_runtimes(&f);
    assert_eq!(
        checks[0].to_string(),
        "OK runtimes: installed: docker (/usr/bin/dockerd)"
    );
    assert_eq!(checks[1].status, Status::Fail);
    assert_eq!(
        checks[1].fix,
        "fix the file: docker refuses to start with it"
    );

    let registered = RuntimeConfig {
        migcage_runtimes: vec!["runtimes.migcage = /usr/bin/migcage-runtime".into()],
        ..Default::default()
    };
    f.runtimes = vec![docker(vec![(daemon, Ok(registered))])];
    assert_eq!(check_runtimes(&f)[1].status, Status::Ok);
    f.docker_hooks = vec![DockerHookFact {
        path_from: "PATH".into(),
        found: Some((
            PathBuf::from("/usr/bin/nvidia-container-runtime-hook"),
            false,
        )),
        unreadable: None,
    }];
    let c = &check_runtimes(&f)[1];
    assert_eq!(c.status, Status::Warn);
    assert!(
        c.found
            .contains("; configured: /etc/docker/daemon.json runtimes.migcage"),
        "{c}"
    );

    f.runtimes = vec![docker(Vec::new())];
    f.docker_hooks.clear();
    let c = &check_runtimes(&f)[1];
    assert_eq!(c.found, "installed but not configured for migcage");
    assert!(c.fix.starts_with("run migcage configure docker"));

    // Not root: dockerd's environment is unreadable, so its hook is unknown, not missing.
    f.docker_hooks = vec![DockerHookFact {
        path_from: "running dockerd (pid 7)".into(),
        found: None,
        unreadable: Some("cannot read /proc/7/environ: Permission denied".into()),
    }];
    let c = &check_runtimes(&f)[1];
    assert_eq!(c.status, Status::Warn);
    assert_eq!(
        c.found,
        "cannot tell whether docker run --gpus runs migcage: cannot read /proc/7/environ: Permission denied"
    );
    assert!(
        c.fix
            .starts_with("run migcage doctor as root to know, or run migcage configure docker"),
        "{c}"
    );
}

#[test]
fn state_dir_and_hooks() {
    let mut f = facts();
    f.state_dir = WritableFact::NotWritable("read-only file system".into());
    let c = check_state_dir(&f);
    assert_eq!(c.status, Status::Fail);
    assert!(c.found.ends_with(": read-only file system"), "{c}");
    let hooks = check_hook_files(&f);
    assert_eq!(
        hooks[0].found,
        "no migcage hook file in /etc/containers/oci/hooks.d"
    );
}

#[test]
fn a_containerd_config_that_breaks_the_kubelet_path_fails() {
    let mut f = facts();
    let file = PathBuf::from("/etc/containerd/config.toml");
    let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.migcage.options]\nBinaryName = \"/usr/bin/migcage-runtime\"\n";
    let parsed = super::super::gather::parse_runtime_config("containerd", text);
    f.runtimes = vec![RuntimeFact {
        name: "containerd",
        binary: Some(PathBuf::from("/usr/bin/containerd")),
        configs: vec![(file, parsed)],
    }];
    let checks = check_runtimes(&f);
    assert_eq!(checks[1].status, Status::Ok, "{}", checks[1]);
    let c = &checks[2];
    assert_eq!(c.status, Status::Fail);
    assert_eq!(c.check, "containerd config");
    assert!(c.found.starts_with("/etc/containerd/config.toml: plugins.\"io.containerd.grpc.v1.cri\".containerd.default_runtime_name is \"runc\""), "{c}");
    assert!(
        c.found
            .contains("container_annotations lacks cdi.k8s.io/*, migcage.io/*"),
        "{c}"
    );
    assert!(c.fix.starts_with("run migcage configure containerd"), "{c}");
}
