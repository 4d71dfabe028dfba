//! Crash recovery: what an instance created, in a small state file,
//! `/run/vswitchd/NAME.state` (JSON, mode 0600), rewritten atomically (a
//! temporary file renamed over it) whenever that changes, and removed at a
//! clean exit.
//!
//! A state file found at start belongs to an instance that did not exit
//! cleanly (`kill -9`, a crash, a power cut of the process): the instance
//! lock is ours, so its owner is dead. What it says the dead instance
//! created is taken over: a namespace the new instance uses as a port is
//! adopted (deleted at this instance's exit, as if it had created it); one
//! it does not use any more is deleted at once. The same goes for the
//! `/etc/netns/NS/resolv.conf` files it wrote for the DNS server: rewritten
//! and kept for a port still there, removed for the others. Without the file, a crash
//! would leak those namespaces for good (they would look pre-existing).

use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// What one instance created.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The process that wrote it.
    pub pid: u32,
    /// Namespaces it created (and would delete at exit).
    pub created_netns: Vec<String>,
    /// `/etc/netns/NS/resolv.conf` files it wrote (and would remove at
    /// exit). Absent from the files of older versions.
    #[serde(default)]
    pub resolv_conf: Vec<ResolvConf>,
}

/// A resolv.conf file an instance wrote for a port namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvConf {
    pub netns: String,
    /// Whether it created `/etc/netns/NS/` too.
    pub dir_created: bool,
}

/// `/run/vswitchd/NAME.state`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(crate::control::proto::RUN_DIR).join(format!("{name}.state"))
}

/// Writes `state` for instance `name`: a temporary file, synced, renamed
/// over the old one, so a reader sees the old or the new file, whole.
pub fn write(name: &str, state: &State) -> io::Result<()> {
    let path = path(name);
    let tmp = path.with_extension("state.tmp");
    let body = serde_json::to_vec(state).map_err(io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// The state a previous instance named `name` left, if any. A file that
/// cannot be read or parsed is reported and treated as absent.
pub fn read(name: &str) -> Option<State> {
    let path = path(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("cannot read {}: {e}; ignoring it", path.display());
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("{} is not a state file ({e}); ignoring it", path.display());
            None
        }
    }
}

/// Removes the state file (a clean exit).
pub fn remove(name: &str) {
    match std::fs::remove_file(path(name)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove {}: {e}", path(name).display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_state_reads_back_and_junk_is_absent() {
        let name = format!("statetest{}", std::process::id());
        std::fs::create_dir_all(crate::control::proto::RUN_DIR).ok();
        if std::fs::metadata(crate::control::proto::RUN_DIR).is_err() {
            return; // no /run/vswitchd here (not root): nothing to test
        }
        let s = State {
            pid: 42,
            created_netns: vec!["ns01".into(), "ns02".into()],
            resolv_conf: vec![ResolvConf {
                netns: "ns01".into(),
                dir_created: true,
            }],
        };
        if write(&name, &s).is_err() {
            return; // not writable (not root)
        }
        assert_eq!(read(&name), Some(s));
        // An older file, without resolv_conf, still reads.
        std::fs::write(path(&name), br#"{"pid":7,"created_netns":["a"]}"#).unwrap();
        assert_eq!(read(&name).map(|s| s.resolv_conf.len()), Some(0));
        std::fs::write(path(&name), b"{not json").unwrap();
        assert_eq!(read(&name), None);
        remove(&name);
        assert_eq!(read(&name), None);
        assert!(!path(&name).exists());
    }
}
