//! migcage's own annotations: `migcage.io/devices` (the syntax of `NVIDIA_VISIBLE_DEVICES`) and
//! `migcage.io/profile`.

use crate::config::RequestPolicy;

use super::merge::{check_merged, join_labels, Group};
use super::selector::{duplicate_problem, parse_list, same_device, Syntax};
use super::spec_view::SpecView;
use super::{Devices, RequestError, Source, DEVICES_ANNOTATION, PROFILE_ANNOTATION};

/// The devices of `migcage.io/devices` and `migcage.io/profile`, as one group, if honoured.
pub(super) fn group(
    view: &SpecView,
    policy: &RequestPolicy,
    notes: &mut Vec<String>,
) -> Result<Option<Group>, RequestError> {
    let mut own: Vec<(String, String, Devices)> = Vec::new();
    for (key, syntax) in [
        (DEVICES_ANNOTATION, Syntax::Env),
        (PROFILE_ANNOTATION, Syntax::Profile),
    ] {
        let Some(value) = view.annotations.get(key) else {
            continue;
        };
        if !policy.accept_annotations {
            if !value.trim().is_empty() {
                notes.push(format!(
                    "annotation {key} ignored: the configuration does not accept annotations (requests.accept_annotations = false)"
                ));
            }
            continue;
        }
        let devices = parse_list(value, syntax).map_err(|problem| RequestError::Invalid {
            origin: format!("annotation {key}"),
            value: value.clone(),
            problem,
            hint: syntax.hint().into(),
        })?;
        if devices != Devices::Untouched {
            own.push((key.to_string(), value.clone(), devices));
        }
    }
    if own.is_empty() {
        return Ok(None);
    }
    let keys: Vec<String> = own.iter().map(|(k, _, _)| k.clone()).collect();
    let label = join_labels("annotation", &keys);
    let value = own
        .iter()
        .map(|(_, v, _)| v.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let devices = combine(&own, &label, &value)?;
    Ok(Some(Group {
        label,
        value,
        devices,
        sources: keys
            .into_iter()
            .map(|key| Source::MigcageAnnotation { key })
            .collect(),
        kubelet: true,
    }))
}

/// One annotation's devices, or both annotations' devices in one list (both must list devices).
fn combine(
    own: &[(String, String, Devices)],
    label: &str,
    value: &str,
) -> Result<Devices, RequestError> {
    Ok(match own {
        [(_, _, d)] => d.clone(),
        [(k1, v1, d1), (k2, v2, d2)] => match (d1, d2) {
            (Devices::Selected(a), Devices::Selected(b)) => {
                let mut all = a.clone();
                for d in b {
                    if let Some(prev) = all.iter().find(|p| same_device(p, d)) {
                        return Err(RequestError::Invalid {
                            origin: label.to_string(),
                            value: value.to_string(),
                            problem: duplicate_problem(prev, d),
                            hint: Syntax::Env.hint().into(),
                        });
                    }
                    all.push(d.clone());
                }
                check_merged(label, value, &all, Syntax::Env)?;
                Devices::Selected(all)
            }
            _ => {
                return Err(RequestError::Conflict {
                    first: format!("annotation {k1}"),
                    first_value: v1.clone(),
                    second: format!("annotation {k2}"),
                    second_value: v2.clone(),
                })
            }
        },
        _ => unreachable!("two annotation keys at most"),
    })
}
