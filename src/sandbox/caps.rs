//! The capabilities part of the sandbox: the set kept, dropped on the
//! calling thread and, from a signal handler, on every other thread; then
//! every thread's `/proc/self/task/TID/status` checked ([`ThreadStatus`]).

use super::SandboxError;
use caps::{CapSet, Capability, CapsHashSet};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The capabilities the running daemon keeps.
pub const KEPT: [Capability; 2] = [Capability::CAP_NET_ADMIN, Capability::CAP_SYS_ADMIN];
/// Kept too with an uplink: opening it again (a new `AF_PACKET` socket)
/// after its interface was deleted and created again.
pub const KEPT_UPLINK: Capability = Capability::CAP_NET_RAW;

pub(super) fn mask(set: &CapsHashSet) -> u64 {
    set.iter().fold(0, |m, c| m | c.bitmask())
}

// ---------------------------------------------------------------- capabilities

/// Drops the calling thread's capabilities to `keep`: bounding set first
/// (that needs `CAP_SETPCAP`, still effective), then ambient, inheritable,
/// effective and permitted.
pub(super) fn drop_caps_here(keep: &CapsHashSet) -> Result<(), SandboxError> {
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
pub(super) fn drop_caps_elsewhere(keep: u64) -> Result<(), SandboxError> {
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
pub(super) fn check_threads(keep: u64) -> Result<usize, SandboxError> {
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
}
