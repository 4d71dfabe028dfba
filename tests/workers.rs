//! More than one datapath thread (`--workers`).
//!
//! In memory (no root): a worker's frames go through the same pipeline as
//! the event loop's, and what it sends to its queue of multi-queue ports
//! waits in its batch, byte for byte what the event loop would write, in
//! order, counted as sent until a failed write is reported back (and then
//! never charged to a port that took a removed port's id); a full batch
//! drops and counts rather than let a frame overtake.
//!
//! Root: with `--workers 2` every TAP has two queues, sixteen UDP flows
//! are spread over both threads and every datagram arrives intact and in
//! order per flow; ports added and removed while the workers forward come
//! and go whole; captures record what the workers forward; a count outside
//! 1..64 is refused.

mod common;

use common::mem::*;
use common::*;
use std::sync::Arc;
use vswitchd::capture::{Format, Point};
use vswitchd::datapath::queues::QueueSync;
use vswitchd::datapath::{FRAME_BUF, TxBatch, TxFail, TxFailed};
use vswitchd::port::FrameRing;
use vswitchd::port::mem::MemPort;
use vswitchd::switch::DropReason;
use vswitchd::wire::coalesce::GSO_UDP_L4;
use vswitchd::wire::vnet::VNET_HDR_LEN;

/// A ring holding `frames` (each with its virtio-net header) as a worker
/// reads them from its queue.
fn ring_of(frames: &[Vec<u8>]) -> FrameRing {
    let mut ring = FrameRing::new(8, FRAME_BUF);
    for f in frames {
        let i = ring.put(&f[VNET_HDR_LEN..]).unwrap();
        ring.buf_mut(i)[..VNET_HDR_LEN].copy_from_slice(&f[..VNET_HDR_LEN]);
    }
    ring
}

/// The rig with one worker; port 1 has two queues (it takes super-frames),
/// port 2 one.
fn worker_rig() -> Rig {
    let mut r = rig();
    r.ports[1].0.borrow_mut().queues = 2;
    r.sw.set_queue_sync(Arc::new(QueueSync::new(1).unwrap()), 1);
    r
}

#[test]
fn a_workers_frames_for_its_queue_wait_in_its_batch_as_the_event_loop_would_write_them() {
    let run: Vec<_> = (0..4u16)
        .map(|i| datagram(1, 300 + i, 4000, &[i as u8; 100]))
        .collect();
    let to2 = datagram(2, 9, 4000, &[9; 40]);
    let mut input = run.clone();
    input.push(to2.clone());
    input.push(datagram(1, 304, 4000, &[4; 100]));

    // The event loop's way, on a switch without workers.
    let mut one = rig();
    for f in &input {
        one.ports[0].push_rx(f);
    }
    one.sw.poll_port(one.ids[0], 1, 16).unwrap();
    let written = one.ports[1].take_tx();
    assert_eq!(
        written.len(),
        2,
        "a run of four, then one after the other port's"
    );

    let mut r = worker_rig();
    let mut ring = ring_of(&input);
    let mut batch = TxBatch::new(1);
    assert_eq!(r.sw.forward_ring(r.ids[0], &mut ring, &mut batch, 1), 6);
    assert!(
        r.ports[1].take_tx().is_empty(),
        "nothing written to queue 0"
    );
    assert_eq!(
        r.ports[2].take_tx(),
        vec![to2],
        "a one-queue port: written now"
    );
    let items: Vec<_> = batch.iter().map(|(i, f)| (*i, f.to_vec())).collect();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|(i, _)| i.port == r.ids[1]));
    assert_eq!(items[0].1, written[0], "the same super-frame");
    assert_eq!(items[1].1, written[1]);
    assert_eq!((items[0].0.segs, items[1].0.segs), (4, 1));
    assert_eq!(
        VnetHdr::parse(&items[0].1).unwrap().gso_type,
        GSO_UDP_L4,
        "written whole"
    );
    // Counted as sent, as the event loop counts its writes.
    let (a, b) = (
        one.sw.port(one.ids[1]).unwrap().counters,
        r.sw.port(r.ids[1]).unwrap().counters,
    );
    assert_eq!(
        (a.tx_packets, a.tx_bytes, a.tx_coalesced, a.tx_super_frames),
        (b.tx_packets, b.tx_bytes, b.tx_coalesced, b.tx_super_frames)
    );
    assert_eq!(r.sw.thread_frames(), &[0, 6]);
    assert_eq!(r.sw.port(r.ids[0]).unwrap().counters.rx_packets, 6);
}

