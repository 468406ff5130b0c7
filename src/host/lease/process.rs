//! Whether a lease's holder process still runs, from `/proc/<pid>/stat`.

use std::io;
use std::path::Path;

use super::Lease;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `Z`, ...
    pub state: char,
    /// Field 4.
    pub ppid: i32,
    /// Field 22: start time in clock ticks after boot.
    pub start_time: u64,
}

impl ProcStat {
    /// A zombie (or dead) process has ended: its container is gone.
    pub fn ended(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parse `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so the
/// fields are counted from its last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state).
    let state = fields.first()?.chars().next()?;
    Some(ProcStat {
        state,
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Read `<proc>/<pid>/stat` (`pid` may be `self`). `Ok(None)` when the process does not exist.
pub fn read_stat(proc: &Path, pid: &str) -> io::Result<Option<ProcStat>> {
    let path = proc.join(pid).join("stat");
    match crate::sys::read::read_text(&path) {
        Ok(text) => parse_stat(&text).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "unexpected format: {:?}",
                    text.chars().take(80).collect::<String>()
                ),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a lease's holder still runs: its pid exists, is not a zombie and started when the
/// lease says. Pure: `now` is what procfs says of the pid now.
pub fn is_live(lease: &Lease, now: Option<ProcStat>) -> bool {
    now.is_some_and(|s| !s.ended() && s.start_time == lease.start_time)
}

/// Split leases into (live, stale) by asking `proc` about each holder.
pub fn partition_live(leases: Vec<Lease>, proc: &Path) -> (Vec<Lease>, Vec<Lease>) {
    leases.into_iter().partition(|l| {
        // A procfs that cannot be read keeps the lease: fail closed, never hand out twice.
        match read_stat(proc, &l.pid.to_string()) {
            Ok(now) => is_live(l, now),
            Err(_) => true,
        }
    })
}

#[cfg(test)]
mod tests;
