//! `request::parse` on well-formed specs whose request sources (environment variables,
//! annotations, device-list mounts, capabilities) hold arbitrary values: reaches the value
//! parsers and the rules between sources, which random JSON rarely does.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use migcage::core::request::{
    CDI_ANNOTATION_PREFIX, CUDA_VERSION, DEVICES_ANNOTATION, DEVICE_LIST_DIR, DEVICE_LIST_DIR_RUN,
    DRIVER_CAPABILITIES, MIG_CONFIG_DEVICES, MIG_MONITOR_DEVICES, PROFILE_ANNOTATION,
    VISIBLE_DEVICES,
};
use migcage_fuzz::{check_request, policies};
use serde_json::json;

const ENV_KEYS: [&str; 6] = [
    VISIBLE_DEVICES,
    DRIVER_CAPABILITIES,
    MIG_CONFIG_DEVICES,
    MIG_MONITOR_DEVICES,
    CUDA_VERSION,
    "OTHER",
];

#[derive(Arbitrary, Debug)]
struct Input {
    /// (key index, value): `KEY=value` entries, in order (the last of a key wins).
    env: Vec<(u8, String)>,
    /// Entries without `=`.
    bare_env: Vec<String>,
    /// (key kind, key suffix, value).
    annotations: Vec<(u8, String, String)>,
    /// (directory kind, rest): mount destinations.
    mounts: Vec<(u8, String)>,
    privileged: bool,
}

fuzz_target!(|input: Input| {
    let mut env: Vec<String> = input
        .env
        .iter()
        .map(|(k, v)| format!("{}={v}", ENV_KEYS[usize::from(*k) % ENV_KEYS.len()]))
        .collect();
    env.extend(input.bare_env.iter().cloned());
    let mut annotations = serde_json::Map::new();
    for (kind, suffix, value) in &input.annotations {
        let key = match kind % 4 {
            0 => format!("{CDI_ANNOTATION_PREFIX}{suffix}"),
            1 => DEVICES_ANNOTATION.to_string(),
            2 => PROFILE_ANNOTATION.to_string(),
            _ => suffix.clone(),
        };
        annotations.insert(key, json!(value));
    }
    let mounts: Vec<serde_json::Value> = input
        .mounts
        .iter()
        .map(|(kind, rest)| {
            let dest = match kind % 3 {
                0 => format!("{DEVICE_LIST_DIR}/{rest}"),
                1 => format!("{DEVICE_LIST_DIR_RUN}/{rest}"),
                _ => rest.clone(),
            };
            json!({"destination": dest, "type": "bind", "source": "/dev/null"})
        })
        .collect();
    let bounding = if input.privileged {
        vec!["CAP_CHOWN", "CAP_SYS_ADMIN"]
    } else {
        vec!["CAP_CHOWN"]
    };
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {"env": env, "capabilities": {"bounding": bounding}},
        "annotations": annotations,
        "mounts": mounts,
        "root": {"path": "rootfs"},
    });
    for policy in policies() {
        let result = migcage::core::request::parse(&spec, &policy);
        check_request(&result, &policy);
    }
});
