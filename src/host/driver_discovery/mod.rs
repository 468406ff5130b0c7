//! Which of the driver's user-space files this host has: the I/O half of driver injection.
//!
//! For every entry of [`crate::core::driver_files::DRIVER_FILES`] it looks under the configured
//! `driver_root`: libraries through the root's ld cache (`<driver_root>/etc/ld.so.cache`, either
//! format, see [`crate::core::ldcache`]), falling back to the usual library directories; binaries in
//! the usual `bin` directories; firmware, configuration files and IPC sockets at their paths.
//! A library counts only when the file it resolves to carries the running driver's version
//! (`libcuda.so.550.54.15` for 550.54.15) and is an ELF object of the right class: a stale
//! library of an older driver is never handed to a container.
//!
//! What it finds is a [`DriverFiles`], which the pure plan ([`crate::core::plan::driver`]) maps onto
//! the container. The host is trusted here (its paths are resolved with `canonicalize`); the
//! container's rootfs is not, and is only ever touched through [`crate::sys::rootfs`].

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::core::driver_files::{
    dev_link_name, driver_files, Caps, DriverFile, FileKind, BINARY_DIRS, LIBRARY_DIRS,
    LIBRARY_DIRS_32, SIM_ONLY_FILES,
};
use crate::core::edits::LibArch;
use crate::core::ldcache::{LdCache, FLAGS_I386, FLAGS_X86_64};

/// Why the driver's files cannot be discovered at all. A single missing file is not an error
/// (it is noted in [`DriverFiles::missing`]).
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("driver_root {}: {source}; set driver_root in the migcage config to the directory holding the driver's files (/ on a host)", path.display())]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub use crate::core::driver_files::{DriverFiles, HostFile, Library};

/// The ELF class and machine a library must have for `arch`.
fn elf_matches(path: &Path, arch: LibArch) -> bool {
    use std::io::Read;
    let mut head = [0u8; 20];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok();
    if !ok || &head[..4] != b"\x7fELF" {
        return false;
    }
    let machine = u16::from_le_bytes([head[18], head[19]]);
    match arch {
        // ELFCLASS64, EM_X86_64
        LibArch::X86_64 => head[4] == 2 && machine == 62,
        // ELFCLASS32, EM_386
        LibArch::I386 => head[4] == 1 && machine == 3,
    }
}

/// Discovery over one driver root.
struct Finder<'a> {
    root: PathBuf,
    version: &'a str,
    cache: Option<LdCache>,
    missing: Vec<String>,
    /// Each candidate directory's real path (None: not a directory), asked once: most hosts have
    /// none of the 32-bit library directories, where every library would otherwise be looked
    /// for in each, and every file of a directory shares its resolution.
    dirs: std::cell::RefCell<std::collections::HashMap<String, Option<PathBuf>>>,
}

/// `path` as a container path: relative to the root, with a leading `/`.
fn in_root(root: &Path, real: &Path) -> Option<String> {
    let rel = real.strip_prefix(root).ok()?;
    let s = rel.to_str()?;
    Some(format!("/{s}"))
}

