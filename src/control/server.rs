//! The control socket's plumbing: a non-blocking Unix listener and its
//! connections, serviced from the datapath's epoll loop so that requests
//! run between frame batches with no locks. One request line in, one reply
//! out, then the connection closes. A slow client never blocks the loop:
//! partial reads and writes wait for the next readiness event.

use super::api::{Reply, Request};
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Most simultaneous control connections; the oldest is dropped beyond it.
const MAX_CLIENTS: usize = 64;
/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

struct Client {
    stream: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    replying: bool,
}

pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    clients: BTreeMap<u64, Client>,
    next_id: u64,
}

impl ControlServer {
    /// Binds `path` (mode 0600), replacing a stale socket file. The caller
    /// holds the instance lock, so nothing live is replaced.
    pub fn bind(path: &Path) -> io::Result<ControlServer> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            clients: BTreeMap::new(),
            next_id: 0,
        })
    }

    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// Accepts every pending connection.
    pub fn accept(&mut self, epoll: &Epoll) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("control socket accept failed: {e}");
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.clients.len() >= MAX_CLIENTS
                && let Some((&oldest, _)) = self.clients.iter().next()
            {
                self.close(epoll, oldest);
            }
            let token = crate::datapath::TOKEN_CLIENT_BASE + self.next_id;
            self.next_id += 1;
            if epoll
                .add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, token))
                .is_err()
            {
                continue;
            }
            self.clients.insert(
                token,
                Client {
                    stream,
                    inbuf: Vec::new(),
                    out: Vec::new(),
                    written: 0,
                    replying: false,
                },
            );
        }
    }

    /// Services connection `token`: reads its request, runs `handler` once a
    /// full line is in, and writes the reply as the socket allows.
    pub fn service(
        &mut self,
        epoll: &Epoll,
        token: u64,
        _events: EpollFlags,
        handler: impl FnOnce(Request) -> Reply,
    ) {
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        if !c.replying {
            let mut eof = false;
            let mut chunk = [0u8; 4096];
            loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => c.inbuf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        self.close(epoll, token);
                        return;
                    }
                }
                if c.inbuf.len() > MAX_REQUEST {
                    break;
                }
            }
            let line_end = c.inbuf.iter().position(|&b| b == b'\n');
            let reply = if let Some(end) = line_end {
                match serde_json::from_slice::<Request>(&c.inbuf[..end]) {
                    Ok(req) => handler(req),
                    Err(e) => Reply::err(format!("bad request: {e}")),
                }
            } else if c.inbuf.len() > MAX_REQUEST {
                Reply::err("bad request: longer than 64 KiB")
            } else if eof {
                if c.inbuf.is_empty() {
                    self.close(epoll, token);
                    return;
                }
                match serde_json::from_slice::<Request>(&c.inbuf) {
                    Ok(req) => handler(req),
                    Err(e) => Reply::err(format!("bad request: {e}")),
                }
            } else {
                return; // wait for the rest of the line
            };
            let mut out = serde_json::to_vec(&reply).expect("reply serializes");
            out.push(b'\n');
            c.out = out;
            c.replying = true;
            let _ = epoll.modify(&c.stream, &mut EpollEvent::new(EpollFlags::EPOLLOUT, token));
        }
        loop {
            match c.stream.write(&c.out[c.written..]) {
                Ok(n) => {
                    c.written += n;
                    if c.written == c.out.len() {
                        self.close(epoll, token);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close(epoll, token);
                    return;
                }
            }
        }
    }

    fn close(&mut self, epoll: &Epoll, token: u64) {
        if let Some(c) = self.clients.remove(&token) {
            let _ = epoll.delete(&c.stream);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
