//! The exported C ABI: NVML's function names, signatures and struct layouts (types from
//! nvml-wrapper-sys, which are bindgen output of `nvml.h`).
//!
//! Every exported function runs its body through [`call`] (or [`guard`] for init/shutdown):
//! panics are caught and become `NVML_ERROR_UNKNOWN`, calls before init are `UNINITIALIZED`, and
//! injected call faults are answered before anything else. Pointers from the caller are only
//! touched through the helpers below, each of which checks for NULL first.
//!
//! The exported functions are `unsafe extern "C"`: their safety contract is NVML's, documented
//! in `nvml.h` (out-pointers valid for writes of their type, buffers of the stated length,
//! NUL-terminated input strings); hence no per-function `# Safety` sections.
#![allow(clippy::missing_safety_doc)]

mod device;
mod manage;
mod mig;
mod system;

use std::ffi::{c_char, c_uint, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::errors::{self, NvResult, Ret};
use crate::global;
use crate::state::Sim;

/// Every function this library exports; topology faults may name any of them.
pub const EXPORTED: &[&str] = &[
    "nvmlInit",
    "nvmlInit_v2",
    "nvmlInitWithFlags",
    "nvmlShutdown",
    "nvmlErrorString",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetNVMLVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlSystemGetCudaDriverVersion_v2",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetCount_v2",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetHandleByIndex_v2",
    "nvmlDeviceGetHandleByUUID",
    "nvmlDeviceGetHandleByPciBusId",
    "nvmlDeviceGetHandleByPciBusId_v2",
    "nvmlDeviceGetIndex",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetName",
    "nvmlDeviceGetBrand",
    "nvmlDeviceGetMinorNumber",
    "nvmlDeviceGetPciInfo",
    "nvmlDeviceGetPciInfo_v2",
    "nvmlDeviceGetPciInfo_v3",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetMemoryInfo_v2",
    "nvmlDeviceGetArchitecture",
    "nvmlDeviceGetCudaComputeCapability",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetMaxMigDeviceCount",
    "nvmlDeviceGetMigDeviceHandleByIndex",
    "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
    "nvmlDeviceIsMigDeviceHandle",
    "nvmlDeviceGetGpuInstanceId",
    "nvmlDeviceGetComputeInstanceId",
    "nvmlDeviceGetAttributes",
    "nvmlDeviceGetAttributes_v2",
    "nvmlDeviceGetGpuInstanceProfileInfo",
    "nvmlDeviceGetGpuInstanceProfileInfoV",
    "nvmlDeviceGetGpuInstances",
    "nvmlDeviceGetGpuInstanceById",
    "nvmlGpuInstanceGetInfo",
    "nvmlGpuInstanceGetComputeInstanceProfileInfo",
    "nvmlGpuInstanceGetComputeInstanceProfileInfoV",
    "nvmlGpuInstanceGetComputeInstances",
    "nvmlGpuInstanceGetComputeInstanceById",
    "nvmlComputeInstanceGetInfo",
    "nvmlComputeInstanceGetInfo_v2",
    "nvmlDeviceSetMigMode",
    "nvmlDeviceGetGpuInstancePossiblePlacements_v2",
    "nvmlDeviceGetGpuInstanceRemainingCapacity",
    "nvmlDeviceCreateGpuInstance",
    "nvmlDeviceCreateGpuInstanceWithPlacement",
    "nvmlGpuInstanceDestroy",
    "nvmlGpuInstanceGetComputeInstanceRemainingCapacity",
    "nvmlGpuInstanceGetComputeInstancePossiblePlacements",
    "nvmlGpuInstanceCreateComputeInstance",
    "nvmlGpuInstanceCreateComputeInstanceWithPlacement",
    "nvmlComputeInstanceDestroy",
];

/// Run an exported function's body against the live state.
fn call(function: &str, body: impl FnOnce(&Sim) -> NvResult<()>) -> Ret {
    guard(|| {
        let run = || {
            let sim = global::current()?;
            sim.fault(function)?;
            body(&sim)
        };
        match run() {
            Ok(()) => errors::SUCCESS,
            Err(code) => code,
        }
    })
}

/// Catch a panic before it crosses the C boundary.
fn guard(body: impl FnOnce() -> Ret) -> Ret {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(errors::UNKNOWN)
}

/// Write one value through a caller's out-pointer.
///
/// # Safety
/// `ptr` is NULL or valid for a write of `T` (NVML's contract for out-parameters).
unsafe fn put<T>(ptr: *mut T, value: T) -> NvResult<()> {
    if ptr.is_null() {
        return Err(errors::INVALID_ARGUMENT);
    }
    // SAFETY: non-NULL, and valid for writes of T by this function's contract.
    unsafe { ptr.write(value) };
    Ok(())
}

/// Copy `s` and its NUL into a caller's buffer of `length` bytes.
///
/// # Safety
/// `buf` is NULL or valid for writes of `length` bytes.
unsafe fn put_str(buf: *mut c_char, length: c_uint, s: &str) -> NvResult<()> {
    if buf.is_null() {
        return Err(errors::INVALID_ARGUMENT);
    }
    let mut bytes = s.as_bytes().to_vec();
    bytes.push(0);
    if bytes.len() > length as usize {
        return Err(errors::INSUFFICIENT_SIZE);
    }
    // SAFETY: `buf` holds at least `length` >= bytes.len() bytes (contract), and `bytes` is our
    // own vector, so the two ranges cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len()) };
    Ok(())
}

/// Write several values into a caller's array.
///
/// # Safety
/// `ptr` is NULL or valid for writes of `values.len()` elements.
unsafe fn put_all<T: Copy>(ptr: *mut T, values: &[T]) -> NvResult<()> {
    if values.is_empty() {
        return Ok(());
    }
    if ptr.is_null() {
        return Err(errors::INVALID_ARGUMENT);
    }
    // SAFETY: `ptr` is valid for `values.len()` writes (contract) and cannot alias our slice.
    unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), ptr, values.len()) };
    Ok(())
}

