//! The bulk transfer, in its own test binary so it never runs beside the
//! tests that time things (cargo runs test binaries one after another).

mod common;

use common::*;
use std::time::{Duration, Instant};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// 1 GiB from the wan host through the NAT arrives intact, as super-frames:
/// frames far over the 1514-byte MTU frame cross the namespace's port
/// (that is what the offloads are for), within a time a user would accept.
#[test]
fn one_gigabyte_through_nat_with_offloads_arrives_intact() {
    if !root_or_skip("one_gigabyte_through_nat_with_offloads_arrives_intact") {
        return;
    }
    let ns = Namespaces::fresh(1);
    let wan = WanHost::new();
    let d = start_with_uplink(&ns, &wan, &[]);
    let dir = TempDir::new();
    write_pattern(&dir.0.join("1g.bin"), 1 << 30);
    let want = run_ok("sha256sum", &[&dir.0.join("1g.bin").to_string_lossy()]);
    let dir_s = dir.0.to_string_lossy().into_owned();
    let _http = http_server(&wan.ns, WAN_HOST, &dir_s);
    // What the namespace's kernel receives from the TAP.
    let pcap = dir.0.join("ns.pcap");
    let mut dump = tcpdump_to_file(&ns.0[0], "eth0", 400, &pcap);
    // About 10 s on a loaded 2-core VM (debug build); 60 s is a failure.
    let t0 = Instant::now();
    let cmd = format!("curl -sS --max-time 60 http://{WAN_HOST}:8080/1g.bin | sha256sum");
    let out = ns_exec(&ns.0[0], &["sh", "-c", &cmd]);
    let took = t0.elapsed();
    eprintln!("1 GiB in {took:?}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out).split_whitespace().next(),
        want.split_whitespace().next(),
        "1 GiB download differs"
    );
    assert!(
        dump.wait(Duration::from_secs(5))
            .is_some_and(|s| s.success()),
        "tcpdump did not see 400 frames"
    );
    let lens = pcap_frame_lengths(&std::fs::read(&pcap).unwrap());
    let max = lens.iter().max().copied().unwrap_or(0);
    assert!(
        max > 1514,
        "no super-frame reached the namespace (largest {max})"
    );
    // It went through the NAT (one TCP flow, many packets in).
    let nat = d.ctl_json(&["nat", "show"]);
    assert!(
        nat["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["proto"] == "tcp" && f["packets_in"].as_u64().unwrap_or(0) > 1000),
        "{nat}"
    );
    d.stop();
}
