//! `/etc/netns/NS/resolv.conf` for each port namespace: `ip netns exec NS`
//! bind-mounts every file of `/etc/netns/NS/` over `/etc/`, so programs in
//! the namespace ask the gateway's DNS server. A file that is there already
//! is left alone (and that is logged); what vswitchd wrote starts with a
//! marker line naming the instance, and only such a file is ever removed
//! (when the port goes, at exit, or by the next start after a crash, which
//! takes over the files of ports it still has).

use std::io::{self, Write};
use std::path::PathBuf;

/// Where `ip netns exec` looks.
pub const ETC_NETNS: &str = "/etc/netns";

/// One file vswitchd wrote (kept in the state file for crash recovery).
pub use crate::state::ResolvConf as Written;

pub fn dir(ns: &str) -> PathBuf {
    PathBuf::from(ETC_NETNS).join(ns)
}

pub fn path(ns: &str) -> PathBuf {
    dir(ns).join("resolv.conf")
}

/// The first line of every file instance `name` writes.
fn marker(name: &str) -> String {
    format!("# written by vswitchd instance {name}; removed when the port goes")
}

/// The file's text: the gateway as the only nameserver, the port domain
/// searched (so `getent hosts ns02` finds `ns02.DOMAIN` too).
pub fn contents(instance: &str, gateway: std::net::Ipv4Addr, domain: &str) -> String {
    format!(
        "{}\nnameserver {gateway}\nsearch {domain}\n",
        marker(instance)
    )
}

/// Whether the file of `ns` is one instance `name` wrote.
pub fn is_ours(instance: &str, ns: &str) -> bool {
    std::fs::read_to_string(path(ns))
        .is_ok_and(|t| t.lines().next() == Some(marker(instance).as_str()))
}

/// Writes the file of `ns` unless one exists: `Ok(Some(dir_created))` if
/// written, `Ok(None)` if left alone.
pub fn write(ns: &str, text: &str) -> io::Result<Option<bool>> {
    let d = dir(ns);
    let dir_created = match std::fs::create_dir(&d) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&d)?;
            true
        }
        Err(e) => return Err(e),
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path(ns));
    let mut f = match f {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => {
            if dir_created {
                remove_dir(&d);
            }
            return Err(e);
        }
    };
    f.write_all(text.as_bytes())?;
    Ok(Some(dir_created))
}

/// Rewrites a file instance `name` wrote before (taken over after a crash:
/// the gateway or domain may have changed).
pub fn rewrite(ns: &str, text: &str) -> io::Result<()> {
    let p = path(ns);
    let tmp = p.with_extension("conf.vswitchd-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &p)
}

/// Removes the file of `w` if instance `name` wrote it, and its directory
/// if vswitchd created that and it is empty now.
pub fn remove(instance: &str, w: &Written) {
    if !is_ours(instance, &w.netns) {
        return;
    }
    match std::fs::remove_file(path(&w.netns)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove {}: {e}", path(&w.netns).display()),
    }
    if w.dir_created {
        // Not empty: someone put files there since; it stays.
        remove_dir(&dir(&w.netns));
    }
}

/// Removes an empty directory with `unlinkat(AT_REMOVEDIR)`, which the
/// sandbox's allowlist has (`rmdir` it has not, and needs not).
fn remove_dir(d: &std::path::Path) {
    use nix::unistd::{UnlinkatFlags, unlinkat};
    let _ = unlinkat(nix::fcntl::AT_FDCWD, d, UnlinkatFlags::RemoveDir);
}
