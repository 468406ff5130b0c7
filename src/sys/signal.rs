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

/// Give SIGPIPE back its default action (end the process), as every Unix tool has it: Rust's
/// runtime ignores it, so a write to a closed pipe fails with EPIPE and `println!` panics. With
/// the default, `migcage list | head -1` ends quietly, status 141 in the shell, like `cat`; and a
/// runtime that migcage execs starts with the disposition it would get from a shell.
pub fn default_sigpipe() {
    // SAFETY: signal(2) with SIG_DFL installs no handler (no code runs on delivery), and is
    // called once, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
