//! The client side of one SMTP session (the sending half, like Postfix's `smtp` and
//! OpenSMTPD's `mta_session`): connect, greeting, EHLO (HELO fallback), STARTTLS,
//! and a transaction with per-recipient results, PIPELINING when offered, the content
//! in BDAT chunks (RFC 3030) when the server offers CHUNKING, else by DATA.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;

use super::outgoing::Outgoing;
use crate::queue::outcome::Relay;
use crate::smtp::line::{Line, LineBuffer};
use crate::smtp::reply::Reply;
use crate::smtp::reply_parser::{self, Extensions, ReplyParser, MAX_REPLY_LINE};
use crate::tls::client::ClientTls;
use crate::tls::session::{self, Side};
use crate::tls::{MaybeTls, TlsInfo};

/// One address to try: the host name it came from (MX or relay host), the address,
/// the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub host: String,
    pub ip: IpAddr,
    pub port: u16,
}

impl Candidate {
    /// `host[ip]:port`, as Postfix names a server in logs.
    pub fn name(&self) -> String {
        self.relay().to_string()
    }

    /// The server as an outcome names it.
    pub fn relay(&self) -> Relay {
        Relay::Host {
            name: self.host.clone(),
            addr: Some(SocketAddr::new(self.ip, self.port)),
        }
    }
}

/// Timeouts as Postfix's smtp client defaults.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub command: Duration,
    /// Waiting for the reply to the final dot.
    pub data_done: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(30),
            command: Duration::from_secs(300),
            data_done: Duration::from_secs(600),
        }
    }
}

/// What one recipient got in a transaction.
#[derive(Debug, Clone)]
pub struct RcptReply {
    pub rcpt: String,
    pub reply: Reply,
    /// The command the reply answered ("RCPT TO", "end of DATA"), for the log.
    pub stage: &'static str,
}

/// A transaction's outcome: either every recipient has its own reply, or the whole
/// transaction got one (MAIL or DATA refused).
#[derive(Debug)]
pub enum TransactionResult {
    PerRecipient(Vec<RcptReply>),
    /// The reply and the command it answered.
    Whole(Reply, &'static str),
}

/// Why an implicit-TLS connection failed: the handshake or the certificate check (a
/// failure of the TLS the policy demands, worth an alert), or anything else (no
/// connection, a refused greeting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImplicitTlsError {
    Tls(String),
    Connection(String),
}

impl std::fmt::Display for ImplicitTlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImplicitTlsError::Tls(e) | ImplicitTlsError::Connection(e) => f.write_str(e),
        }
    }
}

/// An open client session.
pub struct ClientSession {
    conn: MaybeTls<Async<TcpStream>>,
    input: LineBuffer,
    parser: ReplyParser,
    pub server: Candidate,
    pub ext: Extensions,
    pub timeouts: Timeouts,
    pub tls: Option<TlsInfo>,
}

impl ClientSession {
    /// Opens the TCP connection and reads the greeting; a greeting that is not 220 is
    /// returned as an error reply text ("host refused to talk to me").
    pub async fn connect(server: &Candidate, timeouts: Timeouts) -> Result<ClientSession, String> {
        let mut s = ClientSession::open(server, timeouts).await?;
        s.greeting().await?;
        Ok(s)
    }

    /// Implicit TLS (port 465, Postfix's wrapper mode): the handshake and the policy's
    /// certificate check come before the greeting, so nothing is ever in plaintext.
    pub async fn connect_tls(
        server: &Candidate,
        timeouts: Timeouts,
        tls: &ClientTls,
    ) -> Result<(ClientSession, TlsInfo), ImplicitTlsError> {
        let mut s = ClientSession::open(server, timeouts)
            .await
            .map_err(ImplicitTlsError::Connection)?;
        let info = s.handshake(tls).await.map_err(ImplicitTlsError::Tls)?;
        s.greeting().await.map_err(ImplicitTlsError::Connection)?;
        Ok((s, info))
    }

    async fn open(server: &Candidate, timeouts: Timeouts) -> Result<ClientSession, String> {
        let addr = SocketAddr::new(server.ip, server.port);
        let stream = async {
            Async::<TcpStream>::connect(addr)
                .await
                .map_err(|e| e.to_string())
        }
        .or(async {
            smol::Timer::after(timeouts.connect).await;
            Err("Connection timed out".to_string())
        })
        .await
        .map_err(|e| format!("connect to {}: {e}", server.name()))?;
        let _ = stream.get_ref().set_nodelay(true);
        Ok(ClientSession {
            conn: MaybeTls::Plain(stream),
            input: LineBuffer::default(),
            parser: ReplyParser::default(),
            server: server.clone(),
            ext: Extensions::default(),
            timeouts,
            tls: None,
        })
    }

