//! NVML return codes: their values (from `nvml.h` via nvml-wrapper-sys), the strings
//! `nvmlErrorString` gives for them, and the names topology faults use for them.

use std::ffi::CStr;

use nvml_wrapper_sys::bindings as sys;

/// An NVML return code (`nvmlReturn_t`).
pub type Ret = sys::nvmlReturn_t;

/// What the simulator's internal functions return: `Err` carries the NVML error code.
pub type NvResult<T> = Result<T, Ret>;

pub const SUCCESS: Ret = sys::nvmlReturn_enum_NVML_SUCCESS;
pub const UNINITIALIZED: Ret = sys::nvmlReturn_enum_NVML_ERROR_UNINITIALIZED;
pub const INVALID_ARGUMENT: Ret = sys::nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
pub const NOT_SUPPORTED: Ret = sys::nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
pub const NO_PERMISSION: Ret = sys::nvmlReturn_enum_NVML_ERROR_NO_PERMISSION;
pub const NOT_FOUND: Ret = sys::nvmlReturn_enum_NVML_ERROR_NOT_FOUND;
pub const INSUFFICIENT_SIZE: Ret = sys::nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE;
pub const DRIVER_NOT_LOADED: Ret = sys::nvmlReturn_enum_NVML_ERROR_DRIVER_NOT_LOADED;
pub const GPU_IS_LOST: Ret = sys::nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST;
pub const ARGUMENT_VERSION_MISMATCH: Ret =
    sys::nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
pub const UNKNOWN: Ret = sys::nvmlReturn_enum_NVML_ERROR_UNKNOWN;
pub const IN_USE: Ret = sys::nvmlReturn_enum_NVML_ERROR_IN_USE;
pub const INSUFFICIENT_RESOURCES: Ret = sys::nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_RESOURCES;

/// The NVML code of a refused MIG change.
pub fn from_mig(e: migcage_topology::MigOpError) -> Ret {
    use migcage_topology::MigOpError as E;
    match e {
        E::InvalidArgument => INVALID_ARGUMENT,
        E::NotSupported => NOT_SUPPORTED,
        E::InsufficientResources => INSUFFICIENT_RESOURCES,
        E::InUse => IN_USE,
        E::NotFound => NOT_FOUND,
    }
}

/// Every return code: value, name without the `NVML_ERROR_` prefix, and `nvmlErrorString` text.
///
/// The strings are the ones libnvidia-ml returns (as nvidia-smi prints them after
/// "Failed to initialize NVML: "), not the longer doc comments of `nvml.h`.
const CODES: &[(Ret, &str, &CStr)] = &[
    (SUCCESS, "SUCCESS", c"Success"),
    (UNINITIALIZED, "UNINITIALIZED", c"Uninitialized"),
    (INVALID_ARGUMENT, "INVALID_ARGUMENT", c"Invalid Argument"),
    (NOT_SUPPORTED, "NOT_SUPPORTED", c"Not Supported"),
    (NO_PERMISSION, "NO_PERMISSION", c"Insufficient Permissions"),
    (
        sys::nvmlReturn_enum_NVML_ERROR_ALREADY_INITIALIZED,
        "ALREADY_INITIALIZED",
        c"Already Initialized",
    ),
    (NOT_FOUND, "NOT_FOUND", c"Not Found"),
    (INSUFFICIENT_SIZE, "INSUFFICIENT_SIZE", c"Insufficient Size"),
    (
        sys::nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_POWER,
        "INSUFFICIENT_POWER",
        c"Insufficient External Power",
    ),
    (DRIVER_NOT_LOADED, "DRIVER_NOT_LOADED", c"Driver Not Loaded"),
    (
        sys::nvmlReturn_enum_NVML_ERROR_TIMEOUT,
        "TIMEOUT",
        c"Timeout",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_IRQ_ISSUE,
        "IRQ_ISSUE",
        c"Interrupt request issue",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_LIBRARY_NOT_FOUND,
        "LIBRARY_NOT_FOUND",
        c"NVML Shared Library Not Found",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_FUNCTION_NOT_FOUND,
        "FUNCTION_NOT_FOUND",
        c"Function Not Found",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_CORRUPTED_INFOROM,
        "CORRUPTED_INFOROM",
        c"Corrupted infoROM",
    ),
    (GPU_IS_LOST, "GPU_IS_LOST", c"GPU is lost"),
    (
        sys::nvmlReturn_enum_NVML_ERROR_RESET_REQUIRED,
        "RESET_REQUIRED",
        c"GPU requires restart",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_OPERATING_SYSTEM,
        "OPERATING_SYSTEM",
        c"The operating system has blocked the request.",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_LIB_RM_VERSION_MISMATCH,
        "LIB_RM_VERSION_MISMATCH",
        c"Driver/library version mismatch",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_IN_USE,
        "IN_USE",
        c"In use by another client",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_MEMORY,
        "MEMORY",
        c"Insufficient Memory",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_NO_DATA,
        "NO_DATA",
        c"No data",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_VGPU_ECC_NOT_SUPPORTED,
        "VGPU_ECC_NOT_SUPPORTED",
        c"The requested vgpu operation is not available on target device, becasue ECC is enabled",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_RESOURCES,
        "INSUFFICIENT_RESOURCES",
        c"Ran out of critical resources, other than memory",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_FREQ_NOT_SUPPORTED,
        "FREQ_NOT_SUPPORTED",
        c"Frequency not supported",
    ),
    (
        ARGUMENT_VERSION_MISMATCH,
        "ARGUMENT_VERSION_MISMATCH",
        c"Argument version mismatch",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_DEPRECATED,
        "DEPRECATED",
        c"Deprecated",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_NOT_READY,
        "NOT_READY",
        c"Not Ready",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_GPU_NOT_FOUND,
        "GPU_NOT_FOUND",
        c"GPU Not Found",
    ),
    (
        sys::nvmlReturn_enum_NVML_ERROR_INVALID_STATE,
        "INVALID_STATE",
        c"Invalid State",
    ),
    (UNKNOWN, "UNKNOWN", c"Unknown Error"),
];

