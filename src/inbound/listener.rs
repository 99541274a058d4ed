//! Accept loops: one per listening address, each admitting connections within the
//! session limits and spawning a session for them.

use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;

use smol::future::FutureExt;
use smol::io::AsyncWriteExt;
use smol::Async;

use super::session::Session;
use super::{Refusal, Shared};
use crate::config::Listener;
use crate::smtp::reply::Reply;

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
                let session = Session::new(shared.clone(), &listener, stream, peer);
                ex.spawn(async move {
                    session.run().await;
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