    async fn greeting(&mut self) -> Result<(), String> {
        let greeting = self.read_reply("initial server greeting").await?;
        if greeting.code != 220 {
            return Err(format!(
                "host {} refused to talk to me: {}",
                self.server.name(),
                greeting.summary()
            ));
        }
        Ok(())
    }

    /// The certificates the server sent, leaf first (empty before TLS).
    pub fn peer_chain(&self) -> Vec<openssl::x509::X509> {
        self.conn.peer_chain()
    }

    /// Reads one reply; `stage` names the wait for the timeout message.
    pub async fn read_reply(&mut self, stage: &str) -> Result<Reply, String> {
        self.read_reply_within(stage, self.timeouts.command).await
    }

    async fn read_reply_within(&mut self, stage: &str, timeout: Duration) -> Result<Reply, String> {
        loop {
            while let Some(line) = self.input.next_line(MAX_REPLY_LINE) {
                let bytes = match line {
                    Line::Complete(b) => b,
                    Line::TooLong => {
                        return Err(format!(
                            "{} sent a reply line that is too long",
                            self.server.name()
                        ))
                    }
                };
                match self.parser.feed(&bytes) {
                    Ok(Some(reply)) => return Ok(reply),
                    Ok(None) => {}
                    Err(e) => return Err(format!("{}: {e}", self.server.name())),
                }
            }
            let mut buf = [0u8; 4096];
            let conn = &mut self.conn;
            let n = async { Some(conn.read(&mut buf).await) }
                .or(async {
                    smol::Timer::after(timeout).await;
                    None
                })
                .await;
            match n {
                None => {
                    return Err(format!(
                        "conversation with {} timed out while receiving the {stage}",
                        self.server.name()
                    ))
                }
                Some(Ok(0)) => {
                    return Err(format!(
                        "lost connection with {} while receiving the {stage}",
                        self.server.name()
                    ))
                }
                Some(Ok(n)) => self.input.extend(&buf[..n]),
                Some(Err(e)) => {
                    return Err(format!(
                        "lost connection with {} while receiving the {stage}: {e}",
                        self.server.name()
                    ))
                }
            }
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.write_parts(&[bytes]).await
    }

    /// Writes `parts` one after the other and flushes once (a BDAT command and its
    /// chunk go out together).
    async fn write_parts(&mut self, parts: &[&[u8]]) -> Result<(), String> {
        let res = async {
            for part in parts {
                self.conn.write_all(part).await?;
            }
            self.conn.flush().await
        }
        .await;
        res.map_err(|e| {
            format!(
                "lost connection with {} while sending: {e}",
                self.server.name()
            )
        })
    }

    /// Sends one command and reads its reply.
    pub async fn command(&mut self, line: &str, stage: &str) -> Result<Reply, String> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply(stage).await
    }

    /// EHLO, falling back to HELO when the server refuses EHLO (RFC 5321 §3.2).
    pub async fn hello(&mut self, helo_name: &str) -> Result<(), String> {
        let r = self
            .command(&format!("EHLO {helo_name}"), "reply to EHLO")
            .await?;
        if r.code == 250 {
            self.ext = Extensions::from_ehlo(&r);
            return Ok(());
        }
        let r = self
            .command(&format!("HELO {helo_name}"), "reply to HELO")
            .await?;
        if r.code == 250 {
            self.ext = Extensions::default();
            return Ok(());
        }
        Err(format!(
            "host {} refused to talk to me: {}",
            self.server.name(),
            r.summary()
        ))
    }

    /// STARTTLS, the handshake and the policy's certificate check, then EHLO again.
    pub async fn starttls(&mut self, tls: &ClientTls, helo_name: &str) -> Result<TlsInfo, String> {
        let r = self.command("STARTTLS", "reply to STARTTLS").await?;
        if r.code != 220 {
            return Err(format!(
                "{} refused STARTTLS: {}",
                self.server.name(),
                r.summary()
            ));
        }
        // Anything the server sent after its 220 would be plaintext injected into TLS.
        self.input.clear();
        let info = self.handshake(tls).await?;
        self.hello(helo_name).await?;
        Ok(info)
    }

    /// The client handshake and the policy's certificate check, within the command
    /// timeout.
    async fn handshake(&mut self, tls: &ClientTls) -> Result<TlsInfo, String> {
        let conn = &mut self.conn;
        let timeout = self.timeouts.command;
        let info = async { conn.connect(tls).await }
            .or(async {
                smol::Timer::after(timeout).await;
                Err("handshake timed out".to_string())
            })
            .await
            .map_err(|e| format!("TLS with {} failed: {e}", self.server.name()))?;
        session::count(Side::Outbound, &self.server.name(), info.resumed);
        self.tls = Some(info.clone());
        Ok(info)
    }

