//! What a container asks for: its OCI spec (env, annotations, mounts) parsed into a typed
//! [`Request`]. Pure: no I/O, no host state; the request is resolved against the host's
//! inventory later, by the plan.
//!
//! # Input
//!
//! [`parse`] takes the bundle's `config.json` as a [`serde_json::Value`], not as
//! `oci_spec::runtime::Spec`: oci-spec refuses documents with values it does not model (a newer
//! runtime-spec field of a known type, a capability name it does not know) and the hook must not
//! fail a container over a field it never reads. The runtime wrapper round-trips config.json as a
//! `Value` anyway, so one parse serves both. Only the fields read here are checked, and only for
//! their shape: `process.env`, `process.capabilities.bounding`, `annotations`,
//! `mounts[].destination` (and `linux.namespaces`, whose wrong shape only means no privilege).
//!
//! # Where the device list comes from
//!
//! * `NVIDIA_VISIBLE_DEVICES` in `process.env` (the last occurrence wins, as in the process's
//!   environment): a comma list of items, whitespace around items ignored:
//!   - `0` (GPU index), `0:1` (GPU index : MIG device index),
//!   - `GPU-<uuid>`, `MIG-<uuid>` (8-4-4-4-12 hex digits; the R450 form
//!     `MIG-GPU-<uuid>/<gi>/<ci>` too),
//!   - `profile:1g.5gb`, `profile:1g.5gb*2`, `profile:0/1g.5gb` (allocation by MIG profile,
//!     optionally on one GPU, optionally several; resolved by the plan),
//!   - `all` (alone),
//!   - `none` (alone: no device, but the driver capabilities still apply),
//!   - `void`, an empty value or no variable at all: nothing, the container is left untouched,
//!   - `/var/run/nvidia-container-devices` (or `/run/...`): the list is given as mounts (the
//!     Kubernetes device plugin's volume-mounts strategy).
//!
//!   Indexes are decimal without a sign or leading zero and at most [`MAX_INDEX`]. Empty items,
//!   duplicates, and `all` / `none` / `void` next to other items are errors.
//!
//!   Unlike the reference toolkit's rule for legacy images (`CUDA_VERSION` set and
//!   `NVIDIA_VISIBLE_DEVICES` unset means all GPUs), migcage never hands out GPUs implicitly: such
//!   a container gets nothing (a note says why).
//! * Annotations (the kubelet's, through the CRI runtime):
//!   - `cdi.k8s.io/<anything>`: a comma list of fully qualified CDI device names. Names of the
//!     vendors `nvidia.com`, `k8s.device-plugin.nvidia.com` and `migcage.io` with the class `gpu`
//!     or `mig` are migcage's: `nvidia.com/gpu=<id>` where id is `0`, `0:1`, a `GPU-`/`MIG-`
//!     UUID or `all` (the class `mig` takes MIG ids only). Names of other vendors, and other
//!     classes of those vendors (`nvidia.com/gds`), are left to the runtime's CDI injection.
//!   - `migcage.io/devices`: the syntax of `NVIDIA_VISIBLE_DEVICES` (without the mounts marker).
//!   - `migcage.io/profile`: `1g.5gb`, `1g.5gb*2`, `0/1g.5gb` (a comma list of those).
//! * Mounts whose destination is `/var/run/nvidia-container-devices/<id>` (or `/run/...`): each
//!   one names one device, with the ids of CDI names; `.../all` means all GPUs.
//!
//! [`RequestPolicy`] says which of these sources are honoured (the environment only for
//! privileged containers, when `env_privileged_only` is set: an ignored variable is noted in
//! [`Request::notes`], never an error). When two honoured sources name different sets of devices,
//! parsing fails naming both; lists written in different words (a UUID in one, an index in the
//! other) go to [`Request::must_agree`] and the plan compares them once resolved. One
//! exception: `NVIDIA_VISIBLE_DEVICES=all` next to a source the kubelet sets (annotations or mounts) is ignored in favour of the kubelet's list, because the
//! nvidia/cuda base images bake `ENV NVIDIA_VISIBLE_DEVICES=all` into every container.
//!
//! # The rest of the request
//!
//! * Privileged: `CAP_SYS_ADMIN` in `process.capabilities.bounding` (the reference toolkit's
//!   rule) and no user namespace in `linux.namespaces`: the capability inside a container's own
//!   user namespace is that namespace's, not the host's. Every back end parses through here, so
//!   the rule is the same for the hook, the runtime wrapper and CDI.
//! * `NVIDIA_MIG_CONFIG_DEVICES` / `NVIDIA_MIG_MONITOR_DEVICES`: `all` or a comma list of GPU
//!   indexes and `GPU-` UUIDs; a non-empty value needs a privileged container.
//! * `NVIDIA_DRIVER_CAPABILITIES`: a comma list of `compute`, `utility`, `video`, `graphics`,
//!   `display`, `ngx`, `compat32`, `all`; `utility,compute` when unset or empty. It is read
//!   whatever the policy says about the environment: it picks driver files, never devices.
//! * `NVIDIA_REQUIRE_*` and `NVIDIA_DISABLE_REQUIRE` (CUDA / driver / architecture constraints
//!   checked by the reference toolkit) are ignored by migcage.
//!
//! Kubernetes: a pod's sandbox container is never given a device, and
//! `migcage.io/profile.<container name>` asks for a profile for one container of a pod
//! (`pod.rs`, docs/kubernetes.md).
//!
//! When nothing selects a device ([`Request::is_noop`]), the container is left untouched and the
//! other variables are not even parsed (as the reference toolkit does): a stray
//! `NVIDIA_DRIVER_CAPABILITIES` in an image without GPUs must not break it.
//!
//! # Where each part lives
//!
//! One file per source (`env.rs`, `cdi.rs`, `migcage.rs`, `mounts.rs`), the grammar of device
//! names (`selector.rs`), `capabilities.rs`, how sources combine (`merge.rs`), `errors.rs` and
//! the [`Request`] type (`types.rs`); `spec_view.rs` reads the spec once and [`parse`] composes
//! them.

