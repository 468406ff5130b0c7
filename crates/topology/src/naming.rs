//! Names and identifiers: deterministic UUIDs, the checks that a UUID or an NVML bus id is well
//! formed, and the driver's procfs form of a bus id.

/// Convert NVML's `00000000:07:00.0` to the driver's procfs form `0000:07:00.0`.
pub fn proc_bus_id(nvml_bus_id: &str) -> String {
    let lower = nvml_bus_id.to_ascii_lowercase();
    match lower.split_once(':') {
        Some((domain, rest)) if domain.len() > 4 => {
            format!("{}:{rest}", &domain[domain.len() - 4..])
        }
        _ => lower,
    }
}

/// A deterministic UUID-shaped string from a seed (not random: topologies are reproducible).
pub fn stable_uuid(prefix: &str, seed: &str) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        a ^= u64::from(b);
        a = a.wrapping_mul(0x0100_0000_01b3);
    }
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let hi = mix(a);
    let lo = mix(a ^ 0x9e37_79b9_7f4a_7c15);
    format!(
        "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

pub(crate) fn is_uuid(prefix: &str, s: &str) -> bool {
    let Some(rest) = s.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let groups: Vec<&str> = rest.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(crate) fn is_nvml_bus_id(s: &str) -> bool {
    // dddddddd:bb:dd.f
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b':'
        && b[11] == b':'
        && b[14] == b'.'
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 8 | 11 | 14) || c.is_ascii_hexdigit())
}
