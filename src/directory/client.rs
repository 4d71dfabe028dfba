//! The directory thread: owns the etcd client and a tokio current-thread
//! runtime, keeps the lease alive, turns watch events into [`Update`]s,
//! answers the daemon's claims, and reconnects with backoff when etcd is
//! lost (see the module header of `directory` for the whole story).
//!
//! The thread runs one `select!` loop: commands from the [`Directory`]
//! handle, the keep-alive tick and its answers, and the watch stream.
//! While disconnected it waits out the backoff and tries to re-establish,
//! still answering commands (claims fail at once) so no caller waits on it.
//!
//! [`Directory`]: super::Directory

use super::records::{self, Key};
use super::session::{
    Conn, REVOKE_TIMEOUT, claim_port, establish, read_snapshot, revoke, start_watch, within,
};
use super::{DirConfig, DirError, DirStatus, NetworkRecord, PortRecord, Snapshot, Update, lock};
use crate::wire::MacAddr;
use crate::wire::ipv4::Ipv4Net;
use etcd_client::{Compare, CompareOp, EventType, Txn, TxnOp, WatchResponse};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::time::{Instant, MissedTickBehavior, sleep, timeout};

/// First wait before reconnecting; doubled after each failure up to
/// [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Addresses `claim_free` tries after losing races for them.
const FREE_RACES: usize = 64;

/// Where the thread sends a command's answer.
pub(super) type Reply<T> = SyncSender<Result<T, DirError>>;

/// What the [`Directory`](super::Directory) handle asks of the thread.
pub(super) enum Cmd {
    Claim(PortRecord, Reply<()>),
    ClaimFree {
        subnet: Ipv4Net,
        skip: Vec<Ipv4Addr>,
        port: String,
        mac: String,
        reply: Reply<Ipv4Addr>,
    },
    Release(Ipv4Addr, Reply<()>),
    /// Stop the thread; `revoke` the lease first (false: as if killed).
    Stop {
        revoke: bool,
    },
}

/// The bound on one claim, claim_free or release inside the thread (a
/// few requests); the caller waits a second longer.
pub(super) fn op_timeout(cfg: &DirConfig) -> Duration {
    cfg.connect_timeout * 2
}

/// The handle's ends of the thread's channels.
pub(super) struct Handle {
    pub cmds: UnboundedSender<Cmd>,
    pub updates: Receiver<Update>,
    pub status: Arc<Mutex<DirStatus>>,
    pub thread: JoinHandle<()>,
}

/// Starts the thread and waits for its first connection (every step of
/// which is bounded by a timeout): the stored network record and the
/// snapshot, or why it failed (then the thread has ended).
pub(super) fn spawn(
    cfg: DirConfig,
    want: NetworkRecord,
    wake: Box<dyn Fn() + Send>,
) -> Result<(Handle, NetworkRecord, Snapshot), DirError> {
    records::check_network(records::network_key(&cfg.network).as_bytes(), &want)?;
    let (cmd_tx, cmd_rx) = unbounded_channel();
    let (upd_tx, upd_rx) = channel();
    let status = Arc::new(Mutex::new(DirStatus {
        endpoint: String::new(),
        connected: false,
        lease_id: 0,
        ttl_secs: cfg.ttl_secs,
        network: cfg.network.clone(),
    }));
    let (start_tx, start_rx) = sync_channel(1);
    let shared = status.clone();
    let thread = std::thread::Builder::new()
        .name("vswitchd-dir".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = start_tx.send(Err(DirError::Thread(format!(
                        "cannot build its runtime: {e}"
                    ))));
                    return;
                }
            };
            rt.block_on(async move {
                let mut est = match establish(cfg.clone(), want, Vec::new()).await {
                    Ok(est) => est,
                    Err(e) => {
                        let _ = start_tx.send(Err(e));
                        return;
                    }
                };
                let worker = Worker {
                    cfg,
                    network: est.network.clone(),
                    held: BTreeMap::new(),
                    updates: upd_tx,
                    wake,
                    status: shared,
                };
                worker.connected(&est.conn);
                let snapshot = std::mem::take(&mut est.snapshot);
                if start_tx.send(Ok((est.network, snapshot))).is_err() {
                    revoke(&mut est.conn.link, est.conn.lease).await;
                    return;
                }
                worker.run(est.conn, cmd_rx).await;
            });
        })
        .map_err(|e| DirError::Thread(format!("cannot start it: {e}")))?;
    let started = start_rx.recv();
    match started {
        Ok(Ok((network, snapshot))) => Ok((
            Handle {
                cmds: cmd_tx,
                updates: upd_rx,
                status,
                thread,
            },
            network,
            snapshot,
        )),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(DirError::Thread("it ended during start".into()))
        }
    }
}

