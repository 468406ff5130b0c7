//! `cdi list`: migcage's specs on disk, what each offers, and where it no longer matches the
//! host.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::spec::{device_id, is_migcage_spec, read, Device, Format, Spec, SpecEdits, SpecNode};
use crate::core::node::NodeObject;
use crate::core::request::DEVICE_LIST_DIR;

/// migcage's specs among the `.json` / `.yaml` / `.yml` files of `dirs` (files that are not
/// CDI specs, or are other vendors', are skipped), sorted by path.
pub fn find_specs(dirs: &[PathBuf]) -> Vec<(PathBuf, Spec)> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && Format::of_path(p).is_some())
            .collect();
        paths.sort();
        for p in paths {
            if let Ok(spec) = read(&p) {
                if is_migcage_spec(&spec) {
                    out.push((p, spec));
                }
            }
        }
    }
    out
}

/// One device of a spec, grouped by what it gives: all its names, the device it is, its nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offer {
    /// Fully qualified: `nvidia.com/gpu=0:1`, `nvidia.com/gpu=MIG-...`.
    pub names: Vec<String>,
    /// `MIG-...`, `GPU-...`, `all`; `None` when the edits do not say.
    pub device: Option<String>,
    /// The device's own nodes.
    pub nodes: Vec<NodeObject>,
}

/// What a spec on disk offers, and where it no longer matches the host.
#[derive(Debug, Clone, Serialize)]
pub struct SpecReport {
    pub path: PathBuf,
    pub kind: String,
    pub cdi_version: String,
    pub offers: Vec<Offer>,
    /// Nodes every device comes with.
    pub common_nodes: Vec<NodeObject>,
    /// `path args...` of the hooks.
    pub hooks: Vec<String>,
    /// One line each.
    pub warnings: Vec<String>,
}

fn node_set(e: &SpecEdits) -> BTreeSet<(String, Option<i64>, Option<i64>)> {
    e.device_nodes.iter().map(SpecNode::key).collect()
}

fn node_list(e: &SpecEdits) -> String {
    if e.device_nodes.is_empty() {
        return "no nodes".into();
    }
    e.device_nodes
        .iter()
        .map(SpecNode::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The devices of `spec` grouped by the device they give (their `/var/run/nvidia-container-devices`
/// mount); devices without one stand alone under their name.
fn offers(spec: &Spec) -> Vec<(Option<String>, Vec<&Device>)> {
    let mut out: Vec<(Option<String>, Vec<&Device>)> = Vec::new();
    for d in &spec.devices {
        let id = device_id(&d.container_edits).map(str::to_string);
        match out.iter_mut().find(|(i, _)| i.is_some() && *i == id) {
            Some((_, v)) => v.push(d),
            None => out.push((id, vec![d])),
        }
    }
    out
}

fn is_index_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_digit() || c == ':')
}

/// Where `disk` (the spec read from `path`) no longer matches `now` (the spec of the host as it is
/// now, generated with the same kind). One line each, naming the device, what the spec says, what
/// the host has, and what to do: the command that rewrites that very file.
pub fn staleness(path: &Path, disk: &Spec, now: &Spec) -> Vec<String> {
    let fix = format!(
        "regenerate the spec with '{}'",
        super::regenerate(path, &disk.kind)
    );
    let fix = fix.as_str();
    let mut out = Vec::new();
    let disk_offers = offers(disk);
    let now_offers = offers(now);
    let now_by_id: BTreeMap<&str, &Vec<&Device>> = now_offers
        .iter()
        .filter_map(|(id, v)| id.as_deref().map(|i| (i, v)))
        .collect();
    // Index name -> the device that holds it now.
    let now_index: BTreeMap<&str, &str> = now_offers
        .iter()
        .filter_map(|(id, v)| id.as_deref().map(|i| (i, v)))
        .flat_map(|(id, v)| {
            v.iter()
                .filter(|d| is_index_name(&d.name))
                .map(move |d| (d.name.as_str(), id))
        })
        .collect();
    let mut accounted: BTreeSet<&str> = BTreeSet::new();
    let kind = &disk.kind;
    for (id, devs) in &disk_offers {
        let names: Vec<&str> = devs.iter().map(|d| d.name.as_str()).collect();
        let shown = names.join(", ");
        let Some(id) = id.as_deref() else {
            out.push(format!(
                "{kind}={shown}: has no {DEVICE_LIST_DIR} mount, so migcage cannot tell which device it gives; {fix}"
            ));
            continue;
        };
        accounted.insert(id);
        match now_by_id.get(id) {
            Some(now_devs) => out.extend(changed(fix, kind, id, devs, now_devs, &now_index)),
            None => out.push(gone(fix, kind, id, &names, &now_index, &mut accounted)),
        }
    }
    for (id, devs) in &now_offers {
        let Some(id) = id.as_deref() else { continue };
        if accounted.contains(id) {
            continue;
        }
        let names: Vec<&str> = devs.iter().map(|d| d.name.as_str()).collect();
        out.push(format!(
            "{kind}={}: {id} is on this host but not in the spec; {fix}",
            names.join(", ")
        ));
    }
    if node_set(&disk.container_edits) != node_set(&now.container_edits) {
        out.push(format!(
            "{kind}: every device comes with {}, but the host now has {}; {fix}",
            node_list(&disk.container_edits),
            node_list(&now.container_edits)
        ));
    }
    out.extend(missing_hooks(disk, fix));
    out
}

/// The lines of a device that is still on the host: its nodes changed, or its index names now
/// name another device.
fn changed(
    fix: &str,
    kind: &str,
    id: &str,
    devs: &[&Device],
    now_devs: &[&Device],
    now_index: &BTreeMap<&str, &str>,
) -> Vec<String> {
    let mut out = Vec::new();
    let names: Vec<&str> = devs.iter().map(|d| d.name.as_str()).collect();
    let shown = names.join(", ");
    let (d, n) = (&devs[0].container_edits, &now_devs[0].container_edits);
    if node_set(d) != node_set(n) {
        out.push(format!(
            "{kind}={shown} ({id}): the spec gives {}, the host now has {}; {fix}",
            node_list(d),
            node_list(n)
        ));
    }
    let now_names: BTreeSet<&str> = now_devs.iter().map(|d| d.name.as_str()).collect();
    for name in names.iter().filter(|n| is_index_name(n)) {
        if !now_names.contains(name) {
            let holder = match now_index.get(name) {
                Some(other) => format!("{name} is now {other}"),
                None => format!("there is no {name} now"),
            };
            out.push(format!(
                "{kind}={name}: the spec names {id} {name}, but the host now calls it {}; {holder}; {fix}",
                now_devs
                    .iter()
                    .find(|d| is_index_name(&d.name))
                    .map(|d| d.name.as_str())
                    .unwrap_or("by UUID only")
            ));
        }
    }
    out
}

/// The line of a device gone from the host, with what holds its index names now (those devices
/// are `accounted` for: the line names them).
fn gone<'a>(
    fix: &str,
    kind: &str,
    id: &str,
    names: &[&str],
    now_index: &BTreeMap<&str, &'a str>,
    accounted: &mut BTreeSet<&'a str>,
) -> String {
    let shown = names.join(", ");
    let mut line = format!(
        "{kind}={shown}: {id} is gone from this host (destroyed, or destroyed and re-created with a new UUID, since the spec was generated)"
    );
    for name in names.iter().filter(|n| is_index_name(n)) {
        match now_index.get(name) {
            Some(other) => {
                let _ = write!(line, "; {name} is now {other}");
                accounted.insert(other);
            }
            None => {
                let _ = write!(line, "; there is no {name} now");
            }
        }
    }
    let _ = write!(line, "; {fix}");
    line
}

