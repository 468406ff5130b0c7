//! Combining the honoured sources: the groups each source gives, and whether they agree.

use super::selector::Syntax;
use super::{DeviceSelector, Devices, RequestError, Source, SourceSelection};

/// One honoured source (or several of one kind) and what it selects.
pub(super) struct Group {
    /// For messages: `NVIDIA_VISIBLE_DEVICES`, `annotation cdi.k8s.io/x`, ...
    pub(super) label: String,
    pub(super) value: String,
    pub(super) devices: Devices,
    pub(super) sources: Vec<Source>,
    /// Set by the kubelet (annotations, mounts) rather than by the image or the user.
    pub(super) kubelet: bool,
}

impl Group {
    fn selection(&self) -> SourceSelection {
        SourceSelection {
            label: self.label.clone(),
            value: self.value.clone(),
            selectors: match &self.devices {
                Devices::Selected(s) => s.clone(),
                _ => Vec::new(),
            },
        }
    }

    /// The selection as a sorted set, for comparing sources.
    fn canonical(&self) -> (bool, Vec<DeviceSelector>) {
        match &self.devices {
            Devices::Selected(s) => {
                let mut s = s.clone();
                s.sort();
                (true, s)
            }
            _ => (false, Vec::new()),
        }
    }
}

/// Add `more` to `into`; duplicates (across several annotations or mounts) are dropped.
pub(super) fn merge(into: &mut Vec<DeviceSelector>, more: Vec<DeviceSelector>) -> bool {
    let mut dropped = false;
    for d in more {
        if into.contains(&d) {
            dropped = true;
        } else {
            into.push(d);
        }
    }
    dropped
}

/// Fails when `all` ends up next to other devices after merging several annotations or mounts.
pub(super) fn check_merged(
    label: &str,
    value: &str,
    devices: &[DeviceSelector],
    hint: Syntax,
) -> Result<(), RequestError> {
    if devices.len() > 1 && devices.contains(&DeviceSelector::All) {
        return Err(RequestError::Invalid {
            origin: label.to_string(),
            value: value.to_string(),
            problem: "\"all\" cannot be combined with other devices".into(),
            hint: hint.hint().into(),
        });
    }
    Ok(())
}

pub(super) fn join_labels(kind: &str, keys: &[String]) -> String {
    if keys.len() == 1 {
        format!("{kind} {}", keys[0])
    } else {
        format!("{kind}s {}", keys.join(" and "))
    }
}

/// Honoured sources must agree. Two device lists that differ only in how they name devices
/// (a UUID against an index) can only be compared once resolved: the plan does that (the lists
/// returned, for [`super::Request::must_agree`]). Lists of another kind (none, a profile to
/// allocate) must be the same here.
pub(super) fn must_agree(groups: &[Group]) -> Result<Vec<SourceSelection>, RequestError> {
    let mut must_agree = Vec::new();
    let Some((first, rest)) = groups.split_first() else {
        return Ok(must_agree);
    };
    for other in rest {
        if other.canonical() == first.canonical() {
            continue;
        }
        // Lists written in the same one form (indexes against indexes, UUIDs against UUIDs)
        // differ in devices too: no host is needed to say so.
        let same_form = form(first).is_some() && form(first) == form(other);
        if same_form || !(comparable(first) && comparable(other)) {
            return Err(RequestError::Conflict {
                first: first.label.clone(),
                first_value: first.value.clone(),
                second: other.label.clone(),
                second_value: other.value.clone(),
            });
        }
        if must_agree.is_empty() {
            must_agree.push(first.selection());
        }
        must_agree.push(other.selection());
    }
    Ok(must_agree)
}

/// A device list the plan can compare once resolved: devices, none of them a profile.
fn comparable(g: &Group) -> bool {
    match &g.devices {
        Devices::Selected(s) => !s
            .iter()
            .any(|d| matches!(d, DeviceSelector::Profile { .. })),
        _ => false,
    }
}

/// The one form a device list is written in (0: indexes, 1: UUIDs, 2: other), if it has one.
fn form(g: &Group) -> Option<u8> {
    let Devices::Selected(s) = &g.devices else {
        return None;
    };
    let forms: std::collections::BTreeSet<u8> = s
        .iter()
        .map(|d| match d {
            DeviceSelector::GpuIndex(_) | DeviceSelector::MigIndex { .. } => 0,
            DeviceSelector::GpuUuid(_) | DeviceSelector::MigUuid(_) => 1,
            _ => 2,
        })
        .collect();
    (forms.len() == 1).then(|| forms.into_iter().next().unwrap_or(2))
}