/// Why the connected loop ended.
enum Served {
    Stop { revoke: bool },
    Lost(String),
}

/// The thread's state across connections.
struct Worker {
    cfg: DirConfig,
    /// The network record as stored (re-created from it after a loss).
    network: NetworkRecord,
    /// Ports we claimed, re-claimed after a loss.
    held: BTreeMap<Ipv4Addr, PortRecord>,
    updates: Sender<Update>,
    wake: Box<dyn Fn() + Send>,
    status: Arc<Mutex<DirStatus>>,
}

impl Worker {
    fn queue(&self, u: Update) {
        if self.updates.send(u).is_ok() {
            (self.wake)();
        }
    }

    fn connected(&self, conn: &Conn) {
        let mut s = lock(&self.status);
        s.endpoint = conn.link.endpoint.clone();
        s.connected = true;
        s.lease_id = conn.lease;
        s.ttl_secs = conn.ttl;
    }

    async fn run(mut self, mut conn: Conn, mut cmds: UnboundedReceiver<Cmd>) {
        loop {
            match self.serve(&mut conn, &mut cmds).await {
                Served::Stop { revoke: true } => {
                    revoke(&mut conn.link, conn.lease).await;
                    return;
                }
                Served::Stop { revoke: false } => return,
                Served::Lost(error) => {
                    tracing::warn!(
                        network = %self.cfg.network,
                        "lost etcd at {}: {error}; retrying in the background",
                        conn.link.endpoint
                    );
                    lock(&self.status).connected = false;
                    self.queue(Update::Lost { error });
                }
            }
            let old_lease = conn.lease;
            drop(conn);
            match self.reconnect(&mut cmds, old_lease).await {
                Some(c) => conn = c,
                None => return,
            }
        }
    }