    /// One mail transaction of `msg`, its content streamed from the queue file.
    /// `utf8` adds SMTPUTF8 (the caller checked the server offers it). An error leaves
    /// the DATA (or the BDAT chunks) unfinished: the caller drops the connection, so
    /// the server discards it.
    pub async fn transaction(
        &mut self,
        msg: &Outgoing,
        rcpts: &[String],
        utf8: bool,
    ) -> Result<TransactionResult, String> {
        let mail = format!(
            "MAIL FROM:<{}>{}",
            msg.mail_from,
            self.mail_params(msg, utf8)
        );
        let chunking = self.ext.chunking;
        if self.ext.pipelining {
            // RFC 2920: MAIL, all RCPTs and DATA in one write, replies in order. BDAT
            // waits for the RCPT replies: a chunk for no recipient would be sent in vain.
            let mut batch = format!("{mail}\r\n");
            for r in rcpts {
                batch.push_str(&format!("{}\r\n", self.rcpt_command(msg, r)));
            }
            if !chunking {
                batch.push_str("DATA\r\n");
            }
            self.write(batch.as_bytes()).await?;
            let mail_reply = self.read_reply("reply to MAIL FROM").await?;
            let mut replies = Vec::new();
            for r in rcpts {
                let reply = self.read_reply("reply to RCPT TO").await?;
                replies.push(RcptReply {
                    rcpt: r.clone(),
                    reply,
                    stage: "RCPT TO",
                });
            }
            if chunking {
                if mail_reply.code != 250 {
                    return Ok(TransactionResult::Whole(mail_reply, "MAIL FROM"));
                }
                return self.send_chunks(replies, msg).await;
            }
            let data_reply = self.read_reply("reply to DATA").await?;
            if mail_reply.code != 250 {
                return Ok(TransactionResult::Whole(mail_reply, "MAIL FROM"));
            }
            self.finish_data(replies, data_reply, msg).await
        } else {
            let mail_reply = self.command(&mail, "reply to MAIL FROM").await?;
            if mail_reply.code != 250 {
                return Ok(TransactionResult::Whole(mail_reply, "MAIL FROM"));
            }
            let mut replies = Vec::new();
            for r in rcpts {
                let reply = self
                    .command(&self.rcpt_command(msg, r), "reply to RCPT TO")
                    .await?;
                replies.push(RcptReply {
                    rcpt: r.clone(),
                    reply,
                    stage: "RCPT TO",
                });
            }
            if chunking {
                return self.send_chunks(replies, msg).await;
            }
            if !replies.iter().any(|r| r.reply.code / 100 == 2) {
                let _ = self.command("RSET", "reply to RSET").await;
                return Ok(TransactionResult::PerRecipient(replies));
            }
            let data_reply = self.command("DATA", "reply to DATA").await?;
            self.finish_data(replies, data_reply, msg).await
        }
    }

    async fn finish_data(
        &mut self,
        replies: Vec<RcptReply>,
        data_reply: Reply,
        msg: &Outgoing,
    ) -> Result<TransactionResult, String> {
        let accepted = replies.iter().any(|r| r.reply.code / 100 == 2);
        if data_reply.code != 354 {
            if !accepted {
                // No recipient accepted: the DATA refusal is expected; keep RCPT replies.
                return Ok(TransactionResult::PerRecipient(replies));
            }
            return Ok(TransactionResult::Whole(data_reply, "DATA"));
        }
        if !accepted {
            // RFC 2920: DATA was accepted although no RCPT was; end it empty.
            self.write(b".\r\n").await?;
            let _ = self.read_reply("reply to end of DATA").await;
            return Ok(TransactionResult::PerRecipient(replies));
        }
        let mut body = msg.body();
        while let Some(piece) = body
            .next()
            .await
            .map_err(|e| format!("cannot read the queue file: {e}"))?
        {
            self.write(piece).await?;
        }
        let done = self
            .read_reply_within("reply to end of DATA", self.timeouts.data_done)
            .await?;
        Ok(the_end(replies, done, "end of DATA"))
    }

    /// The content in BDAT chunks (RFC 3030), no dot-stuffing, each chunk's size its
    /// exact octet count and the last one `LAST`; each chunk waits for its reply (a
    /// refused chunk ends the transaction, and §4.2 forbids sending more after it).
    async fn send_chunks(
        &mut self,
        replies: Vec<RcptReply>,
        msg: &Outgoing,
    ) -> Result<TransactionResult, String> {
        if !replies.iter().any(|r| r.reply.code / 100 == 2) {
            let _ = self.command("RSET", "reply to RSET").await;
            return Ok(TransactionResult::PerRecipient(replies));
        }
        let mut body = msg.chunks();
        while let Some((piece, last)) = body
            .next_chunk()
            .await
            .map_err(|e| format!("cannot read the queue file: {e}"))?
        {
            let command = format!(
                "BDAT {}{}\r\n",
                piece.len(),
                if last { " LAST" } else { "" }
            );
            self.write_parts(&[command.as_bytes(), piece]).await?;
            if last {
                let done = self
                    .read_reply_within("reply to end of BDAT", self.timeouts.data_done)
                    .await?;
                return Ok(the_end(replies, done, "end of BDAT"));
            }
            let reply = self.read_reply("reply to BDAT").await?;
            if reply.code != 250 {
                return Ok(TransactionResult::Whole(reply, "BDAT"));
            }
        }
        Err(format!(
            "cannot read the queue file for {}",
            self.server.name()
        ))
    }

