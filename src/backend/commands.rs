//! The back ends' commands as `migcage` runs them: `cdi generate` writes a spec of the host's
//! devices, `cdi list` shows what the specs on disk offer and where they no longer match the host
//! (the hook and the runtime wrapper have their own entry points).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::backend::cdi;
use crate::config::Config;
use crate::host::inventory::Inventory;

/// Discover the host (rewriting the inventory snapshot); a snapshot that could not be written is
/// a note on stderr, not an error.
pub fn discover(config: &Config) -> anyhow::Result<Inventory> {
    let found = crate::host::inventory::snapshot::discover_and_save(config)?;
    if let Err(e) = &found.saved {
        eprintln!("migcage: note: {e}");
    }
    Ok(found.inventory)
}

/// How to generate a spec of `kind`: `hook_config` is the `MIGCAGE_CONFIG` the hook gets.
fn options(
    hook_config: &Option<PathBuf>,
    kind: cdi::Kind,
    hook_path: PathBuf,
    caps: crate::core::request::DriverCapabilities,
    driver_files: crate::core::driver_files::DriverFiles,
) -> cdi::GenerateOptions {
    cdi::GenerateOptions {
        kind,
        hook_path,
        config_path: hook_config.clone(),
        driver_capabilities: caps,
        driver_files,
    }
}

/// `migcage cdi generate`: write a spec of every GPU and MIG device to `output` (a file, a
/// directory, or `-` for stdout).
pub fn generate(
    config: &Config,
    hook_config: &Option<PathBuf>,
    output: Option<&Path>,
    format: Option<cdi::Format>,
    kind: &str,
    hook_path: Option<PathBuf>,
    driver_capabilities: &str,
) -> anyhow::Result<()> {
    let kind: cdi::Kind = kind.parse()?;
    let caps: crate::core::request::DriverCapabilities =
        driver_capabilities.parse().map_err(|e| {
            anyhow::anyhow!(
                "--driver-capabilities {driver_capabilities:?}: {e}; write a comma list of compute, utility, video, graphics, display, ngx, compat32 or all"
            )
        })?;
    let dest = cdi::destination(output, format, &kind)?;
    let hook_path = match hook_path {
        Some(p) => std::path::absolute(&p).unwrap_or(p),
        None => std::env::current_exe()
            .context("cannot tell where this migcage binary is; pass --hook-path")?,
    };
    let inv = discover(config)?;
    let driver = crate::host::driver_discovery::discover(config, &inv.driver_version)?;
    crate::profile::mark("driver-files");
    let generated = cdi::generate(
        &inv,
        &config.dev_root,
        &options(hook_config, kind, hook_path, caps, driver),
    )?;
    crate::profile::mark("generate");
    for note in &generated.notes {
        eprintln!("migcage: note: {note}");
    }
    let spec = &generated.spec;
    let text = cdi::to_text(spec, dest.format)?;
    crate::profile::mark("text");
    match &dest.path {
        None => print!("{text}"),
        Some(path) => {
            cdi::write_atomic(path, &text)?;
            crate::profile::mark("write");
            println!(
                "wrote {} (kind {}, cdiVersion {}): {} device names; ask for one as --device {}={}",
                path.display(),
                spec.kind,
                spec.cdi_version,
                spec.devices.len(),
                spec.kind,
                spec.devices
                    .iter()
                    .find(|d| d.name.contains(':'))
                    .or(spec.devices.first())
                    .map(|d| d.name.as_str())
                    .unwrap_or("0")
            );
        }
    }
    Ok(())
}

/// `migcage cdi list`: what the specs in `spec` (a file or a directory; default the CDI spec
/// directories) offer; with `check`, an error when one no longer matches the host.
pub fn list(
    config: &Config,
    hook_config: &Option<PathBuf>,
    spec: Option<PathBuf>,
    check: bool,
    json: bool,
) -> anyhow::Result<()> {
    let found = match &spec {
        Some(p) if !p.is_dir() => vec![(p.clone(), cdi::read(p)?)],
        Some(dir) => cdi::find_specs(std::slice::from_ref(dir)),
        None => cdi::find_specs(&cdi::SPEC_DIRS.map(PathBuf::from)),
    };
    if found.is_empty() {
        let dirs = match &spec {
            Some(dir) => dir.display().to_string(),
            None => cdi::SPEC_DIRS.join(" or "),
        };
        // Nothing to list is an answer, not a failure (as `ls` of an empty directory): the
        // report is empty, and the note says where migcage looked and how to write one.
        eprintln!(
            "migcage: note: no CDI spec made by migcage in {dirs}; write one with 'migcage cdi generate --output {}/'",
            cdi::DEFAULT_DIR
        );
        if json {
            println!("{}", serde_json::json!({ "specs": [] }));
        }
        return Ok(());
    }
    let inv = discover(config)?;
    let mut reports = Vec::new();
    for (path, disk) in &found {
        let now = match disk.kind.parse::<cdi::Kind>() {
            Ok(kind) => {
                let hook = disk
                    .container_edits
                    .hooks
                    .first()
                    .map(|h| PathBuf::from(&h.path))
                    .unwrap_or_default();
                let caps = crate::core::request::DriverCapabilities::DEFAULT;
                Some(
                    cdi::generate(
                        &inv,
                        &config.dev_root,
                        // Staleness is about devices: no driver files needed.
                        &options(hook_config, kind, hook, caps, Default::default()),
                    )?
                    .spec,
                )
            }
            Err(_) => None,
        };
        let mut report = cdi::report(path, disk, now.as_ref());
        if now.is_none() {
            report.warnings.push(format!(
                "kind {:?} is not one migcage generates, so it cannot be checked against the hardware",
                disk.kind
            ));
        }
        reports.push(report);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "specs": reports }))?
        );
    } else {
        for r in &reports {
            print!("{}", cdi::render(r));
        }
    }
    let mut warnings = 0;
    for r in &reports {
        for w in &r.warnings {
            eprintln!("migcage: warning: {}: {w}", r.path.display());
            warnings += 1;
        }
    }
    if check && warnings > 0 {
        let fixes: Vec<String> = reports
            .iter()
            .filter(|r| !r.warnings.is_empty())
            .map(|r| format!("'{}'", cdi::regenerate(&r.path, &r.kind)))
            .collect();
        anyhow::bail!(
            "{warnings} warning(s): the CDI spec no longer matches this host's devices; regenerate it with {}",
            fixes.join(" and ")
        );
    }
    Ok(())
}
