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

use caps::{CapSet, Capability, CapsHashSet};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The capabilities the running daemon keeps.
pub const KEPT: [Capability; 2] = [Capability::CAP_NET_ADMIN, Capability::CAP_SYS_ADMIN];
/// Kept too with an uplink: opening it again (a new `AF_PACKET` socket)
/// after its interface was deleted and created again.
pub const KEPT_UPLINK: Capability = Capability::CAP_NET_RAW;

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

fn mask(set: &CapsHashSet) -> u64 {
    set.iter().fold(0, |m, c| m | c.bitmask())
}

// ---------------------------------------------------------------- capabilities

/// Drops the calling thread's capabilities to `keep`: bounding set first
/// (that needs `CAP_SETPCAP`, still effective), then ambient, inheritable,
/// effective and permitted.
fn drop_caps_here(keep: &CapsHashSet) -> Result<(), SandboxError> {
    let err = |e: caps::errors::CapsError| SandboxError::Caps(e.to_string());
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(err)?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(err)?;
    caps::clear(None, CapSet::Inheritable).map_err(err)?;
    caps::set(None, CapSet::Effective, keep).map_err(err)?;
    caps::set(None, CapSet::Permitted, keep).map_err(err)?;
    Ok(())
}

/// The capabilities the other threads keep, and their progress.
static KEEP_MASK: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicUsize = AtomicUsize::new(0);
/// The first failure in a thread: `step * 1000 + errno`.
static FAILED: AtomicI32 = AtomicI32::new(0);

/// `struct __user_cap_header_struct` and `__user_cap_data_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
const CAP_V3: u32 = 0x2008_0522;

