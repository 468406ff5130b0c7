//! What to tell the user after `configure`: the diff of a dry run, or what changed and what next.

use std::fmt::Write as _;

use super::{Outcome, Target};

/// What to tell the user: the diff of a dry run, or what changed and what to do next.
pub fn report(o: &Outcome) -> String {
    let mut s = String::new();
    if o.dry_run {
        if let Some(l) = &o.link {
            let _ = writeln!(s, "# would create {} -> migcage", l.display());
        }
        if o.changed {
            s.push_str(&o.diff);
        } else {
            let _ = writeln!(s, "# {}: no change", o.file.display());
        }
        return s;
    }
    if let Some(l) = &o.link {
        let _ = writeln!(s, "created {} -> migcage", l.display());
    }
    if !o.changed {
        let _ = writeln!(
            s,
            "{}: already registers migcage ({}); nothing changed",
            o.file.display(),
            o.binary.display()
        );
        return s;
    }
    let _ = write!(
        s,
        "{}: registered migcage ({})",
        o.file.display(),
        o.binary.display()
    );
    match &o.backup {
        Some(b) => {
            let _ = writeln!(s, "; backup {}", b.display());
        }
        None => s.push_str("; new file\n"),
    }
    let next = match o.target {
        Target::Docker => "next: reload dockerd (systemctl reload docker, or SIGHUP), then: docker run --runtime=migcage -e NVIDIA_VISIBLE_DEVICES=0:1 IMAGE",
        Target::Containerd => "next: restart containerd (systemctl restart containerd); Kubernetes pods select it with a RuntimeClass whose handler is migcage",
        Target::Podman => "next: podman runs the hook for every new container (pass --hooks-dir if you chose a directory podman does not read by default)",
        Target::Crio => "next: restart crio (systemctl restart crio) and check that crio.conf's hooks_dir includes this directory",
    };
    s.push_str(next);
    s.push('\n');
    s
}
