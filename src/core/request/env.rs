//! The NVIDIA environment variables: `NVIDIA_VISIBLE_DEVICES` and the MIG config / monitor
//! lists (`NVIDIA_DRIVER_CAPABILITIES` is in [`super::capabilities`]).

use crate::config::RequestPolicy;

use super::errors::shown;
use super::merge::Group;
use super::mounts::is_list_marker;
use super::selector::{parse_list, Syntax};
use super::spec_view::SpecView;
use super::{
    DeviceSelector, Devices, RequestError, Source, CUDA_VERSION, DRIVER_CAPABILITIES,
    MIG_CONFIG_DEVICES, MIG_MONITOR_DEVICES, VISIBLE_DEVICES,
};

/// What `NVIDIA_VISIBLE_DEVICES` selects, as a group, if honoured. `kubelet_groups` are the
/// groups of the other sources: `all` gives way to them, and the mounts marker needs them.
pub(super) fn visible_devices(
    view: &SpecView,
    policy: &RequestPolicy,
    kubelet_groups: &[Group],
    notes: &mut Vec<String>,
) -> Result<Option<Group>, RequestError> {
    let env_honoured = policy.accept_env && (view.privileged || !policy.env_privileged_only);
    let value = match view.env.get(VISIBLE_DEVICES) {
        None => {
            if view.env.contains_key(CUDA_VERSION) {
                notes.push(format!(
                    "{CUDA_VERSION} is set but {VISIBLE_DEVICES} is not: migcage never hands out GPUs implicitly (set {VISIBLE_DEVICES} to ask for one)"
                ));
            }
            return Ok(None);
        }
        Some(value) if value.trim().is_empty() => return Ok(None),
        Some(value) if !env_honoured => {
            let why = if policy.accept_env {
                "the container is not privileged and the configuration has requests.env_privileged_only = true"
            } else {
                "the configuration does not accept it (requests.accept_env = false)"
            };
            notes.push(format!("{VISIBLE_DEVICES}={} ignored: {why}", shown(value)));
            return Ok(None);
        }
        Some(value) if is_list_marker(value) => {
            return list_marker(value, policy, kubelet_groups, notes);
        }
        Some(value) => value,
    };
    let devices = parse_list(value, Syntax::Env).map_err(|problem| RequestError::Invalid {
        origin: VISIBLE_DEVICES.into(),
        value: value.clone(),
        problem,
        hint: Syntax::Env.hint().into(),
    })?;
    let is_all = devices == Devices::Selected(vec![DeviceSelector::All]);
    let kubelet = kubelet_groups
        .iter()
        .find(|g| g.kubelet)
        .map(|g| g.label.clone());
    match (devices, kubelet) {
        (Devices::Untouched, _) => Ok(None),
        (_, Some(kubelet)) if is_all => {
            notes.push(format!(
                "{VISIBLE_DEVICES}=\"all\" ignored in favour of {kubelet}: it is the default the nvidia/cuda base images bake in, not a request"
            ));
            Ok(None)
        }
        (devices, _) => Ok(Some(Group {
            label: VISIBLE_DEVICES.into(),
            value: value.clone(),
            devices,
            sources: vec![Source::Env],
            kubelet: false,
        })),
    }
}

/// `NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices`: the list is the mounts, which
/// must be there (and accepted). Never a group of its own.
fn list_marker(
    value: &str,
    policy: &RequestPolicy,
    kubelet_groups: &[Group],
    notes: &mut Vec<String>,
) -> Result<Option<Group>, RequestError> {
    if !policy.accept_volume_mounts {
        notes.push(format!(
            "{VISIBLE_DEVICES}={} points at mounts, which the configuration does not accept (requests.accept_volume_mounts = false)",
            shown(value)
        ));
    } else if kubelet_groups.is_empty() {
        return Err(RequestError::NoDeviceMounts {
            value: value.to_string(),
        });
    }
    Ok(None)
}

/// Notes for the variables a container that asks for no device sets anyway (they are not parsed).
pub(super) fn note_ignored(view: &SpecView, notes: &mut Vec<String>) {
    for var in [DRIVER_CAPABILITIES, MIG_CONFIG_DEVICES, MIG_MONITOR_DEVICES] {
        if view.env.get(var).is_some_and(|v| !v.trim().is_empty()) {
            notes.push(format!("{var} ignored: no device is requested"));
        }
    }
}

/// `NVIDIA_MIG_CONFIG_DEVICES` or `NVIDIA_MIG_MONITOR_DEVICES`: the GPUs, for a privileged
/// container (`None` when unset, empty or not accepted).
pub(super) fn mig_devices(
    var: &'static str,
    view: &SpecView,
    policy: &RequestPolicy,
    notes: &mut Vec<String>,
) -> Result<Option<Vec<DeviceSelector>>, RequestError> {
    let value = match view.env.get(var) {
        Some(v) if !v.trim().is_empty() => v,
        _ => return Ok(None),
    };
    if !policy.accept_env {
        notes.push(format!(
            "{var} ignored: the configuration does not accept the environment (requests.accept_env = false)"
        ));
        return Ok(None);
    }
    if !view.privileged {
        return Err(RequestError::NeedsPrivileged {
            var,
            value: value.clone(),
            why: view.unprivileged_why,
        });
    }
    match parse_list(value, Syntax::Gpus) {
        Ok(Devices::Selected(list)) => Ok(Some(list)),
        Ok(_) => Ok(None),
        Err(problem) => Err(RequestError::Invalid {
            origin: var.into(),
            value: value.clone(),
            problem,
            hint: Syntax::Gpus.hint().into(),
        }),
    }
}
