//! Large views (`nat show`, `fdb show`) streamed in bounded chunks, so a
//! full table never stalls forwarding.
//!
//! The reply is the same one JSON line a small view gets, written a piece
//! at a time: the head (ok, the summary) at once, then [`ROWS_PER_CHUNK`]
//! rows per turn of the event loop, produced only while less than
//! [`PENDING_MAX`] bytes wait for the reader; then the tail. Between two
//! chunks the loop forwards frames as usual. Rows come in table order (the
//! client sorts them for display); a flow or MAC that comes or goes while
//! the view is being written may or may not be listed, none is listed
//! twice. Memory per view is bounded by the pending bytes.

use super::server::Server;
use crate::datapath::Switch;
use crate::port::Port;
use crate::switch::Millis;
use crate::wire::MacAddr;
use nix::sys::epoll::Epoll;
use std::collections::VecDeque;

/// Rows produced per turn of the loop for one view.
pub const ROWS_PER_CHUNK: usize = 32;
/// No more rows are produced while this many bytes wait for the reader.
pub const PENDING_MAX: usize = 64 * 1024;

/// Which table a view walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewKind {
    /// The NAT flows that the filter lets through.
    Nat(crate::gateway::nat::FlowFilter),
    Fdb,
}

struct Job {
    token: u64,
    kind: ViewKind,
    /// The table slot to go on from; `None` once the tail is written.
    cursor: Option<usize>,
    rows: usize,
    pending: VecDeque<u8>,
    /// Rows listed after the table's (the overlay directory's remote MACs
    /// in `fdb show`), taken when the view started.
    extra: Vec<MacAddr>,
    /// Index into `extra` once the table is done.
    extra_at: Option<usize>,
}

/// The views being written.
#[derive(Default)]
pub struct Views {
    jobs: Vec<Job>,
}

impl Views {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Whether a view has rows to produce and room for them (the loop
    /// should not sleep).
    pub fn has_work(&self) -> bool {
        self.jobs
            .iter()
            .any(|j| j.cursor.is_some() && j.pending.len() < PENDING_MAX)
    }

    /// Starts a view on connection `token`; `head` is the reply up to the
    /// rows' opening bracket.
    pub fn start(&mut self, token: u64, kind: ViewKind, head: Vec<u8>, extra: Vec<MacAddr>) {
        self.jobs.push(Job {
            token,
            kind,
            cursor: Some(0),
            rows: 0,
            pending: head.into(),
            extra,
            extra_at: None,
        });
    }

    /// Produces and writes what each view can, ends the finished ones and
    /// those whose reader left. Never blocks.
    pub fn pump<P: Port, U: Port>(
        &mut self,
        sw: &Switch<P, U>,
        server: &mut Server,
        epoll: &Epoll,
        now: Millis,
    ) {
        self.jobs.retain_mut(|j| {
            if let Some(from) = j.cursor
                && j.pending.len() < PENDING_MAX
            {
                j.cursor = produce(j, sw, from, now);
                if j.cursor.is_none() {
                    j.pending.extend(b"]}}\n");
                }
            }
            if !server.pump(epoll, j.token, &mut j.pending) {
                return false; // the reader left
            }
            if j.cursor.is_none() && j.pending.is_empty() {
                server.finish(epoll, j.token);
                return false;
            }
            true
        });
    }
}

/// Appends up to [`ROWS_PER_CHUNK`] rows from slot `from`; where to go on.
fn produce<P: Port, U: Port>(
    j: &mut Job,
    sw: &Switch<P, U>,
    from: usize,
    now: Millis,
) -> Option<usize> {
    let Job {
        pending,
        rows,
        extra,
        extra_at,
        kind,
        ..
    } = j;
    let mut push = |v: &dyn erased::Row| {
        if *rows > 0 {
            pending.push_back(b',');
        }
        *rows += 1;
        v.write(pending);
    };
    if let Some(at) = *extra_at {
        let end = (at + ROWS_PER_CHUNK).min(extra.len());
        for &mac in &extra[at..end] {
            push(&super::reports::remote_row(sw, mac));
        }
        *extra_at = Some(end);
        return (end < extra.len()).then_some(end);
    }
    let next = match kind {
        ViewKind::Nat(filter) => sw
            .gateway()
            .nat()
            .and_then(|n| n.flows_page(from, ROWS_PER_CHUNK, now, filter, |r| push(&r))),
        ViewKind::Fdb => sw.fdb().entries_page(from, ROWS_PER_CHUNK, now, |e| {
            push(&super::reports::fdb_row(sw, &e));
        }),
    };
    if next.is_none() && !extra.is_empty() {
        *extra_at = Some(0);
        return Some(0);
    }
    next
}

/// Serializing a row of either table into the pending bytes.
mod erased {
    use std::collections::VecDeque;

    pub trait Row {
        fn write(&self, out: &mut VecDeque<u8>);
    }

    impl<T: serde::Serialize> Row for T {
        fn write(&self, out: &mut VecDeque<u8>) {
            let v = serde_json::to_vec(self).expect("a row serializes");
            out.extend(v);
        }
    }
}

/// The reply up to the rows: `{"ok":true,"result":{SUMMARY,"KEY":[`.
pub fn head(summary: &serde_json::Value, key: &str) -> Vec<u8> {
    let mut obj = serde_json::to_string(summary).expect("summary serializes");
    // `summary` is an object: open it up to append the rows' key.
    obj.pop();
    if obj.len() > 1 {
        obj.push(',');
    }
    format!("{{\"ok\":true,\"result\":{obj}\"{key}\":[").into_bytes()
}
