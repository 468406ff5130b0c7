//! `migcage list`: every GPU and MIG device with the names users type and the exact device nodes
//! a container asking for it would get, and which container holds each MIG device. Pure
//! rendering of an [`Inventory`] and the leases (see [`crate::host::lease`]).

use std::fmt::Write as _;
use std::path::Path;

use serde::ser::SerializeStruct as _;
use serde::{Serialize, Serializer};

use crate::core::edits::DeviceNode;
use crate::core::mig::demand::Created;
use crate::core::plan::nodes::{common_nodes, device_nodes, Target};
use crate::host::inventory::{Gpu, Inventory, MigDevice};
use crate::host::lease::{format_time, Lease, LeaseKind};

/// A device node as listed: the one node object of every report (docs/json.md).
pub use crate::core::node::NodeObject as NodeView;

/// One MIG device as listed: the inventory's own [`MigDevice`] with what a request for it
/// gets. Serialized with the device's fields first, then the listing's.
#[derive(Debug)]
pub struct MigView<'a> {
    pub mig: &'a MigDevice,
    /// `0:1`
    pub index: String,
    /// Every name a request may use for it.
    pub names: Vec<String>,
    /// The device-specific nodes (plus the common nodes listed once at the top).
    pub nodes: Vec<NodeView>,
    /// Who holds it (empty: free). More than one live holder only with `[leases] explicit =
    /// "shared"`.
    pub leases: Vec<LeaseView>,
    /// Held by more than one live container.
    pub shared: bool,
    /// Made on demand by migcage (`[allocation] create_on_demand`), if it was.
    pub created: Option<CreatedView>,
}

/// Who made a MIG device on demand, and when.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CreatedView {
    /// The container it was made for.
    pub by: String,
    /// RFC 3339 UTC.
    pub since: String,
    pub since_unix: u64,
}

impl Serialize for MigView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.mig;
        let mut s = serializer.serialize_struct("MigView", 13)?;
        s.serialize_field("index", &self.index)?;
        s.serialize_field("uuid", &m.uuid)?;
        s.serialize_field("profile", &m.profile)?;
        s.serialize_field("gpu_instance_id", &m.gpu_instance_id)?;
        s.serialize_field("compute_instance_id", &m.compute_instance_id)?;
        s.serialize_field("memory_mib", &m.memory_mib)?;
        s.serialize_field("gi_caps_minor", &m.gi_caps_minor)?;
        s.serialize_field("ci_caps_minor", &m.ci_caps_minor)?;
        s.serialize_field("names", &self.names)?;
        s.serialize_field("nodes", &self.nodes)?;
        s.serialize_field("leases", &self.leases)?;
        s.serialize_field("shared", &self.shared)?;
        s.serialize_field("created", &self.created)?;
        s.end()
    }
}

/// One container's hold on a MIG device.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeaseView {
    /// The MIG device, `MIG-...`.
    pub uuid: String,
    pub container: String,
    /// The container's init process (host pid).
    pub pid: i32,
    /// When it was taken, RFC 3339 UTC.
    pub since: String,
    /// The same, in seconds since the epoch.
    pub since_unix: u64,
    /// `profile` (allocated) or `explicit` (named by the container).
    pub kind: LeaseKind,
    /// What the container asked for: `profile:1g.5gb`, `0:1`.
    pub asked: String,
    /// Its holder process is gone (the container died without its poststop hook): the next
    /// allocation frees it.
    pub stale: bool,
}

impl LeaseView {
    pub fn new(l: &Lease, live: bool) -> LeaseView {
        LeaseView {
            uuid: l.uuid.clone(),
            container: l.container.clone(),
            pid: l.pid,
            since: format_time(l.since),
            since_unix: l.since,
            kind: l.kind,
            asked: l.asked.clone(),
            stale: !live,
        }
    }
}

/// One GPU as listed: the inventory's own [`Gpu`] with what a request for it gets.
#[derive(Debug)]
pub struct GpuView<'a> {
    pub gpu: &'a Gpu,
    pub names: Vec<String>,
    pub nodes: Vec<NodeView>,
    pub mig_devices: Vec<MigView<'a>>,
}