#[test]
fn failed_deferred_writes_move_from_sent_to_their_drop_reason() {
    let mut r = worker_rig();
    let before = r.sw.port(r.ids[1]).unwrap().counters;
    let frames: Vec<_> = (0..4u16)
        .map(|i| datagram(1, 300 + i, 4000, &[1; 64]))
        .collect();
    let mut batch = TxBatch::new(1);
    r.sw.forward_ring(r.ids[0], &mut ring_of(&frames), &mut batch, 1);
    let single = datagram(1, 400, 4001, &[2; 64]);
    r.sw.forward_ring(r.ids[0], &mut ring_of(&[single]), &mut batch, 1);
    let items: Vec<_> = batch.iter().map(|(i, _)| *i).collect();
    assert_eq!(items.iter().map(|i| i.segs).collect::<Vec<_>>(), [4, 1]);
    // Only EINVAL on a run means the kernel refused the super-frame.
    let eio = std::io::Error::from_raw_os_error(libc::EIO);
    let einval1 = std::io::Error::from_raw_os_error(libc::EINVAL);
    assert_eq!(TxFailed::of(&items[0], &eio).why, TxFail::Error);
    assert_eq!(TxFailed::of(&items[1], &einval1).why, TxFail::Error);
    // The queue was full for the single datagram: the run stays counted.
    let einval = std::io::Error::from_raw_os_error(libc::EINVAL);
    let full = std::io::Error::from(std::io::ErrorKind::WouldBlock);
    r.sw.tx_failed(&[TxFailed::of(&items[1], &full)]);
    let c = r.sw.port(r.ids[1]).unwrap().counters;
    assert_eq!(
        (c.tx_coalesced, c.tx_super_frames),
        (before.tx_coalesced + 4, before.tx_super_frames + 1)
    );
    assert_eq!(c.tx_packets, before.tx_packets + 4);
    // The kernel refused the super-frame.
    r.sw.tx_failed(&[TxFailed::of(&items[0], &einval)]);
    let c = r.sw.port(r.ids[1]).unwrap().counters;
    assert_eq!(
        (c.tx_packets, c.tx_bytes, c.tx_coalesced, c.tx_super_frames),
        (
            before.tx_packets,
            before.tx_bytes,
            before.tx_coalesced,
            before.tx_super_frames
        )
    );
    assert_eq!(c.drops.get(DropReason::BadOffload), 4);
    assert_eq!(c.drops.get(DropReason::TxQueueFull), 1);
    // No more runs to that port: each datagram alone.
    batch.clear();
    r.sw.forward_ring(r.ids[0], &mut ring_of(&frames), &mut batch, 2);
    assert_eq!(
        batch.iter().map(|(i, _)| i.segs).collect::<Vec<_>>(),
        [1, 1, 1, 1]
    );
}

use vswitchd::wire::vnet::VnetHdr;

/// Sends `flows` UDP flows (one socket each) of `n` datagrams round-robin
/// in bursts, then the end marker from each.
const SENDER: &str = r#"
import socket, struct, sys, time
flows, n, addr = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for f in range(flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("", 20000 + f))
    s.connect((addr, 7000))
    socks.append(s)
for seq in range(n):
    for f, s in enumerate(socks):
        size = [60, 60, 300, 1400, 7][(seq + f) % 5]
        s.send(struct.pack("!II", f, seq) + bytes([(seq + f) % 251]) * size)
    if seq % 10 == 9:
        time.sleep(0.002)
time.sleep(0.2)
for s in socks:
    s.send(b"end")
"#;

/// Receives until every flow's end marker (or 5 s of silence); prints
/// `count in_order corrupt flows_seen`.
const RECEIVER: &str = r#"
import socket, struct, sys
flows = int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
s.bind((sys.argv[1], 7000))
s.settimeout(5)
print("ready", flush=True)
count = corrupt = ended = 0
last = {}
in_order = True
while ended < flows:
    try:
        d = s.recv(65535)
    except socket.timeout:
        break
    if d == b"end":
        ended += 1
        continue
    f, seq = struct.unpack("!II", d[:8])
    size = [60, 60, 300, 1400, 7][(seq + f) % 5]
    if d[8:] != bytes([(seq + f) % 251]) * size:
        corrupt += 1
    if seq <= last.get(f, -1):
        in_order = False
    last[f] = seq
    count += 1
print(count, in_order, corrupt, len(last), flush=True)
"#;

/// Runs the flows from `from` to `to_addr` in namespace `to`; returns how
/// many datagrams arrived (asserting intact, in order per flow).
fn flows_through(from: &str, to: &str, to_addr: &str, flows: usize, n: usize) -> usize {
    let (fl, nn) = (flows.to_string(), n.to_string());
    let f = python_pair(
        to,
        RECEIVER,
        &[to_addr, &fl],
        from,
        SENDER,
        &[&fl, &nn, to_addr],
    );
    let (count, in_order, corrupt, seen): (usize, &str, usize, usize) = (
        f[0].parse().unwrap(),
        &f[1],
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
    );
    eprintln!("received {count} of {} in {seen} flows", flows * n);
    assert_eq!(corrupt, 0, "datagrams changed on the way");
    assert_eq!(in_order, "True", "datagrams of a flow reordered");
    assert_eq!(seen, flows, "a flow got nothing through");
    count
}

