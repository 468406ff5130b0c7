//! `migcage cdi`: the CDI back end. A Container Device Interface spec describes every device of
//! the host so that a CDI-aware engine (Podman, CRI-O, containerd 1.7+) injects it with
//! `--device nvidia.com/gpu=0:1`; and `cdi list` tells whether the spec on disk still matches the
//! hardware.
//!
//! # What the spec holds
//!
//! Each device's edits come from the plan ([`plan::resolve`](crate::core::plan::resolve) of a request for exactly that
//! device), the same plan the hook and the runtime wrapper apply, so no back end can differ in
//! what a device is:
//!
//! * one device per GPU, named by index (`0`) and by UUID (`GPU-...`), one per MIG device, named
//!   by index (`0:1`) and by UUID (`MIG-...`), and `all` (with the class `mig`: MIG devices only);
//! * in each device's `containerEdits`: its own device nodes (path, hostPath, type, major, minor,
//!   fileMode, cgroup permissions `rw`), and one bind mount of `/dev/null` on
//!   `/var/run/nvidia-container-devices/<UUID>` (`.../all` for `all`);
//! * in the spec's top-level `containerEdits`, once: the nodes every device needs (nvidiactl,
//!   nvidia-uvm, nvidia-uvm-tools), the plan's mounts and environment common to every device, the
//!   driver's files for the spec's driver capabilities as bind mounts with the hook's options
//!   (so an engine without migcage gets them), `NVIDIA_VISIBLE_DEVICES=/var/run/nvidia-container-devices`,
//!   and a `createRuntime` hook running `migcage hook createRuntime` for what the engine cannot
//!   do: the isolated `/proc/driver/nvidia` view inside the container, and on the host the
//!   nodes' `DeviceAllow=` on the container's systemd unit (see [`HOOK_STAGE`]). The hook is
//!   idempotent: the engine has already made the nodes and their cgroup rules, which it leaves
//!   as they are.
//!   A `poststop` hook (`migcage hook poststop`) then gives the container's leases back when the
//!   container goes (`podman run --rm`, `podman rm`); an engine that drops it leaves them to
//!   `migcage release` and stale detection, as before.
//!
//! The driver libraries' symbolic links and ld cache entries have no CDI field: they are the
//! hook's work inside the container, which plans the container again from its spec (and finds
//! the driver's files already mounted).
//!
//! The hook learns which devices it serves from the mounts, the Kubernetes device plugin's
//! volume-mounts convention that the request parser already reads. Not from an environment
//! variable per device: CDI engines merge `env` edits by name, so with two devices only the last
//! `NVIDIA_VISIBLE_DEVICES` would survive, while every device's mount does. Mounts are honoured
//! also under `requests.env_privileged_only`, and each names its device by UUID, so a device named
//! by index in the spec stays pinned to the instance it was generated for: if the instance was
//! re-created since, the hook stops the container ("no MIG device has that UUID") instead of
//! handing out whatever holds that index now.
//!
//! # Version
//!
//! `cdiVersion` is the lowest version that expresses the spec ([`minimum_version`], the rules of
//! the CDI Go library's `MinimumRequiredVersion`): device names starting with a digit and
//! `hostPath` on device nodes need 0.5.0, which is what migcage writes. Podman 4.3 (Debian 12)
//! reads specs up to 0.5.0 and drops a 0.6.0 spec as invalid ("unresolvable CDI devices").
//!
//! # Files
//!
//! `migcage cdi generate` prints the spec; `--output /etc/cdi/` writes
//! `/etc/cdi/<vendor>-<class>.yaml` (`/etc/cdi/nvidia.com-gpu.yaml`),
//! the CDI Go library's naming for a vendor's spec, and does not collide with the NVIDIA toolkit's
//! `/etc/cdi/nvidia.yaml`. Both declare `nvidia.com/gpu`: keep one of them on a host, or engines
//! refuse the device names both declare.

//!
//! # Modules
//!
//! [`spec`]: the spec file's types and their (de)serialization; [`generate`](mod@generate): the spec of the
//! host, from the plan's [`ContainerEdits`](crate::core::edits::ContainerEdits); [`list`]: the
//! specs on disk, their staleness against the host, and the report `cdi list` prints.

pub mod generate;
pub mod list;
pub mod spec;
#[cfg(test)]
mod tests;
mod yaml;

use std::path::{Path, PathBuf};

use crate::core::plan::PlanError;

pub use generate::{
    destination, device_list_mount, generate, write_atomic, Destination, GenerateOptions, Generated,
};
pub use list::{find_specs, render, report, staleness, Offer, SpecReport};
pub use spec::{
    device_id, is_migcage_spec, minimum_version, parse, read, to_text, valid_device_name, Device,
    Format, Kind, Spec, SpecEdits, SpecHook, SpecMount, SpecNode,
};

/// The directory CDI engines read first, where the hints tell an administrator to write the spec.
pub const DEFAULT_DIR: &str = "/etc/cdi";
/// The directories CDI engines read (in rising priority); `cdi list` looks in both.
pub const SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];
/// The kind `cdi generate` writes unless told otherwise.
pub const DEFAULT_KIND: &str = "nvidia.com/gpu";
/// The command that rewrites the spec file `path` of `kind` in place (`cdi generate` alone
/// prints the spec on stdout).
pub fn regenerate(path: &Path, kind: &str) -> String {
    let kind = if kind == DEFAULT_KIND {
        String::new()
    } else {
        format!(" --kind {kind}")
    };
    format!("migcage cdi generate --output {}{kind}", path.display())
}
/// What each device's mount binds on `/var/run/nvidia-container-devices/<UUID>`.
pub const DEVICE_LIST_HOST_PATH: &str = "/dev/null";
/// The stage of the hook in the spec: createRuntime, which runtimes run on the host with the
/// container's host pid. From there the hook reaches the host's systemd (to register the
/// container's nodes as `DeviceAllow=`, so that they survive `systemctl daemon-reload`) and the
/// host's `/dev/char`; a createContainer hook runs inside the container's namespaces, where the
/// cgroup namespace hides the container's unit and `/dev/char` is the container's.
pub const HOOK_STAGE: &str = "createRuntime";
/// The stage of the hook that releases the container's leases.
pub const POSTSTOP_STAGE: &str = "poststop";

/// Why a CDI spec cannot be generated, written, read or trusted. One line each.
#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    #[error("CDI kind {kind:?}: {why}; write VENDOR/CLASS with the class gpu or mig, such as nvidia.com/gpu")]
    Kind { kind: String, why: String },
    #[error("cannot plan CDI device {name}: {source}")]
    Plan {
        name: String,
        source: Box<PlanError>,
    },
    #[error("kind {kind}: {why}, so the spec would have no device; check 'migcage list'")]
    NoDevices { kind: String, why: String },
    #[error("{}: {why}", path.display())]
    Output { path: PathBuf, why: String },
    #[error("cannot write CDI spec {}: {source}; run as root, or choose another --output", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read CDI spec {}: {source}; check the path, or write the spec with '{}'", path.display(), regenerate(path, DEFAULT_KIND))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CDI spec {} does not parse: {message}; regenerate it with '{}'", path.display(), regenerate(path, DEFAULT_KIND))]
    Parse { path: PathBuf, message: String },
    #[error("cannot serialize the CDI spec: {0}")]
    Serialize(String),
}
