//! Why the host could not be discovered: one error type, each message one line.

use std::io;
use std::path::PathBuf;

use super::procfs::ParseError;

/// The fix for a wrong NVML library, shared by the NVML errors.
const NVML_FIX: &str =
    "install the driver's libnvidia-ml.so.1 or set nvml_library in the migcage config";
/// The explanation of a procfs entry that disagrees with NVML.
const RACE_OR_ROOT: &str = "the MIG instance changed while migcage read it, or proc_root is wrong";

/// Why the host could not be discovered. Every message is one line naming what failed, where,
/// and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("NVIDIA driver not loaded ({} missing): load the nvidia kernel module, or set proc_root in the migcage config (now {})", path.display(), proc_root.display())]
    NoDriver { path: PathBuf, proc_root: PathBuf },
    #[error("cannot read {}: {source}: run migcage as root, or check proc_root in the migcage config", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{} has no character device `{name}`: {why}", path.display())]
    MissingMajor {
        path: PathBuf,
        name: &'static str,
        why: String,
    },
    #[error("cannot initialize NVML from {}: {message}: {NVML_FIX}", library.display())]
    NvmlInit { library: PathBuf, message: String },
    #[error("NVML ({}) did not answer within {timeout_ms} ms: its start-up can stall, most often without persistence mode; enable it (nvidia-smi -pm 1, or run nvidia-persistenced), check `nvidia-smi` and dmesg, or raise nvml_timeout_ms in the migcage config", library.display())]
    NvmlTimeout { library: PathBuf, timeout_ms: u64 },
    #[error("NVML ({}) {call} failed for {target}: {message}: check `nvidia-smi` and the kernel log (dmesg) for this GPU", library.display())]
    NvmlCall {
        library: PathBuf,
        call: &'static str,
        target: String,
        message: String,
    },
    #[error("NVML names MIG device {uuid} {name:?}, which lacks the `MIG <profile>` part: the NVML library ({NVML_FIX}) is not one migcage knows")]
    MigName { uuid: String, name: String },
    #[error("driver version mismatch: {} says {proc_version} but NVML ({}) says {nvml_version}: the kernel module and the user-space driver differ; install matching versions, or {NVML_FIX}", proc_file.display(), library.display())]
    DriverVersion {
        proc_file: PathBuf,
        proc_version: String,
        library: PathBuf,
        nvml_version: String,
    },
    #[error("NVML reports GPU {index} ({uuid}, bus {pci_bus_id}) but {} is missing: the GPU went away while migcage read it, or proc_root is wrong", path.display())]
    ProcGpuMissing {
        index: u32,
        uuid: String,
        pci_bus_id: String,
        path: PathBuf,
    },
    #[error("NVML reports GPU {index} with {field} {nvml} but {} says {proc}: proc_root belongs to another host, or the GPU changed while migcage read it", path.display())]
    ProcGpuDiffers {
        index: u32,
        field: &'static str,
        nvml: String,
        path: PathBuf,
        proc: String,
    },
    #[error("NVML reports MIG device {uuid} (GPU {gpu}, GI {gi}, CI {ci}) but {} is missing: load nvidia-caps (nvidia-modprobe -f -c0), or set proc_root", path.display())]
    MigMinorsMissing {
        uuid: String,
        gpu: u32,
        gi: u32,
        ci: u32,
        path: PathBuf,
    },
    #[error("NVML reports MIG device {uuid} (GPU {gpu}, GI {gi}, CI {ci}) but {} has no `{entry}`: the driver's caps table is unlike this one's, or proc_root is wrong", path.display())]
    MigMinorsEntry {
        uuid: String,
        gpu: u32,
        gi: u32,
        ci: u32,
        path: PathBuf,
        entry: String,
    },
    #[error("NVML reports {uuid} (GPU {gpu}, GI {gi}, CI {ci}) but {} is missing: {RACE_OR_ROOT}", path.display())]
    CapMissing {
        uuid: String,
        gpu: u32,
        gi: u32,
        ci: u32,
        path: PathBuf,
    },
    #[error("{} says DeviceFileMinor {file_minor} but {} maps `{entry}` to {expected}: {RACE_OR_ROOT}", path.display(), minors_path.display())]
    CapMinor {
        path: PathBuf,
        file_minor: u32,
        minors_path: PathBuf,
        entry: String,
        expected: u32,
    },
    #[error("the inventory says {what} is {inventory} but {} now says {now}: the driver changed since the inventory was taken; discover again", path.display())]
    Changed {
        what: String,
        inventory: String,
        path: PathBuf,
        now: String,
    },
}
