//! The GPU models the simulator knows, with their MIG profile tables.
//!
//! Numbers follow NVIDIA's published MIG user guide for each product (profile names, slice counts,
//! memory, instance counts, placements). The A30 and H200 memory sizes are nvidia-smi's GiB
//! figures in MiB, rounded. NVML profile ids are the `NVML_GPU_INSTANCE_PROFILE_*` and
//! `NVML_COMPUTE_INSTANCE_PROFILE_*` constants.

/// One GPU instance profile (`nvmlGpuInstanceProfileInfo_t`), with where it may be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GiProfile {
    /// NVML profile id (`NVML_GPU_INSTANCE_PROFILE_1_SLICE` = 0, ...).
    pub id: u32,
    /// Name as nvidia-smi prints it, such as `1g.5gb`.
    pub name: &'static str,
    /// Compute slices.
    pub slices: u32,
    /// How many instances of this profile fit on the GPU.
    pub instance_count: u32,
    /// Memory of one instance, MiB.
    pub memory_mib: u64,
    /// Streaming multiprocessors.
    pub multiprocessors: u32,
    pub copy_engines: u32,
    pub decoders: u32,
    pub encoders: u32,
    pub jpegs: u32,
    pub ofas: u32,
    /// Memory slices one instance spans (`nvmlGpuInstancePlacement_t.size`).
    pub placement_size: u32,
    /// The memory slices an instance may start at on an empty GPU
    /// (`nvmlDeviceGetGpuInstancePossiblePlacements_v2`, `nvidia-smi mig -lgipp`).
    pub placement_starts: &'static [u32],
}

/// One compute instance profile (`nvmlComputeInstanceProfileInfo_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CiProfile {
    /// NVML id (`NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE` = 0, 2 = 1, 3 = 2, 4 = 3, 7 = 4, 8 = 5, 6 = 6).
    pub id: u32,
    pub slices: u32,
}

/// A GPU model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// Short key used in topology files, such as `a100-sxm4-40gb`.
    pub key: &'static str,
    /// Name as NVML reports it.
    pub name: &'static str,
    /// `nvmlDeviceArchitecture_t`: 7 = Ampere, 9 = Hopper.
    pub architecture: u32,
    pub compute_capability: (i32, i32),
    pub memory_mib: u64,
    pub multiprocessors: u32,
    /// PCI device id (upper 16 bits) and vendor (lower 16 bits), as in `nvmlPciInfo_t.pciDeviceId`.
    pub pci_device_id: u32,
    pub pci_subsystem_id: u32,
    pub max_mig_devices: u32,
    /// Compute slices of the whole GPU (7 on A100/H100/H200, 4 on A30).
    pub compute_slices: u32,
    /// Memory slices of the whole GPU (8 on A100/H100/H200, 4 on A30): placements count these.
    pub memory_slices: u32,
    pub gi_profiles: &'static [GiProfile],
}

/// Media engines of a profile: decoders, encoders, JPEG decoders, optical flow accelerators.
type Media = (u32, u32, u32, u32);

