//! The module layering holds: no module of `src/` imports a module that
//! imports it back (the engine never reaches into the control plane).
//! The check itself is `scripts/module_deps.py`, also runnable by hand.

use std::process::Command;

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/module_deps.py"
        ))
        .output()
        .expect("python3 runs scripts/module_deps.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "import circle:\n{text}");
    // The engine stays below the control plane and the event loop.
    for engine in ["datapath", "gateway", "switch", "wire", "capture", "port"] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(engine))
            .unwrap_or_else(|| panic!("{engine} missing from:\n{text}"));
        for upper in ["control", "event_loop", "daemon", "config"] {
            assert!(
                !line.split("->").nth(1).unwrap_or("").contains(upper),
                "{engine} imports {upper}: {line}"
            );
        }
    }
}