/// `nvmlErrorString`: a static string for every code, "Unknown Error" for codes NVML does not
/// define (which is what the real library answers for them).
pub fn error_string(code: Ret) -> &'static CStr {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or(c"Unknown Error", |(_, _, s)| *s)
}

/// The code for an error name as topology faults write it: `GPU_IS_LOST`, `gpu_is_lost` or
/// `NVML_ERROR_GPU_IS_LOST`. `SUCCESS` is not an error and is refused.
pub fn code_from_name(name: &str) -> Option<Ret> {
    let upper = name.trim().to_ascii_uppercase();
    let short = upper.strip_prefix("NVML_ERROR_").unwrap_or(&upper);
    CODES
        .iter()
        .find(|(c, n, _)| *n == short && *c != SUCCESS)
        .map(|(c, _, _)| *c)
}

/// The name of a code (`GPU_IS_LOST`), for messages.
pub fn code_name(code: Ret) -> &'static str {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or("UNKNOWN", |(_, n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_match_what_nvidia_smi_prints() {
        assert_eq!(
            error_string(DRIVER_NOT_LOADED).to_str().unwrap(),
            "Driver Not Loaded"
        );
        assert_eq!(error_string(UNKNOWN).to_str().unwrap(), "Unknown Error");
        assert_eq!(
            error_string(NO_PERMISSION).to_str().unwrap(),
            "Insufficient Permissions"
        );
        assert_eq!(error_string(GPU_IS_LOST).to_str().unwrap(), "GPU is lost");
        assert_eq!(error_string(12345).to_str().unwrap(), "Unknown Error");
    }

    #[test]
    fn names_parse_in_every_spelling() {
        assert_eq!(code_from_name("DRIVER_NOT_LOADED"), Some(DRIVER_NOT_LOADED));
        assert_eq!(code_from_name("gpu_is_lost"), Some(GPU_IS_LOST));
        assert_eq!(code_from_name("NVML_ERROR_UNKNOWN"), Some(UNKNOWN));
        assert_eq!(code_from_name("SUCCESS"), None);
        assert_eq!(code_from_name("BOGUS"), None);
        assert_eq!(code_name(INSUFFICIENT_SIZE), "INSUFFICIENT_SIZE");
    }

    #[test]
    fn codes_are_unique() {
        for (i, a) in CODES.iter().enumerate() {
            for b in &CODES[i + 1..] {
                assert!(a.0 != b.0 && a.1 != b.1, "{} repeats", a.1);
            }
        }
    }
}
