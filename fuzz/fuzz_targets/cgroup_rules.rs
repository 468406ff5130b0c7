//! `linux.resources.devices` of a config.json (src/core/cgroup/rules.rs) through the cgroup v2
//! program emitter: the emitted eBPF, run in rbpf's interpreter, decides every probe exactly as
//! the documented semantics do (the last matching rule wins; an allow rule needs every requested
//! access bit; no match denies). Probes use the rules' own numbers and their neighbours.
#![no_main]

use libfuzzer_sys::fuzz_target;
use migcage::core::cgroup::{program, rules};
use migcage::core::edits::{DeviceRule, DeviceType};
use migcage_fuzz::assert_one_line;

/// At most this many rules from the spec are checked (runtime stays per-input small).
const MAX_RULES: usize = 24;

fn reference(rules: &[DeviceRule], dev_type: u32, access: u32, major: u32, minor: u32) -> bool {
    let wild = |r: Option<u32>, v: u32| r.is_none_or(|n| n == v);
    for r in rules.iter().rev() {
        let type_ok = match r.kind {
            DeviceType::All => true,
            DeviceType::Char => dev_type == program::DEV_CHAR,
            DeviceType::Block => dev_type == program::DEV_BLOCK,
        };
        let bits = program::access_bits(r.access);
        let access_ok = if r.allow {
            access & !bits == 0
        } else {
            access & bits != 0
        };
        if type_ok && wild(r.major, major) && wild(r.minor, minor) && access_ok {
            return r.allow;
        }
    }
    false
}

/// The context `struct bpf_cgroup_dev_ctx` for one access.
fn context(dev_type: u32, access: u32, major: u32, minor: u32) -> [u8; 12] {
    let mut ctx = [0u8; 12];
    ctx[0..4].copy_from_slice(&((access << 16) | dev_type).to_le_bytes());
    ctx[4..8].copy_from_slice(&major.to_le_bytes());
    ctx[8..12].copy_from_slice(&minor.to_le_bytes());
    ctx
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let rules = match rules::effective_rules(&spec) {
        Ok(r) => r,
        Err(e) => return assert_one_line("effective_rules", &e.to_string()),
    };
    if rules.len() > MAX_RULES {
        return;
    }
    let prog = program::to_bytes(&program::emit(&rules));
    let vm = rbpf::EbpfVmRaw::new(Some(&prog)).expect("rbpf accepts the program");
    // The rules' own numbers and their neighbours first, then the extremes.
    let mut numbers: Vec<u32> = Vec::new();
    for r in &rules {
        for n in [r.major, r.minor].into_iter().flatten() {
            for m in [n, n.wrapping_add(1), n.wrapping_sub(1)] {
                if !numbers.contains(&m) {
                    numbers.push(m);
                }
            }
        }
    }
    numbers.truncate(5);
    for m in [0, 1, u32::MAX] {
        if !numbers.contains(&m) {
            numbers.push(m);
        }
    }
    for dev_type in [program::DEV_BLOCK, program::DEV_CHAR] {
        for access in 1..8 {
            for &major in &numbers {
                for &minor in &numbers {
                    let want = reference(&rules, dev_type, access, major, minor);
                    let mut ctx = context(dev_type, access, major, minor);
                    let got = vm.execute_program(&mut ctx).expect("the program runs");
                    assert_eq!(
                        got,
                        u64::from(want),
                        "type {dev_type} access {access} {major}:{minor} with rules {rules:?}"
                    );
                }
            }
        }
    }
});
