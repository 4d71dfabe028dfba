//! The overlay's directory in etcd (directory mode: `--etcd URL[,URL...]
//! --network NAME`): which hosts form the network and which ports, with
//! which addresses and MACs, live on which host.
//!
//! # Keys
//!
//! Everything of network `NET` is under `/vswitchd/NET/`:
//!
//! | key | value (JSON) | lease |
//! |---|---|---|
//! | `/vswitchd/NET/network` | `{"subnet":"192.168.88.0/24","gateway":"192.168.88.1","vni":1,"gateway_mac":"02:..","mtu":1450}` | none |
//! | `/vswitchd/NET/hosts/VTEP` | `{"vtep":"10.77.0.1","name":"hosta"}` | the host's |
//! | `/vswitchd/NET/ports/IP` | `{"ip":"192.168.88.11","mac":"02:..","host":"10.77.0.1","port":"ns01"}` | the holder's |
//!
//! The network record is written once, by the first instance, in a
//! transaction (create if absent, else read); every later instance gets
//! the stored record back from [`Directory::start`] and adapts to it.
//! A port key is also the claim on its address: created only if absent
//! (`create_revision == 0`). A key that exists and names the same host and
//! port counts as ours (a re-registration, e.g. from our previous lease)
//! and is moved onto our lease; any other holder refuses the claim
//! ([`DirError::Held`], naming its port and host). The host key is claimed
//! the same way (same VTEP, same name: ours). Host and port keys hang on
//! the host's lease (`ttl_secs`, kept alive every third of it), so a host
//! that dies disappears from everyone's view when its lease expires, and
//! one that stops cleanly revokes the lease so its keys vanish at once.
//!
//! # Threads
//!
//! etcd-client is async (tonic): it runs on a thread of its own with a
//! tokio current-thread runtime (`client.rs`; the etcd requests themselves
//! are in `session.rs`, the records and pure decisions in `records.rs`);
//! the datapath's loop never waits on etcd. Changes reach the loop as
//! [`Update`]s in a channel; the directory thread calls the `wake` closure
//! after queueing one (the daemon writes an eventfd in its epoll set) and
//! the loop drains them with [`Directory::try_recv`]. Claims block their
//! caller for a bounded time (they are made at start and on `port add`,
//! not per frame).
//!
//! **This host's own keys are filtered out**: snapshots and updates hold
//! only other hosts and their ports, so the daemon needs no own-VTEP check.
//!
//! # Losing etcd
//!
//! A keep-alive or watch stream that fails, a lease reported expired, no
//! keep-alive answer for a whole TTL, or a request that fails: the thread
//! logs one warning, queues one [`Update::Lost`], and retries (backoff from
//! 0.5 s doubling to 5 s, each attempt bounded by `connect_timeout`). When
//! etcd answers again it grants a new lease, re-creates the network record
//! if it is gone, re-claims the host key and every port it holds (the same
//! addresses), revokes the old lease (so anything left on it goes), and
//! queues [`Update::Back`] then [`Update::Resync`] with the full state
//! (watch events were missed); the watch restarts after the snapshot's
//! revision. Meanwhile claims fail at once ([`DirError::NotConnected`]) and
//! releases only forget the port (its key goes with the old lease). A watch
//! cancelled by etcd (compaction) is resynced the same way, without a new
//! lease (only a `Resync` is queued).

mod client;
mod records;
mod session;

pub use records::{
    FIRST_FREE_HOST, HostRecord, NetworkRecord, PortRecord, first_free, host_key, network_key,
    port_key, prefix,
};

use crate::wire::ipv4::Ipv4Net;
use client::{Cmd, Reply};
use std::net::Ipv4Addr;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The lease TTL unless configured: a dead host is gone within it.
pub const DEFAULT_TTL_SECS: i64 = 10;
/// How long connecting may take (and each etcd request) unless configured.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where the directory is and who we are in it.
#[derive(Clone, Debug)]
pub struct DirConfig {
    /// etcd client URLs (`http://10.0.0.1:2379`, or `HOST:PORT`).
    pub endpoints: Vec<String>,
    /// The network's name (the `NET` of the keys).
    pub network: String,
    /// This host's VTEP (underlay) address: its host key and the `host` of
    /// its ports.
    pub vtep: Ipv4Addr,
    /// This host's name, for people reading the directory.
    pub host_name: String,
    /// The lease's TTL in seconds ([`DEFAULT_TTL_SECS`]).
    pub ttl_secs: i64,
    /// Bound on connecting, and on each etcd request
    /// ([`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
}

