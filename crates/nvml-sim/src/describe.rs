//! Pure computations of what NVML reports about a GPU, GPU instance or compute instance, from
//! the topology's numbers. No pointers here.

use migcage_topology::models::ci_profile_id_for_slices;
use migcage_topology::{ComputeInstance, GiProfile, GpuInstance};

/// A PCI address: domain, bus, device, function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddr {
    pub domain: u32,
    pub bus: u32,
    pub device: u32,
    pub function: u32,
}

impl PciAddr {
    /// Parse `dddddddd:bb:dd.f`, `dddd:bb:dd.f` or `bb:dd.f`, hex digits in either case.
    pub fn parse(s: &str) -> Option<PciAddr> {
        let s = s.trim();
        let (head, function) = s.rsplit_once('.')?;
        let parts: Vec<&str> = head.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, dev] => (*d, *b, *dev),
            [b, dev] => ("0", *b, *dev),
            _ => return None,
        };
        let hex = |t: &str, max_len: usize| {
            if t.is_empty() || t.len() > max_len || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
                None
            } else {
                u32::from_str_radix(t, 16).ok()
            }
        };
        Some(PciAddr {
            domain: hex(domain, 8)?,
            bus: hex(bus, 2)?,
            device: hex(device, 2)?,
            function: hex(function, 1)?,
        })
    }

    /// NVML's `busId`: `00000000:07:00.0`, upper-case hex.
    pub fn bus_id(&self) -> String {
        format!(
            "{:08X}:{:02X}:{:02X}.{:X}",
            self.domain, self.bus, self.device, self.function
        )
    }

    /// NVML's `busIdLegacy`: `0000:07:00.0`, four domain digits.
    pub fn bus_id_legacy(&self) -> String {
        format!(
            "{:04X}:{:02X}:{:02X}.{:X}",
            self.domain & 0xffff,
            self.bus,
            self.device,
            self.function
        )
    }
}

/// Compute slices of a compute instance profile id (inverse of `ci_profile_id_for_slices`).
pub fn ci_profile_slices(profile_id: u32) -> Option<u32> {
    (1..=8).find(|s| ci_profile_id_for_slices(*s) == Some(profile_id))
}

/// NVML's compute instance profile id for a compute instance.
pub fn ci_profile_id(ci: &ComputeInstance) -> u32 {
    // Slices were checked against the profile table when the topology was resolved; the
    // fallback is unreachable for a resolved topology and only keeps this total.
    ci_profile_id_for_slices(ci.slices).unwrap_or(0)
}

/// Where a compute instance sits in its GPU instance, in compute slices.
pub fn ci_placement_start(gi: &GpuInstance, ci_pos: usize) -> u32 {
    gi.compute_instances[ci_pos].placement_start
}

/// Streaming multiprocessors of a compute instance with `slices` of the GPU instance's.
pub fn ci_multiprocessors(gi: &GiProfile, slices: u32) -> u32 {
    gi.multiprocessors * slices / gi.slices.max(1)
}

/// Profile name of a compute instance of `slices` in a GPU instance, as NVML names it in
/// `nvmlComputeInstanceProfileInfo_v2_t.name` and in MIG device names.
pub fn ci_profile_name(gi: &GiProfile, slices: u32) -> String {
    if slices == gi.slices {
        gi.name.to_string()
    } else {
        format!("{slices}c.{}", gi.name)
    }
}

/// NVML's encoding of a versioned struct's `version` field: `sizeof | version << 24`.
pub const fn struct_version(size: usize, version: u32) -> u32 {
    size as u32 | (version << 24)
}

#[cfg(test)]
mod tests {
    use super::*;
    use migcage_topology::Topology;

    #[test]
    fn pci_addresses_parse_in_every_form_nvml_accepts() {
        let want = PciAddr {
            domain: 0,
            bus: 0xb7,
            device: 0,
            function: 0,
        };
        for s in [
            "00000000:B7:00.0",
            "0000:b7:00.0",
            "b7:00.0",
            " 00000000:b7:00.0 ",
        ] {
            assert_eq!(PciAddr::parse(s), Some(want), "{s}");
        }
        assert_eq!(want.bus_id(), "00000000:B7:00.0");
        assert_eq!(want.bus_id_legacy(), "0000:B7:00.0");
        for s in [
            "",
            "07:00",
            "zz:00.0",
            "000000000:07:00.0",
            "07:00.10",
            "1:2:3:4.0",
        ] {
            assert_eq!(PciAddr::parse(s), None, "{s}");
        }
    }

    #[test]
    fn instance_numbers() {
        let t = Topology::load("h100-mixed").unwrap();
        let gi = &t.gpus[0].gpu_instances[0];
        assert_eq!(gi.profile.name, "3g.40gb");
        assert_eq!(gi.profile.placement_size, 4);
        assert_eq!(ci_placement_start(gi, 0), 0);
        assert_eq!(ci_placement_start(gi, 1), 2);
        assert_eq!(ci_profile_id(&gi.compute_instances[0]), 1);
        assert_eq!(ci_profile_slices(1), Some(2));
        assert_eq!(ci_profile_slices(4), Some(7));
        assert_eq!(ci_profile_slices(99), None);
        assert_eq!(ci_multiprocessors(gi.profile, 2), 40);
        assert_eq!(ci_profile_name(gi.profile, 1), "1c.3g.40gb");
        assert_eq!(ci_profile_name(gi.profile, 3), "3g.40gb");
        assert_eq!(struct_version(0x80, 2), 0x0200_0080);
    }
}
