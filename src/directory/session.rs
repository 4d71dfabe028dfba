//! One session with etcd: connecting (every endpoint at once, bounded),
//! granting the lease and registering on it (the network record, our host
//! key, our ports), the snapshot and the watch, and the claim transactions
//! themselves. Each function is one step with its own bounded requests and
//! an error that names the endpoint and key; the directory thread
//! (`client.rs`) decides when to call them.

use super::records;
use super::{DirConfig, DirError, HostRecord, NetworkRecord, PortRecord, Snapshot};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions, WatchStream,
    Watcher,
};
use std::future::Future;
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::time::{Instant, timeout};

/// Tries at one key whose holder keeps changing under the claim.
const KEY_RACES: usize = 8;
/// Bound on revoking a lease (at a clean stop, or the old one after a
/// reconnect).
pub(super) const REVOKE_TIMEOUT: Duration = Duration::from_secs(2);

/// A client and the endpoint it talks to (named in every error).
pub(super) struct Link {
    pub(super) client: Client,
    pub(super) endpoint: String,
}

impl Link {
    pub(super) fn fail(&self, what: impl Into<String>, e: etcd_client::Error) -> DirError {
        DirError::Etcd {
            endpoint: self.endpoint.clone(),
            what: what.into(),
            error: e.to_string(),
        }
    }
}

/// A working connection: the lease, its keep-alive, the watch.
pub(super) struct Conn {
    pub(super) link: Link,
    pub(super) lease: i64,
    pub(super) ttl: i64,
    pub(super) keeper: LeaseKeeper,
    pub(super) keepalive: LeaseKeepAliveStream,
    /// Kept so the watch's request stream stays open.
    pub(super) _watcher: Watcher,
    pub(super) watch: WatchStream,
    /// When etcd last confirmed the lease.
    pub(super) last_alive: Instant,
}

/// What connecting and registering gave.
pub(super) struct Established {
    pub(super) conn: Conn,
    pub(super) network: NetworkRecord,
    pub(super) snapshot: Snapshot,
    /// Ports whose addresses someone else holds now (re-claims refused).
    pub(super) refused: Vec<Ipv4Addr>,
}

/// Connects to the first endpoint that answers, within `connect_timeout`:
/// all are tried at once.
pub(super) async fn connect(cfg: &DirConfig) -> Result<Link, DirError> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(cfg.connect_timeout)
        .with_timeout(cfg.connect_timeout);
    let mut probes = tokio::task::JoinSet::new();
    for ep in &cfg.endpoints {
        let (ep, opts) = (ep.clone(), opts.clone());
        probes.spawn(async move {
            let r = async {
                let mut client = Client::connect([ep.as_str()], Some(opts)).await?;
                client.status().await?;
                Ok::<_, etcd_client::Error>(client)
            }
            .await;
            (ep, r)
        });
    }
    let mut errors = Vec::new();
    let first = timeout(cfg.connect_timeout, async {
        while let Some(done) = probes.join_next().await {
            match done {
                Ok((endpoint, Ok(client))) => return Some(Link { client, endpoint }),
                Ok((ep, Err(e))) => errors.push(format!("{ep}: {e}")),
                Err(e) => errors.push(format!("probe: {e}")),
            }
        }
        None
    })
    .await;
    match first {
        Ok(Some(link)) => Ok(link),
        Ok(None) => Err(DirError::Unreachable {
            endpoints: cfg.endpoints.join(","),
            error: errors.join("; "),
        }),
        Err(_) => {
            let mut error = format!(
                "no answer within {:.1} s",
                cfg.connect_timeout.as_secs_f64()
            );
            for e in errors {
                error.push_str("; ");
                error.push_str(&e);
            }
            Err(DirError::Unreachable {
                endpoints: cfg.endpoints.join(","),
                error,
            })
        }
    }
}

