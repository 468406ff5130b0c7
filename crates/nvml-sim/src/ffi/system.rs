//! Library and system calls: init, shutdown, error strings, versions.

use std::ffi::{c_char, c_int, c_uint};

use nvml_wrapper_sys::bindings::nvmlReturn_t;

use super::{call, guard, put, put_str};
use crate::errors;
use crate::global;

#[no_mangle]
pub extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
    guard(|| global::init("nvmlInit_v2"))
}

/// The v1 entry point: the same as v2 here (v1 differed only in skipping GPUs it could not
/// attach to, which the simulator never has).
#[no_mangle]
pub extern "C" fn nvmlInit() -> nvmlReturn_t {
    guard(|| global::init("nvmlInit"))
}

/// Flags (`NVML_INIT_FLAG_NO_GPUS`, `NVML_INIT_FLAG_NO_ATTACH`) change nothing here: init never
/// fails for lack of GPUs and never attaches.
#[no_mangle]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> nvmlReturn_t {
    guard(|| global::init("nvmlInitWithFlags"))
}

#[no_mangle]
pub extern "C" fn nvmlShutdown() -> nvmlReturn_t {
    guard(|| {
        // An injected fault on shutdown still fails it, leaving the state alive.
        if let Ok(sim) = global::current() {
            if let Err(code) = sim.fault("nvmlShutdown") {
                return code;
            }
        }
        global::shutdown()
    })
}

/// Static strings, valid for the life of the process; works before init, like the real one.
#[no_mangle]
pub extern "C" fn nvmlErrorString(result: nvmlReturn_t) -> *const c_char {
    errors::error_string(result).as_ptr()
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(
    version: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    call("nvmlSystemGetDriverVersion", |sim| {
        // SAFETY: `version` holds `length` bytes (NVML contract).
        unsafe { put_str(version, length, &sim.topology().driver_version) }
    })
}

/// "12.<driver version>", the form the real library of a CUDA 12 driver reports.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(
    version: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    call("nvmlSystemGetNVMLVersion", |sim| {
        let v = format!("12.{}", sim.topology().driver_version);
        // SAFETY: `version` holds `length` bytes (NVML contract).
        unsafe { put_str(version, length, &v) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion(
    cuda_driver_version: *mut c_int,
) -> nvmlReturn_t {
    call("nvmlSystemGetCudaDriverVersion", |sim| {
        // SAFETY: out-pointer valid for a c_int (NVML contract).
        unsafe { put(cuda_driver_version, sim.topology().cuda_driver_version) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(
    cuda_driver_version: *mut c_int,
) -> nvmlReturn_t {
    call("nvmlSystemGetCudaDriverVersion_v2", |sim| {
        // SAFETY: out-pointer valid for a c_int (NVML contract).
        unsafe { put(cuda_driver_version, sim.topology().cuda_driver_version) }
    })
}
