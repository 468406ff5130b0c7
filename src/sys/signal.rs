//! SIGKILL to a process or to this one: the fault points' way of dying (`crate::faultpoint`).

/// Send SIGKILL to process `pid`; an error (no such process, a pid too large) is ignored.
pub fn kill_hard(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Die by SIGKILL, here and now.
pub fn die_hard() -> ! {
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    // SIGKILL cannot be blocked or caught: raise does not return. Should it ever, stop anyway.
    std::process::abort()
}