impl DirConfig {
    /// A configuration with the default TTL and connect timeout.
    pub fn new(endpoints: Vec<String>, network: &str, vtep: Ipv4Addr, host_name: &str) -> Self {
        DirConfig {
            endpoints,
            network: network.to_string(),
            vtep,
            host_name: host_name.to_string(),
            ttl_secs: DEFAULT_TTL_SECS,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// The other hosts and their ports, as etcd holds them at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub hosts: Vec<HostRecord>,
    pub ports: Vec<PortRecord>,
}

/// A change in the directory, for the datapath's loop. Never about this
/// host's own keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// A host joined (or its record changed).
    HostUp(HostRecord),
    /// The host with this VTEP left (stopped, or its lease expired).
    HostDown(Ipv4Addr),
    /// A port appeared (or its record changed).
    PortUp(PortRecord),
    /// The port with this address is gone.
    PortDown(Ipv4Addr),
    /// etcd is unreachable (queued once per outage). What is known stays
    /// as it was; nothing changes until `Back`.
    Lost { error: String },
    /// etcd answers again; our keys are registered again. A `Resync`
    /// follows.
    Back,
    /// The whole state: replace everything known from the directory.
    Resync(Snapshot),
}

/// What `vswitchctl` shows about the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirStatus {
    /// The endpoint in use (the last one used while disconnected).
    pub endpoint: String,
    pub connected: bool,
    /// The current lease (0 before the first).
    pub lease_id: i64,
    /// The lease's TTL as etcd granted it.
    pub ttl_secs: i64,
    pub network: String,
}

/// Why a directory operation failed; each names the endpoint, key or
/// address concerned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirError {
    #[error("etcd unreachable at {endpoints}: {error}")]
    Unreachable { endpoints: String, error: String },
    #[error("etcd at {endpoint}: {what} failed: {error}")]
    Etcd {
        endpoint: String,
        what: String,
        error: String,
    },
    #[error("etcd at {endpoint} did not answer {what} within {limit:?}")]
    Timeout {
        endpoint: String,
        what: String,
        limit: Duration,
    },
    #[error("not connected to etcd ({endpoints}): retrying in the background, try again later")]
    NotConnected { endpoints: String },
    #[error("address {ip} is held by port {port} on host {host}")]
    Held {
        ip: Ipv4Addr,
        port: String,
        host: Ipv4Addr,
    },
    #[error(
        "VTEP {vtep} is registered by host '{name}' (another host with the same VTEP, or our previous run under another name until its lease expires)"
    )]
    VtepTaken { vtep: Ipv4Addr, name: String },
    #[error("no free address left in {subnet} from host {FIRST_FREE_HOST} upward")]
    Exhausted { subnet: Ipv4Net },
    #[error("bad record at {key}: {error}")]
    BadRecord { key: String, error: String },
    #[error("cannot claim {what}: {error}")]
    BadClaim { what: String, error: String },
    #[error(
        "'{name}' is not a network name (1 to 64 characters of letters, digits, '.', '_', '-')"
    )]
    BadNetworkName { name: String },
    #[error("bad directory configuration: {0}")]
    BadConfig(String),
    #[error("the directory thread: {0}")]
    Thread(String),
}

/// The directory client: owns the directory thread. Dropping it revokes
/// the lease (so this host's keys vanish at once) and joins the thread.
pub struct Directory {
    cmds: tokio::sync::mpsc::UnboundedSender<Cmd>,
    updates: Receiver<Update>,
    status: Arc<Mutex<DirStatus>>,
    thread: Option<JoinHandle<()>>,
    endpoints: String,
    /// How long a claim or release may block its caller.
    op_wait: Duration,
}