fn thread_frames(d: &Daemon) -> Vec<u64> {
    d.ctl_json(&["status"])["thread_frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn flows_spread_over_two_threads_and_every_datagram_arrives_in_order() {
    if !root_or_skip("flows_spread_over_two_threads_and_every_datagram_arrives_in_order") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let d = Daemon::start(&["--ports", &ns.csv(), "--workers", "2"]);
    let link = run_ok("ip", &["-n", &ns.0[0], "-d", "link", "show", "eth0"]);
    assert!(link.contains("multi_queue numqueues 2"), "{link}");
    assert!(ping(&ns.0[0], "192.168.88.12"));
    let (flows, n) = (16, 1000);
    let count = flows_through(&ns.0[0], &ns.0[1], "192.168.88.12", flows, n);
    // Nothing is lost on an idle machine; a loaded one may overflow the
    // sender's TAP queue now and then, never more than a few bursts.
    assert!(
        count >= flows * n * 9 / 10,
        "only {count} arrived; ports: {}",
        d.ctl_json(&["ports"])
    );
    // Sixteen flows by hash over two queues: both threads read (all on
    // one queue has odds of 1 in 32768).
    let t = thread_frames(&d);
    eprintln!("frames read by each thread: {t:?}");
    assert_eq!(t.len(), 2);
    assert!(t[0] > 0 && t[1] > 0, "one thread did everything: {t:?}");
    let text = d.ctl(&["status"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("datapath threads 2"));
    d.stop();
}

#[test]
fn ports_come_and_go_whole_while_the_workers_forward() {
    if !root_or_skip("ports_come_and_go_whole_while_the_workers_forward") {
        return;
    }
    let mut ns = Namespaces::fresh(2);
    let d = Daemon::start(&["--ports", &ns.csv(), "--workers", "3"]);
    let extra = Namespaces::fresh(1);
    let c = extra.0[0].clone();
    ns.0.push(c.clone());
    let (a, b) = (ns.0[0].clone(), ns.0[1].clone());
    // Resolved first: datagrams held for ARP are sent after newer ones by
    // the sender's own kernel.
    assert!(ping(&a, "192.168.88.12"));
    let traffic = std::thread::spawn(move || flows_through(&a, &b, "192.168.88.12", 8, 5000));
    for round in 0..5 {
        let out = d.ctl(&["port", "add", &c]);
        assert!(out.status.success(), "round {round}: {out:?}");
        let link = run_ok("ip", &["-n", &c, "-d", "link", "show", "eth0"]);
        assert!(link.contains("numqueues 3"), "{link}");
        assert!(ping(&c, "192.168.88.12"), "round {round}: no path");
        let out = d.ctl(&["port", "del", &c]);
        assert!(out.status.success(), "round {round}: {out:?}");
        assert!(!netns_exists(&c), "round {round}: namespace left behind");
    }
    let count = traffic.join().unwrap();
    assert!(count >= 8 * 5000 * 9 / 10, "only {count} arrived");
    d.stop();
}

#[test]
fn a_worker_count_outside_1_to_64_is_refused_before_anything_is_made() {
    if !root_or_skip("a_worker_count_outside_1_to_64_is_refused_before_anything_is_made") {
        return;
    }
    let ns = Namespaces::fresh(1);
    for n in ["0", "65"] {
        let out = run(
            VSWITCHD,
            &["--name", &unique("w"), "--ports", &ns.csv(), "--workers", n],
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("--workers {n} must be 1..64")),
            "{err}"
        );
        assert!(!netns_exists(&ns.0[0]));
    }
}

/// Frames broadcast from port 0 (flooded to every other port).
fn broadcasts(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut f = vec![0u8; VNET_HDR_LEN];
            f.extend_from_slice(&[0xff; 6]);
            f.extend_from_slice(&mac(0));
            f.extend_from_slice(&[0x88, 0xb5]);
            f.extend_from_slice(&[i as u8; 46]);
            f
        })
        .collect()
}

