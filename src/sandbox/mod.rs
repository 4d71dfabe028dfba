//! Least privilege after start-up: once everything is open, right before
//! readiness is reported, [`enter`] drops every capability the running
//! daemon does not use, sets `no_new_privs` and installs a seccomp
//! allowlist, on every thread (the loop's, the etcd client's, tokio's);
//! threads created later inherit all three. `--no-sandbox` skips it.
//!
//! Capabilities kept (effective, permitted and bounding; the inheritable
//! and ambient sets are emptied), one line each:
//! - `CAP_SYS_ADMIN`: `port add`'s `unshare`, bind mount and `setns`; `port del`'s and shut-down's `umount2`.
//! - `CAP_NET_ADMIN`: `port add`'s TAP (`TUNSETIFF` in the namespace) and its rtnetlink link, address and route.
//! - `CAP_NET_RAW`, only with an uplink: its interface deleted and created again is opened anew (an `AF_PACKET` socket).
//!
//! Each was checked by keeping the other alone: without `CAP_SYS_ADMIN`
//! `port add` (new or existing namespace), `port del` and the teardown
//! fail with EPERM, without `CAP_NET_ADMIN` `TUNSETIFF` does. All the others
//! go, and the whole feature set and the root tests still pass: among them
//! `CAP_NET_RAW` without an uplink, `CAP_NET_BIND_SERVICE` (the sockets
//! are bound before), `CAP_DAC_OVERRIDE` and `CAP_DAC_READ_SEARCH` (every
//! file touched afterwards is root's own: `/run/netns`, `/run/vswitchd`,
//! `/dev/net/tun` 0666, namespace files 0444), `CAP_SETPCAP`,
//! `CAP_SYS_PTRACE`, `CAP_SYS_MODULE`, `CAP_SYS_BOOT`, `CAP_SYS_TIME`,
//! `CAP_MKNOD`.
//!
//! Capabilities are per thread: the calling thread drops its own (with the
//! `caps` crate), then asks every other thread to drop theirs in a signal
//! handler (raw `capset`/`prctl`, which are async-signal-safe), as libcap's
//! psx and glibc's `setuid` do. seccomp is installed with `TSYNC` on all
//! threads at once (which also gives them `no_new_privs`). Then every
//! thread's `/proc/self/task/TID/status` is checked; any failure is a
//! start-up error and the daemon tears down as for any other.
//!
//! The allowlist ([`allowlist`]) is what the running daemon calls: every
//! verb of `vswitchctl` (port add and del, of created and existing
//! namespaces, capture, trace, the views, flushes), the metrics endpoint,
//! an uplink with NAT, the overlay with a directory in etcd (lost and back,
//! endpoint by name), a namespace deleted underneath and shut-down, run
//! under `strace -f` and cut at readiness; plus a margin for the paths
//! strace did not see (UDP GSO's `sendmsg`, glibc's DNS resolver on tokio's
//! blocking threads, thread start-up and names, `sleep`, an abort).
//! Dangerous calls are narrowed to their arguments: `unshare` and `setns`
//! to `CLONE_NEWNET`, `mount` to the three flag sets of `ip netns add`,
//! `umount2` to `MNT_DETACH`, `socket` to unix, inet, inet6 and rtnetlink,
//! `ioctl` to the requests the daemon makes, `prctl` to `PR_SET_NAME`.
//!
//! What it does not stop: `CAP_SYS_ADMIN` with `mount(MS_BIND)` can bind
//! any path over another (seccomp cannot see paths), and `CAP_NET_ADMIN`
//! with rtnetlink can reconfigure the host's own interfaces; those two are
//! what `port add` needs. Helper processes or a user namespace would be
//! the next step.
//!
//! A system call not on the list traps (`SECCOMP_RET_TRAP`): the `SIGSYS`
//! handler logs `vswitchd ERROR sandbox: seccomp refused system call N` to
//! standard error and the call fails with `EPERM`. A user's switch keeps
//! forwarding and reports the failure through the code's own error path,
//! and a kill would skip the teardown (the namespaces, the socket, the
//! lock, the etcd lease would be left behind); yet nothing goes unnoticed:
//! every root test's `Daemon::stop` fails on an `ERROR` in the log.
//! (The list was also checked with `KillProcess` in place of the trap:
//! the root tests of runtime, capture, netns, gateway, overlay,
//! overlay_etcd, views, recovery, port_security, tenants and promises all
//! pass, so none of them makes a call that is not on it.)

mod caps;
mod seccomp;

pub use self::caps::{KEPT, KEPT_UPLINK, ThreadStatus};
pub use self::seccomp::{allowlist, filter, install_seccomp, refused};

use self::caps::{check_threads, drop_caps_elsewhere, drop_caps_here, mask};
use self::seccomp::install_sigsys_handler;
use ::caps::CapsHashSet;

/// Why the sandbox could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox: cannot drop capabilities: {0} (--no-sandbox starts without the sandbox)")]
    Caps(String),
    #[error("sandbox: cannot build the seccomp filter: {0}")]
    Filter(String),
    #[error(
        "sandbox: cannot install the seccomp filter: {0} (--no-sandbox starts without the sandbox)"
    )]
    Seccomp(String),
    #[error("sandbox: thread {tid} is not sandboxed: {what}")]
    Check { tid: String, what: String },
}

/// Sandboxes the process (or, with `enabled` false, says it does not).
pub fn enter(enabled: bool, uplink: bool) -> Result<(), SandboxError> {
    if !enabled {
        tracing::warn!(
            "sandbox: off (--no-sandbox): every capability kept, no seccomp filter, no no_new_privs"
        );
        return Ok(());
    }
    // Built first: a filter that cannot be built changes nothing.
    let (filter, syscalls) = filter()?;
    let keep: CapsHashSet = KEPT
        .into_iter()
        .chain(uplink.then_some(KEPT_UPLINK))
        .collect();
    drop_caps_here(&keep)?;
    drop_caps_elsewhere(mask(&keep))?;
    install_sigsys_handler()?;
    seccompiler::apply_filter_all_threads(&filter)
        .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    let threads = check_threads(mask(&keep))?;
    tracing::info!(
        threads,
        "sandbox: kept capabilities {}; seccomp allowlist of {syscalls} syscalls on every thread; no_new_privs",
        {
            let mut k: Vec<String> = keep.iter().map(|c| c.to_string()).collect();
            k.sort();
            k.join(", ")
        }
    );
    Ok(())
}
