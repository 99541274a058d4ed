//! Listeners: what each listening address is for (its role and TLS level), and the
//! accept loops, one per address, each admitting connections within the session limits
//! and spawning a connection for them.

use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;

use smol::future::FutureExt;
use smol::io::AsyncWriteExt;
use smol::Async;

use super::connection::Connection;
use super::{Refusal, Shared};
use crate::smtp::reply::Reply;

/// What a listener is for (SPEC "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Port 25: MX and relay for local networks; TLS per `--tls-level`.
    Smtp,
    /// Port 587: STARTTLS and AUTH required.
    Submission,
    /// Port 465: TLS from the first byte, AUTH required.
    Smtps,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Smtp => "smtp",
            Role::Submission => "submission",
            Role::Smtps => "smtps",
        }
    }
}

/// Inbound TLS security level of a listener (Libraesva words; Cisco's No/Preferred/Required).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum InboundTls {
    /// STARTTLS not offered.
    None,
    /// STARTTLS offered; plaintext accepted.
    May,
    /// Nothing but NOOP/EHLO/QUIT/STARTTLS before TLS (RFC 3207 §4).
    Encrypt,
    /// TLS from the first byte (port 465).
    Implicit,
}

impl InboundTls {
    /// The word for the level, as `--tls-level` takes it and logs print it (`implicit`
    /// is what `--smtps` listeners get; no flag takes it).
    pub fn name(self) -> &'static str {
        match self {
            InboundTls::None => "none",
            InboundTls::May => "may",
            InboundTls::Encrypt => "encrypt",
            InboundTls::Implicit => "implicit",
        }
    }
}

/// One listening address and what it is for.
#[derive(Debug, Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    pub role: Role,
    pub tls: InboundTls,
}

/// Binds a listening socket. `[::]` falls back to `0.0.0.0` on hosts without IPv6,
/// which small routers sometimes are.
pub fn bind(addr: SocketAddr) -> std::io::Result<Async<TcpListener>> {
    match Async::<TcpListener>::bind(addr) {
        Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
            let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
            Async::<TcpListener>::bind(v4).map_err(|_| e)
        }
        other => other,
    }
}

/// Accepts until the server shuts down.
pub async fn run(
    ex: Rc<smol::LocalExecutor<'static>>,
    shared: Rc<Shared>,
    listener: Listener,
    socket: Async<TcpListener>,
) {
    loop {
        let accepted = async { Some(socket.accept().await) }
            .or(async {
                let _ = shared.shutdown.recv().await;
                None
            })
            .await;
        let (mut stream, peer) = match accepted {
            None => return,
            Some(Ok(x)) => x,
            Some(Err(e)) => {
                // EMFILE and friends: pause briefly instead of spinning.
                log::warn!("accept on {}: {e}", listener.addr);
                smol::Timer::after(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.get_ref().set_nodelay(true);
        match shared.admit(peer.ip()) {
            Ok(slot) => {
                let connection = Connection::new(shared.clone(), &listener, stream, peer);
                ex.spawn(async move {
                    connection.run().await;
                    drop(slot);
                })
                .detach();
            }
            Err(why) => {
                let text = match why {
                    Refusal::TooManySessions => "Error: too many connections",
                    Refusal::TooManyFromIp => "Error: too many connections from your address",
                };
                log::warn!("{}: {} [{}]", text, listener.role.name(), peer.ip());
                ex.spawn(async move {
                    let reply = Reply::new(421, "4.3.2", text).to_wire();
                    let _ = stream.write_all(reply.as_bytes()).await;
                })
                .detach();
            }
        }
    }
}
