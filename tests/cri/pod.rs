//! One pod through CRI with the isolation probe in each of its containers, and what the test's
//! pods leave behind removed.

use std::process::Command;

use super::client::{ContainerSpec, Cri, PodSpec};
use super::image;
use crate::common::{self, assert_sees_exactly, SimHost, PROBE};

/// What one container of a pod was given by the device plugin, and must see.
pub struct Case<'a> {
    pub container: ContainerSpec<'a>,
    pub sees: Vec<&'a str>,
}

/// A pod on a host: its label, its annotations, its containers.
pub type Scenario<'a> = (&'a SimHost, &'a str, Vec<(&'a str, &'a str)>, Vec<Case<'a>>);

pub fn env(v: &str) -> Vec<(String, String)> {
    vec![("NVIDIA_VISIBLE_DEVICES".into(), v.into())]
}

pub fn annotation(k: &str, v: &str) -> Vec<(String, String)> {
    vec![(k.into(), v.into())]
}

/// How a pod is run: its runtime handler (empty: containerd's default), its cgroup parent, and
/// a shell check run after the probe whose output must contain `expect` (empty: none).
pub struct Runner<'a> {
    pub handler: &'a str,
    pub cgroup_parent: &'a str,
    pub check: &'a str,
    pub expect: &'a [&'a str],
}

impl Runner<'_> {
    /// The probe, with the host's nodes on /hostdev, in each container of one pod.
    pub fn run(
        &self,
        cri: &mut Cri,
        host: &SimHost,
        label: &str,
        pod_annotations: &[(&str, &str)],
        cases: Vec<Case>,
    ) {
        let listing = host.list();
        let name = common::unique("pod");
        let pod = cri
            .run_pod(&PodSpec {
                name: &name,
                annotations: pod_annotations,
                handler: self.handler,
                cgroup_parent: self.cgroup_parent,
            })
            .unwrap_or_else(|e| panic!("{label}: RunPodSandbox: {e}"));
        let script = format!("{PROBE}\n{}", self.check);
        let mut started = Vec::new();
        for mut case in cases {
            case.container.mounts.push((host.dev(), "/hostdev".into()));
            let id = cri
                .start(&pod, image::BUSYBOX_CUDA, &case.container, &script)
                .unwrap_or_else(|e| panic!("{label}: container {}: {e}", case.container.name));
            started.push((case, id));
        }
        for (case, id) in &started {
            let run = cri.wait(&pod, case.container.name, id);
            let ctx = format!("{label}, container {}", case.container.name);
            assert!(run.ok(), "{ctx}: {}{}", run.stdout(), run.stderr());
            assert_sees_exactly(&run, host, &listing, &case.sees, &ctx);
            for want in self.expect {
                assert!(
                    run.stdout().contains(want),
                    "{ctx}: no {want:?} in\n{}",
                    run.stdout()
                );
            }
            eprintln!(
                "CRI {label:<44} {:<8} sees {:?}",
                case.container.name, case.sees
            );
        }
        cri.remove_pod(&pod);
    }
}

/// The cgroup parent of the test's pods, removed (in every hierarchy) when dropped.
pub struct CgroupParent(pub String);

impl Drop for CgroupParent {
    fn drop(&mut self) {
        for cg in common::cgroups_named(&self.0) {
            let _ = Command::new("find")
                .arg(&cg)
                .args(["-depth", "-type", "d", "-delete"])
                .output();
        }
    }
}