/// A line for each binary of the spec's `migcage hook`s that is missing (once, however many
/// stages run it).
fn missing_hooks(disk: &Spec, fix: &str) -> Vec<String> {
    let mut paths: Vec<&str> = Vec::new();
    for h in &disk.container_edits.hooks {
        if h.runs_migcage() && !Path::new(&h.path).is_file() && !paths.contains(&h.path.as_str()) {
            paths.push(&h.path);
        }
    }
    paths
        .into_iter()
        .map(|path| {
            format!(
                "{}: the hook {path} does not exist, so every container asking for a device fails to start; reinstall migcage, or {fix} and --hook-path naming migcage's binary",
                disk.kind
            )
        })
        .collect()
}

/// A spec's node as the one node object of every report (docs/json.md).
fn node_object(n: &SpecNode) -> NodeObject {
    NodeObject {
        path: n.path.clone(),
        host_path: n.host_path.clone(),
        major: n.major.and_then(|m| u32::try_from(m).ok()),
        minor: n.minor.and_then(|m| u32::try_from(m).ok()),
        mode: n.file_mode.map(NodeObject::mode_text),
    }
}

fn joined(nodes: &[NodeObject]) -> String {
    nodes
        .iter()
        .map(NodeObject::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a spec offers, with its staleness against `now`.
pub fn report(path: &Path, disk: &Spec, now: Option<&Spec>) -> SpecReport {
    SpecReport {
        path: path.to_path_buf(),
        kind: disk.kind.clone(),
        cdi_version: disk.cdi_version.clone(),
        offers: offers(disk)
            .into_iter()
            .map(|(id, devs)| Offer {
                names: devs
                    .iter()
                    .map(|d| format!("{}={}", disk.kind, d.name))
                    .collect(),
                device: id,
                nodes: devs[0]
                    .container_edits
                    .device_nodes
                    .iter()
                    .map(node_object)
                    .collect(),
            })
            .collect(),
        common_nodes: disk
            .container_edits
            .device_nodes
            .iter()
            .map(node_object)
            .collect(),
        hooks: disk
            .container_edits
            .hooks
            .iter()
            .map(|h| {
                let mut s = format!("{} ({})", h.path, h.hook_name);
                if h.args.len() > 1 {
                    let _ = write!(s, ": {}", h.args[1..].join(" "));
                }
                s
            })
            .collect(),
        warnings: now.map(|n| staleness(path, disk, n)).unwrap_or_default(),
    }
}

/// The report for people (the warnings are printed separately, on standard error).
pub fn render(r: &SpecReport) -> String {
    let mut s = String::new();
    let count: usize = r.offers.iter().map(|o| o.names.len()).sum();
    let _ = writeln!(
        s,
        "{}: kind {}, cdiVersion {}, {count} device names",
        r.path.display(),
        r.kind,
        r.cdi_version
    );
    if !r.common_nodes.is_empty() {
        let _ = writeln!(s, "  every device also gets: {}", joined(&r.common_nodes));
    }
    for h in &r.hooks {
        let _ = writeln!(s, "  hook: {h}");
    }
    for o in &r.offers {
        let nodes = if o.nodes.is_empty() {
            String::new()
        } else {
            format!(" -> {}", joined(&o.nodes))
        };
        let _ = writeln!(
            s,
            "  {}  [{}]{nodes}",
            o.names.join(" | "),
            o.device.as_deref().unwrap_or("unknown device")
        );
    }
    s
}