impl Serialize for GpuView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let g = self.gpu;
        let mut s = serializer.serialize_struct("GpuView", 10)?;
        s.serialize_field("index", &g.index)?;
        s.serialize_field("minor", &g.minor)?;
        s.serialize_field("uuid", &g.uuid)?;
        s.serialize_field("name", &g.name)?;
        s.serialize_field("pci_bus_id", &g.pci_bus_id)?;
        s.serialize_field("mig_enabled", &g.mig_enabled)?;
        s.serialize_field("memory_mib", &g.memory_mib)?;
        s.serialize_field("names", &self.names)?;
        s.serialize_field("nodes", &self.nodes)?;
        s.serialize_field("mig_devices", &self.mig_devices)?;
        s.end()
    }
}

/// The whole listing (`--json`).
#[derive(Debug, Serialize)]
pub struct Listing<'a> {
    pub driver_version: String,
    pub cuda_driver_version: String,
    /// Nodes every container with a device gets.
    pub common_nodes: Vec<NodeView>,
    pub gpus: Vec<GpuView<'a>>,
    /// Leases on MIG devices this host no longer has (destroyed or re-created instances).
    pub unknown_leases: Vec<LeaseView>,
}

/// Build the listing.
pub fn listing<'a>(inv: &'a Inventory, dev_root: &Path) -> Listing<'a> {
    let views = |nodes: Option<Vec<DeviceNode>>| -> Vec<NodeView> {
        nodes
            .unwrap_or_default()
            .iter()
            .map(NodeView::from)
            .collect()
    };
    let gpus = inv
        .gpus
        .iter()
        .map(|g| GpuView {
            gpu: g,
            names: vec![g.index.to_string(), g.uuid.clone()],
            nodes: views(device_nodes(&Target::Gpu(g), inv, dev_root)),
            mig_devices: g
                .mig_devices
                .iter()
                .map(|m| {
                    let t = Target::Mig { gpu: g, mig: m };
                    MigView {
                        mig: m,
                        index: t.index_name(),
                        names: vec![t.index_name(), m.uuid.clone()],
                        nodes: views(device_nodes(&t, inv, dev_root)),
                        leases: Vec::new(),
                        shared: false,
                        created: None,
                    }
                })
                .collect(),
        })
        .collect();
    Listing {
        driver_version: inv.driver_version.clone(),
        cuda_driver_version: format!(
            "{}.{}",
            inv.cuda_driver_version / 1000,
            (inv.cuda_driver_version % 1000) / 10
        ),
        common_nodes: common_nodes(inv, dev_root)
            .iter()
            .map(NodeView::from)
            .collect(),
        gpus,
        unknown_leases: Vec::new(),
    }
}

/// Add the leases to a listing: each `(lease, live)` goes to its MIG device, or to
/// `unknown_leases` when the host has no such device.
pub fn attach_leases(listing: &mut Listing, leases: &[(Lease, bool)]) {
    for (l, live) in leases {
        let view = LeaseView::new(l, *live);
        let device = listing
            .gpus
            .iter_mut()
            .flat_map(|g| g.mig_devices.iter_mut())
            .find(|m| m.mig.uuid.eq_ignore_ascii_case(&l.uuid));
        match device {
            Some(m) => m.leases.push(view),
            None => listing.unknown_leases.push(view),
        }
    }
    for m in listing
        .gpus
        .iter_mut()
        .flat_map(|g| g.mig_devices.iter_mut())
    {
        m.shared = m.leases.iter().filter(|l| !l.stale).count() > 1;
    }
}

/// Mark the MIG devices migcage made on demand with who they were made for.
pub fn attach_created(listing: &mut Listing, records: &[Created]) {
    for m in listing
        .gpus
        .iter_mut()
        .flat_map(|g| g.mig_devices.iter_mut())
    {
        m.created = records
            .iter()
            .find(|r| r.uuid.as_deref() == Some(m.mig.uuid.as_str()))
            .map(|r| CreatedView {
                by: r.by.clone(),
                since: format_time(r.since),
                since_unix: r.since,
            });
    }
}