/// Connects, grants a lease and registers on it: the network record
/// (created if absent), our host key, the `held` ports; then reads the
/// snapshot and starts the keep-alive and the watch. On failure after the
/// grant the lease is revoked, so nothing stays behind.
pub(super) async fn establish(
    cfg: DirConfig,
    want: NetworkRecord,
    held: Vec<PortRecord>,
) -> Result<Established, DirError> {
    let mut link = connect(&cfg).await?;
    let grant = link
        .client
        .lease_grant(cfg.ttl_secs, None)
        .await
        .map_err(|e| link.fail(format!("granting a lease of {} s", cfg.ttl_secs), e))?;
    let (lease, ttl) = (grant.id(), grant.ttl());
    let registered = async {
        let network = ensure_network(&mut link, &cfg.network, &want).await?;
        let host = HostRecord {
            vtep: cfg.vtep,
            name: cfg.host_name.clone(),
        };
        let key = records::host_key(&cfg.network, cfg.vtep);
        claim_key(&mut link, &key, records::encode(&host), lease, |k, v| {
            let old = records::decode_host(k, cfg.vtep, v)?;
            if old.name == host.name {
                Ok(())
            } else {
                Err(DirError::VtepTaken {
                    vtep: cfg.vtep,
                    name: old.name,
                })
            }
        })
        .await?;
        let mut refused = Vec::new();
        for rec in &held {
            match claim_port(&mut link, &cfg.network, rec, lease).await {
                Ok(()) => {}
                Err(e @ (DirError::Held { .. } | DirError::BadRecord { .. })) => {
                    tracing::error!(port = %rec.port, "port {} lost its address: {e}", rec.port);
                    refused.push(rec.ip);
                }
                Err(e) => return Err(e),
            }
        }
        let (snapshot, revision) = read_snapshot(&mut link, &cfg).await?;
        // Streams: tonic's timeout covers their start, not their first
        // message, which etcd-client waits for.
        let what = format!("keeping lease {lease:x} alive");
        let endpoint = link.endpoint.clone();
        let (keeper, keepalive) = within(cfg.connect_timeout, &endpoint, &what, async {
            let r = link.client.lease_keep_alive(lease).await;
            r.map_err(|e| link.fail(&what, e))
        })
        .await?;
        let (watcher, watch) =
            start_watch(&mut link, &cfg.network, revision, cfg.connect_timeout).await?;
        Ok((
            network, refused, snapshot, keeper, keepalive, watcher, watch,
        ))
    }
    .await;
    match registered {
        Ok((network, refused, snapshot, keeper, keepalive, watcher, watch)) => Ok(Established {
            conn: Conn {
                link,
                lease,
                ttl,
                keeper,
                keepalive,
                _watcher: watcher,
                watch,
                last_alive: Instant::now(),
            },
            network,
            snapshot,
            refused,
        }),
        Err(e) => {
            revoke(&mut link, lease).await;
            Err(e)
        }
    }
}

/// Creates the network record if absent; returns the one stored.
pub(super) async fn ensure_network(
    link: &mut Link,
    net: &str,
    want: &NetworkRecord,
) -> Result<NetworkRecord, DirError> {
    let key = records::network_key(net);
    for _ in 0..KEY_RACES {
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), records::encode(want), None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let resp = link
            .client
            .txn(txn)
            .await
            .map_err(|e| link.fail(format!("creating or reading {key}"), e))?;
        if resp.succeeded() {
            return Ok(want.clone());
        }
        if let Some(kv) = got(&resp) {
            return records::decode_network(kv.key(), kv.value());
        }
        // Deleted between the compare and the get: try again.
    }
    Err(DirError::Etcd {
        endpoint: link.endpoint.clone(),
        what: format!("creating or reading {key}"),
        error: "it kept appearing and vanishing".into(),
    })
}

/// The key-value the `get` of a failed create-if-absent found.
pub(super) fn got(resp: &TxnResponse) -> Option<KeyValue> {
    resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(g) => g.kvs().first().cloned(),
        _ => None,
    })
}

