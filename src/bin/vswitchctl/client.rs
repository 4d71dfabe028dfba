//! Talking to the daemon over its control socket: one request and its
//! reply, the running instances, and the streams of `monitor` and `capture`.

use crate::print::{describe_event, print_table};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use vswitchd::control::proto::{Reply, Request, StatusReply, socket_path};

/// Connects to instance `name`'s control socket, with an error that says
/// what to do.
fn connect(name: &str) -> Result<UnixStream, String> {
    let path = socket_path(name);
    UnixStream::connect(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            let running = running_instances();
            format!(
                "no vswitchd instance named {name} is running ({}: {e}); {}",
                path.display(),
                if running.is_empty() {
                    "none is running".to_string()
                } else {
                    format!("running: {} (pick one with --name)", running.join(", "))
                }
            )
        }
        std::io::ErrorKind::PermissionDenied => format!(
            "permission denied on {}: the control socket is root's (mode 0600, and the daemon accepts only uid 0); run vswitchctl as root",
            path.display()
        ),
        _ => format!("cannot connect to {}: {e}", path.display()),
    })
}

/// The result of one request, or the daemon's error.
pub(super) fn ask(name: &str, req: &Request) -> Result<serde_json::Value, String> {
    let r = call(name, req)?;
    if !r.ok {
        return Err(r.error.unwrap_or_default());
    }
    Ok(r.result.unwrap_or_default())
}

pub(super) fn call(name: &str, req: &Request) -> Result<Reply, String> {
    let path = socket_path(name);
    let mut s = connect(name)?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = serde_json::to_vec(req).expect("request serializes");
    line.push(b'\n');
    s.write_all(&line)
        .map_err(|e| format!("cannot send to {}: {e}", path.display()))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("no reply from {}: {e}", path.display()))?;
    serde_json::from_slice(&buf).map_err(|e| format!("bad reply from {}: {e}", path.display()))
}

pub(super) fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| format!("unexpected reply: {e}"))
}

/// Instances whose control socket accepts a connection, by name.
fn running_instances() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(vswitchd::control::proto::RUN_DIR) else {
        return Vec::new();
    };
    let mut v: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".sock").map(str::to_string))
        .filter(|n| UnixStream::connect(socket_path(n)).is_ok())
        .collect();
    v.sort();
    v
}

/// `list`: each running instance with its subnet, ports and uptime.
pub(super) fn list(json: bool) -> Result<(), String> {
    let mut rows = Vec::new();
    for name in running_instances() {
        match call(&name, &Request::Status) {
            Ok(r) if r.ok => rows.push((name, r.result.unwrap_or_default())),
            Ok(r) => rows.push((
                name,
                serde_json::json!({ "error": r.error.unwrap_or_default() }),
            )),
            Err(e) => rows.push((name, serde_json::json!({ "error": e }))),
        }
    }
    if json {
        let v: serde_json::Map<String, serde_json::Value> = rows.into_iter().collect();
        println!("{}", serde_json::Value::Object(v));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no vswitchd instance is running");
        return Ok(());
    }
    let rows = rows
        .into_iter()
        .map(
            |(name, st)| match serde_json::from_value::<StatusReply>(st.clone()) {
                Ok(s) => vec![
                    name,
                    s.subnet,
                    s.ports.to_string(),
                    format!("{}s", s.uptime_secs),
                ],
                Err(_) => vec![
                    name,
                    format!("({})", st["error"].as_str().unwrap_or("?")),
                    String::new(),
                    String::new(),
                ],
            },
        )
        .collect();
    print_table(&["NAME", "SUBNET", "PORTS", "UPTIME"], &[2, 3], rows);
    Ok(())
}

/// `monitor`: the daemon's event lines, as they come, printed for a person
/// (or passed on as they are with --json) until the daemon or the reader
/// goes.
pub(super) fn monitor(name: &str, json: bool) -> Result<(), String> {
    use std::io::BufRead;
    use vswitchd::datapath::events::Event;
    let mut s = connect(name)?;
    let mut line = serde_json::to_vec(&Request::Monitor).expect("request serializes");
    line.push(b'\n');
    s.write_all(&line)
        .map_err(|e| format!("cannot send to {}: {e}", socket_path(name).display()))?;
    let mut out = std::io::stdout().lock();
    for l in std::io::BufReader::new(s).lines() {
        let l = l.map_err(|e| format!("event stream: {e}"))?;
        let text = if json {
            l
        } else {
            let v: serde_json::Value =
                serde_json::from_str(&l).map_err(|e| format!("bad event {l:?}: {e}"))?;
            if v.get("ok") == Some(&serde_json::Value::Bool(false)) {
                return Err(v["error"].as_str().unwrap_or("monitor refused").to_string());
            }
            let at = v["at_ms"].as_u64().unwrap_or(0);
            let e: Event =
                serde_json::from_value(v).map_err(|e| format!("bad event {l:?}: {e}"))?;
            format!("{:>9.3} {}", at as f64 / 1000.0, describe_event(&e))
        };
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            return Ok(()); // the reader went (a closed pipe)
        }
    }
    Ok(())
}

/// Streams a capture to a file or standard output until the daemon ends it
/// (count reached) or the output goes away.
pub(super) fn capture(name: &str, req: &Request, write: &str) -> Result<(), String> {
    use std::io::IsTerminal;
    if write == "-" && std::io::stdout().is_terminal() {
        return Err(
            "refusing to write pcap to a terminal: use -w FILE, or pipe into tcpdump -r -".into(),
        );
    }
    let mut s = connect(name)?;
    let mut line = serde_json::to_vec(req).expect("request serializes");
    line.push(b'\n');
    s.write_all(&line)
        .map_err(|e| format!("cannot send to {}: {e}", socket_path(name).display()))?;
    let mut buf = vec![0u8; 256 * 1024];
    let n = s.read(&mut buf).map_err(|e| format!("no reply: {e}"))?;
    if n > 0 && buf[0] == b'{' {
        let mut all = buf[..n].to_vec();
        let _ = s.read_to_end(&mut all);
        let reply: Reply = serde_json::from_slice(&all).map_err(|e| format!("bad reply: {e}"))?;
        return Err(reply.error.unwrap_or_else(|| "capture refused".into()));
    }
    let mut out: Box<dyn Write> = if write == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(write).map_err(|e| format!("cannot create {write}: {e}"))?)
    };
    let mut chunk = &buf[..n];
    loop {
        if chunk.is_empty() {
            break;
        }
        match out.write_all(chunk).and_then(|_| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(format!("cannot write {write}: {e}")),
        }
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("capture stream: {e}"))?;
        chunk = &buf[..n];
    }
    Ok(())
}
