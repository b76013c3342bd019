//! `-monitor unix:PATH,server,nowait`: the control socket (docs/monitor.md).
//!
//! One client at a time; when it disconnects the next one is accepted (clients come and go,
//! the VM keeps running). Each client gets the greeting and a prompt, then sends one command per
//! line and reads the reply up to the next prompt. Unlike QEMU, input is not echoed back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use vessel_core::vm::Commander;

use super::{greeting, Monitor, PROMPT};

/// A parsed `unix:PATH[,server[=on]][,nowait|,wait=off]` spec.
#[derive(Debug, PartialEq, Eq)]
pub struct UnixSpec {
    pub path: PathBuf,
    /// Wait for the first client before the VM starts (QEMU's default without `nowait`).
    pub wait: bool,
}

pub fn parse_unix(spec: &str) -> Result<UnixSpec> {
    let rest = spec.strip_prefix("unix:").context("not a unix: spec")?;
    let mut parts = rest.split(',');
    let path = PathBuf::from(parts.next().unwrap_or(""));
    if path.as_os_str().is_empty() {
        bail!("-monitor {spec}: no socket path");
    }
    let mut server = false;
    let mut wait = true;
    for p in parts {
        match p {
            "server" | "server=on" => server = true,
            "nowait" | "wait=off" => wait = false,
            "wait" | "wait=on" => wait = true,
            "server=off" => server = false,
            other => bail!("-monitor {spec}: unknown option {other:?} (supported: server, nowait)"),
        }
    }
    if !server {
        bail!("-monitor {spec}: only server sockets are supported (add ,server,nowait)");
    }
    Ok(UnixSpec { path, wait })
}

/// Bind the socket (replacing a stale socket file) and, with `wait`, accept the first client.
pub fn bind(spec: &UnixSpec) -> Result<(UnixListener, Option<UnixStream>)> {
    if let Ok(md) = std::fs::symlink_metadata(&spec.path) {
        use std::os::unix::fs::FileTypeExt;
        if md.file_type().is_socket() {
            let _ = std::fs::remove_file(&spec.path);
        } else {
            bail!("-monitor: {} exists and is not a socket", spec.path.display());
        }
    }
    let l = UnixListener::bind(&spec.path).with_context(|| format!("-monitor: bind {}", spec.path.display()))?;
    let first = if spec.wait {
        eprintln!("vessel: waiting for a monitor connection on {}", spec.path.display());
        Some(l.accept().with_context(|| format!("accept on {}", spec.path.display()))?.0)
    } else {
        None
    };
    Ok((l, first))
}

/// Serve clients one after another on a background thread.
pub fn serve(listener: UnixListener, first: Option<UnixStream>, vm: Commander, path: &Path) {
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("vessel-monitor".into())
        .spawn(move || {
            let mut mon = Monitor::new(vm);
            if let Some(c) = first {
                if session(&mut mon, c) {
                    return;
                }
            }
            for c in listener.incoming() {
                match c {
                    Ok(c) => {
                        if session(&mut mon, c) {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!("monitor {}: {e}", path.display()),
                }
            }
        })
        .expect("spawn the monitor thread");
}

/// Write a reply followed by the prompt, QEMU's line endings.
pub fn write_reply(w: &mut impl Write, text: &str, prompt: bool) -> std::io::Result<()> {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        out += line;
        out += "\r\n";
    }
    if prompt {
        out += PROMPT;
    }
    w.write_all(out.as_bytes())?;
    w.flush()
}

/// One client; true when it quit the VM.
fn session(mon: &mut Monitor, stream: UnixStream) -> bool {
    let Ok(mut w) = stream.try_clone() else { return false };
    if write_reply(&mut w, &greeting(), true).is_err() {
        return false;
    }
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        let out = mon.execute(&line);
        if out.quit {
            let _ = write_reply(&mut w, &out.text, false);
            return true;
        }
        if write_reply(&mut w, &out.text, true).is_err() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_specs() {
        assert_eq!(
            parse_unix("unix:/tmp/m.sock,server,nowait").unwrap(),
            UnixSpec { path: "/tmp/m.sock".into(), wait: false }
        );
        assert!(parse_unix("unix:/tmp/m.sock,server").unwrap().wait);
        assert!(parse_unix("unix:/tmp/m.sock").is_err());
        assert!(parse_unix("unix:/tmp/m.sock,server,bogus").is_err());
    }
}