/// Claims `key` for `value` on `lease`: created if absent; if present,
/// `ours(key, value)` says whether the holder is us (then the key is moved
/// onto our lease, unless it changed meanwhile) or returns the refusal.
pub(super) async fn claim_key(
    link: &mut Link,
    key: &str,
    value: Vec<u8>,
    lease: i64,
    ours: impl Fn(&[u8], &[u8]) -> Result<(), DirError>,
) -> Result<(), DirError> {
    let put = || {
        TxnOp::put(
            key,
            value.clone(),
            Some(PutOptions::new().with_lease(lease)),
        )
    };
    for _ in 0..KEY_RACES {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([put()])
            .or_else([TxnOp::get(key, None)]);
        let resp = link
            .client
            .txn(txn)
            .await
            .map_err(|e| link.fail(format!("claiming {key}"), e))?;
        if resp.succeeded() {
            return Ok(());
        }
        let Some(kv) = got(&resp) else {
            continue;
        };
        ours(kv.key(), kv.value())?;
        if kv.lease() == lease && kv.value() == value.as_slice() {
            return Ok(());
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key,
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then([put()]);
        let resp = link
            .client
            .txn(txn)
            .await
            .map_err(|e| link.fail(format!("re-registering {key}"), e))?;
        if resp.succeeded() {
            return Ok(());
        }
    }
    // A refusal, not a failure of etcd: the connection is fine.
    Err(DirError::BadClaim {
        what: key.to_string(),
        error: format!("it changed under the claim {KEY_RACES} times"),
    })
}

/// Claims a port's address (see [`claim_key`]): ours if the holder is the
/// same host and port.
pub(super) async fn claim_port(
    link: &mut Link,
    net: &str,
    rec: &PortRecord,
    lease: i64,
) -> Result<(), DirError> {
    let key = records::port_key(net, rec.ip);
    claim_key(link, &key, records::encode(rec), lease, |k, v| {
        let old = records::decode_port(k, rec.ip, v)?;
        if records::is_ours(&old, rec) {
            Ok(())
        } else {
            Err(DirError::Held {
                ip: rec.ip,
                port: old.port,
                host: old.host,
            })
        }
    })
    .await
}

/// Keys read per request: a page of port records is about 130 KB, far
/// under gRPC's 4 MiB message limit (one read of a 100,000-port network
/// is 14 MB and was refused).
const PAGE: i64 = 1000;

/// Reads every key under `prefix` in pages of [`PAGE`], all at the
/// revision of the first page (one consistent view), handing each to `f`.
/// Returns that revision.
pub(super) async fn read_prefix(
    link: &mut Link,
    prefix: &str,
    mut f: impl FnMut(&KeyValue),
) -> Result<i64, DirError> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1; // the prefix ends in '/': the range end is the next byte
    }
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0;
    loop {
        let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if revision != 0 {
            opts = opts.with_revision(revision);
        }
        let resp = link
            .client
            .get(from.clone(), Some(opts))
            .await
            .map_err(|e| link.fail(format!("reading {prefix}"), e))?;
        if revision == 0 {
            revision = resp.header().map_or(0, |h| h.revision());
        }
        for kv in resp.kvs() {
            f(kv);
        }
        match resp.kvs().last() {
            Some(kv) if resp.more() => {
                from = kv.key().to_vec();
                from.push(0); // the next key after it
            }
            _ => return Ok(revision),
        }
    }
}

/// The other hosts and ports now, and the revision they are at.
pub(super) async fn read_snapshot(
    link: &mut Link,
    cfg: &DirConfig,
) -> Result<(Snapshot, i64), DirError> {
    let prefix = records::prefix(&cfg.network);
    let mut snap = Snapshot::default();
    let revision = read_prefix(link, &prefix, |kv| {
        if let Err(e) =
            records::add_to_snapshot(&mut snap, &cfg.network, cfg.vtep, kv.key(), kv.value())
        {
            tracing::warn!("{e} (ignored)");
        }
    })
    .await?;
    Ok((snap, revision))
}

/// Watches the network's prefix from the revision after `revision`.
pub(super) async fn start_watch(
    link: &mut Link,
    net: &str,
    revision: i64,
    limit: Duration,
) -> Result<(Watcher, WatchStream), DirError> {
    let what = format!("watching {}", records::prefix(net));
    let opts = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_start_revision(revision + 1);
    let endpoint = link.endpoint.clone();
    within(limit, &endpoint, &what, async {
        let r = link.client.watch(records::prefix(net), Some(opts)).await;
        r.map_err(|e| link.fail(&what, e))
    })
    .await
}

/// Revokes `lease`, best effort and bounded (its keys vanish at once).
pub(super) async fn revoke(link: &mut Link, lease: i64) {
    match timeout(REVOKE_TIMEOUT, link.client.lease_revoke(lease)).await {
        Ok(Ok(_)) => tracing::debug!("revoked lease {lease:x}"),
        Ok(Err(e)) => tracing::debug!("revoking lease {lease:x} at {}: {e}", link.endpoint),
        Err(_) => tracing::debug!("revoking lease {lease:x} at {}: no answer", link.endpoint),
    }
}

/// `fut` within `limit`, or [`DirError::Timeout`] naming `what`.
pub(super) async fn within<T>(
    limit: Duration,
    endpoint: &str,
    what: &str,
    fut: impl Future<Output = Result<T, DirError>>,
) -> Result<T, DirError> {
    timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(DirError::Timeout {
            endpoint: endpoint.to_string(),
            what: what.to_string(),
            limit,
        })
    })
}
