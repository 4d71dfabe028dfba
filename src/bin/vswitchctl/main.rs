//! `vswitchctl`: talk to a running vswitchd over its control socket.
//! Sends one request, prints the reply as text (or as JSON with `--json`).

use clap::Parser;
use std::process::ExitCode;
use vswitchd::control::proto::Request;

mod cli;
mod client;
mod print;
mod text;
use cli::{Cli, Cmd, FdbCmd, NatCmd, PortCmd, PublishCmd};
use client::{call, capture, list, monitor};
use text::{print_text, show};

/// `completions` and `man`: made from the command-line definitions, no
/// daemon involved.
fn local_command(cmd: &Cmd) -> Option<Result<(), String>> {
    use clap::CommandFactory;
    match cmd {
        Cmd::Completions { shell, daemon } => {
            let (mut c, name) = if *daemon {
                (vswitchd::config::Cli::command(), "vswitchd")
            } else {
                (Cli::command(), "vswitchctl")
            };
            clap_complete::generate(*shell, &mut c, name, &mut std::io::stdout());
            Some(Ok(()))
        }
        Cmd::Man { dir } => Some(write_man_pages(dir)),
        _ => None,
    }
}

/// One page per command and subcommand (`vswitchctl-fdb-show.8`...).
fn write_man_pages(dir: &std::path::Path) -> Result<(), String> {
    use clap::CommandFactory;
    fn walk(cmd: clap::Command, name: String, dir: &std::path::Path) -> Result<(), String> {
        let cmd = cmd.name(name.clone());
        let path = dir.join(format!("{name}.8"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .section("8")
            .render(&mut out)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::write(&path, out).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{}", path.display());
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), format!("{name}-{}", sub.get_name()), dir)?;
        }
        Ok(())
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    walk(vswitchd::config::Cli::command(), "vswitchd".into(), dir)?;
    walk(Cli::command(), "vswitchctl".into(), dir)
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our
    // output goes away (`vswitchctl fdb show | head -1`) instead of
    // panicking on EPIPE: restore the default action of SIGPIPE.
    // SAFETY: called before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Some(r) = local_command(&cli.cmd) {
        return match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vswitchctl: error: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Cmd::Show { format } = &cli.cmd {
        return match show(&cli.name, format, cli.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vswitchctl: error: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Cmd::List = cli.cmd {
        return match list(cli.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vswitchctl: error: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Cmd::Capture {
        ports,
        uplink,
        gateway,
        count,
        write,
        pcap,
    } = &cli.cmd
    {
        let req = Request::Capture {
            ports: ports.clone(),
            uplink: *uplink,
            gateway: *gateway,
            count: *count,
            pcap: *pcap,
        };
        return match capture(&cli.name, &req, write) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vswitchctl: error: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Cmd::Monitor = &cli.cmd {
        return match monitor(&cli.name, cli.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vswitchctl: error: {e}");
                ExitCode::from(1)
            }
        };
    }
    let req = match &cli.cmd {
        Cmd::Status => Request::Status,
        Cmd::Ports => Request::Ports,
        Cmd::Fdb { cmd } => match cmd {
            FdbCmd::Show { .. } => Request::FdbShow,
            FdbCmd::Flush { port } => Request::FdbFlush { port: port.clone() },
            FdbCmd::Add { mac, port } => Request::FdbAdd {
                mac: *mac,
                port: port.clone(),
            },
            FdbCmd::Del { mac } => Request::FdbDel { mac: *mac },
        },
        Cmd::Nat {
            cmd:
                NatCmd::Show {
                    proto,
                    port,
                    inside,
                },
        } => Request::NatShow {
            proto: proto.clone(),
            port: port.clone(),
            inside: *inside,
        },
        Cmd::Nat {
            cmd: NatCmd::Del { proto, src, dst },
        } => Request::NatDel {
            proto: proto.clone(),
            src: *src,
            dst: *dst,
        },
        Cmd::Nat { cmd: NatCmd::Flush } => Request::NatFlush,
        Cmd::Publish { cmd } => match cmd {
            PublishCmd::Show => Request::PublishShow,
            PublishCmd::Add { spec } => Request::PublishAdd { spec: spec.clone() },
            PublishCmd::Del { front } => Request::PublishDel {
                front: front.clone(),
            },
        },
        Cmd::Routes => Request::Routes,
        Cmd::Capture { .. } | Cmd::List | Cmd::Show { .. } | Cmd::Monitor => {
            unreachable!("handled above")
        }
        Cmd::Completions { .. } | Cmd::Man { .. } => unreachable!("handled above"),
        Cmd::Trace {
            port,
            uplink,
            frame,
        } => Request::Trace {
            port: port.clone().unwrap_or_default(),
            uplink: *uplink,
            frame: frame.join(" "),
        },
        Cmd::Port {
            cmd:
                PortCmd::Add {
                    spec,
                    port_security,
                    no_port_security,
                },
        } => Request::PortAdd {
            spec: spec.clone(),
            security: match (port_security, no_port_security) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
        },
        Cmd::Port {
            cmd: PortCmd::Del { port },
        } => Request::PortDel { port: port.clone() },
        Cmd::Neigh => Request::Neigh,
        Cmd::Overlay => Request::Overlay,
        Cmd::LogLevel { level } => Request::LogLevel {
            level: level.clone(),
        },
    };
    let reply = match call(&cli.name, &req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vswitchctl: error: {e}");
            return ExitCode::from(1);
        }
    };
    if !reply.ok {
        eprintln!(
            "vswitchctl: error: {}",
            reply
                .error
                .as_deref()
                .unwrap_or("the daemon refused the request")
        );
        return ExitCode::from(1);
    }
    let result = reply.result.unwrap_or(serde_json::Value::Null);
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&result).expect("json"));
        return ExitCode::SUCCESS;
    }
    match print_text(&cli.cmd, result) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchctl: error: {e}");
            ExitCode::from(1)
        }
    }
}