/// Borrow a caller's NUL-terminated input string.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives the call.
unsafe fn get_str<'a>(ptr: *const c_char) -> NvResult<&'a CStr> {
    if ptr.is_null() {
        return Err(errors::INVALID_ARGUMENT);
    }
    // SAFETY: non-NULL and NUL-terminated by contract.
    Ok(unsafe { CStr::from_ptr(ptr) })
}

/// Read the `version` field, the first `unsigned int`, of a caller's versioned struct.
///
/// # Safety
/// `ptr` is NULL or points to a readable struct whose first field is an `unsigned int`.
unsafe fn get_version<T>(ptr: *const T) -> NvResult<c_uint> {
    if ptr.is_null() {
        return Err(errors::INVALID_ARGUMENT);
    }
    // SAFETY: NVML's versioned structs start with `unsigned int version` (contract), and
    // read_unaligned makes no alignment assumption.
    Ok(unsafe { ptr.cast::<c_uint>().read_unaligned() })
}

/// Fill a fixed `char[N]` struct field with `s`, truncated to fit its NUL.
fn fill(dst: &mut [c_char], s: &str) {
    dst.fill(0);
    let n = s.len().min(dst.len().saturating_sub(1));
    for (d, b) in dst.iter_mut().zip(&s.as_bytes()[..n]) {
        *d = *b as c_char;
    }
}

/// A handle value as the C type.
fn handle_ptr<T>(h: usize) -> *mut T {
    h as *mut T
}

/// A C handle as the value the state looks up.
fn handle_addr<T>(p: *mut T) -> usize {
    p as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_truncates_and_terminates() {
        let mut buf = [1 as c_char; 6];
        fill(&mut buf, "abc");
        assert_eq!(buf, [97, 98, 99, 0, 0, 0]);
        fill(&mut buf, "abcdefgh");
        assert_eq!(buf, [97, 98, 99, 100, 101, 0]);
    }

    #[test]
    fn put_str_checks_size_and_null() {
        let mut buf = [0 as c_char; 4];
        // SAFETY: `buf` is 4 writable bytes.
        let too_long = unsafe { put_str(buf.as_mut_ptr(), 4, "abcd") };
        assert_eq!(too_long, Err(errors::INSUFFICIENT_SIZE));
        // SAFETY: `buf` is 4 writable bytes.
        let fits = unsafe { put_str(buf.as_mut_ptr(), 4, "abc") };
        assert_eq!(fits, Ok(()));
        assert_eq!(buf, [97, 98, 99, 0]);
        // SAFETY: NULL is allowed and refused.
        let null = unsafe { put_str(std::ptr::null_mut(), 4, "a") };
        assert_eq!(null, Err(errors::INVALID_ARGUMENT));
    }

    #[test]
    fn panics_become_unknown() {
        assert_eq!(guard(|| panic!("boom")), errors::UNKNOWN);
        assert_eq!(guard(|| errors::SUCCESS), errors::SUCCESS);
    }
}