fn lease_line(l: &LeaseView, shared: bool) -> String {
    let mut s = format!(
        "held by container {} since {} (pid {}, asked {}",
        l.container, l.since, l.pid, l.asked
    );
    if shared && !l.stale {
        s.push_str(", shared");
    }
    s.push(')');
    if l.stale {
        s.push_str(" STALE: its process is gone; the next allocation frees it");
    }
    s
}

fn node_list(nodes: &[NodeView]) -> String {
    nodes
        .iter()
        .map(NodeView::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table for people.
pub fn render_table(l: &Listing) -> String {
    let mut s = String::new();
    let mig_count: usize = l.gpus.iter().map(|g| g.mig_devices.len()).sum();
    let _ = writeln!(
        s,
        "Driver {}, CUDA {}: {}, {}",
        l.driver_version,
        l.cuda_driver_version,
        super::commands::count(l.gpus.len(), "GPU"),
        super::commands::count(mig_count, "MIG device")
    );
    // Columns as wide as their widest entry, on every GPU alike.
    let migs = || l.gpus.iter().flat_map(|g| &g.mig_devices);
    let width = |f: &dyn Fn(&MigView) -> usize| migs().map(f).max().unwrap_or(0);
    let w_index = width(&|v| v.index.len());
    let w_profile = width(&|v| v.mig.profile.len());
    let w_gi = width(&|v| v.mig.gpu_instance_id.to_string().len());
    let w_ci = width(&|v| v.mig.compute_instance_id.to_string().len());
    let w_mem = width(&|v| v.mig.memory_mib.to_string().len());
    let _ = writeln!(
        s,
        "Every container with a device also gets: {}",
        node_list(&l.common_nodes)
    );
    for g in &l.gpus {
        let _ = writeln!(s);
        let (nodes, mig_devices, g) = (&g.nodes, &g.mig_devices, g.gpu);
        let mode = if g.mig_enabled {
            "MIG enabled"
        } else {
            "MIG disabled"
        };
        let _ = writeln!(
            s,
            "GPU {}  {}  {}  {}  {}",
            g.index, g.name, g.uuid, g.pci_bus_id, mode
        );
        let _ = writeln!(s, "  whole GPU -> {}", node_list(nodes));
        if g.mig_enabled && mig_devices.is_empty() {
            let _ = writeln!(
                s,
                "  no MIG devices: create some with nvidia-smi mig -cgi <profiles> -C"
            );
        }
        for v in mig_devices {
            let m = v.mig;
            let _ = writeln!(
                s,
                "  {:<w_index$}  {}  {:<w_profile$}  GI {:<w_gi$}  CI {:<w_ci$}  {:>w_mem$} MiB -> {}",
                v.index,
                m.uuid,
                m.profile,
                m.gpu_instance_id,
                m.compute_instance_id,
                m.memory_mib,
                node_list(&v.nodes[1..])
            );
            if let Some(c) = &v.created {
                let _ = writeln!(
                    s,
                    "        created on demand for container {} at {}",
                    c.by, c.since
                );
            }
            for lease in &v.leases {
                let _ = writeln!(s, "        {}", lease_line(lease, v.shared));
            }
        }
    }
    if !l.unknown_leases.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Leases on MIG devices this host no longer has ('migcage release <container-id>' drops them):"
        );
        for lv in &l.unknown_leases {
            let _ = writeln!(s, "  {}  {}", lv.uuid, lease_line(lv, false));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::plan::nodes::tests::inventory;

    #[test]
    fn listing_names_every_form_and_node() {
        let inv = inventory();
        let l = listing(&inv, Path::new("/dev"));
        assert_eq!(l.cuda_driver_version, "12.4");
        assert_eq!(
            l.gpus[0].names,
            vec!["0", "GPU-00000000-0000-0000-0000-000000000000"]
        );
        let m = &l.gpus[0].mig_devices[1];
        assert_eq!(
            m.names,
            vec!["0:1", "MIG-22222222-2222-2222-2222-222222222222"]
        );
        let paths: Vec<&str> = m.nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/dev/nvidia0",
                "/dev/nvidia-caps/nvidia-cap21",
                "/dev/nvidia-caps/nvidia-cap22"
            ]
        );
        assert_eq!(m.nodes[1].mode.as_deref(), Some("0444"));
        assert!(l.gpus[1].mig_devices.is_empty());
    }

    #[test]
    fn table_shows_each_device_once() {
        let inv = inventory();
        let t = render_table(&listing(&inv, Path::new("/dev")));
        assert!(
            t.starts_with("Driver 550.54.15, CUDA 12.4: 2 GPUs, 2 MIG devices\n"),
            "{t}"
        );
        assert!(t.contains("GPU 1  NVIDIA A100-SXM4-40GB"));
        assert_eq!(t.matches("MIG-22222222").count(), 1);
        assert!(t.contains("  0:1  MIG-22222222-2222-2222-2222-222222222222  3g.20gb  GI 2  CI 0  19968 MiB -> /dev/nvidia-caps/nvidia-cap21 (509:21)"), "{t}");
        assert!(!t.contains("held by"), "{t}");
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_entry() {
        let mut inv = inventory();
        inv.gpus[0].mig_devices[0].profile = "2c.3g.40gb".into();
        let t = render_table(&listing(&inv, Path::new("/dev")));
        assert!(t.contains("  0:0  MIG-11111111-1111-1111-1111-111111111111  2c.3g.40gb  GI 1  CI 0  19968 MiB"), "{t}");
        assert!(t.contains("  0:1  MIG-22222222-2222-2222-2222-222222222222  3g.20gb     GI 2  CI 0  19968 MiB"), "{t}");
    }

    fn lease(uuid: &str, container: &str, kind: LeaseKind) -> Lease {
        Lease {
            uuid: uuid.into(),
            container: container.into(),
            pid: 4242,
            start_time: 1,
            since: 1_764_058_555,
            kind,
            asked: if kind == LeaseKind::Profile {
                "profile:3g.20gb".into()
            } else {
                "0:1".into()
            },
        }
    }

    #[test]
    fn leases_show_holder_and_time_in_table_and_json() {
        let inv = inventory();
        let mut l = listing(&inv, Path::new("/dev"));
        let m0 = "MIG-11111111-1111-1111-1111-111111111111";
        let m1 = "MIG-22222222-2222-2222-2222-222222222222";
        attach_leases(
            &mut l,
            &[
                (lease(m0, "web", LeaseKind::Profile), true),
                (lease(m1, "a", LeaseKind::Explicit), true),
                (lease(m1, "b", LeaseKind::Explicit), true),
                (lease(m1, "gone", LeaseKind::Explicit), false),
                (
                    lease(
                        "MIG-99999999-9999-9999-9999-999999999999",
                        "old",
                        LeaseKind::Profile,
                    ),
                    true,
                ),
            ],
        );
        let d0 = &l.gpus[0].mig_devices[0];
        assert_eq!(d0.leases.len(), 1);
        assert!(!d0.shared);
        let d1 = &l.gpus[0].mig_devices[1];
        assert_eq!(d1.leases.len(), 3);
        assert!(d1.shared);
        assert_eq!(l.unknown_leases.len(), 1);

        let v = serde_json::to_value(&l).unwrap();
        let j0 = &v["gpus"][0]["mig_devices"][0]["leases"][0];
        assert_eq!(j0["container"], "web");
        assert_eq!(j0["since"], "2025-11-25T08:15:55Z");
        assert_eq!(j0["since_unix"], 1_764_058_555);
        assert_eq!(j0["kind"], "profile");
        assert_eq!(j0["stale"], false);
        assert_eq!(v["gpus"][0]["mig_devices"][1]["shared"], true);
        assert_eq!(v["gpus"][0]["mig_devices"][1]["leases"][2]["stale"], true);

        let t = render_table(&l);
        assert!(t.contains("\n        held by container web since 2025-11-25T08:15:55Z (pid 4242, asked profile:3g.20gb)\n"), "{t}");
        assert!(
            t.contains(
                "held by container a since 2025-11-25T08:15:55Z (pid 4242, asked 0:1, shared)"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "held by container gone since 2025-11-25T08:15:55Z (pid 4242, asked 0:1) STALE"
            ),
            "{t}"
        );
        assert!(t.contains("no longer has"), "{t}");
        assert!(
            t.contains("MIG-99999999-9999-9999-9999-999999999999  held by container old"),
            "{t}"
        );
    }
}
