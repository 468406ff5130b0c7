//! A stand-in `nvidia-smi`: loads `libnvidia-ml.so.1` by soname at run time, the way the real
//! one does, so it reports whatever NVML the dynamic linker finds (the simulated one in tests,
//! a real driver's on a GPU host).
//!
//! Supported: `-L` / `--list-gpus` (the real format, MIG devices included), `--version`, and a
//! plain invocation printing a short summary (header with driver and CUDA versions, then the
//! `-L` list). Exit codes follow the real tool's documented ones: 9 when the driver is not
//! loaded, 12 when the library cannot be loaded, the NVML code for other documented failures,
//! 255 otherwise.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::process::ExitCode;

type Handle = *mut c_void;
type Ret = c_uint;

const SUCCESS: Ret = 0;
const DRIVER_NOT_LOADED: Ret = 9;
const NOT_FOUND: Ret = 6;
const BUF: usize = 96;

type FnInit = unsafe extern "C" fn() -> Ret;
type FnErrorString = unsafe extern "C" fn(Ret) -> *const c_char;
type FnSysString = unsafe extern "C" fn(*mut c_char, c_uint) -> Ret;
type FnSysInt = unsafe extern "C" fn(*mut c_int) -> Ret;
type FnCount = unsafe extern "C" fn(*mut c_uint) -> Ret;
type FnHandleByIndex = unsafe extern "C" fn(c_uint, *mut Handle) -> Ret;
type FnDevString = unsafe extern "C" fn(Handle, *mut c_char, c_uint) -> Ret;
type FnMigMode = unsafe extern "C" fn(Handle, *mut c_uint, *mut c_uint) -> Ret;
type FnDevUint = unsafe extern "C" fn(Handle, *mut c_uint) -> Ret;
type FnMigByIndex = unsafe extern "C" fn(Handle, c_uint, *mut Handle) -> Ret;

/// The NVML functions this tool calls, resolved from the loaded library.
struct Nvml {
    init: FnInit,
    shutdown: FnInit,
    error_string: FnErrorString,
    driver_version: FnSysString,
    nvml_version: FnSysString,
    cuda_version: FnSysInt,
    count: FnCount,
    by_index: FnHandleByIndex,
    name: FnDevString,
    uuid: FnDevString,
    mig_mode: FnMigMode,
    max_mig: FnDevUint,
    mig_by_index: FnMigByIndex,
}

/// Resolve one symbol as a function pointer of type `$ty`, or return the missing name.
macro_rules! sym {
    ($lib:expr, $name:literal, $ty:ty) => {{
        // SAFETY: `$lib` is a live handle from dlopen and the name is NUL-terminated.
        let p = unsafe { libc::dlsym($lib, concat!($name, "\0").as_ptr().cast()) };
        if p.is_null() {
            return Err($name);
        }
        // SAFETY: the symbol is NVML's function of that name, whose C signature is `$ty`
        // (nvml.h); a data pointer and a function pointer have the same size on Linux.
        unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
    }};
}

impl Nvml {
    fn load() -> Result<Nvml, String> {
        // SAFETY: the name is a NUL-terminated literal; dlopen runs the library's constructors,
        // which is what loading NVML means.
        let lib = unsafe {
            libc::dlopen(
                c"libnvidia-ml.so.1".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            )
        };
        if lib.is_null() {
            return Err(dl_error());
        }
        Nvml::resolve(lib).map_err(|name| format!("libnvidia-ml.so.1 has no symbol {name}"))
    }

