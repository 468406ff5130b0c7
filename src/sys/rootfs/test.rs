//! [`RecordingRootfs`]: a double of [`RootfsSyscall`] for unit tests. It models a small tree of
//! container paths (directories, files, device nodes, symlinks resolved as `RESOLVE_IN_ROOT`
//! does), records every call with its outcome, and fails the calls a test names with the errno it
//! names. No root, nothing on disk but the anonymous files that stand in for descriptors.
//! Filesystem types are modelled for `fstatfs` (ext4 unless [`RecordingRootfs::with_fs`] says
//! otherwise); a symlink on procfs is a magic link, which `RESOLVE_NO_MAGICLINKS` refuses.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{OFlag, ResolveFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::statfs::{FsType, EXT4_SUPER_MAGIC, PROC_SUPER_MAGIC};

use super::syscall::{RootfsSyscall, Stat};
use crate::sys::double::{Handles, Recorder};

/// An object in the modelled tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File,
    /// A character device and its device number.
    Char(u64),
    /// A symlink and its target.
    Link(String),
}

impl Node {
    fn stat(&self) -> Stat {
        let (kind, rdev) = match self {
            Node::Dir => (SFlag::S_IFDIR, 0),
            Node::File => (SFlag::S_IFREG, 0),
            Node::Char(dev) => (SFlag::S_IFCHR, *dev),
            Node::Link(_) => (SFlag::S_IFLNK, 0),
        };
        Stat {
            mode: kind.bits() | 0o644,
            rdev,
            ..Stat::default()
        }
    }
}

/// One call the code under test made. `at` is the container path of the directory descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsCall {
    OpenRoot(PathBuf),
    MountId(String),
    /// A detached mount attached onto the object at this path.
    MoveMount(String),
    Openat2 {
        path: String,
        flags: OFlag,
        resolve: ResolveFlag,
    },
    Openat {
        at: String,
        name: String,
        flags: OFlag,
    },
    Reopen(String),
    Mkdirat {
        at: String,
        name: String,
    },
    Mknodat {
        at: String,
        name: String,
        dev: u64,
    },
    Lstatat {
        at: String,
        name: String,
    },
    Fstat(String),
    Fstatfs(String),
    StatHost(PathBuf),
    Lchownat {
        at: String,
        name: String,
    },
    Readlinkat {
        at: String,
        name: String,
    },
    Symlinkat {
        target: String,
        at: String,
        name: String,
    },
    Renameat {
        at: String,
        from: String,
        to: String,
    },
    Unlinkat {
        at: String,
        name: String,
    },
    Mount {
        source: Option<PathBuf>,
        target: String,
        flags: MsFlags,
    },
    SetFsIds {
        uid: u32,
        gid: u32,
    },
}

#[derive(Default)]
struct State {
    nodes: BTreeMap<String, Node>,
    /// Mount points and their ids; a path is on the longest one it is under (default id 1).
    mounts: Vec<(String, u64)>,
    /// Paths with a filesystem type of their own; a path has the longest one it is under.
    fs: Vec<(String, FsType)>,
    host: HashMap<PathBuf, Node>,
    /// Filesystems mounted in a user namespace of their own, with the host ids their files are
    /// owned by: a path has the longest one it is under. Only those ids can create files there
    /// (anything else: EOVERFLOW, as for ids the namespace does not map).
    userns_fs: Vec<(String, (u32, u32))>,
    /// The ids files are created as (`setfsuid`, `setfsgid`).
    fs_ids: (u32, u32),
}

/// The recording double of [`RootfsSyscall`]; the rootfs starts as an empty directory `/`.
pub struct RecordingRootfs {
    state: RefCell<State>,
    rec: RefCell<Recorder<RootfsCall, Errno>>,
    /// The container path each descriptor names.
    fds: Handles<String>,
    openat2: OnceLock<bool>,
}

impl Default for RecordingRootfs {
    fn default() -> Self {
        Self::new()
    }
}

/// `at/name` as a container path (`at` itself for `.` or an empty name).
fn join(at: &str, name: &str) -> String {
    if name.is_empty() || name == "." {
        at.to_string()
    } else if at == "/" {
        format!("/{name}")
    } else {
        format!("{at}/{name}")
    }
}

fn parent(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((dir, _)) => dir.to_string(),
    }
}

