//! The rootfs operations on real directories (some need root: mknod, mount), each case run twice:
//! through openat2, and through the userspace walk that stands in for it on kernels without
//! openat2 (`walk.rs`), so both give the same answers on the same hostile trees.

mod openat2 {
    use super::super::*;

    fn open(path: &Path) -> Result<Rootfs<'static>, RootfsError> {
        Rootfs::open(path)
    }

    include!("tests_cases.rs");
}

mod walk {
    use super::super::*;

    fn open(path: &Path) -> Result<Rootfs<'static>, RootfsError> {
        Rootfs::open(path).map(Rootfs::force_walk)
    }

    include!("tests_cases.rs");
}