    fn resolve(lib: *mut c_void) -> Result<Nvml, &'static str> {
        Ok(Nvml {
            init: sym!(lib, "nvmlInit_v2", FnInit),
            shutdown: sym!(lib, "nvmlShutdown", FnInit),
            error_string: sym!(lib, "nvmlErrorString", FnErrorString),
            driver_version: sym!(lib, "nvmlSystemGetDriverVersion", FnSysString),
            nvml_version: sym!(lib, "nvmlSystemGetNVMLVersion", FnSysString),
            cuda_version: sym!(lib, "nvmlSystemGetCudaDriverVersion", FnSysInt),
            count: sym!(lib, "nvmlDeviceGetCount_v2", FnCount),
            by_index: sym!(lib, "nvmlDeviceGetHandleByIndex_v2", FnHandleByIndex),
            name: sym!(lib, "nvmlDeviceGetName", FnDevString),
            uuid: sym!(lib, "nvmlDeviceGetUUID", FnDevString),
            mig_mode: sym!(lib, "nvmlDeviceGetMigMode", FnMigMode),
            max_mig: sym!(lib, "nvmlDeviceGetMaxMigDeviceCount", FnDevUint),
            mig_by_index: sym!(lib, "nvmlDeviceGetMigDeviceHandleByIndex", FnMigByIndex),
        })
    }

    fn err(&self, code: Ret) -> String {
        // SAFETY: nvmlErrorString takes any code and returns a static string or NULL.
        let p = unsafe { (self.error_string)(code) };
        if p.is_null() {
            return format!("error {code}");
        }
        // SAFETY: a non-NULL result is a static NUL-terminated string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    fn sys_string(&self, f: FnSysString) -> Result<String, Ret> {
        let mut buf = [0 as c_char; BUF];
        // SAFETY: `buf` holds BUF bytes, as the length says.
        check(unsafe { f(buf.as_mut_ptr(), BUF as c_uint) })?;
        Ok(string(&buf))
    }

    fn dev_string(&self, f: FnDevString, h: Handle) -> Result<String, Ret> {
        let mut buf = [0 as c_char; BUF];
        // SAFETY: `h` came from the library; `buf` holds BUF bytes, as the length says.
        check(unsafe { f(h, buf.as_mut_ptr(), BUF as c_uint) })?;
        Ok(string(&buf))
    }

    fn cuda_version(&self) -> Result<c_int, Ret> {
        let mut v: c_int = 0;
        // SAFETY: `v` is a valid out-pointer.
        check(unsafe { (self.cuda_version)(&mut v) })?;
        Ok(v)
    }
}

fn check(code: Ret) -> Result<(), Ret> {
    if code == SUCCESS {
        Ok(())
    } else {
        Err(code)
    }
}