impl RecordingRootfs {
    pub fn new() -> RecordingRootfs {
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_string(), Node::Dir);
        RecordingRootfs {
            state: RefCell::new(State {
                nodes,
                ..State::default()
            }),
            rec: RefCell::default(),
            fds: Handles::default(),
            openat2: OnceLock::new(),
        }
    }

    /// The image has `node` at the container path `path` (its parents are made directories).
    pub fn with(self, path: &str, node: Node) -> RecordingRootfs {
        {
            let mut s = self.state.borrow_mut();
            let mut dir = parent(path);
            while dir != "/" {
                s.nodes.entry(dir.clone()).or_insert(Node::Dir);
                dir = parent(&dir);
            }
            s.nodes.insert(path.to_string(), node);
        }
        self
    }

    /// `path` is a mount point with mount id `id`.
    pub fn with_mount(self, path: &str, id: u64) -> RecordingRootfs {
        self.state.borrow_mut().mounts.push((path.to_string(), id));
        self
    }

    /// The filesystem under `path` (a mount point) is of type `fs` (`PROC_SUPER_MAGIC`, ...).
    pub fn with_fs(self, path: &str, fs: FsType) -> RecordingRootfs {
        self.state.borrow_mut().fs.push((path.to_string(), fs));
        self
    }

    /// The filesystem under `path` was mounted in a user namespace whose root is `ids` on the
    /// host: its files are owned by `ids`, and only `ids` can create files on it.
    pub fn with_userns_fs(self, path: &str, ids: (u32, u32)) -> RecordingRootfs {
        self.state
            .borrow_mut()
            .userns_fs
            .push((path.to_string(), ids));
        self
    }

    /// The ids files are created as now.
    pub fn fs_ids(&self) -> (u32, u32) {
        self.state.borrow().fs_ids
    }

    /// The container path a descriptor the double handed out names.
    pub fn path_of(&self, fd: &OwnedFd) -> String {
        use std::os::fd::AsFd;
        self.fds.get(fd.as_fd())
    }

    /// The host has `node` at `path` (a bind mount's source).
    pub fn with_host(self, path: &Path, node: Node) -> RecordingRootfs {
        self.state
            .borrow_mut()
            .host
            .insert(path.to_path_buf(), node);
        self
    }

    /// Every call `when` matches fails with `errno` (and changes nothing).
    pub fn fail(
        self,
        errno: Errno,
        when: impl Fn(&RootfsCall) -> bool + 'static,
    ) -> RecordingRootfs {
        self.rec.borrow_mut().fail(errno, when);
        self
    }

    /// Every call made, in order, failed ones included.
    pub fn calls(&self) -> Vec<RootfsCall> {
        self.rec.borrow().calls()
    }

    /// Every call made with its outcome.
    pub fn log(&self) -> Vec<(RootfsCall, Result<(), Errno>)> {
        self.rec.borrow().log()
    }

    /// What is at `path` now.
    pub fn node(&self, path: &str) -> Option<Node> {
        self.state.borrow().nodes.get(path).cloned()
    }

    /// Every path in the tree now.
    pub fn paths(&self) -> Vec<String> {
        self.state.borrow().nodes.keys().cloned().collect()
    }

    fn at(&self, fd: BorrowedFd<'_>) -> String {
        self.fds.get(fd)
    }

    fn hand_out(&self, path: String) -> OwnedFd {
        self.fds.hand_out(path)
    }

    /// Record `call`; fail it when a fault matches, else run `op` on the model.
    fn call<T>(
        &self,
        call: RootfsCall,
        op: impl FnOnce(&mut State) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        self.rec
            .borrow_mut()
            .run(call, || op(&mut self.state.borrow_mut()))
    }
}

impl State {
    fn get(&self, path: &str) -> Result<&Node, Errno> {
        self.nodes.get(path).ok_or(Errno::ENOENT)
    }

    fn create(&mut self, path: String, node: Node) -> Result<(), Errno> {
        if self.nodes.contains_key(&path) {
            return Err(Errno::EEXIST);
        }
        if self.owner(&path).is_some_and(|ids| ids != self.fs_ids) {
            return Err(Errno::EOVERFLOW);
        }
        self.nodes.insert(path, node);
        Ok(())
    }

    /// The owner of the files at `path` when it is on a filesystem of a user namespace.
    fn owner(&self, path: &str) -> Option<(u32, u32)> {
        self.userns_fs
            .iter()
            .filter(|(m, _)| path == m || path.starts_with(&format!("{m}/")) || m == "/")
            .max_by_key(|(m, _)| m.len())
            .map(|(_, ids)| *ids)
    }

    /// `stat` of the object at `path`, owned as its filesystem says.
    fn stat(&self, path: &str) -> Result<Stat, Errno> {
        let mut st = self.get(path)?.stat();
        if let Some((uid, gid)) = self.owner(path) {
            (st.uid, st.gid) = (uid, gid);
        }
        Ok(st)
    }