    fn mail_params(&self, msg: &Outgoing, utf8: bool) -> String {
        let mut p = String::new();
        if utf8 {
            p.push_str(" SMTPUTF8");
        }
        if self.ext.size.is_some() {
            p.push_str(&format!(" SIZE={}", msg.size()));
        }
        if self.ext.eightbitmime && msg.eight_bit() {
            p.push_str(" BODY=8BITMIME");
        }
        if msg.requiretls {
            // The caller checked the server offers it (`remote::requiretls_refusal`).
            p.push_str(" REQUIRETLS");
        }
        if self.ext.dsn {
            // RFC 3461 §5.2: passed on as received to a next hop that offers DSN.
            p.push_str(&msg.dsn.message.mail_params());
        }
        p
    }

    /// `RCPT TO:<r>`, with its NOTIFY/ORCPT when the server offers DSN.
    fn rcpt_command(&self, msg: &Outgoing, rcpt: &str) -> String {
        let params = if self.ext.dsn {
            msg.dsn.rcpt(rcpt).rcpt_params()
        } else {
            String::new()
        };
        format!("RCPT TO:<{rcpt}>{params}")
    }

    /// RSET before another message on a reused connection.
    pub async fn reset(&mut self) -> Result<(), String> {
        let r = self.command("RSET", "reply to RSET").await?;
        if r.code == 250 {
            Ok(())
        } else {
            Err(r.summary())
        }
    }

    /// QUIT, without caring about the answer.
    pub async fn quit(mut self) {
        let _ = self.command("QUIT", "reply to QUIT").await;
        let _ = self.conn.close().await;
    }
}

/// The reply to the end of the content is every accepted recipient's.
fn the_end(mut replies: Vec<RcptReply>, done: Reply, stage: &'static str) -> TransactionResult {
    for r in replies.iter_mut() {
        if r.reply.code / 100 == 2 {
            r.reply = done.clone();
            r.stage = stage;
        }
    }
    TransactionResult::PerRecipient(replies)
}

/// RFC 3463 status of a reply, for the log's `dsn=`.
pub fn dsn(reply: &Reply) -> String {
    reply_parser::enhanced_status(reply)
}

impl ClientSession {
    /// SMTP AUTH (RFC 4954) as `login.user` with `mechanism`, which the caller chose
    /// from `self.ext.auth` (`sasl::choose`). Refuses, before sending anything, on a
    /// session without TLS: the caller checks that the TLS policy verified the server
    /// at least to `encrypt`, this is the second guard. Logs the user and mechanism,
    /// never the secret.
    pub async fn authenticate(
        &mut self,
        login: &super::sasl::Login,
        mechanism: super::sasl::Mechanism,
    ) -> Result<(), super::sasl::AuthFailure> {
        use super::sasl::{self, AuthFailure};
        if self.tls.is_none() {
            return Err(AuthFailure::NotEncrypted);
        }
        let host = self.server.host.clone();
        let (mut exchange, command) =
            sasl::Exchange::start(mechanism, login, Some((&host, self.server.port)))
                .map_err(|e| AuthFailure::Protocol(format!("AUTH {mechanism}: {e}")))?;
        log::debug!("{}: AUTH {mechanism} as {}", self.server.name(), login.user);
        let stage = "reply to AUTH";
        let mut reply = self
            .command(&command, stage)
            .await
            .map_err(AuthFailure::Connection)?;
        while reply.code == 334 {
            match exchange.respond(&reply.lines.concat()) {
                Ok(answer) => {
                    reply = self
                        .command(&answer, stage)
                        .await
                        .map_err(AuthFailure::Connection)?;
                }
                Err(e) => {
                    // RFC 4954 §4: `*` cancels; the server answers 501.
                    let _ = self.command("*", "reply to AUTH cancellation").await;
                    return Err(AuthFailure::Protocol(format!(
                        "AUTH {mechanism} with {}: {e}",
                        self.server.name()
                    )));
                }
            }
        }
        if reply.code / 100 == 2 {
            return Ok(());
        }
        Err(AuthFailure::from_reply(
            reply,
            exchange.oauth_error().map(str::to_string),
        ))
    }
}
