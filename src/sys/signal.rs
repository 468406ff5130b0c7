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

/// What Rust's own start-up does before `main` that migcage keeps, for its C entry point
/// (`src/main.rs`, #18): ignore SIGPIPE, so that a write to a closed pipe is an EPIPE error,
/// and make sure descriptors 0, 1 and 2 are open (on `/dev/null` where they were closed), so
/// that no file the process opens becomes its stdout by accident.
///
/// What it leaves out is the main thread's stack-overflow handler: setting it up reads
/// `/proc/self/maps` and maps an alternate signal stack, about 100 µs of every hook and
/// runtime wrapper start on a VM. A stack overflow is then a plain SIGSEGV, without Rust's
/// message naming the thread.
pub fn process_start() {
    // SAFETY: poll(2) reads the three pollfd structs of the array it is given (their length
    // passed with it) and writes only their revents; open(2) gets a NUL-terminated path; both
    // run before any other thread exists.
    unsafe {
        let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        if libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) >= 0 {
            for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
                // open(2) takes the lowest free descriptor: the closed one.
                let flags = if p.fd == 0 {
                    libc::O_RDONLY
                } else {
                    libc::O_WRONLY
                };
                if libc::open(c"/dev/null".as_ptr(), flags) != p.fd {
                    libc::abort();
                }
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