    /// The connected loop: commands, keep-alive, watch events.
    async fn serve(&mut self, conn: &mut Conn, cmds: &mut UnboundedReceiver<Cmd>) -> Served {
        let ttl = Duration::from_secs(conn.ttl.max(1) as u64);
        let every = ttl / 3;
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => return Served::Stop { revoke: true },
                    Some(Cmd::Stop { revoke }) => return Served::Stop { revoke },
                    Some(cmd) => {
                        if let Err(lost) = self.handle(conn, cmd).await {
                            return Served::Lost(lost);
                        }
                    }
                },
                _ = tick.tick() => {
                    if conn.last_alive.elapsed() > ttl {
                        return Served::Lost(format!(
                            "no keep-alive answer for lease {:x} in {} s",
                            conn.lease, conn.ttl
                        ));
                    }
                    match timeout(every, conn.keeper.keep_alive()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Served::Lost(format!("keep-alive: {e}")),
                        Err(_) => return Served::Lost("keep-alive requests stuck".into()),
                    }
                }
                msg = conn.keepalive.message() => match msg {
                    Ok(Some(r)) if r.ttl() > 0 => conn.last_alive = Instant::now(),
                    Ok(Some(_)) => {
                        return Served::Lost(format!("lease {:x} expired", conn.lease));
                    }
                    Ok(None) => return Served::Lost("the keep-alive stream ended".into()),
                    Err(e) => return Served::Lost(format!("keep-alive: {e}")),
                },
                msg = conn.watch.message() => match msg {
                    Ok(Some(resp)) if resp.canceled() || resp.compact_revision() > 0 => {
                        tracing::info!(
                            "etcd cancelled the watch ({}, compacted at {}); resyncing",
                            resp.cancel_reason(),
                            resp.compact_revision()
                        );
                        if let Err(e) = self.resync(conn).await {
                            return Served::Lost(e.to_string());
                        }
                    }
                    Ok(Some(resp)) => self.events(&resp),
                    Ok(None) => return Served::Lost("the watch stream ended".into()),
                    Err(e) => return Served::Lost(format!("watch: {e}")),
                },
            }
        }
    }

    /// Queues the updates a watch response means.
    fn events(&self, resp: &WatchResponse) {
        let net = &self.cfg.network;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else {
                continue;
            };
            let put = ev.event_type() == EventType::Put;
            if !put
                && let Some(Key::Port(ip)) = records::parse_key(net, kv.key())
                && self.held.contains_key(&ip)
            {
                tracing::warn!(
                    "our port key for {ip} was deleted by someone else (re-claimed on reconnect)"
                );
            }
            let prev = ev.prev_kv().map(|p| p.value());
            match records::event_update(net, self.cfg.vtep, put, kv.key(), kv.value(), prev) {
                Ok(Some(u)) => self.queue(u),
                Ok(None) => {}
                Err(e) => tracing::warn!("{e} (ignored)"),
            }
        }
    }

    /// After a cancelled watch: the full state again, and a new watch.
    async fn resync(&self, conn: &mut Conn) -> Result<(), DirError> {
        let (snapshot, revision) = read_snapshot(&mut conn.link, &self.cfg).await?;
        let limit = self.cfg.connect_timeout;
        let (watcher, watch) =
            start_watch(&mut conn.link, &self.cfg.network, revision, limit).await?;
        conn._watcher = watcher;
        conn.watch = watch;
        self.queue(Update::Resync(snapshot));
        Ok(())
    }

    /// Runs one command while connected and answers it. A failure of etcd
    /// itself (an error or no answer) is returned: the connection is lost.
    async fn handle(&mut self, conn: &mut Conn, cmd: Cmd) -> Result<(), String> {
        match cmd {
            Cmd::Claim(rec, reply) => {
                let r = match self.check_claim(&rec) {
                    Ok(()) => {
                        let endpoint = conn.link.endpoint.clone();
                        let fut = claim_port(&mut conn.link, &self.cfg.network, &rec, conn.lease);
                        bounded(&self.cfg, &endpoint, "the claim", fut).await
                    }
                    Err(e) => Err(e),
                };
                if r.is_ok() {
                    self.held.insert(rec.ip, rec);
                }
                answer(reply, r)
            }
            Cmd::ClaimFree {
                subnet,
                skip,
                port,
                mac,
                reply,
            } => {
                let endpoint = conn.link.endpoint.clone();
                let cfg = self.cfg.clone();
                let fut = self.claim_free(conn, subnet, skip, port, mac);
                let r = bounded(&cfg, &endpoint, "the free address claim", fut).await;
                answer(reply, r)
            }
            Cmd::Release(ip, reply) => {
                if self.held.remove(&ip).is_none() {
                    return answer(reply, Ok(()));
                }
                let key = records::port_key(&self.cfg.network, ip);
                let txn = Txn::new()
                    .when([Compare::lease(key.as_str(), CompareOp::Equal, conn.lease)])
                    .and_then([TxnOp::delete(key.as_str(), None)]);
                let link = &mut conn.link;
                let endpoint = link.endpoint.clone();
                let fut = async {
                    match link.client.txn(txn).await {
                        Ok(_) => Ok(()),
                        Err(e) => Err(link.fail(format!("deleting {key}"), e)),
                    }
                };
                let r = bounded(&self.cfg, &endpoint, "the release", fut).await;
                answer(reply, r)
            }
            Cmd::Stop { .. } => Ok(()),
        }
    }

    /// Whether `rec` may be claimed by this host: our VTEP, a MAC, a port
    /// name, a host address of the network that is not its gateway.
    fn check_claim(&self, rec: &PortRecord) -> Result<(), DirError> {
        let refuse = |error: String| DirError::BadClaim {
            what: format!("{} for port '{}'", rec.ip, rec.port),
            error,
        };
        if rec.host != self.cfg.vtep {
            return Err(refuse(format!(
                "the record names host {}, not this host's VTEP {}",
                rec.host, self.cfg.vtep
            )));
        }
        check_port(&rec.port, &rec.mac).map_err(refuse)?;
        let subnet: Ipv4Net = self.network.subnet.parse().map_err(refuse)?;
        if !subnet.is_usable_host(rec.ip) {
            return Err(refuse(format!("not a host address of {subnet}")));
        }
        if rec.ip == self.network.gateway {
            return Err(refuse("it is the network's gateway".into()));
        }
        Ok(())
    }

    /// `Directory::claim_free`: our previous address for this port if etcd
    /// still has one, else the lowest free one, moving on past races lost.
    async fn claim_free(
        &mut self,
        conn: &mut Conn,
        subnet: Ipv4Net,
        mut skip: Vec<Ipv4Addr>,
        port: String,
        mac: String,
    ) -> Result<Ipv4Addr, DirError> {
        let what = || format!("a free address of {subnet} for port '{port}'");
        check_port(&port, &mac).map_err(|error| DirError::BadClaim {
            what: what(),
            error,
        })?;
        skip.push(self.network.gateway);
        let net = self.cfg.network.clone();
        let prefix = format!("{}ports/", records::prefix(&net));
        let mut lost = BTreeSet::new();
        for _ in 0..FREE_RACES {
            let link = &mut conn.link;
            let mut taken = lost.clone();
            let mut previous = None;
            super::session::read_prefix(link, &prefix, |kv| {
                let Some(Key::Port(ip)) = records::parse_key(&net, kv.key()) else {
                    return;
                };
                taken.insert(ip);
                if let Ok(r) = records::decode_port(kv.key(), ip, kv.value())
                    && r.host == self.cfg.vtep
                    && r.port == port
                    && subnet.is_usable_host(ip)
                    && !skip.contains(&ip)
                    && !lost.contains(&ip)
                {
                    previous = Some(ip);
                }
            })
            .await?;
            let ip = previous
                .or_else(|| records::first_free(subnet, &taken, &skip))
                .ok_or(DirError::Exhausted { subnet })?;
            let rec = PortRecord {
                ip,
                mac: mac.clone(),
                host: self.cfg.vtep,
                port: port.clone(),
            };
            match claim_port(link, &net, &rec, conn.lease).await {
                Ok(()) => {
                    self.held.insert(ip, rec);
                    return Ok(ip);
                }
                Err(DirError::Held { .. } | DirError::BadRecord { .. }) => {
                    lost.insert(ip);
                }
                Err(e) => return Err(e),
            }
        }
        Err(DirError::BadClaim {
            what: what(),
            error: format!("lost the race for {FREE_RACES} addresses in a row"),
        })
    }

    /// Waits out the backoff and re-establishes, answering commands all
    /// the while. None: stop was asked for.
    async fn reconnect(&mut self, cmds: &mut UnboundedReceiver<Cmd>, old: i64) -> Option<Conn> {
        let mut delay = BACKOFF_START;
        let mut last_error: Option<String> = None;
        loop {
            let wait = sleep(delay);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    cmd = cmds.recv() => if self.offline(cmd) { return None },
                }
            }
            let held: Vec<PortRecord> = self.held.values().cloned().collect();
            let attempt = establish(self.cfg.clone(), self.network.clone(), held.clone());
            tokio::pin!(attempt);
            let result = loop {
                tokio::select! {
                    r = &mut attempt => break r,
                    cmd = cmds.recv() => if self.offline(cmd) { return None },
                }
            };
            match result {
                Ok(mut est) => {
                    for ip in &est.refused {
                        self.held.remove(ip);
                    }
                    // Released during the attempt, re-claimed by it:
                    // revoking the old lease does not remove those.
                    for rec in held.iter().filter(|r| !self.held.contains_key(&r.ip)) {
                        let key = records::port_key(&self.cfg.network, rec.ip);
                        let txn = Txn::new()
                            .when([Compare::lease(
                                key.as_str(),
                                CompareOp::Equal,
                                est.conn.lease,
                            )])
                            .and_then([TxnOp::delete(key.as_str(), None)]);
                        let _ = timeout(REVOKE_TIMEOUT, est.conn.link.client.txn(txn)).await;
                    }
                    revoke(&mut est.conn.link, old).await;
                    if est.network != self.network {
                        tracing::warn!(
                            "the network record in etcd ({:?}) differs from ours ({:?}); keeping ours",
                            est.network,
                            self.network
                        );
                    }
                    self.connected(&est.conn);
                    tracing::info!(
                        network = %self.cfg.network,
                        "etcd back at {}: lease {:x}, {} ports re-claimed",
                        est.conn.link.endpoint,
                        est.conn.lease,
                        self.held.len()
                    );
                    self.queue(Update::Back);
                    self.queue(Update::Resync(std::mem::take(&mut est.snapshot)));
                    return Some(est.conn);
                }
                Err(e) => {
                    // Unreachable is what "lost" already said; anything
                    // else (etcd answers but refuses) is news, once.
                    let msg = e.to_string();
                    if !matches!(e, DirError::Unreachable { .. })
                        && last_error.as_ref() != Some(&msg)
                    {
                        tracing::warn!("etcd answers but re-registering failed: {msg}; retrying");
                    } else {
                        tracing::debug!("etcd still unreachable: {e}; next try in {delay:?}");
                    }
                    last_error = Some(msg);
                    delay = (delay * 2).min(BACKOFF_CAP);
                }
            }
        }
    }

    /// Answers a command while disconnected; true if it asks to stop (or
    /// the handle is gone).
    fn offline(&mut self, cmd: Option<Cmd>) -> bool {
        let not_connected = || DirError::NotConnected {
            endpoints: self.cfg.endpoints.join(","),
        };
        match cmd {
            None | Some(Cmd::Stop { .. }) => return true,
            Some(Cmd::Claim(_, reply)) => {
                let _ = reply.send(Err(not_connected()));
            }
            Some(Cmd::ClaimFree { reply, .. }) => {
                let _ = reply.send(Err(not_connected()));
            }
            Some(Cmd::Release(ip, reply)) => {
                self.held.remove(&ip);
                let _ = reply.send(Ok(()));
            }
        }
        false
    }
}

/// A port name and MAC fit for a record.
fn check_port(port: &str, mac: &str) -> Result<(), String> {
    if port.is_empty() {
        return Err("empty port name".into());
    }
    mac.parse::<MacAddr>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Runs one command's requests within [`op_timeout`].
async fn bounded<T>(
    cfg: &DirConfig,
    endpoint: &str,
    what: &str,
    fut: impl Future<Output = Result<T, DirError>>,
) -> Result<T, DirError> {
    within(op_timeout(cfg), endpoint, what, fut).await
}

/// Sends a command's answer; an error of etcd itself (not a refusal)
/// means the connection is lost, and is returned as such.
fn answer<T>(reply: Reply<T>, r: Result<T, DirError>) -> Result<(), String> {
    let lost = match &r {
        Err(e @ (DirError::Etcd { .. } | DirError::Timeout { .. })) => Some(e.to_string()),
        _ => None,
    };
    let _ = reply.send(r);
    lost.map_or(Ok(()), Err)
}