mod capabilities;
mod cdi;
mod env;
mod errors;
mod merge;
mod migcage;
mod mounts;
mod pod;
mod selector;
mod spec_view;
mod types;

use serde_json::Value;

use crate::config::RequestPolicy;

pub use capabilities::DriverCapabilities;
pub use errors::RequestError;
pub use pod::profile_key;
pub use selector::DeviceSelector;
pub use spec_view::has_user_namespace;
pub use types::{Devices, Request, Source, SourceSelection};

/// The device list variable.
pub const VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";
/// The driver capabilities variable.
pub const DRIVER_CAPABILITIES: &str = "NVIDIA_DRIVER_CAPABILITIES";
/// GPUs whose MIG configuration the container may change (mig/config capability).
pub const MIG_CONFIG_DEVICES: &str = "NVIDIA_MIG_CONFIG_DEVICES";
/// GPUs whose MIG devices the container may monitor (mig/monitor capability).
pub const MIG_MONITOR_DEVICES: &str = "NVIDIA_MIG_MONITOR_DEVICES";
/// Set by the nvidia/cuda images; only used for a note.
pub const CUDA_VERSION: &str = "CUDA_VERSION";
/// The directory of the volume-mounts strategy, and the value of `NVIDIA_VISIBLE_DEVICES` that
/// points at it.
pub const DEVICE_LIST_DIR: &str = "/var/run/nvidia-container-devices";
/// The same directory through `/run` (`/var/run` is a symlink to it on current distributions).
pub const DEVICE_LIST_DIR_RUN: &str = "/run/nvidia-container-devices";
/// Prefix of the annotations the kubelet sets for CDI devices.
pub const CDI_ANNOTATION_PREFIX: &str = "cdi.k8s.io/";
/// migcage's own device list annotation.
pub const DEVICES_ANNOTATION: &str = "migcage.io/devices";
/// migcage's own profile annotation.
pub const PROFILE_ANNOTATION: &str = "migcage.io/profile";
/// CDI vendors whose `gpu` / `mig` devices migcage serves.
pub const CDI_VENDORS: [&str; 3] = ["nvidia.com", "k8s.device-plugin.nvidia.com", "migcage.io"];
/// The largest GPU or MIG device index accepted (the driver's device minors stop at 254).
pub const MAX_INDEX: u32 = 255;
/// The most MIG devices one profile item may ask for.
pub const MAX_PROFILE_COUNT: u32 = 64;

/// Parse a container's request from its config.json under a policy. See the module docs for the
/// syntax and the rules.
pub fn parse(spec: &Value, policy: &RequestPolicy) -> Result<Request, RequestError> {
    let mut view = spec_view::SpecView::read(spec)?;
    let mut notes = Vec::new();
    let privileged = view.privileged;
    if let Some(note) = pod::sandbox_note(&view) {
        return Ok(pod::untouched(privileged, note));
    }
    pod::container_profile(&mut view, &mut notes);

    // Groups in the order their list wins when they agree: mounts, CDI, migcage, env.
    let mut groups = Vec::new();
    groups.extend(mounts::group(&view, policy, &mut notes)?);
    groups.extend(cdi::group(&view, policy, &mut notes)?);
    groups.extend(migcage::group(&view, policy, &mut notes)?);
    let env = env::visible_devices(&view, policy, &groups, &mut notes)?;
    groups.extend(env);

    let must_agree = merge::must_agree(&groups)?;
    let devices = groups
        .first()
        .map_or(Devices::Untouched, |g| g.devices.clone());
    let sources: Vec<Source> = groups.into_iter().flat_map(|g| g.sources).collect();

    if devices == Devices::Untouched {
        env::note_ignored(&view, &mut notes);
        return Ok(Request {
            devices,
            sources,
            driver_capabilities: DriverCapabilities::DEFAULT,
            mig_config: None,
            mig_monitor: None,
            privileged,
            notes,
            must_agree: Vec::new(),
        });
    }

    let driver_capabilities = capabilities::from_env(&view)?;
    let mig_config = env::mig_devices(MIG_CONFIG_DEVICES, &view, policy, &mut notes)?;
    let mig_monitor = env::mig_devices(MIG_MONITOR_DEVICES, &view, policy, &mut notes)?;

    Ok(Request {
        devices,
        sources,
        driver_capabilities,
        mig_config,
        mig_monitor,
        privileged,
        notes,
        must_agree,
    })
}

#[cfg(test)]
mod tests;