/// Where a profile may go: its size in memory slices and its possible starts.
type Placements = (u32, &'static [u32]);

const fn gi(
    (id, name): (u32, &'static str),
    (slices, instance_count): (u32, u32),
    (memory_mib, multiprocessors): (u64, u32),
    media: Media,
    (placement_size, placement_starts): Placements,
) -> GiProfile {
    GiProfile {
        id,
        name,
        slices,
        instance_count,
        memory_mib,
        multiprocessors,
        copy_engines: slices,
        decoders: media.0,
        encoders: media.1,
        jpegs: media.2,
        ofas: media.3,
        placement_size,
        placement_starts,
    }
}

// Placements of the 8-memory-slice models (A100, H100, H200), from the MIG user guide's
// placement figures and `nvidia-smi mig -lgipp`: 1-slice profiles at 0..=6 (slice 7 has no
// compute slice of its own), 1-slice double-memory and 2-slice profiles on even slices, 3- and
// 4-slice profiles on half GPUs (a 3g spans 4 memory slices), 7g the whole GPU.
const P1: Placements = (1, &[0, 1, 2, 3, 4, 5, 6]);
const P1_DOUBLE: Placements = (2, &[0, 2, 4, 6]);
const P2: Placements = (2, &[0, 2, 4]);
const P3: Placements = (4, &[0, 4]);
const P4: Placements = (4, &[0]);
const P7: Placements = (8, &[0]);

// The A30's 4 memory slices.
const A30_P1: Placements = (1, &[0, 1, 2, 3]);
const A30_P2: Placements = (2, &[0, 2]);
const A30_P4: Placements = (4, &[0]);

const A100_40GB: &[GiProfile] = &[
    gi((0, "1g.5gb"), (1, 7), (4864, 14), (0, 0, 0, 0), P1),
    gi((7, "1g.5gb+me"), (1, 1), (4864, 14), (1, 0, 1, 1), P1),
    gi((9, "1g.10gb"), (1, 4), (9856, 14), (1, 0, 0, 0), P1_DOUBLE),
    gi((1, "2g.10gb"), (2, 3), (9856, 28), (1, 0, 0, 0), P2),
    gi((2, "3g.20gb"), (3, 2), (19968, 42), (2, 0, 0, 0), P3),
    gi((3, "4g.20gb"), (4, 1), (19968, 56), (2, 0, 0, 0), P4),
    gi((4, "7g.40gb"), (7, 1), (40192, 98), (5, 0, 1, 1), P7),
];

const A100_80GB: &[GiProfile] = &[
    gi((0, "1g.10gb"), (1, 7), (9728, 14), (0, 0, 0, 0), P1),
    gi((7, "1g.10gb+me"), (1, 1), (9728, 14), (1, 0, 1, 1), P1),
    gi((9, "1g.20gb"), (1, 4), (19968, 14), (1, 0, 0, 0), P1_DOUBLE),
    gi((1, "2g.20gb"), (2, 3), (19968, 28), (1, 0, 0, 0), P2),
    gi((2, "3g.40gb"), (3, 2), (40192, 42), (2, 0, 0, 0), P3),
    gi((3, "4g.40gb"), (4, 1), (40192, 56), (2, 0, 0, 0), P4),
    gi((4, "7g.80gb"), (7, 1), (80896, 98), (5, 0, 1, 1), P7),
];

const A30_24GB: &[GiProfile] = &[
    gi((0, "1g.6gb"), (1, 4), (5952, 14), (0, 0, 0, 0), A30_P1),
    gi((7, "1g.6gb+me"), (1, 1), (5952, 14), (1, 0, 1, 1), A30_P1),
    gi((1, "2g.12gb"), (2, 2), (11904, 28), (2, 0, 0, 0), A30_P2),
    gi((8, "2g.12gb+me"), (2, 1), (11904, 28), (2, 0, 1, 1), A30_P2),
    gi((3, "4g.24gb"), (4, 1), (23808, 56), (4, 0, 1, 1), A30_P4),
];

const H100_80GB: &[GiProfile] = &[
    gi((0, "1g.10gb"), (1, 7), (9856, 16), (1, 0, 1, 0), P1),
    gi((7, "1g.10gb+me"), (1, 1), (9856, 16), (1, 0, 1, 1), P1),
    gi((9, "1g.20gb"), (1, 4), (20096, 26), (1, 0, 1, 0), P1_DOUBLE),
    gi((1, "2g.20gb"), (2, 3), (20096, 32), (2, 0, 2, 0), P2),
    gi((2, "3g.40gb"), (3, 2), (40320, 60), (3, 0, 3, 0), P3),
    gi((3, "4g.40gb"), (4, 1), (40320, 64), (4, 0, 4, 0), P4),
    gi((4, "7g.80gb"), (7, 1), (80384, 132), (7, 0, 7, 1), P7),
];

const H200_141GB: &[GiProfile] = &[
    gi((0, "1g.18gb"), (1, 7), (16384, 16), (1, 0, 1, 0), P1),
    gi((7, "1g.18gb+me"), (1, 1), (16384, 16), (1, 0, 1, 1), P1),
    gi((9, "1g.35gb"), (1, 4), (32768, 26), (1, 0, 1, 0), P1_DOUBLE),
    gi((1, "2g.35gb"), (2, 3), (32768, 32), (2, 0, 2, 0), P2),
    gi((2, "3g.71gb"), (3, 2), (65536, 60), (3, 0, 3, 0), P3),
    gi((3, "4g.71gb"), (4, 1), (65536, 64), (4, 0, 4, 0), P4),
    gi((4, "7g.141gb"), (7, 1), (131072, 132), (7, 0, 7, 1), P7),
];

/// Every model the simulator can play.
pub const MODELS: &[Model] = &[
    Model {
        key: "a100-sxm4-40gb",
        name: "NVIDIA A100-SXM4-40GB",
        architecture: 7,
        compute_capability: (8, 0),
        memory_mib: 40960,
        multiprocessors: 108,
        pci_device_id: 0x20B0_10DE,
        pci_subsystem_id: 0x134F_10DE,
        max_mig_devices: 7,
        compute_slices: 7,
        memory_slices: 8,
        gi_profiles: A100_40GB,
    },
    Model {
        key: "a100-sxm4-80gb",
        name: "NVIDIA A100-SXM4-80GB",
        architecture: 7,
        compute_capability: (8, 0),
        memory_mib: 81920,
        multiprocessors: 108,
        pci_device_id: 0x20B2_10DE,
        pci_subsystem_id: 0x1463_10DE,
        max_mig_devices: 7,
        compute_slices: 7,
        memory_slices: 8,
        gi_profiles: A100_80GB,
    },
    Model {
        key: "a30-24gb",
        name: "NVIDIA A30",
        architecture: 7,
        compute_capability: (8, 0),
        memory_mib: 24576,
        multiprocessors: 56,
        pci_device_id: 0x20B7_10DE,
        pci_subsystem_id: 0x1532_10DE,
        max_mig_devices: 4,
        compute_slices: 4,
        memory_slices: 4,
        gi_profiles: A30_24GB,
    },
    Model {
        key: "h100-sxm5-80gb",
        name: "NVIDIA H100 80GB HBM3",
        architecture: 9,
        compute_capability: (9, 0),
        memory_mib: 81559,
        multiprocessors: 132,
        pci_device_id: 0x2330_10DE,
        pci_subsystem_id: 0x16C1_10DE,
        max_mig_devices: 7,
        compute_slices: 7,
        memory_slices: 8,
        gi_profiles: H100_80GB,
    },
    Model {
        key: "h200-sxm5-141gb",
        name: "NVIDIA H200",
        architecture: 9,
        compute_capability: (9, 0),
        memory_mib: 143771,
        multiprocessors: 132,
        pci_device_id: 0x2335_10DE,
        pci_subsystem_id: 0x18BE_10DE,
        max_mig_devices: 7,
        compute_slices: 7,
        memory_slices: 8,
        gi_profiles: H200_141GB,
    },
];

/// The compute instance profile ids NVML uses for each slice count.
pub fn ci_profile_id_for_slices(slices: u32) -> Option<u32> {
    match slices {
        1 => Some(0),
        2 => Some(1),
        3 => Some(2),
        4 => Some(3),
        7 => Some(4),
        8 => Some(5),
        6 => Some(6),
        _ => None,
    }
}

/// Look a model up by its key.
pub fn model(key: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.key == key)
}

/// Look a model up by the name NVML reports (`nvmlDeviceGetName`), as a real GPU is found.
pub fn model_by_name(name: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.name == name)
}

