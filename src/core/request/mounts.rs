//! The device plugin's volume-mounts strategy: one mount under
//! `/var/run/nvidia-container-devices/<id>` per device.

use crate::config::RequestPolicy;

use super::errors::shown;
use super::merge::{check_merged, merge, Group};
use super::selector::{parse_id, Syntax};
use super::spec_view::SpecView;
use super::{Devices, RequestError, Source, DEVICE_LIST_DIR, DEVICE_LIST_DIR_RUN};

/// The devices the mounts under the device list directory name, as one group, if honoured.
pub(super) fn group(
    view: &SpecView,
    policy: &RequestPolicy,
    notes: &mut Vec<String>,
) -> Result<Option<Group>, RequestError> {
    let mount_ids: Vec<(&str, &str)> = view
        .destinations
        .iter()
        .filter_map(|d| mount_id(d).map(|id| (d.as_str(), id)))
        .collect();
    if mount_ids.is_empty() {
        return Ok(None);
    }
    if !policy.accept_volume_mounts {
        notes.push(format!(
            "{} mount(s) under {DEVICE_LIST_DIR} ignored: the configuration does not accept them (requests.accept_volume_mounts = false)",
            mount_ids.len()
        ));
        return Ok(None);
    }
    let mut selected = Vec::new();
    for (dest, id) in &mount_ids {
        let invalid = |problem: String| RequestError::Invalid {
            origin: "mount destination".into(),
            value: dest.to_string(),
            problem,
            hint: format!("{} as the last path component", Syntax::Id.hint()),
        };
        if id.contains('/') {
            return Err(invalid(format!(
                "{} is not one device id (it has a \"/\")",
                shown(id)
            )));
        }
        let d = parse_id(id, Syntax::Id).map_err(invalid)?;
        if merge(&mut selected, vec![d]) {
            notes.push(format!(
                "mount {dest} names a device already mounted; counted once"
            ));
        }
    }
    let value = mount_ids
        .iter()
        .map(|(_, id)| *id)
        .collect::<Vec<_>>()
        .join(",");
    check_merged("mounts under", DEVICE_LIST_DIR, &selected, Syntax::Id)?;
    Ok(Some(Group {
        label: format!("mounts under {DEVICE_LIST_DIR}"),
        value,
        devices: Devices::Selected(selected),
        sources: vec![Source::VolumeMounts],
        kubelet: true,
    }))
}

/// The device id of a mount destination under the device list directory, if it is one.
fn mount_id(destination: &str) -> Option<&str> {
    let rest = destination
        .strip_prefix(DEVICE_LIST_DIR)
        .or_else(|| destination.strip_prefix(DEVICE_LIST_DIR_RUN))?;
    let id = rest.strip_prefix('/')?.trim_end_matches('/');
    (!id.is_empty()).then_some(id)
}

/// Whether a value of `NVIDIA_VISIBLE_DEVICES` points at the mounts instead of listing devices.
pub(super) fn is_list_marker(value: &str) -> bool {
    let v = value.trim().trim_end_matches('/');
    v == DEVICE_LIST_DIR || v == DEVICE_LIST_DIR_RUN
}
