//! `migcage system create-dev-char-links` on a simulated host, into a temporary /dev/char.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{is_root, skip_unless, SimHost, MIGCAGE};

fn skip(test: &str) -> bool {
    skip_unless(
        is_root(),
        test,
        "needs root: migcage simulate makes device nodes (CAP_MKNOD)",
    )
}

fn links(host: &SimHost, dir: &Path, extra: &[&str]) -> Output {
    Command::new(MIGCAGE)
        .arg("--config")
        .arg(host.config())
        .args(["system", "create-dev-char-links", "--dev-char-dir"])
        .arg(dir)
        .args(extra)
        .env_remove("MIGCAGE_CONFIG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every NVIDIA char node under the simulated dev tree, with its number.
fn nvidia_nodes(dev: &Path) -> Vec<(PathBuf, u32, u32)> {
    let mut out = Vec::new();
    for dir in [dev.to_path_buf(), dev.join("nvidia-caps")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if m.file_type().is_char_device() && name.starts_with("nvidia") {
                let rdev = m.rdev();
                out.push((p, libc::major(rdev), libc::minor(rdev)));
            }
        }
    }
    out.sort();
    out
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn links_are_made_for_every_node_and_a_second_run_changes_nothing() {
    if skip("links_are_made_for_every_node_and_a_second_run_changes_nothing") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("char");
    let nodes = nvidia_nodes(&host.dev());
    assert!(nodes.len() > 10, "{nodes:?}");
    let out = links(&host, &dir, &[]);
    assert!(out.status.success(), "{out:?}");
    for (node, major, minor) in &nodes {
        let link = dir.join(format!("{major}:{minor}"));
        let target = std::fs::read_link(&link).unwrap_or_else(|e| panic!("{link:?}: {e}"));
        // Not under the same parent as the links: the node's absolute path.
        assert_eq!(&target, node);
        let m = std::fs::metadata(&link).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(
            (libc::major(m.rdev()), libc::minor(m.rdev())),
            (*major, *minor)
        );
    }
    assert_eq!(entries(&dir).len(), nodes.len(), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.ends_with(&format!(
            "created {n}, 0 already present, 0 left alone, of {n} NVIDIA node(s) in {}\n",
            dir.display(),
            n = nodes.len()
        )),
        "{text}"
    );

    let before: Vec<(String, PathBuf)> = entries(&dir)
        .into_iter()
        .map(|e| (e.clone(), std::fs::read_link(dir.join(&e)).unwrap()))
        .collect();
    let again = links(&host, &dir, &[]);
    assert!(again.status.success(), "{again:?}");
    assert!(
        stdout(&again).ends_with(&format!(
            "created 0, {n} already present, 0 left alone, of {n} NVIDIA node(s) in {}\n",
            dir.display(),
            n = nodes.len()
        )),
        "{}",
        stdout(&again)
    );
    let after: Vec<(String, PathBuf)> = entries(&dir)
        .into_iter()
        .map(|e| (e.clone(), std::fs::read_link(dir.join(&e)).unwrap()))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn a_foreign_link_is_left_alone_with_a_warning() {
    if skip("a_foreign_link_is_left_alone_with_a_warning") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("char");
    std::fs::create_dir(&dir).unwrap();
    let (node, major, minor) = nvidia_nodes(&host.dev()).remove(0);
    let link = dir.join(format!("{major}:{minor}"));
    std::os::unix::fs::symlink("/somewhere/else", &link).unwrap();
    let out = links(&host, &dir, &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("/somewhere/else")
    );
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "warning: {} is a link to /somewhere/else, not a link to {}: left alone",
            link.display(),
            node.display()
        )),
        "{text}"
    );
    assert!(text.contains(", 1 left alone, "), "{text}");
}

#[test]
fn a_dry_run_changes_nothing() {
    if skip("a_dry_run_changes_nothing") {
        return;
    }
    let host = SimHost::new("a100-7x1g");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("char");
    let n = nvidia_nodes(&host.dev()).len();
    let out = links(&host, &dir, &["--dry-run"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!dir.exists());
    let text = stdout(&out);
    assert_eq!(text.matches("would create ").count(), n + 1, "{text}");
    // And into an existing directory with one link: still nothing new.
    links(&host, &dir, &[]);
    let first = entries(&dir).remove(0);
    std::fs::remove_file(dir.join(&first)).unwrap();
    let out = links(&host, &dir, &["--dry-run"]);
    assert!(stdout(&out).contains(&format!("would create {}/{first} -> ", dir.display())));
    assert!(!dir.join(&first).exists());
}

#[test]
fn without_a_driver_it_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "proc_root = \"{0}/proc\"\ndev_root = \"{0}/dev\"\n",
            tmp.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(MIGCAGE)
        .arg("--config")
        .arg(&config)
        .args(["system", "create-dev-char-links", "--dev-char-dir"])
        .arg(tmp.path().join("char"))
        .env_remove("MIGCAGE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/proc/devices") && err.contains("driver"),
        "{err}"
    );
    assert!(!tmp.path().join("char").exists());
}
