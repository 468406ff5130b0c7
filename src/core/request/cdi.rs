//! The kubelet's CDI annotations (`cdi.k8s.io/*`): the CDI names in them that are migcage's.

use crate::config::RequestPolicy;

use super::errors::shown;
use super::merge::{check_merged, join_labels, merge, Group};
use super::selector::{parse_id, Syntax};
use super::spec_view::SpecView;
use super::{DeviceSelector, Devices, RequestError, Source, CDI_ANNOTATION_PREFIX, CDI_VENDORS};

/// The devices of every `cdi.k8s.io/*` annotation, merged into one group, if any is honoured.
pub(super) fn group(
    view: &SpecView,
    policy: &RequestPolicy,
    notes: &mut Vec<String>,
) -> Result<Option<Group>, RequestError> {
    let mut cdi: Vec<DeviceSelector> = Vec::new();
    let (mut cdi_keys, mut cdi_values) = (Vec::new(), Vec::new());
    for (key, value) in view
        .annotations
        .iter()
        .filter(|(k, _)| k.starts_with(CDI_ANNOTATION_PREFIX))
    {
        // The key is shown in messages, notes and the log: a control character in it would
        // break the one-line rule (the kubelet never writes one).
        if key.chars().any(char::is_control) {
            return Err(RequestError::Spec {
                field: "annotations",
                problem: format!("key {} has a control character", shown(key)),
                expected: "annotation keys without control characters",
            });
        }
        let mut cdi_notes = Vec::new();
        let found = parse_cdi_annotation(key, value, &mut cdi_notes)?;
        if found.is_empty() {
            notes.extend(cdi_notes);
            continue;
        }
        if !policy.accept_annotations {
            notes.push(format!(
                "annotation {key} ignored: the configuration does not accept annotations (requests.accept_annotations = false)"
            ));
            continue;
        }
        notes.extend(cdi_notes);
        if merge(&mut cdi, found) {
            notes.push(format!(
                "annotation {key} repeats devices of another CDI annotation; counted once"
            ));
        }
        cdi_keys.push(key.clone());
        cdi_values.push(value.clone());
    }
    if cdi.is_empty() {
        return Ok(None);
    }
    let label = join_labels("annotation", &cdi_keys);
    let value = cdi_values.join(",");
    check_merged(&label, &value, &cdi, Syntax::Id)?;
    Ok(Some(Group {
        label,
        value,
        devices: Devices::Selected(cdi),
        sources: cdi_keys
            .into_iter()
            .map(|key| Source::CdiAnnotation { key })
            .collect(),
        kubelet: true,
    }))
}

/// The CDI names in a `cdi.k8s.io/*` annotation that are migcage's; ignored names are noted.
fn parse_cdi_annotation(
    key: &str,
    value: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<DeviceSelector>, RequestError> {
    let origin = format!("annotation {key}");
    let invalid = |problem: String, syntax: Syntax| RequestError::Invalid {
        origin: origin.clone(),
        value: value.to_string(),
        problem,
        hint: match syntax {
            Syntax::MigId => format!("{} (after nvidia.com/mig=)", syntax.hint()),
            _ => format!("{} (after nvidia.com/gpu=)", syntax.hint()),
        },
    };
    let mut out = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let ours = |vendor: &str| CDI_VENDORS.contains(&vendor);
        let Some((kind, id)) = name.split_once('=') else {
            if CDI_VENDORS
                .iter()
                .any(|v| name.starts_with(&format!("{v}/")))
            {
                return Err(invalid(
                    format!(
                        "{} is not a fully qualified CDI device name (vendor/class=id)",
                        shown(name)
                    ),
                    Syntax::Id,
                ));
            }
            notes.push(format!(
                "annotation {key}: ignored {} (not a CDI device name of migcage's)",
                shown(name)
            ));
            continue;
        };
        let (vendor, class) = kind.split_once('/').unwrap_or((kind, ""));
        if !ours(vendor) {
            continue; // another vendor's device: the runtime's CDI injection handles it
        }
        let syntax = match class {
            "gpu" => Syntax::Id,
            "mig" => Syntax::MigId,
            _ => {
                notes.push(format!(
                    "annotation {key}: ignored {} (class {} is not gpu or mig)",
                    shown(name),
                    shown(class)
                ));
                continue;
            }
        };
        let d = parse_id(id.trim(), syntax)
            .map_err(|p| invalid(format!("in {}: {p}", shown(name)), syntax))?;
        if out.contains(&d) {
            return Err(invalid(
                format!("{} appears twice", shown(&d.to_string())),
                syntax,
            ));
        }
        out.push(d);
    }
    Ok(out)
}
