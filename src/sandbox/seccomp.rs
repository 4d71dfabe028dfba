//! The seccomp part of the sandbox: the allowlist of system calls, its
//! compiled filter, and the `SIGSYS` handler that logs a refused call and
//! makes it fail with `EPERM`.

use super::SandboxError;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

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
/// [`enter`](super::enter)); sets `no_new_privs` and the `SIGSYS` handler too.
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
        b"), which failed with EPERM: the allowlist in src/sandbox/seccomp.rs lacks it (--no-sandbox turns the sandbox off)\n",
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

pub(super) fn install_sigsys_handler() -> Result<(), SandboxError> {
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
    fn decimal_digits() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(435, &mut b), b"435");
    }
}
