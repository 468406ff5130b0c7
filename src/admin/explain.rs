//! `migcage explain`: what migcage would do to a container, without doing it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::backend::hook::container::ContainerWork;
use crate::backend::pipeline::WouldCreate;
use crate::core::plan::Plan;
use crate::core::request::{Devices, Request};

/// The explanation (`--json`).
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub request: Request,
    /// None when nothing was asked for.
    pub plan: Option<Plan>,
    /// What the hook would do inside the container.
    pub container: Option<ContainerWork>,
    /// Where the instance a container starting now would have made for it goes
    /// (`create_on_demand`, no free instance; `plan` is then null).
    pub would_create: Option<WouldCreate>,
}

/// The explanation as `--json` prints it (docs/json.md): its serde form, with every device node
/// as the one node object of migcage's reports (the plan's edits keep CDI's `containerEdits`
/// keys otherwise).
pub fn to_json(e: &Explanation) -> serde_json::Value {
    use crate::core::node::NodeObject;
    let mut v = serde_json::to_value(e).expect("an explanation serializes");
    let nodes = |list: &[crate::core::edits::DeviceNode]| {
        serde_json::to_value(list.iter().map(NodeObject::from).collect::<Vec<_>>())
            .expect("nodes serialize")
    };
    if let Some(plan) = &e.plan {
        v["plan"]["edits"]["deviceNodes"] = nodes(&plan.edits.device_nodes);
    }
    if let Some(c) = &e.container {
        v["container"]["nodes"] = nodes(&c.nodes);
    }
    v
}

fn mode(m: u32) -> String {
    format!("{m:04o}")
}

/// The explanation for people.
pub fn render(e: &Explanation) -> String {
    let mut s = String::new();
    render_request(&mut s, &e.request);
    if let Some(plan) = &e.plan {
        render_plan(&mut s, plan, e.container.as_ref());
    }
    if let Some(w) = &e.would_create {
        let _ = writeln!(
            s,
            "No free {p} instance: a container starting now would have migcage create one on GPU {g} ({u}) at placement start {st} ([allocation] create_on_demand), then get it; its device nodes exist only once it is made",
            p = w.profile,
            g = w.gpu,
            u = w.gpu_uuid,
            st = w.start
        );
    }
    s
}

/// What was asked for, and by which sources.
fn render_request(s: &mut String, r: &Request) {
    let sources: Vec<String> = r.sources.iter().map(ToString::to_string).collect();
    match &r.devices {
        Devices::Untouched => {
            let _ = writeln!(
                s,
                "Request: nothing (no device asked for): migcage leaves this container untouched"
            );
        }
        Devices::DriverOnly => {
            let _ = writeln!(
                s,
                "Request: none (no device, driver capabilities only) from {}",
                sources.join(" and ")
            );
        }
        Devices::Selected(sel) => {
            let names: Vec<String> = sel.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                s,
                "Request: {} from {}",
                names.join(","),
                sources.join(" and ")
            );
        }
    }
    let _ = writeln!(s, "Driver capabilities: {}", r.driver_capabilities);
    let _ = writeln!(
        s,
        "Privileged (CAP_SYS_ADMIN): {}",
        if r.privileged { "yes" } else { "no" }
    );
    for note in &r.notes {
        let _ = writeln!(s, "Note: {note}");
    }
}

