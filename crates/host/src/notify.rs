//! The systemd notification protocol the `Type=notify` units rely on: one datagram with
//! `READY=1` once every component is ready, `STOPPING=1` when k0x begins to stop, and free-form
//! `STATUS=` lines that `systemctl status` shows.
//!
//! Without `NOTIFY_SOCKET` (k0x run by hand, OpenRC) every call is a no-op. The supervisor
//! removes the variable from the environment of the components it starts, and the units say
//! `NotifyAccess=main`, so only k0x itself can report readiness.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_VAR: &str = "NOTIFY_SOCKET";

/// Tells systemd that k0x is ready (all components passed their readiness probes).
pub fn ready(status: &str) -> io::Result<()> {
    send(&format!("READY=1\nSTATUS={status}"))
}

/// Tells systemd that k0x is stopping.
pub fn stopping() -> io::Result<()> {
    send("STOPPING=1")
}

/// Updates the status line `systemctl status` shows.
pub fn status(status: &str) -> io::Result<()> {
    send(&format!("STATUS={status}"))
}

fn send(message: &str) -> io::Result<()> {
    match std::env::var(NOTIFY_SOCKET_VAR) {
        Ok(socket) => send_to(&socket, message),
        Err(_) => Ok(()),
    }
}

/// Sends one notification datagram to `socket` (a path, or `@name` for an abstract socket).
pub fn send_to(socket: &str, message: &str) -> io::Result<()> {
    let address = match socket.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(socket)?,
    };
    let sender = UnixDatagram::unbound()?;
    sender.send_to_addr(message.as_bytes(), &address)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send_to(path.to_str().unwrap(), "READY=1\nSTATUS=up").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");

        let name = format!("k0x-notify-test-{}", std::process::id());
        let abstract_addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&abstract_addr).unwrap();
        send_to(&format!("@{name}"), "STOPPING=1").unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none");
        assert!(send_to(missing.to_str().unwrap(), "READY=1").is_err());
    }
}
