//! `vswitchctl monitor`: what the switch does, as it happens (like `bridge
//! monitor fdb` and `conntrack -E`): MAC entries learned, moved, aged and
//! evicted, ports added and removed, NAT flows created and ended, the
//! gateway's own events (uplink address, NAT table full).
//!
//! Cheap when no one watches: every producer asks [`Monitors::on`] before
//! building an event. Each watcher has a bounded buffer (JSON lines); a
//! reader that falls behind loses events, counted, and never slows the
//! switch.

use crate::gateway::nat::Tuple;
use crate::switch::Millis;
use crate::wire::MacAddr;
use std::collections::VecDeque;
use std::net::Ipv4Addr;

/// Bytes buffered per watcher at most; beyond, events are dropped.
pub const PENDING_MAX: usize = 256 * 1024;

/// One event, as `monitor --json` prints it (one JSON object per line).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The first line of every stream.
    Monitoring {
        instance: String,
    },
    MacLearned {
        mac: MacAddr,
        port: String,
    },
    MacMoved {
        mac: MacAddr,
        from: String,
        to: String,
    },
    MacAged {
        mac: MacAddr,
        port: String,
    },
    /// Evicted from a full table (the oldest of the port holding the most).
    MacEvicted {
        mac: MacAddr,
        port: String,
    },
    PortAdded {
        port: String,
        addr: Ipv4Addr,
    },
    PortRemoved {
        port: String,
    },
    NatCreated {
        proto: String,
        original: Tuple,
        reply: Tuple,
    },
    NatEnded {
        proto: String,
        original: Tuple,
        reply: Tuple,
    },
    /// The gateway's own news (uplink address gained or lost, NAT table
    /// full), as logged.
    Gateway {
        message: String,
    },
    /// Events this watcher lost because it read too slowly.
    Lost {
        events: u64,
    },
}

struct Watcher {
    token: u64,
    pending: VecDeque<u8>,
    lost: u64,
}

/// The watchers of one switch.
#[derive(Default)]
pub struct Monitors {
    watchers: Vec<Watcher>,
}

impl Monitors {
    /// Whether anyone watches (producers check before building an event).
    pub fn on(&self) -> bool {
        !self.watchers.is_empty()
    }

    pub fn start(&mut self, token: u64, instance: &str) {
        let mut w = Watcher {
            token,
            pending: VecDeque::new(),
            lost: 0,
        };
        push(
            &mut w,
            0,
            &Event::Monitoring {
                instance: instance.to_string(),
            },
        );
        self.watchers.push(w);
    }

    pub fn end(&mut self, token: u64) {
        self.watchers.retain(|w| w.token != token);
    }

    pub fn tokens(&self) -> Vec<u64> {
        self.watchers.iter().map(|w| w.token).collect()
    }

    /// The bytes waiting for watcher `token`.
    pub fn pending(&mut self, token: u64) -> Option<&mut VecDeque<u8>> {
        let w = self.watchers.iter_mut().find(|w| w.token == token)?;
        if w.lost > 0 && w.pending.len() < PENDING_MAX / 2 {
            let lost = std::mem::take(&mut w.lost);
            push(w, 0, &Event::Lost { events: lost });
        }
        Some(&mut w.pending)
    }

    /// Sends `e` (at `now`) to every watcher.
    pub fn emit(&mut self, now: Millis, e: Event) {
        for w in &mut self.watchers {
            push(w, now, &e);
        }
    }
}

fn push(w: &mut Watcher, now: Millis, e: &Event) {
    if w.pending.len() >= PENDING_MAX {
        w.lost += 1;
        return;
    }
    #[derive(serde::Serialize)]
    struct Line<'a> {
        at_ms: Millis,
        #[serde(flatten)]
        e: &'a Event,
    }
    let v = serde_json::to_vec(&Line { at_ms: now, e }).expect("an event serializes");
    w.pending.extend(v);
    w.pending.push_back(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_each_watcher_and_a_slow_one_loses_them_counted() {
        let mut m = Monitors::default();
        assert!(!m.on());
        m.start(1, "vsw0");
        m.start(2, "vsw0");
        let mac = MacAddr::from_u64(0x0200_0000_0011);
        m.emit(
            5,
            Event::MacLearned {
                mac,
                port: "ns01".into(),
            },
        );
        let text = String::from_utf8(m.pending(1).unwrap().drain(..).collect()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains(r#""event":"monitoring""#), "{text}");
        assert_eq!(
            lines[1],
            r#"{"at_ms":5,"event":"mac_learned","mac":"02:00:00:00:00:11","port":"ns01"}"#
        );
        // Watcher 2 never reads: its buffer stops at the bound.
        for _ in 0..20_000 {
            m.emit(
                6,
                Event::PortRemoved {
                    port: "ns01".into(),
                },
            );
        }
        let p = m.pending(2).unwrap();
        assert!(p.len() <= PENDING_MAX + 200, "{}", p.len());
        p.clear();
        let p = String::from_utf8(m.pending(2).unwrap().drain(..).collect()).unwrap();
        assert!(p.contains(r#""event":"lost""#), "{p}");
        m.end(1);
        m.end(2);
        assert!(!m.on());
    }
}