/// Runs in every other thread, as a signal handler: only raw system calls,
/// nothing that allocates or locks.
extern "C" fn drop_caps_in_handler(_sig: libc::c_int) {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    let errno = unsafe { *libc::__errno_location() };
    let keep = KEEP_MASK.load(Ordering::SeqCst);
    let fail = |step: i32| {
        // SAFETY: as above.
        let e = unsafe { *libc::__errno_location() };
        let _ = FAILED.compare_exchange(0, step * 1000 + e, Ordering::SeqCst, Ordering::SeqCst);
    };
    for cap in 0..64u64 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments; EINVAL past the last
        // capability this kernel knows.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        // SAFETY: as above.
        if rc != 0 && unsafe { *libc::__errno_location() } != libc::EINVAL {
            fail(1);
        }
    }
    // SAFETY: prctl with integer arguments (EINVAL before Linux 4.3: no
    // ambient set to clear).
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: keep as u32,
            permitted: keep as u32,
            inheritable: 0,
        },
        CapData {
            effective: (keep >> 32) as u32,
            permitted: (keep >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads the header and two data structs, all valid.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    if rc != 0 {
        fail(2);
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        fail(3);
    }
    // SAFETY: as above; the interrupted code gets its errno back.
    unsafe { *libc::__errno_location() = errno };
    DONE.fetch_add(1, Ordering::SeqCst);
}

fn thread_ids() -> Result<BTreeSet<i32>, SandboxError> {
    let dir = std::fs::read_dir("/proc/self/task")
        .map_err(|e| SandboxError::Caps(format!("cannot list /proc/self/task: {e}")))?;
    Ok(dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// Has every other thread drop its capabilities to `keep` in a signal
/// handler; repeats until no thread is left that has not (a thread another
/// one created before dropping would have its creator's).
fn drop_caps_elsewhere(keep: u64) -> Result<(), SandboxError> {
    let sig = libc::SIGRTMIN();
    KEEP_MASK.store(keep, Ordering::SeqCst);
    DONE.store(0, Ordering::SeqCst);
    FAILED.store(0, Ordering::SeqCst);
    // SAFETY: sigaction with a zeroed struct, a handler of the right type
    // and an empty mask; the old action is put back below.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = drop_caps_in_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: both structs are valid for the call.
    if unsafe { libc::sigaction(sig, &act, &mut old) } != 0 {
        return Err(SandboxError::Caps(format!(
            "cannot install the handler of signal {sig}: {}",
            std::io::Error::last_os_error()
        )));
    }
    let result = signal_every_thread(sig);
    // SAFETY: puts back the action saved above.
    unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
    result?;
    match FAILED.load(Ordering::SeqCst) {
        0 => Ok(()),
        f => Err(SandboxError::Caps(format!(
            "a thread could not {}: {}",
            ["", "shrink its bounding set", "capset", "set no_new_privs"][(f / 1000) as usize % 4],
            std::io::Error::from_raw_os_error(f % 1000)
        ))),
    }
}

fn signal_every_thread(sig: libc::c_int) -> Result<(), SandboxError> {
    // SAFETY: plain getters.
    let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
    let mut done = BTreeSet::from([me]);
    let mut sent = 0;
    loop {
        let new: Vec<i32> = thread_ids()?.difference(&done).copied().collect();
        if new.is_empty() {
            return Ok(());
        }
        for tid in new {
            done.insert(tid);
            // SAFETY: tgkill with integer arguments; ESRCH if the thread
            // has exited meanwhile.
            let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) };
            if rc == 0 {
                sent += 1;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while DONE.load(Ordering::SeqCst) < sent {
            if Instant::now() > deadline {
                return Err(SandboxError::Caps(format!(
                    "{} of {sent} threads did not drop theirs within 5 s",
                    sent - DONE.load(Ordering::SeqCst)
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

// ---------------------------------------------------------------- seccomp

/// `(name, number)` of a system call of this architecture.
macro_rules! sys {
    ($($name:ident),* $(,)?) => { [$((stringify!($name), libc::$name)),*] };
}

/// One argument, compared whole (`Qword`) or by its low 32 bits (`Dword`).
fn arg(index: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, value: u64) -> SeccompCondition {
    SeccompCondition::new(index, len, op, value).expect("argument index 0..5")
}

fn eq(index: u8, value: u64) -> SeccompCondition {
    arg(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
}

/// A rule of one or more conditions, all of which must hold.
fn rule(conds: Vec<SeccompCondition>) -> SeccompRule {
    SeccompRule::new(conds).expect("a rule has conditions")
}

/// `ioctl` requests: `TUNSETIFF` and `TUNSETOFFLOAD` (a new port's TAP),
/// `SIOCGIFINDEX` (`if_nametoindex`), `SIOCGIFMTU`, `FIONBIO` (std's
/// `set_nonblocking`), `FIONREAD` (glibc's resolver).
#[allow(clippy::unnecessary_cast)] // the requests are c_ulong on glibc, c_int on musl
const IOCTLS: [u64; 6] = [
    0x4004_54ca, // TUNSETIFF = _IOW('T', 202, int)
    0x4004_54d0, // TUNSETOFFLOAD = _IOW('T', 208, unsigned int)
    libc::SIOCGIFINDEX as u64,
    libc::SIOCGIFMTU as u64,
    libc::FIONBIO as u64,
    libc::FIONREAD as u64,
];

/// Every system call the running daemon may make, with the rules that
/// narrow some of them (empty: any arguments), by name.
pub fn allowlist() -> BTreeMap<&'static str, (i64, Vec<SeccompRule>)> {
    let mut list: BTreeMap<&'static str, (i64, Vec<SeccompRule>)> = BTreeMap::new();
    // Seen under strace after readiness, any arguments.
    let seen = sys![
        SYS_accept4,
        SYS_bind,
        SYS_brk,
        SYS_clone3,
        SYS_close,
        SYS_connect,
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_exit,
        SYS_exit_group,
        SYS_fcntl,
        SYS_fstatfs,
        SYS_futex,
        SYS_getpid,
        SYS_getsockname,
        SYS_getsockopt,
        SYS_gettid,
        SYS_lseek,
        SYS_madvise,
        SYS_mmap,
        SYS_mprotect,
        SYS_munmap,
        SYS_newfstatat,
        SYS_openat,
        SYS_read,
        SYS_recvfrom,
        SYS_rseq,
        SYS_rt_sigprocmask,
        SYS_sched_getaffinity,
        SYS_sendto,
        SYS_set_robust_list,
        SYS_setsockopt,
        SYS_shutdown,
        SYS_sigaltstack,
        SYS_statx,
        SYS_write,
        SYS_writev,
    ];
    // Not seen, on paths the daemon has: UDP GSO (sendmsg), glibc's DNS
    // resolver on tokio's blocking threads (poll, sendmmsg, recvmsg),
    // a thread naming itself (prctl below), clone where clone3 is refused,
    // sleeps and interrupted sleeps, the SIGSYS handler's return, abort,
    // realloc, hash keys, a clock without vDSO, the check of every thread
    // (getdents64), mkdirat/unlinkat (what aarch64 has for mkdir/unlink).
    let margin = sys![
        SYS_clock_gettime,
        SYS_clock_nanosleep,
        SYS_clone,
        SYS_epoll_pwait,
        SYS_fstat,
        SYS_getdents64,
        SYS_getrandom,
        SYS_gettimeofday,
        SYS_mkdirat,
        SYS_mremap,
        SYS_nanosleep,
        SYS_ppoll,
        SYS_readv,
        SYS_recvmsg,
        SYS_restart_syscall,
        SYS_rt_sigreturn,
        SYS_sched_yield,
        SYS_sendmmsg,
        SYS_sendmsg,
        SYS_tgkill,
        SYS_unlinkat,
        // The state file (`state.rs`): written to a temporary file, synced,
        // renamed over the old one.
        SYS_fsync,
        SYS_renameat,
        SYS_renameat2,
    ];
    #[cfg(target_arch = "x86_64")]
    let arch = sys![SYS_epoll_wait, SYS_mkdir, SYS_poll, SYS_unlink, SYS_rename];
    #[cfg(not(target_arch = "x86_64"))]
    let arch: [(&str, i64); 0] = [];
    for (name, nr) in seen.into_iter().chain(margin).chain(arch) {
        list.insert(&name[4..], (nr, Vec::new()));
    }
    let newnet = libc::CLONE_NEWNET as u64;
    let narrowed = [
        (
            "unshare",
            libc::SYS_unshare,
            vec![rule(vec![eq(0, newnet)])],
        ),
        ("setns", libc::SYS_setns, vec![rule(vec![eq(1, newnet)])]),
        (
            "mount",
            libc::SYS_mount,
            [
                libc::MS_BIND,
                libc::MS_BIND | libc::MS_REC,
                libc::MS_SHARED | libc::MS_REC,
            ]
            .into_iter()
            .map(|f| rule(vec![eq(3, f)]))
            .collect(),
        ),
        (
            "umount2",
            libc::SYS_umount2,
            vec![rule(vec![eq(1, libc::MNT_DETACH as u64)])],
        ),
        (
            "socket",
            libc::SYS_socket,
            // AF_PACKET: the uplink opened again after its interface was
            // deleted and created again (with CAP_NET_RAW, kept then).
            [
                libc::AF_UNIX,
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_PACKET,
            ]
            .into_iter()
            .map(|d| rule(vec![eq(0, d as u64)]))
            .chain([rule(vec![
                eq(0, libc::AF_NETLINK as u64),
                eq(2, libc::NETLINK_ROUTE as u64),
            ])])
            .collect(),
        ),
        (
            "ioctl",
            libc::SYS_ioctl,
            IOCTLS.into_iter().map(|r| rule(vec![eq(1, r)])).collect(),
        ),
        (
            "prctl",
            libc::SYS_prctl,
            vec![rule(vec![eq(0, libc::PR_SET_NAME as u64)])],
        ),
    ];
    for (name, nr, rules) in narrowed {
        list.insert(name, (nr, rules));
    }
    list
}

/// This machine's architecture for seccomp.
fn target_arch() -> Result<seccompiler::TargetArch, SandboxError> {
    std::env::consts::ARCH.try_into().map_err(|_| {
        SandboxError::Filter(format!(
            "no allowlist for {} (--no-sandbox starts without the sandbox)",
            std::env::consts::ARCH
        ))
    })
}

/// The compiled allowlist, and how many system calls it allows.
pub fn filter() -> Result<(BpfProgram, usize), SandboxError> {
    let list = allowlist();
    let n = list.len();
    let rules = list.into_values().collect();
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Trap,
        SeccompAction::Allow,
        target_arch()?,
    )
    .map_err(|e| SandboxError::Filter(e.to_string()))?;
    let prog: BpfProgram = f
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Filter(e.to_string()))?;
    Ok((prog, n))
}

/// Installs the filter on every thread (for tests: the daemon uses
/// [`enter`]); sets `no_new_privs` and the `SIGSYS` handler too.
pub fn install_seccomp() -> Result<usize, SandboxError> {
    let (prog, n) = filter()?;
    install_sigsys_handler()?;
    seccompiler::apply_filter_all_threads(&prog)
        .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    Ok(n)
}

/// How many system calls the filter refused.
static REFUSED: AtomicUsize = AtomicUsize::new(0);

/// How many system calls the seccomp filter has refused so far.
pub fn refused() -> usize {
    REFUSED.load(Ordering::Relaxed)
}

/// Writes `n` in decimal into the end of `buf`; the digits.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The `SIGSYS` handler: logs the refused call and makes it fail with
/// `EPERM`. Only `write` (allowed) and no allocation.
extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: for SIGSYS the kernel's siginfo holds `_sigsys { void
    // *_call_addr; int _syscall; unsigned _arch; }` at offset 16 on 64-bit
    // Linux, so the system call number is the int at offset 24.
    let nr = unsafe { info.cast::<u8>().add(24).cast::<i32>().read() };
    REFUSED.fetch_add(1, Ordering::Relaxed);
    set_return(ctx, -(libc::EPERM as i64));
    let mut digits = [0u8; 20];
    let nr = decimal(nr.max(0) as u64, &mut digits);
    let parts: [&[u8]; 5] = [
        b"vswitchd ERROR sandbox: seccomp refused system call ",
        nr,
        b" (",
        std::env::consts::ARCH.as_bytes(),
        b"), which failed with EPERM: the allowlist in src/sandbox.rs lacks it (--no-sandbox turns the sandbox off)\n",
    ];
    let mut line = [0u8; 256];
    let mut len = 0;
    for p in parts {
        let n = p.len().min(line.len() - len);
        line[len..len + n].copy_from_slice(&p[..n]);
        len += n;
    }
    // SAFETY: write(2) of a valid stack buffer; the result does not matter.
    unsafe { libc::write(2, line.as_ptr().cast(), len) };
}

/// Sets the return value of the trapped system call in the saved context.
fn set_return(ctx: *mut libc::c_void, value: i64) {
    let uc = ctx.cast::<libc::ucontext_t>();
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the kernel passes the interrupted context; RAX holds the
    // return value when the handler returns.
    unsafe {
        (*uc).uc_mcontext.gregs[libc::REG_RAX as usize] = value;
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above; x0 holds the return value.
    unsafe {
        (*uc).uc_mcontext.regs[0] = value as u64;
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = (uc, value);
}

fn install_sigsys_handler() -> Result<(), SandboxError> {
    // SAFETY: a zeroed sigaction is valid; the handler has the SA_SIGINFO
    // signature and stays installed for the life of the process.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = on_sigsys
        as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
        as libc::sighandler_t;
    act.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `act` is valid; the old action is not needed.
    if unsafe { libc::sigaction(libc::SIGSYS, &act, std::ptr::null_mut()) } != 0 {
        return Err(SandboxError::Seccomp(format!(
            "cannot install the SIGSYS handler: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- check

/// What `/proc/PID/task/TID/status` says of a thread's sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadStatus {
    pub no_new_privs: u64,
    pub seccomp: u64,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
}

impl ThreadStatus {
    /// Parses a `status` file (hex masks, decimal flags).
    pub fn parse(status: &str) -> ThreadStatus {
        let mut s = ThreadStatus::default();
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let hex = || u64::from_str_radix(value, 16).unwrap_or(u64::MAX);
            let dec = || value.parse().unwrap_or(u64::MAX);
            match key {
                "NoNewPrivs" => s.no_new_privs = dec(),
                "Seccomp" => s.seccomp = dec(),
                "CapInh" => s.cap_inh = hex(),
                "CapPrm" => s.cap_prm = hex(),
                "CapEff" => s.cap_eff = hex(),
                "CapBnd" => s.cap_bnd = hex(),
                "CapAmb" => s.cap_amb = hex(),
                _ => {}
            }
        }
        s
    }

    /// What is wrong with this thread's sandbox, if anything.
    pub fn fault(&self, keep: u64) -> Option<String> {
        let extra = |m: u64| m & !keep != 0;
        if self.no_new_privs != 1 {
            Some(format!("NoNewPrivs {}", self.no_new_privs))
        } else if self.seccomp != 2 {
            Some(format!("Seccomp {}", self.seccomp))
        } else if extra(self.cap_eff) || extra(self.cap_prm) || extra(self.cap_bnd) {
            Some(format!(
                "capabilities effective {:x}, permitted {:x}, bounding {:x}",
                self.cap_eff, self.cap_prm, self.cap_bnd
            ))
        } else if self.cap_inh != 0 || self.cap_amb != 0 {
            Some(format!(
                "capabilities inheritable {:x}, ambient {:x}",
                self.cap_inh, self.cap_amb
            ))
        } else {
            None
        }
    }
}

/// Checks every thread's status; how many there are.
fn check_threads(keep: u64) -> Result<usize, SandboxError> {
    let tids = thread_ids().map_err(|e| SandboxError::Check {
        tid: "*".into(),
        what: e.to_string(),
    })?;
    let mut n = 0;
    for tid in tids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else {
            continue; // exited meanwhile
        };
        if let Some(what) = ThreadStatus::parse(&status).fault(keep) {
            return Err(SandboxError::Check {
                tid: tid.to_string(),
                what,
            });
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_builds_for_this_machine() {
        let (prog, n) = filter().unwrap();
        assert!(n > 50 && !prog.is_empty());
        let list = allowlist();
        for gone in [
            "ptrace",
            "init_module",
            "finit_module",
            "reboot",
            "kexec_load",
            "mknodat",
        ] {
            assert!(!list.contains_key(gone), "{gone} is allowed");
        }
    }

    #[test]
    fn status_is_parsed_and_judged() {
        let s = ThreadStatus::parse(
            "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t0000000000201000\n\
             CapEff:\t0000000000201000\nCapBnd:\t0000000000201000\nCapAmb:\t0000000000000000\n\
             NoNewPrivs:\t1\nSeccomp:\t2\n",
        );
        let keep = Capability::CAP_NET_ADMIN.bitmask() | Capability::CAP_SYS_ADMIN.bitmask();
        assert_eq!(s.cap_eff, keep);
        assert_eq!(s.fault(keep), None);
        let root = ThreadStatus {
            cap_eff: u64::MAX >> 23,
            ..s.clone()
        };
        assert!(root.fault(keep).unwrap().contains("effective"));
        let unfiltered = ThreadStatus { seccomp: 0, ..s };
        assert_eq!(unfiltered.fault(keep).unwrap(), "Seccomp 0");
    }

    #[test]
    fn decimal_digits() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(435, &mut b), b"435");
    }
}
