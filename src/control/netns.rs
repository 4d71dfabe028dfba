//! Named network namespaces, compatible with `ip netns`.
//!
//! `ip netns add NAME` makes `/run/netns` a shared mount point, creates the
//! file `/run/netns/NAME`, unshares a new network namespace and bind-mounts
//! it onto that file. [`Netns::open_or_create`] does the same, with the
//! unshare on a dedicated thread (so no thread of ours is ever left in the
//! wrong namespace). A namespace we created is deleted again (unmount +
//! unlink, as `ip netns del`) when its [`Netns`] is dropped, unless
//! [`Netns::keep`] was called; one that existed before is never touched.
//!
//! [`in_netns`] runs a closure on a fresh thread that has entered a namespace.

use crate::sys::NSFS_MAGIC;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where `ip netns` keeps its namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("namespace {name}: cannot prepare {NETNS_RUN_DIR}: {source}")]
    RunDir { name: String, source: io::Error },
    #[error("namespace {name}: cannot create {path}: {source}")]
    CreateFile {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("namespace {name}: cannot create a network namespace: {source}")]
    Unshare { name: String, source: nix::Error },
    #[error("namespace {name}: cannot bind-mount it on {path}: {source}")]
    Bind {
        name: String,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("namespace {name}: cannot open {path}: {source}")]
    Open {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "namespace {name}: {path} exists but is not a network namespace (a leftover file? remove it or use another name)"
    )]
    NotNetns { name: String, path: PathBuf },
    #[error("namespace {name}: cannot enter it: {source}")]
    Enter { name: String, source: nix::Error },
    #[error("namespace {name}: cannot delete it: {source}")]
    Delete { name: String, source: io::Error },
}

/// An open named network namespace.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
    file: File,
    created: bool,
    keep: bool,
}

impl Netns {
    /// Opens `/run/netns/NAME`, creating the namespace if it does not exist.
    pub fn open_or_create(name: &str) -> Result<Netns, NetnsError> {
        let path = Path::new(NETNS_RUN_DIR).join(name);
        match Self::open(name) {
            Ok(ns) => return Ok(ns),
            Err(NetnsError::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        prepare_run_dir().map_err(|source| NetnsError::RunDir {
            name: name.into(),
            source,
        })?;
        // O_EXCL: if someone else creates it between our open and here, we
        // fail rather than mount over their namespace.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
            .map_err(|source| NetnsError::CreateFile {
                name: name.into(),
                path: path.clone(),
                source,
            })?;
        let bind = std::thread::scope(|s| {
            s.spawn(|| -> Result<(), NetnsError> {
                unshare(CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Unshare {
                    name: name.into(),
                    source,
                })?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|source| NetnsError::Bind {
                    name: name.into(),
                    path: path.clone(),
                    source,
                })
                // The thread ends here, inside the new namespace; no thread
                // of ours ever switches back.
            })
            .join()
            .expect("netns creation thread panicked")
        });
        if let Err(e) = bind {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let mut ns = Self::open(name)?;
        ns.created = true;
        Ok(ns)
    }

    /// Opens an existing namespace.
    pub fn open(name: &str) -> Result<Netns, NetnsError> {
        let path = Path::new(NETNS_RUN_DIR).join(name);
        let file = File::open(&path).map_err(|source| NetnsError::Open {
            name: name.into(),
            path: path.clone(),
            source,
        })?;
        let st = nix::sys::statfs::fstatfs(&file).map_err(|e| NetnsError::Open {
            name: name.into(),
            path: path.clone(),
            source: e.into(),
        })?;
        if st.filesystem_type().0 as i64 != NSFS_MAGIC {
            return Err(NetnsError::NotNetns {
                name: name.into(),
                path,
            });
        }
        Ok(Netns {
            name: name.into(),
            path,
            file,
            created: false,
            keep: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    /// Whether this process created the namespace.
    pub fn created(&self) -> bool {
        self.created
    }
    /// Whether `/run/netns/NAME` still names this namespace (false after
    /// `ip netns del`, or if the name now belongs to another namespace).
    pub fn still_named(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), fs::metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        }
    }

    /// Takes the namespace over as if this process had created it (a dead
    /// instance of ours did: see [`crate::state`]); deleted on drop.
    pub fn adopt(&mut self) {
        self.created = true;
    }

    /// Do not delete the namespace on drop (`--keep-netns`).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Runs `f` on a new thread inside this namespace and returns its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        in_netns(&self.file, &self.name, f)
    }

    /// Deletes a namespace we created (unmount + unlink, like `ip netns
    /// del`). Processes still inside keep it alive, nameless, until they exit.
    pub fn delete(mut self) -> Result<(), NetnsError> {
        self.keep = true; // Drop must not try again
        delete_path(&self.name, &self.path)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.created
            && !self.keep
            && let Err(e) = delete_path(&self.name, &self.path)
        {
            tracing::error!("{e}");
        }
    }
}

fn delete_path(name: &str, path: &Path) -> Result<(), NetnsError> {
    let err = |source: io::Error| NetnsError::Delete {
        name: name.into(),
        source,
    };
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(err(e.into())),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Runs `f` on a fresh thread that has joined the namespace `ns`.
pub fn in_netns<T: Send>(
    ns: &File,
    name: &str,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetnsError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
                name: name.into(),
                source,
            })?;
            Ok(f())
        })
        .join()
        .expect("namespace thread panicked")
    })
}

/// Makes `/run/netns` exist and be a shared mount point, as `ip netns add`
/// does, so namespaces mounted there are seen by every mount namespace that
/// shares it.
fn prepare_run_dir() -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(NETNS_RUN_DIR)?;
    let shared = || {
        mount(
            None::<&str>,
            NETNS_RUN_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then share it.
            mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            shared().map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}
