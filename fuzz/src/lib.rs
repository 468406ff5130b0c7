//! Checks the fuzz targets share: the properties every parser of untrusted input must keep.

use migcage::config::RequestPolicy;
use migcage::core::request::{DeviceSelector, Devices, Request, RequestError, Source};

/// Every user-visible error is one line (runc quotes a hook's stderr; crun logs it).
pub fn assert_one_line(what: &str, message: &str) {
    assert!(
        !message.contains('\n') && !message.contains('\r'),
        "{what}: the error is more than one line: {message:?}"
    );
    assert!(!message.is_empty(), "{what}: empty error message");
}

/// The request policies a spec is parsed under: the default, the secure one (env only for
/// privileged containers), env off, and everything off.
pub fn policies() -> [RequestPolicy; 4] {
    let d = RequestPolicy::default();
    [
        d.clone(),
        RequestPolicy {
            env_privileged_only: true,
            ..d.clone()
        },
        RequestPolicy {
            accept_env: false,
            ..d.clone()
        },
        RequestPolicy {
            accept_env: false,
            accept_annotations: false,
            accept_volume_mounts: false,
            env_privileged_only: false,
        },
    ]
}

/// What `request::parse` must guarantee, whatever the spec: a one-line error, or a request that
/// honours the policy (fail closed) and whose selectors print back to themselves.
pub fn check_request(result: &Result<Request, RequestError>, policy: &RequestPolicy) {
    let r = match result {
        Err(e) => return assert_one_line("request::parse", &e.to_string()),
        Ok(r) => r,
    };
    match &r.devices {
        Devices::Untouched => assert!(r.sources.is_empty(), "untouched with sources: {r:?}"),
        Devices::DriverOnly => assert!(!r.sources.is_empty(), "none without a source: {r:?}"),
        Devices::Selected(s) => {
            assert!(!s.is_empty(), "an empty selection: {r:?}");
            assert!(
                !s.contains(&DeviceSelector::All) || s.len() == 1,
                "all next to other devices: {r:?}"
            );
            assert!(!r.sources.is_empty(), "devices without a source: {r:?}");
        }
    }
    // Fail closed: no device through a source the policy does not honour.
    for source in &r.sources {
        match source {
            Source::Env => {
                assert!(policy.accept_env, "env honoured with accept_env = false");
                assert!(
                    r.privileged || !policy.env_privileged_only,
                    "env honoured for an unprivileged container with env_privileged_only"
                );
            }
            Source::CdiAnnotation { .. } | Source::MigcageAnnotation { .. } => {
                assert!(
                    policy.accept_annotations,
                    "annotation honoured when refused"
                )
            }
            Source::VolumeMounts => {
                assert!(policy.accept_volume_mounts, "mounts honoured when refused")
            }
        }
    }
    // MIG config / monitor only for privileged containers and only through an accepted env.
    if r.mig_config.is_some() || r.mig_monitor.is_some() {
        assert!(
            r.privileged,
            "MIG caps for an unprivileged container: {r:?}"
        );
        assert!(policy.accept_env, "MIG caps with accept_env = false: {r:?}");
    }
    let mut all: Vec<&DeviceSelector> = r.selectors().iter().collect();
    all.extend(r.mig_config.iter().flatten());
    all.extend(r.mig_monitor.iter().flatten());
    for s in all {
        check_selector_round_trip(s);
    }
    serde_json::to_string(r).expect("a request serializes");
}

/// A selector prints in the user's syntax and reads back to itself.
pub fn check_selector_round_trip(s: &DeviceSelector) {
    let text = s.to_string();
    let back: DeviceSelector = text
        .parse()
        .unwrap_or_else(|e| panic!("{s:?} prints as {text:?}, which does not parse: {e}"));
    assert_eq!(&back, s, "{text:?} does not read back to itself");
}
