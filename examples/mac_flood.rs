//! One idea: the MAC table's fair eviction. A port flooding random source
//! MACs fills the table and then evicts its own oldest entries, never the
//! other ports'. Run: `cargo run --example mac_flood`.

use vswitchd::switch::{Fdb, Learned};
use vswitchd::wire::MacAddr;

fn main() {
    let mut fdb = Fdb::new(300_000, 8);
    // Two quiet ports with one host each.
    let a: MacAddr = "02:00:00:00:00:0a".parse().unwrap();
    let b: MacAddr = "02:00:00:00:00:0b".parse().unwrap();
    fdb.learn(a, 1, 0);
    fdb.learn(b, 2, 0);
    // Port 3 sends from 1000 random MACs.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for t in 1..=1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mac = MacAddr::from_u64((x & 0xfcff_ffff_ffff) | 0x0200_0000_0000);
        if let Learned::New {
            evicted: Some((old, port)),
        } = fdb.learn(mac, 3, t)
            && t > 995
        {
            println!("learned {mac} on port 3, evicted {old} from port {port}");
        }
    }
    let port_of = |m| match fdb.lookup(m, 1000) {
        Some(p) => format!("still on port {p}"),
        None => "gone".to_string(),
    };
    println!(
        "table: {} of {} entries; {a} (port 1): {}; {b} (port 2): {}",
        fdb.len(),
        fdb.max_entries(),
        port_of(a),
        port_of(b)
    );
    let st = fdb.stats();
    println!(
        "counters: learned {}, evicted {}, expired {}, moved {}, refused {}",
        st.learned, st.evicted, st.expired, st.moved, st.refused
    );
}