/// What the request resolved to: devices, nodes, cgroup rules, the container's view and files.
fn render_plan(s: &mut String, plan: &Plan, container: Option<&ContainerWork>) {
    let _ = writeln!(s, "Resolved to:");
    if plan.devices.is_empty() {
        let _ = writeln!(s, "  no device");
    }
    for d in &plan.devices {
        let _ = writeln!(s, "  {:<5} {}  {}", d.index, d.uuid, d.kind);
    }
    let _ = writeln!(s, "Device nodes:");
    for n in &plan.edits.device_nodes {
        let _ = writeln!(
            s,
            "  {:<36} c {}:{}  mode {}  (host {})",
            n.path,
            n.major,
            n.minor,
            mode(n.file_mode),
            n.host_path
        );
    }
    let _ = writeln!(s, "Cgroup device rules (allow):");
    for r in &plan.edits.device_rules {
        let num = |v: Option<u32>| v.map_or("*".to_string(), |n| n.to_string());
        let _ = writeln!(s, "  c {}:{} {}", num(r.major), num(r.minor), r.access);
    }
    if let Some(view) = container.and_then(|c| c.proc_view.as_ref()) {
        let _ = writeln!(s, "/proc/driver/nvidia in the container: tmpfs with params (ModifyDeviceFiles: 0), version, registry, and:");
        for g in &view.gpus {
            let _ = writeln!(s, "  gpus/{g} (read-only bind)");
        }
        for c in &view.caps {
            let _ = writeln!(s, "  {c} (read-only bind)");
        }
    }
    if !plan.edits.mounts.is_empty() {
        let _ = writeln!(s, "Driver files (bind mounts):");
        for m in &plan.edits.mounts {
            let _ = writeln!(s, "  {}  ({})", m.container_path, m.options.join(","));
        }
    }
    if !plan.edits.symlinks.is_empty() {
        let _ = writeln!(s, "Symlinks:");
        for l in &plan.edits.symlinks {
            let _ = writeln!(s, "  {} -> {}", l.link, l.target);
        }
    }
    if !plan.edits.ld_cache.is_empty() {
        let _ = writeln!(
            s,
            "ld.so.cache: {} entries added, written directly (no program is run)",
            plan.edits.ld_cache.len()
        );
    }
    if !plan.edits.env.is_empty() {
        let _ = writeln!(
            s,
            "Environment (runtime and CDI modes): {}",
            plan.edits.env.join(" ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RequestPolicy;
    use crate::core::plan::nodes::tests::inventory;
    use std::path::Path;

    fn explain(env: &[&str]) -> Explanation {
        let spec = serde_json::json!({"process": {"env": env}, "root": {"path": "rootfs"}});
        let request = crate::core::request::parse(&spec, &RequestPolicy::default()).unwrap();
        let plan = (!request.is_noop()).then(|| {
            crate::core::plan::resolve(&request, &inventory(), Path::new("/dev")).unwrap()
        });
        Explanation {
            request,
            plan,
            container: None,
            would_create: None,
        }
    }

    #[test]
    fn untouched_says_so() {
        let t = render(&explain(&[]));
        assert!(
            t.starts_with(
                "Request: nothing (no device asked for): migcage leaves this container untouched\n"
            ),
            "{t}"
        );
        assert!(!t.contains("Device nodes"));
    }

    #[test]
    fn every_node_with_numbers_and_mode() {
        let t = render(&explain(&["NVIDIA_VISIBLE_DEVICES=0:1"]));
        assert!(
            t.contains("Request: 0:1 from NVIDIA_VISIBLE_DEVICES"),
            "{t}"
        );
        assert!(
            t.contains("  0:1   MIG-22222222-2222-2222-2222-222222222222  3g.20gb"),
            "{t}"
        );
        assert!(t.contains("/dev/nvidia-caps/nvidia-cap21"), "{t}");
        assert!(t.contains("c 509:21  mode 0444"), "{t}");
        assert!(t.contains("  c 195:255 rw\n"), "{t}");
        assert!(!t.contains("c 195:1 "), "{t}");
        // This plan has no driver files (the test inventory has none): no such sections.
        assert!(!t.contains("Driver files"), "{t}");
    }

    #[test]
    fn driver_files_links_and_cache_are_listed() {
        use crate::core::edits::{LdCacheEntry, LibArch, Mount, Symlink};
        let mut e = explain(&["NVIDIA_VISIBLE_DEVICES=0:1"]);
        let lib = "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15";
        let edits = &mut e.plan.as_mut().unwrap().edits;
        edits.mounts.push(Mount {
            host_path: lib.into(),
            container_path: lib.into(),
            options: vec!["ro".into(), "nosuid".into(), "nodev".into(), "bind".into()],
        });
        edits.symlinks.push(Symlink {
            link: "/usr/lib/x86_64-linux-gnu/libcuda.so.1".into(),
            target: "libcuda.so.550.54.15".into(),
        });
        edits.ld_cache.push(LdCacheEntry {
            soname: "libcuda.so.1".into(),
            path: "/usr/lib/x86_64-linux-gnu/libcuda.so.1".into(),
            arch: LibArch::X86_64,
        });
        let t = render(&e);
        assert!(
            t.contains(&format!(
                "Driver files (bind mounts):\n  {lib}  (ro,nosuid,nodev,bind)\n"
            )),
            "{t}"
        );
        assert!(
            t.contains("  /usr/lib/x86_64-linux-gnu/libcuda.so.1 -> libcuda.so.550.54.15\n"),
            "{t}"
        );
        assert!(
            t.contains("ld.so.cache: 1 entries added, written directly (no program is run)"),
            "{t}"
        );
    }
}