impl Model {
    /// The GPU instance profile with this name (`1g.5gb`).
    pub fn gi_profile(&self, name: &str) -> Option<&'static GiProfile> {
        self.gi_profiles.iter().find(|p| p.name == name)
    }

    /// The GPU instance profile with this NVML id.
    pub fn gi_profile_by_id(&self, id: u32) -> Option<&'static GiProfile> {
        self.gi_profiles.iter().find(|p| p.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_has_unique_profile_ids_and_names() {
        for m in MODELS {
            for (i, a) in m.gi_profiles.iter().enumerate() {
                for b in &m.gi_profiles[i + 1..] {
                    assert_ne!(a.id, b.id, "{}", m.key);
                    assert_ne!(a.name, b.name, "{}", m.key);
                }
                assert!(
                    a.slices <= m.compute_slices && a.slices * a.instance_count <= m.compute_slices,
                    "{}",
                    a.name
                );
                assert!(ci_profile_id_for_slices(a.slices).is_some());
            }
        }
    }

    #[test]
    fn lookup_by_key_and_name() {
        let m = model("a100-sxm4-40gb").unwrap();
        assert_eq!(m.gi_profile("3g.20gb").unwrap().slices, 3);
        assert_eq!(m.gi_profile_by_id(0).unwrap().name, "1g.5gb");
        assert!(model("rtx-9090").is_none());
    }
}
