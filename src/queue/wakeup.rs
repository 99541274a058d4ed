//! The wakeup protocol: a datagram socket (`<state-dir>/queue/wakeup`) on which the
//! running daemon hears from other processes. `sendmail` says a file was dropped,
//! `queue flush` asks for a retry of everything, `queue delete` says a message is gone.
//! Both ends (the words on the wire and their meaning) live here.

use std::os::unix::net::UnixDatagram;

use smol::channel::Sender;
use smol::Async;

use super::scheduler::Event;
use super::spool::{QueueId, Spool};

/// What another process tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wakeup {
    /// A message file was dropped into the queue (`sendmail`). Naming it lets the
    /// daemon schedule it without listing the queue.
    New(QueueId),
    /// Retry everything now (`queue flush`).
    Flush,
    /// A message was deleted (`queue delete`).
    Forget(QueueId),
}

impl Wakeup {
    fn encode(&self) -> String {
        match self {
            Wakeup::New(id) => format!("new {id}"),
            Wakeup::Flush => "flush".into(),
            Wakeup::Forget(id) => format!("forget {id}"),
        }
    }

    /// The scheduler event for a datagram; anything unknown (a bare `new` from an
    /// older `sendmail` too) is a rescan, which is always safe.
    fn decode(datagram: &[u8]) -> Option<Event> {
        let text = String::from_utf8_lossy(datagram);
        match text.split_once(' ') {
            Some(("forget", id)) => QueueId::parse(id).map(Event::Forget),
            Some(("new", id)) => Some(QueueId::parse(id).map_or(Event::Rescan, Event::New)),
            _ if text == "flush" => Some(Event::Flush),
            _ => Some(Event::Rescan),
        }
    }
}

/// Tells a running daemon something. Returns false when no daemon listens (it finds
/// dropped files at its next start).
pub fn poke(spool: &Spool, message: Wakeup) -> bool {
    UnixDatagram::unbound()
        .and_then(|s| s.send_to(message.encode().as_bytes(), spool.wakeup_socket()))
        .is_ok()
}

/// The daemon's end of the socket (a stale one left by a crash is replaced).
pub fn bind(spool: &Spool) -> std::io::Result<Async<UnixDatagram>> {
    let path = spool.wakeup_socket();
    let _ = std::fs::remove_file(&path);
    Async::new(UnixDatagram::bind(&path)?)
}

/// Turns datagrams into scheduler events until the socket or the scheduler goes away.
pub async fn listen(sock: Async<UnixDatagram>, events: Sender<Event>) {
    let mut buf = [0u8; 128];
    while let Ok(n) = sock.recv(&mut buf).await {
        if let Some(ev) = Wakeup::decode(&buf[..n]) {
            if events.send(ev).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_decodes_to_its_event() {
        let id = QueueId::generate();
        match Wakeup::decode(Wakeup::New(id.clone()).encode().as_bytes()) {
            Some(Event::New(got)) => assert_eq!(got, id),
            other => panic!("new decoded as {other:?}"),
        }
        assert!(matches!(Wakeup::decode(b"new"), Some(Event::Rescan)));
        assert!(matches!(Wakeup::decode(b"new ../x"), Some(Event::Rescan)));
        assert!(matches!(
            Wakeup::decode(Wakeup::Flush.encode().as_bytes()),
            Some(Event::Flush)
        ));
        match Wakeup::decode(Wakeup::Forget(id.clone()).encode().as_bytes()) {
            Some(Event::Forget(got)) => assert_eq!(got, id),
            other => panic!("forget decoded as {other:?}"),
        }
        assert!(Wakeup::decode(b"forget not/an/id").is_none());
        assert!(matches!(Wakeup::decode(b"garbage"), Some(Event::Rescan)));
    }
}
