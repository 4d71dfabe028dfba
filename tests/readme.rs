//! The README's commands, run as written, so the README cannot drift: every
//! ```sh block marked `<!-- readme-test: NAME -->` runs in bash with the
//! built `vswitchd` and `vswitchctl` first on the PATH (and in place of
//! `./target/release/...`). A block marked "(with step 1 running)" runs
//! while the quick start's `vswitchd --ports ns01,ns02` does.
//!
//! The blocks use the README's own names (ns01, ns02, ns03, wan, up0, the
//! instance vsw0), so the test only runs when none of them exists (it says
//! so and passes otherwise: a user may be following the quick start while
//! the tests run). A command that fails fails the test (except `kill` and
//! `wait`, whose status is a killed job's); whatever the blocks started is
//! stopped by PID and what they created is deleted, also on failure.

mod common;

use common::*;
use std::process::Command;

const NAMES: &[&str] = &["ns01", "ns02", "ns03", "wan"];

/// The marked blocks: (name, script).
fn blocks() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        let Some(name) = l
            .strip_prefix("<!-- readme-test: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(
            lines.next(),
            Some("```sh"),
            "block {name}: a ```sh fence must follow its marker"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        out.push((name.to_string(), body.join("\n")));
    }
    out
}

/// Makes a block runnable unattended: each background job's PID is
/// recorded (so it is stopped whatever happens), and after a `vswitchd`
/// started in the background the script waits until it answers, as a
/// person would before typing on.
fn prepare(script: &str) -> String {
    let script = script.replace("./target/release/vswitchctl", "vswitchctl");
    let mut out = String::new();
    let mut logical = String::new();
    for line in script.lines() {
        logical.push_str(line);
        if let Some(cont) = logical.strip_suffix('\\') {
            logical = format!("{cont} ");
            continue;
        }
        let code = logical.split(" #").next().unwrap().trim_end().to_string();
        if code.ends_with('&') {
            out.push_str(&format!("{code} echo $! >> \"$PIDS\"\n"));
            if code.trim_start().starts_with("vswitchd ") {
                out.push_str(
                    "timeout 30 bash -c 'until vswitchctl status >/dev/null 2>&1; do sleep 0.1; done'\n",
                );
            }
        } else {
            out.push_str(&logical);
            out.push('\n');
        }
        logical.clear();
    }
    out
}

/// Stops what the blocks started and deletes what they created.
struct Cleanup {
    pids: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let pids = std::fs::read_to_string(&self.pids).unwrap_or_default();
        for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            // SAFETY: kill(2) with a PID this test's script started.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        for pid in pids.lines().filter_map(|p| p.trim().parse::<u32>().ok()) {
            let proc = format!("/proc/{pid}");
            wait_until(std::time::Duration::from_secs(5), || {
                !std::path::Path::new(&proc).exists()
            });
        }
        let _ = Command::new("ip").args(["link", "del", "up0"]).output();
        for n in NAMES {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
        for d in ["/tmp/www-ns01", "/tmp/www-ns02"] {
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = std::fs::remove_file("/tmp/ns01.pcap");
    }
}

#[test]
fn the_readme_commands_work_as_written() {
    if !root_or_skip("the_readme_commands_work_as_written") {
        return;
    }
    let taken: Vec<&str> = NAMES.iter().copied().filter(|n| netns_exists(n)).collect();
    let up0 = std::path::Path::new("/sys/class/net/up0").exists();
    let vsw0 = run(VSWITCHCTL, &["status"]).status.success();
    if !taken.is_empty() || up0 || vsw0 {
        eprintln!(
            "the_readme_commands_work_as_written: not run: the README's names are in use here (namespaces {taken:?}, up0: {up0}, instance vsw0 running: {vsw0})"
        );
        return;
    }
    let blocks = blocks();
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "try it (with step 1 running)",
            "with an uplink",
            "seed 000",
            "published ports"
        ]
    );
    let bin = TempDir::new();
    for b in [VSWITCHD, VSWITCHCTL] {
        let name = std::path::Path::new(b).file_name().unwrap();
        std::os::unix::fs::symlink(b, bin.0.join(name)).unwrap();
    }
    let pids = bin.0.join("pids");
    let _cleanup = Cleanup { pids: pids.clone() };
    let path = format!(
        "{}:{}",
        bin.0.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (name, script) in &blocks {
        let mut body = prepare(script);
        if name.contains("with step 1 running") {
            body = prepare("vswitchd --ports ns01,ns02 &\n") + &body + "kill %1; wait\n";
        }
        let full = format!(
            "failed=0\ntrap 'case \"$BASH_COMMAND\" in kill*|wait*) ;; *) echo \"README command failed: $BASH_COMMAND\" >&2; failed=1 ;; esac' ERR\n{body}\nexit $failed\n"
        );
        let out = Command::new("timeout")
            .args(["120", "bash", "-c", &full])
            .env("PATH", &path)
            .env("PIDS", &pids)
            .output()
            .unwrap();
        let text = stdout(&out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "block {name:?} failed:\n{err}\n--- stdout:\n{text}"
        );
        let want: &[&str] = match name.as_str() {
            "try it (with step 1 running)" => &["3 received", "gateway"],
            "with an uplink" => &["3 received", "src=192.168.88.11 dst=10.99.0.1"],
            "seed 000" => &[
                "192.168.88.11/24",
                "default via 192.168.88.1",
                "1 received",
                "src=192.168.88.12 dst=10.99.0.1",
            ],
            _ => &[
                "hello from ns01",
                "hello from ns02",
                "IP 10.99.0.1.",
                "[published 8080/tcp -> ns01]",
                "to published 8080/tcp: backend",
            ],
        };
        for w in want {
            assert!(
                text.contains(w),
                "block {name:?}: no {w:?} in\n{text}\n{err}"
            );
        }
        for n in NAMES {
            assert!(
                !netns_exists(n) || *n == "ns03",
                "block {name:?} left namespace {n}"
            );
        }
    }
}
