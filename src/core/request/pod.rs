//! Kubernetes pods: the sandbox container never gets a device, and a pod can ask for a profile
//! for one of its containers by name.
//!
//! * A pod's sandbox (the pause container holding its namespaces) is marked by the CRI runtime:
//!   containerd's `io.kubernetes.cri.container-type: sandbox`, CRI-O's
//!   `io.kubernetes.cri-o.ContainerType: sandbox`. containerd gives the sandbox the pod's
//!   annotations too (those its runtime entry passes in `pod_annotations`), so without this rule a
//!   pod-level request would lease an instance for the pause process. A sandbox is left
//!   untouched whatever its environment and annotations say, and a note says why.
//! * `migcage.io/profile.<container name>` on the pod asks for a profile for the container of
//!   that name only (the CRI runtime names it in `io.kubernetes.cri.container-name`, CRI-O in
//!   `io.kubernetes.container.name`); it takes the place of `migcage.io/profile` for that
//!   container. The keys of other containers are ignored. See docs/kubernetes.md.

use super::spec_view::SpecView;
use super::{Devices, DriverCapabilities, Request, PROFILE_ANNOTATION};

/// containerd's container type annotation (`sandbox` or `container`).
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// CRI-O's container type annotation (`sandbox` or `container`).
pub const CRIO_CONTAINER_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
/// The container's name in its pod, as containerd writes it.
pub const CRI_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
/// The container's name in its pod, as CRI-O writes it.
pub const CRIO_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The value of the container type annotations that marks a pod's sandbox.
pub const SANDBOX: &str = "sandbox";

/// Why this spec is a pod's sandbox, when it is one.
pub(super) fn sandbox_note(view: &SpecView) -> Option<String> {
    let key = [CRI_CONTAINER_TYPE, CRIO_CONTAINER_TYPE]
        .into_iter()
        .find(|k| view.annotations.get(*k).map(String::as_str) == Some(SANDBOX))?;
    Some(format!(
        "a pod's sandbox ({key}: {SANDBOX}) never gets a device; the pod's containers do"
    ))
}

/// The per-container profile annotation for `name`.
pub fn profile_key(name: &str) -> String {
    format!("{PROFILE_ANNOTATION}.{name}")
}

/// Put the pod's profile for this container (if any) where `migcage.io/profile` is read.
pub(super) fn container_profile(view: &mut SpecView, notes: &mut Vec<String>) {
    let Some(name) = [CRI_CONTAINER_NAME, CRIO_CONTAINER_NAME]
        .into_iter()
        .find_map(|k| view.annotations.get(k))
    else {
        return;
    };
    let key = profile_key(name);
    let Some(value) = view.annotations.get(&key).cloned() else {
        return;
    };
    if let Some(pod_wide) = view.annotations.get(PROFILE_ANNOTATION) {
        notes.push(format!(
            "annotation {key} ({value}) replaces {PROFILE_ANNOTATION} ({pod_wide}) for container {name}"
        ));
    }
    view.annotations
        .insert(PROFILE_ANNOTATION.to_string(), value);
}

/// The request of a container left untouched, with the note that says why.
pub(super) fn untouched(privileged: bool, note: String) -> Request {
    Request {
        devices: Devices::Untouched,
        sources: Vec::new(),
        driver_capabilities: DriverCapabilities::DEFAULT,
        mig_config: None,
        mig_monitor: None,
        privileged,
        notes: vec![note],
        must_agree: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::RequestPolicy;
    use crate::core::request::{parse, DeviceSelector};

    fn spec(env: &[&str], annotations: serde_json::Value) -> serde_json::Value {
        json!({"process": {"env": env}, "annotations": annotations})
    }

    #[test]
    fn a_sandbox_never_gets_a_device() {
        let policy = RequestPolicy::default();
        for key in [CRI_CONTAINER_TYPE, CRIO_CONTAINER_TYPE] {
            let s = spec(
                &["NVIDIA_VISIBLE_DEVICES=0:1"],
                json!({key: "sandbox", "migcage.io/profile": "1g.5gb",
                       "cdi.k8s.io/x": "nvidia.com/gpu=0:2", "migcage.io/devices": "0:3"}),
            );
            let r = parse(&s, &policy).unwrap();
            assert_eq!(r.devices, Devices::Untouched, "{key}");
            assert!(r.sources.is_empty());
            assert!(
                r.notes[0].contains(&format!("{key}: sandbox")),
                "{:?}",
                r.notes
            );
            // Even a malformed request does not fail a sandbox.
            let s = spec(&["NVIDIA_VISIBLE_DEVICES=0:x"], json!({key: "sandbox"}));
            assert_eq!(parse(&s, &policy).unwrap().devices, Devices::Untouched);
        }
        // A container of the pod is served as usual.
        let s = spec(
            &["NVIDIA_VISIBLE_DEVICES=0:1"],
            json!({CRI_CONTAINER_TYPE: "container"}),
        );
        assert_ne!(parse(&s, &policy).unwrap().devices, Devices::Untouched);
    }

    #[test]
    fn a_pod_asks_for_a_profile_for_one_container() {
        let policy = RequestPolicy::default();
        let pod =
            json!({"migcage.io/profile.trainer": "2g.10gb", "migcage.io/profile.eval": "1g.5gb"});
        let with_name = |key: &str, name: &str| {
            let mut a = pod.clone();
            a[key] = json!(name);
            parse(&spec(&[], a), &policy).unwrap()
        };
        for key in [CRI_CONTAINER_NAME, CRIO_CONTAINER_NAME] {
            let r = with_name(key, "trainer");
            let Devices::Selected(d) = &r.devices else {
                panic!("{:?}", r.devices)
            };
            assert_eq!(d.len(), 1);
            assert!(
                matches!(&d[0], DeviceSelector::Profile { profile, count: 1, .. } if profile == "2g.10gb"),
                "{d:?}"
            );
            // A container no key names gets nothing.
            assert_eq!(with_name(key, "sidecar").devices, Devices::Untouched);
        }
        // Without a container name (not a pod), the keys are not read.
        assert_eq!(
            parse(&spec(&[], pod.clone()), &policy).unwrap().devices,
            Devices::Untouched
        );
        // The container's key replaces the pod-wide profile, with a note.
        let mut a = pod.clone();
        a["migcage.io/profile"] = json!("3g.20gb");
        a[CRI_CONTAINER_NAME] = json!("eval");
        let r = parse(&spec(&[], a), &policy).unwrap();
        let Devices::Selected(d) = &r.devices else {
            panic!()
        };
        assert!(
            matches!(&d[0], DeviceSelector::Profile { profile, .. } if profile == "1g.5gb"),
            "{d:?}"
        );
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("replaces migcage.io/profile (3g.20gb)")),
            "{:?}",
            r.notes
        );
        assert_eq!(profile_key("eval"), "migcage.io/profile.eval");
    }
}
