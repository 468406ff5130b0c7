//! The two images a CRI test imports (no registry is reachable): a sandbox image holding a
//! static C pause program, and busybox carrying `NVIDIA_VISIBLE_DEVICES=all` as CUDA images do.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

pub const PAUSE: &str = "localhost/migcage-pause:test";
pub const BUSYBOX_CUDA: &str = "localhost/migcage-busybox-cuda:test";

const PAUSE_C: &str = r#"
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
static void bye(int s) { (void)s; _exit(0); }
int main(void) {
    signal(SIGINT, bye);
    signal(SIGTERM, bye);
    for (;;) pause();
}
"#;

fn tar(root: &Path, out: &Path) {
    let o = Command::new("tar")
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The sandbox image: `/pause`, a static binary built here with the C compiler.
pub fn pause_archive(dir: &Path) -> PathBuf {
    let root = dir.join("pause-rootfs");
    std::fs::create_dir_all(&root).unwrap();
    let src = dir.join("pause.c");
    std::fs::write(&src, PAUSE_C).unwrap();
    let o = Command::new("cc")
        .args(["-static", "-Os", "-o"])
        .arg(root.join("pause"))
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "cc -static pause.c: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let layer = dir.join("pause.tar");
    tar(&root, &layer);
    common::oci_archive(dir, PAUSE, &layer, &["PATH=/"], &["/pause"])
}

/// busybox with the host's nodes' mount point, and `NVIDIA_VISIBLE_DEVICES=all` in its config.
pub fn busybox_cuda_archive(dir: &Path) -> PathBuf {
    let layer = common::busybox_tar(dir);
    common::oci_archive(
        dir,
        BUSYBOX_CUDA,
        &layer,
        &["PATH=/bin", "NVIDIA_VISIBLE_DEVICES=all"],
        &["sh"],
    )
}
