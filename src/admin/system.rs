//! `migcage system`: one-off host set-up.
//!
//! `create-dev-char-links` makes `/dev/char/<major>:<minor>` for every NVIDIA node under the
//! configuration's dev_root (what NVIDIA's toolkit calls `system create-dev-char-symlinks`): runc
//! under the systemd cgroup driver gives systemd `DeviceAllow=` only for devices it finds there.
//! The packages run it from a udev rule when the driver's nodes appear.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::Config;
use crate::host::dev_char::{self, DevCharError, LinkAction, LinkResult};

/// An error of `system create-dev-char-links`.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error(transparent)]
    Nodes(#[from] DevCharError),
    #[error("{failed} of {total} /dev/char link(s) in {dir} could not be made (first: {first}); run as root, or check that {dir} is writable")]
    Failed {
        failed: usize,
        total: usize,
        dir: String,
        first: String,
    },
}

/// The report of a run: one line per node, then a summary.
pub fn render(dir: &Path, results: &[LinkResult], dry_run: bool) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(out, "{r}");
    }
    let count = |f: fn(&LinkAction) -> bool| results.iter().filter(|r| f(&r.action)).count();
    let made = count(|a| {
        matches!(
            a,
            LinkAction::Created { .. } | LinkAction::WouldCreate { .. }
        )
    });
    let present = count(|a| matches!(a, LinkAction::Present));
    let foreign = count(|a| matches!(a, LinkAction::Foreign { .. }));
    let _ = writeln!(
        out,
        "{} {made}, {present} already present, {foreign} left alone, of {} NVIDIA node(s) in {}",
        if dry_run { "would create" } else { "created" },
        results.len(),
        dir.display()
    );
    out
}

/// The report as `--json` prints it (docs/json.md): one object per link.
pub fn render_json(dir: &Path, results: &[LinkResult], dry_run: bool) -> String {
    let links: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let (action, target, detail) = match &r.action {
                LinkAction::Created { target } => ("created", Some(target), None),
                LinkAction::WouldCreate { target } => ("would_create", Some(target), None),
                LinkAction::Present => ("present", None, None),
                LinkAction::Foreign { found } => ("left_alone", None, Some(found)),
                LinkAction::Failed { error } => ("failed", None, Some(error)),
            };
            serde_json::json!({
                "link": r.link, "node": r.node, "action": action, "target": target,
                "detail": detail,
            })
        })
        .collect();
    let v = serde_json::json!({"dir": dir, "dry_run": dry_run, "links": links});
    format!(
        "{}\n",
        serde_json::to_string_pretty(&v).expect("a report serializes")
    )
}

/// `migcage system create-dev-char-links`: make (or, `dry_run`, list) the links in `dir`; the
/// report, or an error when a link could not be made.
pub fn create_dev_char_links(
    config: &Config,
    dir: &Path,
    dry_run: bool,
    json: bool,
) -> Result<String, SystemError> {
    let nodes = dev_char::host_nodes(config)?;
    let results = dev_char::ensure_links(dir, &nodes, dry_run);
    let report = if json {
        render_json(dir, &results, dry_run)
    } else {
        render(dir, &results, dry_run)
    };
    let failed: Vec<&LinkResult> = results
        .iter()
        .filter(|r| matches!(r.action, LinkAction::Failed { .. }))
        .collect();
    if let Some(first) = failed.first() {
        print!("{report}");
        return Err(SystemError::Failed {
            failed: failed.len(),
            total: results.len(),
            dir: dir.display().to_string(),
            first: first.to_string(),
        });
    }
    Ok(report)
}
