//! [`RequestError`]: why a request cannot be honoured, one line each.

use super::{DEVICE_LIST_DIR, VISIBLE_DEVICES};

/// Values longer than this are cut in messages (an error stays one readable line).
const MAX_SHOWN: usize = 200;

/// Why a container's request cannot be honoured. Every message is one line naming the source,
/// the value found, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A value that does not parse.
    #[error("{origin}={}: {problem}; {hint}", shown(.value))]
    Invalid {
        /// `NVIDIA_VISIBLE_DEVICES`, `annotation cdi.k8s.io/x`, `mount destination`, ...
        origin: String,
        value: String,
        problem: String,
        hint: String,
    },
    /// Two honoured sources name different devices.
    #[error(
        "{first}={} and {second}={} name different devices; remove one of them or make them name the same devices",
        shown(.first_value),
        shown(.second_value)
    )]
    Conflict {
        first: String,
        first_value: String,
        second: String,
        second_value: String,
    },
    /// MIG config / monitor asked for by a container without privilege on the host.
    #[error(
        "{var}={} requires a privileged container (CAP_SYS_ADMIN), but {why}; unset {var} or run the container privileged, without a user namespace",
        shown(.value)
    )]
    NeedsPrivileged {
        var: &'static str,
        value: String,
        why: &'static str,
    },
    /// The env var points at the volume-mounts list, but there is none.
    #[error(
        "{VISIBLE_DEVICES}={} says the device list is in mounts under {DEVICE_LIST_DIR}, but no mount is there; mount /dev/null on {DEVICE_LIST_DIR}/<id> for each device, or set {VISIBLE_DEVICES} to the list itself",
        shown(.value)
    )]
    NoDeviceMounts { value: String },
    /// A field of config.json migcage reads has the wrong shape.
    #[error("config.json {field}: {problem}; write it as the OCI runtime spec says ({expected})")]
    Spec {
        field: &'static str,
        problem: String,
        expected: &'static str,
    },
}

/// A value quoted and escaped for a one-line message, cut when very long.
pub(super) fn shown(s: &str) -> String {
    if s.chars().count() <= MAX_SHOWN {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX_SHOWN).collect();
        format!("{cut:?}...")
    }
}
