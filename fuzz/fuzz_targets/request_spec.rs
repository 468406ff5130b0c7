//! `request::parse` on arbitrary JSON documents (a container's config.json), under each policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migcage_fuzz::{check_request, policies};

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for policy in policies() {
        let result = migcage::core::request::parse(&spec, &policy);
        check_request(&result, &policy);
    }
});