fn string(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn dl_error() -> String {
    // SAFETY: dlerror has no preconditions.
    let p = unsafe { libc::dlerror() };
    if p.is_null() {
        return "unknown dlopen error".into();
    }
    // SAFETY: a non-NULL dlerror result is a NUL-terminated string valid until the next dl call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// nvidia-smi's documented exit codes for NVML failures.
fn exit_for(code: Ret) -> u8 {
    match code {
        2 | 3 | 4 | 6 | 8 | 9 | 10 | 12 | 14 | 15 => code as u8,
        _ => 255,
    }
}

fn cuda_string(v: c_int) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

enum Mode {
    List,
    Version,
    Summary,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => Mode::Summary,
        ["-L"] | ["--list-gpus"] => Mode::List,
        ["--version"] => Mode::Version,
        ["-h"] | ["--help"] => {
            println!("NVIDIA System Management Interface (migcage stand-in)\n\n    nvidia-smi [-L | --list-gpus | --version]");
            return ExitCode::SUCCESS;
        }
        _ => {
            println!(
                "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help."
            );
            return ExitCode::from(2);
        }
    };
    let nvml = match Nvml::load() {
        Ok(n) => n,
        Err(why) => {
            println!(
                "NVIDIA-SMI couldn't find libnvidia-ml.so library in your system. Please make sure that the NVIDIA Display Driver is properly installed and present in your system.\nPlease also try adding directory that contains libnvidia-ml.so to your system PATH."
            );
            eprintln!("({why})");
            return ExitCode::from(12);
        }
    };
    // SAFETY: nvmlInit_v2 takes no arguments.
    let init = unsafe { (nvml.init)() };
    if init == DRIVER_NOT_LOADED {
        println!("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n");
        return ExitCode::from(9);
    }
    if init != SUCCESS {
        println!("Failed to initialize NVML: {}", nvml.err(init));
        return ExitCode::from(exit_for(init));
    }
    let code = match mode {
        Mode::List => list(&nvml),
        Mode::Version => version(&nvml),
        Mode::Summary => summary(&nvml),
    };
    // SAFETY: balances the successful nvmlInit_v2 above.
    unsafe { (nvml.shutdown)() };
    ExitCode::from(code)
}

fn version(nvml: &Nvml) -> u8 {
    let (driver, nvml_v, cuda) = match (
        nvml.sys_string(nvml.driver_version),
        nvml.sys_string(nvml.nvml_version),
        nvml.cuda_version(),
    ) {
        (Ok(d), Ok(n), Ok(c)) => (d, n, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            println!("Failed to query versions: {}", nvml.err(e));
            return exit_for(e);
        }
    };
    println!("NVIDIA-SMI version  : {driver}");
    println!("NVML version        : {nvml_v}");
    println!("DRIVER version      : {driver}");
    println!("CUDA Version        : {}", cuda_string(cuda));
    0
}

fn summary(nvml: &Nvml) -> u8 {
    let (driver, cuda) = match (nvml.sys_string(nvml.driver_version), nvml.cuda_version()) {
        (Ok(d), Ok(c)) => (d, cuda_string(c)),
        (Err(e), _) | (_, Err(e)) => {
            println!("Failed to query versions: {}", nvml.err(e));
            return exit_for(e);
        }
    };
    let rule = format!("+{}+", "-".repeat(89));
    println!("{rule}");
    println!(
        "| {:<88}|",
        format!("NVIDIA-SMI {driver:<22}Driver Version: {driver:<15}CUDA Version: {cuda}")
    );
    println!("{rule}");
    list(nvml)
}

/// `-L`: every GPU, and under a GPU in MIG mode its MIG devices.
fn list(nvml: &Nvml) -> u8 {
    let mut count: c_uint = 0;
    // SAFETY: `count` is a valid out-pointer.
    if let Err(e) = check(unsafe { (nvml.count)(&mut count) }) {
        println!("Failed to get the GPU count: {}", nvml.err(e));
        return exit_for(e);
    }
    if count == 0 {
        println!("No devices found.");
        return 6;
    }
    let mut status = 0;
    for i in 0..count {
        if let Err(e) = list_gpu(nvml, i) {
            println!(
                "Unable to determine the device handle for GPU {i}: {}",
                nvml.err(e)
            );
            status = exit_for(e);
        }
    }
    status
}

fn list_gpu(nvml: &Nvml, index: c_uint) -> Result<(), Ret> {
    let mut h: Handle = std::ptr::null_mut();
    // SAFETY: `h` is a valid out-pointer.
    check(unsafe { (nvml.by_index)(index, &mut h) })?;
    let name = nvml.dev_string(nvml.name, h)?;
    let uuid = nvml.dev_string(nvml.uuid, h)?;
    println!("GPU {index}: {name} (UUID: {uuid})");
    let (mut current, mut pending): (c_uint, c_uint) = (0, 0);
    // SAFETY: `h` came from the library; both out-pointers are valid.
    if check(unsafe { (nvml.mig_mode)(h, &mut current, &mut pending) }).is_err() || current != 1 {
        return Ok(());
    }
    let mut max: c_uint = 0;
    // SAFETY: `h` came from the library; `max` is a valid out-pointer.
    check(unsafe { (nvml.max_mig)(h, &mut max) })?;
    for m in 0..max {
        let mut mh: Handle = std::ptr::null_mut();
        // SAFETY: `h` came from the library; `mh` is a valid out-pointer.
        match unsafe { (nvml.mig_by_index)(h, m, &mut mh) } {
            SUCCESS => {}
            NOT_FOUND => continue,
            e => return Err(e),
        }
        let mig_name = nvml.dev_string(nvml.name, mh)?;
        let mig_uuid = nvml.dev_string(nvml.uuid, mh)?;
        let profile = mig_name
            .split_once("MIG ")
            .map_or(mig_name.as_str(), |(_, p)| p);
        println!("  MIG {profile:<11} Device {m:>2}: (UUID: {mig_uuid})");
    }
    Ok(())
}