impl Finder<'_> {
    /// The host path of an absolute path of a real host.
    fn host(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Resolve `candidate` (an absolute path of a real host, possibly a symlink) to the regular
    /// file it names, which must stay inside the driver root. Returns the host path and the
    /// resolved path as a real host names it.
    fn resolve(&self, candidate: &str) -> Option<(PathBuf, String)> {
        let (dir, name) = candidate.rsplit_once('/')?;
        let dir = self.real_dir(dir)?;
        // Most candidates do not exist: one lstat says so. A name that is a symlink to a name in
        // the same directory (the soname link of a library) is followed here, so the resolved
        // path costs one lstat per link and not canonicalize's readlink of every component.
        let mut name = name.to_string();
        for _ in 0..8 {
            let at = dir.join(&name);
            let meta = std::fs::symlink_metadata(&at).ok()?;
            if !meta.file_type().is_symlink() {
                return meta.is_file().then(|| self.in_root(at)).flatten();
            }
            let target = std::fs::read_link(&at).ok()?;
            match target.to_str() {
                Some(t) if !t.is_empty() && !t.contains('/') && t != "." && t != ".." => {
                    name = t.to_string();
                }
                _ => return self.canonical_file(&at),
            }
        }
        self.canonical_file(&dir.join(&name))
    }

    /// The real (canonical) host path of directory `dir` (an absolute path of a real host),
    /// asked once per directory: None when it is not a directory.
    fn real_dir(&self, dir: &str) -> Option<PathBuf> {
        self.dirs
            .borrow_mut()
            .entry(dir.to_string())
            .or_insert_with(|| {
                // One stat for the many directories a host does not have.
                let host = self.host(dir);
                std::fs::metadata(&host)
                    .is_ok_and(|m| m.is_dir())
                    .then(|| std::fs::canonicalize(host).ok())
                    .flatten()
            })
            .clone()
    }

    /// `at` resolved the long way, when a link leaves its directory.
    fn canonical_file(&self, at: &Path) -> Option<(PathBuf, String)> {
        let real = std::fs::canonicalize(at).ok()?;
        if !real.is_file() {
            return None;
        }
        self.in_root(real)
    }

    /// A resolved file, which must be inside the driver root, with its path as a real host
    /// names it.
    fn in_root(&self, real: PathBuf) -> Option<(PathBuf, String)> {
        let path = in_root(&self.root, &real)?;
        Some((real, path))
    }

    fn library(&mut self, f: &DriverFile, arch: LibArch) -> Option<HostFile> {
        let soname = f.soname.clone().unwrap_or_else(|| f.name.clone());
        let (flags, dirs) = match arch {
            LibArch::X86_64 => (FLAGS_X86_64, LIBRARY_DIRS),
            LibArch::I386 => (FLAGS_I386, LIBRARY_DIRS_32),
        };
        let mut candidates: Vec<(String, String)> = Vec::new();
        // The ld cache names the soname link; its directory is where the library lives.
        if f.subdir.is_none() {
            if let Some(e) = self.cache.as_ref().and_then(|c| c.lookup(&soname, flags)) {
                let value = e.path();
                if let Some((dir, _)) = value.rsplit_once('/') {
                    candidates.push((dir.to_string(), value.clone()));
                }
            }
        }
        for dir in dirs {
            let dir = match f.subdir {
                Some(sub) => format!("{dir}/{sub}"),
                None => dir.to_string(),
            };
            let path = format!("{dir}/{}", f.name);
            candidates.push((dir, path));
        }
        let arch_name = match arch {
            LibArch::X86_64 => "x86-64",
            LibArch::I386 => "i386",
        };
        let mut rejected = None;
        for (dir, candidate) in candidates {
            let Some((host_path, resolved)) = self.resolve(&candidate) else {
                continue;
            };
            let file_name = resolved.rsplit('/').next().unwrap_or_default().to_string();
            if file_name != f.name {
                rejected.get_or_insert(format!(
                    "{candidate} is {file_name}, not the running driver's {}",
                    self.version
                ));
                continue;
            }
            if !elf_matches(&host_path, arch) {
                rejected.get_or_insert(format!("{candidate} is not an {arch_name} ELF object"));
                continue;
            }
            return Some(HostFile {
                kind: FileKind::Library,
                caps: f.caps,
                host_path,
                path: format!("{dir}/{file_name}"),
                library: Some(Library {
                    soname: soname.clone(),
                    arch,
                    dev_link: dev_link_name(&soname),
                    in_ld_cache: f.subdir.is_none(),
                }),
                sim_only: false,
            });
        }
        // 32-bit builds are optional: most hosts have none, so only a wrong one is worth a note.
        if arch == LibArch::X86_64 || rejected.is_some() {
            self.missing.push(match rejected {
                Some(why) => format!("{} ({arch_name}): {why}", f.name),
                None => format!("{} ({arch_name}): not found", f.name),
            });
        }
        None
    }

    fn binary(&mut self, f: &DriverFile) -> Option<HostFile> {
        for dir in BINARY_DIRS {
            let path = format!("{dir}/{}", f.name);
            if let Some((host_path, _)) = self.resolve(&path) {
                return Some(HostFile {
                    kind: f.kind,
                    caps: f.caps,
                    host_path,
                    path,
                    library: None,
                    sim_only: false,
                });
            }
        }
        self.missing.push(format!("{}: not found", f.name));
        None
    }

    /// A file at a fixed path (firmware, configuration, sockets), or every file matching a glob
    /// in its last component.
    fn fixed(&mut self, f: &DriverFile) -> Vec<HostFile> {
        let paths: Vec<String> = if f.is_pattern() {
            let (dir, pattern) = f.name.rsplit_once('/').unwrap_or(("", &f.name));
            let mut names: Vec<String> = std::fs::read_dir(self.host(dir))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| glob_match(pattern, n))
                .collect();
            names.sort();
            names.into_iter().map(|n| format!("{dir}/{n}")).collect()
        } else {
            vec![f.name.clone()]
        };
        let mut out = Vec::new();
        for path in paths {
            let host = self.host(&path);
            let Ok(meta) = std::fs::metadata(&host) else {
                continue;
            };
            let kind_ok = match f.kind {
                FileKind::IpcSocket => {
                    use std::os::unix::fs::FileTypeExt;
                    meta.file_type().is_socket() || meta.is_dir()
                }
                _ => meta.is_file(),
            };
            if !kind_ok {
                continue;
            }
            let Ok(real) = std::fs::canonicalize(&host) else {
                continue;
            };
            if real.strip_prefix(&self.root).is_err() {
                continue;
            }
            out.push(HostFile {
                kind: f.kind,
                caps: f.caps,
                host_path: real,
                path,
                library: None,
                sim_only: false,
            });
        }
        // Sockets exist only while their daemons run: their absence is normal.
        if out.is_empty() && f.kind != FileKind::IpcSocket {
            self.missing.push(format!("{}: not found", f.name));
        }
        out
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(at) => rest = &rest[at + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Find the driver's files for `driver_version` under the configured driver root.
pub fn discover(config: &Config, driver_version: &str) -> Result<DriverFiles, DiscoveryError> {
    discover_where(config, driver_version, |_, _| true)
}

/// [`discover`] of only the files a container asking for `wanted` gets (the rule of
/// [`crate::core::plan::driver::gets`]): what a container start looks for. Nothing is looked
/// for, not even the driver root, when it gets no file.
pub fn discover_for(
    config: &Config,
    driver_version: &str,
    wanted: Caps,
) -> Result<DriverFiles, DiscoveryError> {
    if wanted.is_empty() {
        return Ok(DriverFiles {
            driver_version: driver_version.to_string(),
            files: Vec::new(),
            missing: Vec::new(),
        });
    }
    discover_where(config, driver_version, |caps, is_32| {
        crate::core::plan::driver::gets(caps, is_32, wanted)
    })
}

/// The files of the driver file table that `look(caps, is_32)` lets through, found on this host.
fn discover_where(
    config: &Config,
    driver_version: &str,
    look: impl Fn(Caps, bool) -> bool,
) -> Result<DriverFiles, DiscoveryError> {
    let root =
        std::fs::canonicalize(&config.driver_root).map_err(|source| DiscoveryError::Root {
            path: config.driver_root.clone(),
            source,
        })?;
    let mut missing = Vec::new();
    let cache_path = root.join("etc/ld.so.cache");
    let cache = match std::fs::read(&cache_path) {
        Ok(bytes) => match LdCache::parse(&bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                missing.push(format!(
                    "{}: {e}; looked in the usual library directories instead",
                    cache_path.display()
                ));
                None
            }
        },
        Err(_) => None,
    };
    let mut finder = Finder {
        root: root.clone(),
        version: driver_version,
        cache,
        missing,
        dirs: Default::default(),
    };
    let mut files = Vec::new();
    for f in driver_files(driver_version) {
        match f.kind {
            FileKind::Library => {
                for arch in [LibArch::X86_64, LibArch::I386] {
                    if look(f.caps, arch == LibArch::I386) {
                        files.extend(finder.library(&f, arch));
                    }
                }
            }
            _ if !look(f.caps, false) => {}
            FileKind::Binary => files.extend(finder.binary(&f)),
            FileKind::Firmware | FileKind::ConfigFile | FileKind::IpcSocket => {
                files.extend(finder.fixed(&f))
            }
        }
    }
    if config.simulated_driver {
        files.extend(sim_only_files(&root, &files));
    }
    if !finder.missing.is_empty() {
        tracing::info!(
            driver_root = %root.display(),
            missing = ?finder.missing,
            "some of the driver's files are not on this host"
        );
    }
    Ok(DriverFiles {
        driver_version: driver_version.to_string(),
        files,
        missing: finder.missing,
    })
}

/// The [`SIM_ONLY_FILES`] of a simulated tree (the config says `simulated_driver = true`): each
/// one the tree has, next to a library that was found.
fn sim_only_files(root: &Path, found: &[HostFile]) -> Vec<HostFile> {
    let mut out = Vec::new();
    for s in SIM_ONLY_FILES {
        let host = root.join(s.host_path.trim_start_matches('/'));
        if !host.is_file() {
            continue;
        }
        let beside = found.iter().find(|f| {
            f.library
                .as_ref()
                .is_some_and(|l| l.soname == s.beside && l.arch == LibArch::X86_64)
        });
        if let Some((dir, _)) = beside.and_then(|b| b.path.rsplit_once('/')) {
            out.push(HostFile {
                kind: FileKind::ConfigFile,
                caps: s.caps,
                host_path: host,
                path: format!("{dir}/{}", s.container_name),
                library: None,
                sim_only: true,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
