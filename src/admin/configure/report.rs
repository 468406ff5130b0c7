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
    let what = match &o.binary {
        Some(b) => format!("registers migcage ({})", b.display()),
        None => "turns on CDI".to_string(),
    };
    if !o.changed {
        let _ = writeln!(s, "{}: already {what}; nothing changed", o.file.display());
        return s;
    }
    let done = match &o.binary {
        Some(b) => format!("registered migcage ({})", b.display()),
        None => "turned on CDI".to_string(),
    };
    let _ = write!(s, "{}: {done}", o.file.display());
    match &o.backup {
        Some(b) => {
            let _ = writeln!(s, "; backup {}", b.display());
        }
        None => s.push_str("; new file\n"),
    }
    let next = match (o.target, &o.binary) {
        (Target::Docker, None) => "next: restart dockerd (systemctl restart docker), write migcage's spec (migcage cdi generate --output /etc/cdi/), then: docker run --device nvidia.com/gpu=0:1 IMAGE",
        (Target::Containerd, None) => "next: restart containerd (systemctl restart containerd) and write migcage's spec (migcage cdi generate --output /etc/cdi/, or migcage-cdi.service at boot); pods then get the devices the device plugin names by CDI",
        (target, _) => match target {
        Target::Docker => "next: reload dockerd (systemctl reload docker, or SIGHUP), then: docker run --runtime=migcage -e NVIDIA_VISIBLE_DEVICES=0:1 IMAGE",
        Target::Containerd => "next: restart containerd (systemctl restart containerd); Kubernetes pods select it with a RuntimeClass whose handler is migcage",
        Target::Podman => "next: podman runs the hook for every new container (pass --hooks-dir if you chose a directory podman does not read by default)",
        Target::Crio => "next: restart crio (systemctl restart crio) and check that crio.conf's hooks_dir includes this directory",
        },
    };
    s.push_str(next);
    s.push('\n');
    s
}