impl Directory {
    /// Connects (bounded by `connect_timeout`: etcd unreachable at start
    /// is [`DirError::Unreachable`], not a hang), grants a lease
    /// (`ttl_secs`), creates or reads the network record (returned: `want`
    /// if we were first, else the one stored), puts our host key on the
    /// lease, reads the snapshot of the other hosts and ports, and starts
    /// the keep-alive and the watch. `wake` is called from the directory
    /// thread after each queued [`Update`].
    pub fn start(
        cfg: DirConfig,
        want: NetworkRecord,
        wake: Box<dyn Fn() + Send>,
    ) -> Result<(Directory, NetworkRecord, Snapshot), DirError> {
        records::check_network_name(&cfg.network)?;
        if cfg.endpoints.is_empty() {
            return Err(DirError::BadConfig("no etcd endpoint given".into()));
        }
        if cfg.ttl_secs < 1 {
            return Err(DirError::BadConfig(format!(
                "lease TTL {} s: must be at least 1 s",
                cfg.ttl_secs
            )));
        }
        if cfg.connect_timeout.is_zero() {
            return Err(DirError::BadConfig("connect timeout of zero".into()));
        }
        let endpoints = cfg.endpoints.join(",");
        let op_wait = client::op_timeout(&cfg) + Duration::from_secs(1);
        let (handle, network, snapshot) = client::spawn(cfg, want, wake)?;
        let dir = Directory {
            cmds: handle.cmds,
            updates: handle.updates,
            status: handle.status,
            thread: Some(handle.thread),
            endpoints,
            op_wait,
        };
        Ok((dir, network, snapshot))
    }

    /// Claims `rec.ip` for a port of this host (`rec.host` must be our
    /// VTEP): create-if-absent on our lease, or a re-registration of the
    /// same host and port. Blocks for at most a few seconds; fails at once
    /// while etcd is unreachable.
    pub fn claim(&self, rec: PortRecord) -> Result<(), DirError> {
        self.call(|reply| Cmd::Claim(rec, reply))
    }

    /// Claims the lowest free host address of `subnet` from host
    /// [`FIRST_FREE_HOST`] (.11 in a /24) upward, skipping `skip` (addresses
    /// the caller uses locally) and the network's gateway, for the port
    /// `port` with MAC `mac`, and returns it. An address this host already
    /// holds in etcd for the same port (our previous lease) is reused.
    /// A claim that races another host and loses moves on to the next
    /// address.
    pub fn claim_free(
        &self,
        subnet: Ipv4Net,
        skip: &[Ipv4Addr],
        port: &str,
        mac: &str,
    ) -> Result<Ipv4Addr, DirError> {
        let (skip, port, mac) = (skip.to_vec(), port.to_string(), mac.to_string());
        self.call(|reply| Cmd::ClaimFree {
            subnet,
            skip,
            port,
            mac,
            reply,
        })
    }

    /// Deletes our port key for `ip` (the port was removed). Succeeds
    /// without etcd (the key then goes with the old lease) and for an
    /// address we do not hold (nothing to do).
    pub fn release(&self, ip: Ipv4Addr) -> Result<(), DirError> {
        self.call(|reply| Cmd::Release(ip, reply))
    }

    /// The next queued update, if any (never blocks).
    pub fn try_recv(&self) -> Option<Update> {
        self.updates.try_recv().ok()
    }

    pub fn status(&self) -> DirStatus {
        lock(&self.status).clone()
    }

    /// Stops the directory thread WITHOUT revoking the lease, as if the
    /// process had been killed: our keys stay until the lease expires.
    /// For tests (what other hosts see when one dies).
    #[doc(hidden)]
    pub fn abandon(mut self) {
        self.stop(false);
    }

    /// Sends a command with a reply channel and waits (bounded) for the
    /// answer. Claims fail at once while etcd is unreachable.
    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, DirError> {
        let not_connected = || DirError::NotConnected {
            endpoints: self.endpoints.clone(),
        };
        let (tx, rx) = sync_channel(1);
        let cmd = make(tx);
        if !self.status().connected && !matches!(cmd, Cmd::Release(..)) {
            return Err(not_connected());
        }
        self.cmds
            .send(cmd)
            .map_err(|_| DirError::Thread("it has stopped".into()))?;
        match rx.recv_timeout(self.op_wait) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(DirError::Timeout {
                endpoint: self.status().endpoint,
                what: "the directory request".into(),
                limit: self.op_wait,
            }),
            Err(RecvTimeoutError::Disconnected) => {
                Err(DirError::Thread("it stopped without answering".into()))
            }
        }
    }

    fn stop(&mut self, revoke: bool) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let _ = self.cmds.send(Cmd::Stop { revoke });
        if thread.join().is_err() {
            tracing::error!("the directory thread panicked");
        }
    }
}

impl Drop for Directory {
    /// Revokes the lease (bounded: a few seconds at most) so our keys
    /// vanish at once, stops the thread and joins it.
    fn drop(&mut self) {
        self.stop(true);
    }
}

/// The status, also from a poisoned lock (it holds plain data).
fn lock(m: &Mutex<DirStatus>) -> std::sync::MutexGuard<'_, DirStatus> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