    /// Path resolution as `openat2(RESOLVE_IN_ROOT)` does it: `..` stops at `/`, an absolute
    /// symlink starts again at `/`, 40 symlinks at most.
    fn resolve(&self, rel: &str, flags: OFlag, resolve: ResolveFlag) -> Result<String, Errno> {
        let mut parts: VecDeque<String> = rel.split('/').map(str::to_string).collect();
        let mut cur = "/".to_string();
        let mut links = 0;
        while let Some(part) = parts.pop_front() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    cur = parent(&cur);
                    continue;
                }
                _ => {}
            }
            let next = join(&cur, &part);
            let last = parts.iter().all(|p| p.is_empty() || p == ".");
            match self.get(&next)? {
                Node::Link(target) if !last || !flags.contains(OFlag::O_NOFOLLOW) => {
                    links += 1;
                    let magic = self.fs_type(&next) == PROC_SUPER_MAGIC
                        && resolve.contains(ResolveFlag::RESOLVE_NO_MAGICLINKS);
                    if resolve.contains(ResolveFlag::RESOLVE_NO_SYMLINKS) || links > 40 || magic {
                        return Err(Errno::ELOOP);
                    }
                    if target.starts_with('/') {
                        cur = "/".to_string();
                    }
                    for p in target.rsplit('/') {
                        parts.push_front(p.to_string());
                    }
                }
                Node::Link(_) if !flags.contains(OFlag::O_PATH) => return Err(Errno::ELOOP),
                Node::Dir => cur = next,
                _ if !last || flags.contains(OFlag::O_DIRECTORY) => return Err(Errno::ENOTDIR),
                _ => cur = next,
            }
        }
        Ok(cur)
    }

    fn fs_type(&self, path: &str) -> FsType {
        self.fs
            .iter()
            .filter(|(m, _)| path == m || path.starts_with(&format!("{m}/")) || m == "/")
            .max_by_key(|(m, _)| m.len())
            .map_or(EXT4_SUPER_MAGIC, |(_, fs)| *fs)
    }

    fn mount_id(&self, path: &str) -> u64 {
        self.mounts
            .iter()
            .filter(|(m, _)| path == m || path.starts_with(&format!("{m}/")) || m == "/")
            .max_by_key(|(m, _)| m.len())
            .map_or(1, |(_, id)| *id)
    }
}

impl RootfsSyscall for RecordingRootfs {
    fn openat2_verdict(&self) -> &OnceLock<bool> {
        &self.openat2
    }

    fn open_root(&self, path: &Path) -> Result<OwnedFd, Errno> {
        self.call(RootfsCall::OpenRoot(path.to_path_buf()), |_| Ok(()))?;
        Ok(self.hand_out("/".into()))
    }

    fn mount_id(&self, fd: BorrowedFd<'_>) -> Result<u64, Errno> {
        let at = self.at(fd);
        self.call(RootfsCall::MountId(at.clone()), |s| Ok(s.mount_id(&at)))
    }

    fn openat2(
        &self,
        dir: BorrowedFd<'_>,
        path: &str,
        flags: OFlag,
        resolve: ResolveFlag,
    ) -> Result<OwnedFd, Errno> {
        assert_eq!(self.at(dir), "/", "openat2 resolves from the root");
        let call = RootfsCall::Openat2 {
            path: path.to_string(),
            flags,
            resolve,
        };
        let found = self.call(call, |s| s.resolve(path, flags, resolve))?;
        Ok(self.hand_out(found))
    }

    fn openat(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        flags: OFlag,
        _mode: Mode,
    ) -> Result<OwnedFd, Errno> {
        let at = self.at(dir);
        let path = join(&at, name);
        let call = RootfsCall::Openat {
            at,
            name: name.to_string(),
            flags,
        };
        self.call(call, |s| match s.nodes.get(&path) {
            Some(_) if flags.contains(OFlag::O_CREAT | OFlag::O_EXCL) => Err(Errno::EEXIST),
            // O_PATH | O_NOFOLLOW names the link itself; anything else refuses it.
            Some(Node::Link(_))
                if flags.contains(OFlag::O_NOFOLLOW) && !flags.contains(OFlag::O_PATH) =>
            {
                Err(Errno::ELOOP)
            }
            Some(Node::Dir) => Ok(()),
            Some(_) if flags.contains(OFlag::O_DIRECTORY) => Err(Errno::ENOTDIR),
            Some(_) => Ok(()),
            None if flags.contains(OFlag::O_CREAT) => s.create(path.clone(), Node::File),
            None => Err(Errno::ENOENT),
        })?;
        Ok(self.hand_out(path))
    }

    fn reopen(&self, fd: BorrowedFd<'_>, _flags: OFlag) -> Result<OwnedFd, Errno> {
        let at = self.at(fd);
        self.call(RootfsCall::Reopen(at.clone()), |_| Ok(()))?;
        Ok(self.hand_out(at))
    }

