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

/// How long the accept loop pauses when the process (or system) is out of descriptors
/// or memory: the listening socket stays readable, so retrying at once would spin (and
/// starve the sessions whose ending would free them).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Accept errors are logged at most this often.
const ACCEPT_WARNING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// How long the `421` to a connection over the limits may take to write: it fits in a
/// fresh socket's buffer, so this only matters for a peer that is already gone.
const REFUSAL_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether an accept error concerns only the connection that was being accepted (it
/// was reset before we took it): the next one can be taken at once. Anything else
/// (EMFILE, ENFILE, ENOBUFS, ENOMEM...) lasts until resources are freed: pause.
fn lost_connection(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EPROTO | libc::EINTR)
    )
}

/// Accepts until the server shuts down.
pub async fn run(
    ex: Rc<smol::LocalExecutor<'static>>,
    shared: Rc<Shared>,
    listener: Listener,
    socket: Async<TcpListener>,
) {
    // Accept errors are logged at most once a minute, each time with the number of
    // failures since the last line: a descriptor shortage that lasts (sessions ending
    // one by one let single accepts through) is one line, not one per retry.
    let mut warned_at: Option<std::time::Instant> = None;
    let mut failures: u64 = 0;
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
                failures += 1;
                if warned_at.is_none_or(|t| t.elapsed() >= ACCEPT_WARNING_INTERVAL) {
                    log::warn!(
                        "accept on {}: {e} ({failures} failed accept(s) since the last warning; \
                         retrying every {} ms while out of descriptors)",
                        listener.addr,
                        crate::clock::millis(ACCEPT_BACKOFF)
                    );
                    warned_at = Some(std::time::Instant::now());
                    failures = 0;
                }
                if !lost_connection(&e) {
                    smol::Timer::after(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        let _ = stream.get_ref().set_nodelay(true);
        match shared.admit(peer.ip()) {
            Ok(slot) => {
                let mut connection = Connection::new(shared.clone(), &listener, stream, peer);
                crate::runtime::spawn_detached(&ex, async move {
                    connection.run().await;
                    drop(connection);
                    drop(slot);
                });
            }
            Err(why) => {
                let text = match why {
                    Refusal::TooManySessions => "Error: too many connections",
                    Refusal::TooManyFromIp => "Error: too many connections from your address",
                };
                log::warn!("{}: {} [{}]", text, listener.role.name(), peer.ip());
                crate::runtime::spawn_detached(&ex, async move {
                    let reply = Reply::new(421, "4.3.2", text).to_wire();
                    let _ = stream
                        .write_all(reply.as_bytes())
                        .or(async {
                            smol::Timer::after(REFUSAL_WRITE_TIMEOUT).await;
                            Ok(())
                        })
                        .await;
                });
            }
        }
    }
}
