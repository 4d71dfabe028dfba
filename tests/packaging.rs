//! Packaging: shell completions and man pages made from the command-line
//! definitions (no root), and `contrib/vswitchd@.service`, whose command
//! line is run as systemd would run it for an instance (root).

mod common;

use common::*;

const UNIT: &str = include_str!("../contrib/vswitchd@.service");

#[test]
fn completions_for_each_shell_and_both_binaries() {
    for (shell, marker) in [
        ("bash", "complete -F _vswitchctl"),
        ("zsh", "#compdef vswitchctl"),
        ("fish", "complete -c vswitchctl"),
    ] {
        let out = run_ok(VSWITCHCTL, &["completions", shell]);
        assert!(out.contains(marker), "{shell}: {out}");
        assert!(
            out.contains("capture") && out.contains("log-level"),
            "{shell}"
        );
        let out = run_ok(VSWITCHCTL, &["completions", shell, "--daemon"]);
        assert!(
            out.contains(&marker.replace("vswitchctl", "vswitchd")),
            "{shell}: {out}"
        );
        assert!(out.contains("uplink-addr"), "{shell}");
    }
    let out = run(VSWITCHCTL, &["completions", "tcsh"]);
    assert!(!out.status.success());
}

#[test]
fn man_pages_for_both_binaries_and_each_subcommand() {
    let dir = TempDir::new();
    let listed = run_ok(VSWITCHCTL, &["man", &dir.0.to_string_lossy()]);
    for (page, has) in [
        ("vswitchd.8", "\\-\\-uplink\\-addr"),
        ("vswitchctl.8", "capture"),
        ("vswitchctl-capture.8", "\\-\\-pcap"),
        ("vswitchctl-fdb-show.8", "\\-\\-port"),
    ] {
        let path = dir.0.join(page);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
        let name = page.trim_end_matches(".8");
        assert!(text.contains(&format!(".TH {name} 8")), "{page}: {text}");
        assert!(text.contains(has), "{page} lacks {has}");
        assert!(listed.contains(&path.to_string_lossy().into_owned()));
    }
}

/// The unit's `Type=` and `ExecStart=` values.
fn unit_value(key: &str) -> String {
    UNIT.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
        .to_string()
}

#[test]
fn the_systemd_unit_runs_an_instance_named_by_i_from_its_config_file() {
    if !root_or_skip("the_systemd_unit_runs_an_instance_named_by_i_from_its_config_file") {
        return;
    }
    assert_eq!(unit_value("Type"), "notify");
    let exec = unit_value("ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(argv[0], "/usr/local/bin/vswitchd");
    assert_eq!(
        &argv[1..],
        ["--name", "%i", "--config", "/etc/vswitchd/%i.toml"]
    );
    // The instance's file: the shipped example with this test's namespaces
    // (it says name = "vsw0"; the unit's --name %i wins).
    let ns = Namespaces::fresh(2);
    let dir = TempDir::new();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/vswitchd.toml"
    ))
    .unwrap();
    assert!(example.contains("name = \"vsw0\""));
    let toml = example
        .replace("\"ns01\"", &format!("\"{}\"", ns.0[0]))
        .replace("\"ns02\"", &format!("\"{}\"", ns.0[1]));
    let instance = unique("u");
    let file = dir.0.join(format!("{instance}.toml"));
    std::fs::write(&file, toml).unwrap();
    // Run the unit's command line as systemd would for vswitchd@INSTANCE
    // (Daemon waits for READY=1 on NOTIFY_SOCKET, as Type=notify does).
    let file = file.to_string_lossy().into_owned();
    let args: Vec<&str> = argv[3..]
        .iter()
        .map(|a| if a.contains("%i") { file.as_str() } else { a })
        .collect();
    let d = Daemon::start_named(&instance, &args);
    let st = d.ctl_json(&["status"]);
    assert_eq!(st["name"], instance.as_str(), "{st}");
    assert!(ping(&ns.0[0], "192.168.88.12"));
    d.stop();
}