    fn mkdirat(&self, dir: BorrowedFd<'_>, name: &str, _mode: Mode) -> Result<(), Errno> {
        let at = self.at(dir);
        let path = join(&at, name);
        let call = RootfsCall::Mkdirat {
            at,
            name: name.to_string(),
        };
        self.call(call, |s| s.create(path, Node::Dir))
    }

    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        _kind: SFlag,
        _mode: Mode,
        dev: u64,
    ) -> Result<(), Errno> {
        let at = self.at(dir);
        let path = join(&at, name);
        let call = RootfsCall::Mknodat {
            at,
            name: name.to_string(),
            dev,
        };
        self.call(call, |s| s.create(path, Node::Char(dev)))
    }

    fn lstatat(&self, dir: BorrowedFd<'_>, name: &str) -> Result<Stat, Errno> {
        let at = self.at(dir);
        let path = join(&at, name);
        let call = RootfsCall::Lstatat {
            at,
            name: name.to_string(),
        };
        self.call(call, |s| s.stat(&path))
    }

    fn fstat(&self, fd: BorrowedFd<'_>) -> Result<Stat, Errno> {
        let at = self.at(fd);
        self.call(RootfsCall::Fstat(at.clone()), |s| s.stat(&at))
    }

    fn fstatfs(&self, fd: BorrowedFd<'_>) -> Result<FsType, Errno> {
        let at = self.at(fd);
        self.call(RootfsCall::Fstatfs(at.clone()), |s| Ok(s.fs_type(&at)))
    }

    fn stat_host(&self, path: &Path) -> Result<Stat, Errno> {
        self.call(RootfsCall::StatHost(path.to_path_buf()), |s| {
            // Host objects are on a device of their own, never the rootfs's.
            let on_host = |n: &Node| Stat { dev: 1, ..n.stat() };
            s.host.get(path).map(on_host).ok_or(Errno::ENOENT)
        })
    }

    fn lchownat(&self, dir: BorrowedFd<'_>, name: &str, _uid: u32, _gid: u32) -> Result<(), Errno> {
        let at = self.at(dir);
        let path = join(&at, name);
        let call = RootfsCall::Lchownat {
            at,
            name: name.to_string(),
        };
        self.call(call, |s| s.get(&path).map(|_| ()))
    }

    fn readlinkat(&self, dir: BorrowedFd<'_>, name: &str) -> Result<OsString, Errno> {
        let at = self.at(dir);
        let path = join(&at, name);
        let call = RootfsCall::Readlinkat {
            at,
            name: name.to_string(),
        };
        self.call(call, |s| match s.get(&path)? {
            Node::Link(t) => Ok(OsString::from(t)),
            _ => Err(Errno::EINVAL),
        })
    }

    fn symlinkat(&self, target: &str, dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
        let at = self.at(dir);
        let path = join(&at, name);
        let call = RootfsCall::Symlinkat {
            target: target.to_string(),
            at,
            name: name.to_string(),
        };
        self.call(call, |s| s.create(path, Node::Link(target.to_string())))
    }

    fn renameat(&self, dir: BorrowedFd<'_>, from: &str, to: &str) -> Result<(), Errno> {
        let at = self.at(dir);
        let (old, new) = (join(&at, from), join(&at, to));
        let call = RootfsCall::Renameat {
            at,
            from: from.to_string(),
            to: to.to_string(),
        };
        self.call(call, |s| {
            let node = s.get(&old)?.clone();
            if s.nodes.get(&new) == Some(&Node::Dir) && node != Node::Dir {
                return Err(Errno::EISDIR);
            }
            s.nodes.remove(&old);
            s.nodes.insert(new, node);
            Ok(())
        })
    }

    fn unlinkat(&self, dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
        let at = self.at(dir);
        let path = join(&at, name);
        let call = RootfsCall::Unlinkat {
            at,
            name: name.to_string(),
        };
        self.call(call, |s| match s.get(&path)? {
            Node::Dir => Err(Errno::EISDIR),
            _ => {
                s.nodes.remove(&path);
                Ok(())
            }
        })
    }

    fn set_fs_ids(&self, uid: u32, gid: u32) -> Result<(u32, u32), Errno> {
        self.call(RootfsCall::SetFsIds { uid, gid }, |s| {
            Ok(std::mem::replace(&mut s.fs_ids, (uid, gid)))
        })
    }

    fn mount(
        &self,
        source: Option<&Path>,
        target: BorrowedFd<'_>,
        _fstype: Option<&str>,
        flags: MsFlags,
        _data: Option<&str>,
    ) -> Result<(), Errno> {
        let call = RootfsCall::Mount {
            source: source.map(Path::to_path_buf),
            target: self.at(target),
            flags,
        };
        self.call(call, |_| Ok(()))
    }

    fn move_mount(&self, _tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
        let call = RootfsCall::MoveMount(self.at(target));
        self.call(call, |_| Ok(()))
    }
}