#[test]
fn a_full_batch_drops_and_counts_what_does_not_fit_rather_than_let_it_overtake() {
    let mut r = worker_rig();
    // 600 more two-queue ports: 8 broadcasts make 4,800 deferred frames,
    // more than a batch holds (4,096).
    let mut extra = Vec::new();
    for i in 0..600u32 {
        let p = MemPort::new();
        p.0.borrow_mut().queues = 2;
        let id = r.sw.add_port(
            p.clone(),
            vswitchd::datapath::PortInfo {
                mac: vswitchd::wire::MacAddr::from_slice(&[2, 1, 0, 0, (i >> 8) as u8, i as u8]),
                name: format!("x{i}"),
                ifname: "eth0".into(),
                addr: std::net::Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8),
                prefix_len: 24,
                security: false,
            },
        );
        extra.push((id, p));
    }
    let mut batch = TxBatch::new(1);
    r.sw.forward_ring(r.ids[0], &mut ring_of(&broadcasts(8)), &mut batch, 1);
    assert_eq!(batch.len(), 4096, "filled");
    let mut dropped = 0;
    for (id, p) in &extra {
        assert!(p.take_tx().is_empty(), "nothing written around the batch");
        let c = r.sw.port(*id).unwrap().counters;
        let full = c.drops.get(DropReason::TxQueueFull);
        assert_eq!(c.tx_packets + full, 8, "each frame sent or counted");
        dropped += full;
    }
    // Port 1 (two queues) shares the batch; port 2 (one queue) was written.
    let c1 = r.sw.port(r.ids[1]).unwrap().counters;
    dropped += c1.drops.get(DropReason::TxQueueFull);
    assert_eq!(dropped, 601 * 8 - 4096);
    assert_eq!(r.ports[2].take_tx().len(), 8);
}

#[test]
fn a_failed_write_reported_after_its_port_went_is_not_charged_to_the_port_that_took_its_id() {
    let mut r = worker_rig();
    let mut batch = TxBatch::new(1);
    let f = datagram(1, 300, 4000, &[1; 64]);
    r.sw.forward_ring(r.ids[0], &mut ring_of(&[f]), &mut batch, 1);
    let item = *batch.iter().next().unwrap().0;
    let gone = r.sw.remove_port(r.ids[1]).unwrap();
    let p = MemPort::new();
    p.0.borrow_mut().queues = 2;
    let id = r.sw.add_port(p, gone.info.clone());
    assert_eq!(id, r.ids[1], "the id is reused");
    assert_ne!(r.sw.port(id).unwrap().serial, item.serial);
    let full = std::io::Error::from(std::io::ErrorKind::WouldBlock);
    r.sw.tx_failed(&[TxFailed::of(&item, &full)]);
    let c = r.sw.port(id).unwrap().counters;
    assert_eq!((c.tx_packets, c.drop_total()), (0, 0));
}

#[test]
fn captures_see_the_frames_the_workers_forward() {
    if !root_or_skip("captures_see_the_frames_the_workers_forward") {
        return;
    }
    let ns = Namespaces::fresh(2);
    let d = Daemon::start(&["--ports", &ns.csv(), "--workers", "2"]);
    assert!(ping(&ns.0[0], "192.168.88.12"));
    let dir = TempDir::new();
    let file = dir.0.join("cap.pcapng");
    let mut cap = start_capture(&d, &["--port", &ns.0[1], "-c", "500"], &file);
    flows_through(&ns.0[0], &ns.0[1], "192.168.88.12", 16, 200);
    let st = wait_child(&mut cap, std::time::Duration::from_secs(10));
    assert!(st.is_some_and(|s| s.success()), "capture: {st:?}");
    let frames = pcap_frame_lengths(&std::fs::read(&file).unwrap()).len();
    assert_eq!(frames, 500);
    let t = thread_frames(&d);
    assert!(t[0] > 0 && t[1] > 0, "one thread did everything: {t:?}");
    d.stop();
}

#[test]
fn a_worker_wakes_the_event_loop_only_when_a_capture_or_monitor_wants_what_it_forwarded() {
    let mut r = rig();
    let sync = Arc::new(QueueSync::new(1).unwrap());
    r.sw.set_queue_sync(Arc::clone(&sync), 1);
    let woken = || sync.main_wake_fd().read().is_ok();
    let mut batch = TxBatch::new(1);
    let f = || vec![datagram(2, 1, 4000, &[1; 20])];
    r.sw.forward_ring(r.ids[0], &mut ring_of(&f()), &mut batch, 1);
    assert!(!woken(), "nothing to write out");
    r.sw.capture_start(7, vec![Point::Port(r.ids[2])], None, Format::PcapNg);
    r.sw.forward_ring(r.ids[0], &mut ring_of(&f()), &mut batch, 1);
    assert!(woken(), "a capture");
    assert!(r.sw.capture_end(7).is_some());
    r.sw.monitor_start(8, "test");
    r.sw.forward_ring(r.ids[0], &mut ring_of(&f()), &mut batch, 1);
    assert!(woken(), "a monitor");
}
