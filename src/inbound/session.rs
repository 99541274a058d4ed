//! The server side of one SMTP session: an explicit state machine over `smtp::`
//! parsers, with the inbound TLS level rules (RFC 3207), the relay decision, and
//! message reception into the queue.

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;

use super::Shared;
use crate::auth::{Sasl, Step};
use crate::clock::unix_now;
use crate::config::{InboundTls, Listener, Role};
use crate::logline;
use crate::outbound::route::{self, Destination};
use crate::queue::scheduler::Event;
use crate::queue::{Envelope, QueueId};
use crate::smtp::command::{self, Command, MailParams};
use crate::smtp::data::DataReader;
use crate::smtp::line::{Line, LineBuffer};
use crate::smtp::reply::{canned, Reply};
use crate::smtp::{Mailbox, MAX_COMMAND_LINE};
use crate::tls::{MaybeTls, TlsInfo};

/// Content is written to the queue file in pieces of about this size, so a large
/// message never sits whole in memory.
const WRITE_CHUNK: usize = 64 * 1024;
/// Errors (syntax, sequence, unknown commands) before the client is disconnected,
/// as Postfix's `smtpd_hard_error_limit`.
const MAX_ERRORS: u32 = 20;
/// Failed AUTH attempts before the client is disconnected.
const MAX_AUTH_FAILURES: u32 = 3;
/// Pause before answering a failed AUTH (Postfix's smtpd_error_sleep_time), which
/// slows password guessing to a crawl.
const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);
/// RFC 4954 §4: a SASL response line may be up to 12288 octets.
const MAX_SASL_LINE: usize = 12_288;

/// Where the session is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Greeting sent; HELO/EHLO expected.
    Fresh,
    /// HELO/EHLO done; no transaction.
    Ready,
    /// MAIL accepted; collecting recipients.
    Transaction,
    /// QUIT, a fatal error, or shutdown.
    Closing,
}

/// The envelope being collected.
struct Transaction {
    sender: Option<Mailbox>,
    params: MailParams,
    recipients: Vec<String>,
}

/// What the session must do after a command's reply is queued.
enum Next {
    Continue,
    StartTls,
    Data,
    Close,
    /// Check these credentials (on the blocking pool: PBKDF2 is slow by design).
    Verify {
        mechanism: &'static str,
        user: String,
        password: Vec<u8>,
    },
}

/// Outcome of waiting for input.
enum Input {
    Bytes,
    Closed,
    TimedOut,
    ShuttingDown,
}

pub struct Session {
    shared: Rc<Shared>,
    role: Role,
    level: InboundTls,
    conn: MaybeTls<Async<TcpStream>>,
    ip: IpAddr,
    /// `unknown[ip]`, Postfix's client name (no reverse lookup yet).
    client: String,
    input: LineBuffer,
    output: Vec<u8>,
    state: State,
    helo: Option<String>,
    esmtp: bool,
    tls: Option<TlsInfo>,
    authenticated: Option<String>,
    /// A SASL exchange waiting for the client's next line.
    sasl: Option<(Sasl, &'static str)>,
    auth_failures: u32,
    txn: Option<Transaction>,
    errors: u32,
    /// When the current command began to be awaited: partial lines do not extend the
    /// deadline, so a client trickling bytes (slowloris) is dropped at the timeout.
    waiting_since: Instant,
}

impl Session {
    pub fn new(
        shared: Rc<Shared>,
        listener: &Listener,
        stream: Async<TcpStream>,
        peer: SocketAddr,
    ) -> Session {
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer.ip()),
            v4 => v4,
        };
        Session {
            shared,
            role: listener.role,
            level: listener.tls,
            conn: MaybeTls::Plain(stream),
            ip,
            client: logline::client_name(None, ip),
            input: LineBuffer::default(),
            output: Vec::new(),
            state: State::Fresh,
            helo: None,
            esmtp: false,
            tls: None,
            authenticated: None,
            sasl: None,
            auth_failures: 0,
            txn: None,
            errors: 0,
            waiting_since: Instant::now(),
        }
    }

    pub async fn run(mut self) {
        log::info!("connect from {} to {}", self.client, self.role.name());
        if self.level == InboundTls::Implicit && !self.handshake().await {
            log::info!("disconnect from {}", self.client);
            return;
        }
        let banner = Reply::plain(
            220,
            vec![format!("{} ESMTP tinymta", self.shared.cfg.hostname)],
        );
        self.reply(banner);
        if self.serve().await.is_err() {
            log::info!("lost connection from {}", self.client);
        }
        let _ = self.conn.close().await;
        log::info!("disconnect from {}", self.client);
    }

    /// The command loop. Errors are I/O failures: the connection is gone.
    async fn serve(&mut self) -> std::io::Result<()> {
        loop {
            while self.state != State::Closing {
                let limit = if self.sasl.is_some() {
                    MAX_SASL_LINE
                } else {
                    MAX_COMMAND_LINE
                };
                let Some(line) = self.input.next_line(limit) else {
                    break;
                };
                self.waiting_since = Instant::now();
                let next = match line {
                    Line::TooLong => {
                        self.sasl = None;
                        self.error(canned::line_too_long());
                        Next::Continue
                    }
                    Line::Complete(bytes) if self.sasl.is_some() => self.sasl_line(&bytes),
                    Line::Complete(bytes) => self.command(&bytes),
                };
                match next {
                    Next::Continue => {}
                    Next::Close => self.state = State::Closing,
                    Next::StartTls => {
                        self.flush().await?;
                        let dropped = self.input.clear();
                        if dropped > 0 {
                            log::warn!(
                                "discarding {dropped} bytes pipelined after STARTTLS from {}",
                                self.client
                            );
                        }
                        if !self.handshake().await {
                            return Ok(());
                        }
                    }
                    Next::Data => {
                        self.flush().await?;
                        if !self.receive_message().await? {
                            return Ok(());
                        }
                        self.waiting_since = Instant::now();
                    }
                    Next::Verify {
                        mechanism,
                        user,
                        password,
                    } => {
                        self.verify(mechanism, user, password).await?;
                        self.waiting_since = Instant::now();
                    }
                }
            }
            self.flush().await?;
            if self.state == State::Closing {
                return Ok(());
            }
            let limits = &self.shared.cfg.limits;
            let left = limits
                .command_timeout
                .saturating_sub(self.waiting_since.elapsed());
            match self.read_input(left).await? {
                Input::Bytes => {}
                Input::Closed => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Input::TimedOut => {
                    log::info!("timeout after command from {}", self.client);
                    self.reply(canned::timeout());
                    self.flush().await?;
                    return Ok(());
                }
                Input::ShuttingDown => {
                    self.reply(canned::shutting_down());
                    self.flush().await?;
                    return Ok(());
                }
            }
        }
    }

    fn reply(&mut self, r: Reply) {
        self.output.extend_from_slice(r.to_wire().as_bytes());
    }

    /// Replies with an error and counts it; too many close the session.
    fn error(&mut self, r: Reply) {
        self.reply(r);
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            log::warn!("too many errors from {}", self.client);
            self.reply(Reply::new(421, "4.7.0", "Error: too many errors"));
            self.state = State::Closing;
        }
    }

    /// Sends queued replies. With PIPELINING they are batched: the loop only flushes
    /// when it has no complete command left to answer.
    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.output.is_empty() {
            let out = std::mem::take(&mut self.output);
            self.conn.write_all(&out).await?;
            self.conn.flush().await?;
        }
        Ok(())
    }

    async fn read_input(&mut self, timeout: Duration) -> std::io::Result<Input> {
        let mut buf = [0u8; 4096];
        let shutdown = self.shared.shutdown.clone();
        let conn = &mut self.conn;
        let res = async { Some(conn.read(&mut buf).await) }
            .or(async {
                smol::Timer::after(timeout).await;
                None
            })
            .or(async {
                let _ = shutdown.recv().await;
                Some(Err(std::io::ErrorKind::Interrupted.into()))
            })
            .await;
        match res {
            None => Ok(Input::TimedOut),
            Some(Ok(0)) => Ok(Input::Closed),
            Some(Ok(n)) => {
                self.input.extend(&buf[..n]);
                Ok(Input::Bytes)
            }
            Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => Ok(Input::ShuttingDown),
            Some(Err(e)) => Err(e),
        }
    }

    /// Server-side TLS handshake; on success the session starts over (RFC 3207 §4.2).
    async fn handshake(&mut self) -> bool {
        let ctx = self.shared.current_tls();
        let timeout = self.shared.cfg.limits.command_timeout;
        let conn = &mut self.conn;
        let res = async { conn.accept(&ctx).await }
            .or(async {
                smol::Timer::after(timeout).await;
                Err("timeout".to_string())
            })
            .await;
        match res {
            Ok(info) => {
                logline::tls_inbound_established(&self.client, &info);
                self.tls = Some(info);
                self.helo = None;
                self.esmtp = false;
                self.txn = None;
                self.state = State::Fresh;
                true
            }
            Err(reason) => {
                logline::tls_inbound_failed(&self.client, &reason);
                false
            }
        }
    }

    fn tls_active(&self) -> bool {
        self.tls.is_some()
    }

    /// Handles one command line and queues its reply.
    fn command(&mut self, line: &[u8]) -> Next {
        let utf8 = self.txn.as_ref().is_some_and(|t| t.params.smtputf8);
        let cmd = match command::parse(line, utf8) {
            Ok(c) => c,
            Err(r) => {
                self.error(r);
                return Next::Continue;
            }
        };
        // RFC 3207 §4 / Cisco "Required": before TLS only these are allowed.
        if self.level == InboundTls::Encrypt
            && !self.tls_active()
            && !matches!(
                cmd,
                Command::Noop | Command::Ehlo(_) | Command::Quit | Command::Starttls
            )
        {
            self.error(canned::must_starttls());
            return Next::Continue;
        }
        match cmd {
            Command::Ehlo(name) => {
                self.helo = Some(name);
                self.esmtp = true;
                self.txn = None;
                self.state = State::Ready;
                let r = self.ehlo_reply();
                self.reply(r);
            }
            Command::Helo(name) => {
                self.helo = Some(name);
                self.esmtp = false;
                self.txn = None;
                self.state = State::Ready;
                let r = Reply::plain(250, vec![self.shared.cfg.hostname.clone()]);
                self.reply(r);
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to } => self.rcpt(to),
            Command::Data => match &self.txn {
                None => self.error(canned::bad_sequence("Error: need MAIL command")),
                Some(t) if t.recipients.is_empty() => {
                    self.error(Reply::new(554, "5.5.1", "Error: no valid recipients"))
                }
                Some(_) => {
                    self.reply(Reply::plain(
                        354,
                        vec!["End data with <CR><LF>.<CR><LF>".into()],
                    ));
                    return Next::Data;
                }
            },
            Command::Rset => {
                self.txn = None;
                if self.state == State::Transaction {
                    self.state = State::Ready;
                }
                self.reply(canned::ok("2.0.0"));
            }
            Command::Noop => self.reply(canned::ok("2.0.0")),
            Command::Quit => {
                self.reply(Reply::new(221, "2.0.0", "Bye"));
                return Next::Close;
            }
            Command::Vrfy => self.reply(Reply::new(
                252,
                "2.0.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::Expn => self.error(Reply::new(502, "5.5.1", "Error: EXPN not supported")),
            Command::Help => self.reply(Reply::new(214, "2.0.0", "See RFC 5321")),
            Command::Starttls => {
                if self.level == InboundTls::None
                    || self.level == InboundTls::Implicit && !self.tls_active()
                {
                    self.error(Reply::new(502, "5.5.1", "Error: command not implemented"));
                } else if self.tls_active() {
                    self.error(Reply::new(554, "5.5.1", "Error: TLS already active"));
                } else {
                    self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
                    return Next::StartTls;
                }
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => return self.auth(&mechanism, initial_response.as_deref()),
        }
        Next::Continue
    }

    /// AUTH: only inside TLS, once per session, outside a transaction (RFC 4954).
    fn auth(&mut self, mechanism: &str, initial: Option<&str>) -> Next {
        if self.shared.current_auth().is_none() {
            self.error(Reply::new(
                503,
                "5.5.1",
                "Error: authentication not enabled",
            ));
            return Next::Continue;
        }
        if !self.tls_active() {
            self.error(Reply::new(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ));
            return Next::Continue;
        }
        if self.state == State::Fresh {
            self.error(canned::bad_sequence("Error: send EHLO first"));
            return Next::Continue;
        }
        if self.authenticated.is_some() {
            self.error(canned::bad_sequence("Error: already authenticated"));
            return Next::Continue;
        }
        if self.txn.is_some() {
            self.error(canned::bad_sequence("Error: MAIL transaction in progress"));
            return Next::Continue;
        }
        let mechanism: &'static str = match mechanism {
            "PLAIN" => "PLAIN",
            "LOGIN" => "LOGIN",
            _ => {
                self.error(Reply::new(
                    504,
                    "5.5.4",
                    "Error: unsupported authentication mechanism",
                ));
                return Next::Continue;
            }
        };
        match Sasl::start(mechanism, initial) {
            Some((sasl, step)) => {
                self.sasl = Some((sasl, mechanism));
                self.sasl_step(step)
            }
            None => Next::Continue,
        }
    }

    /// A client line during a SASL exchange.
    fn sasl_line(&mut self, line: &[u8]) -> Next {
        let text = String::from_utf8_lossy(line).into_owned();
        let step = match self.sasl.as_mut() {
            Some((sasl, _)) => sasl.next(&text),
            None => return Next::Continue,
        };
        self.sasl_step(step)
    }

    fn sasl_step(&mut self, step: Step) -> Next {
        let mechanism = self.sasl.as_ref().map(|(_, m)| *m).unwrap_or("PLAIN");
        match step {
            Step::Challenge(c) => {
                self.reply(Reply::plain(334, vec![c.to_string()]));
                Next::Continue
            }
            Step::Credentials { user, password } => {
                self.sasl = None;
                Next::Verify {
                    mechanism,
                    user,
                    password,
                }
            }
            Step::Cancelled => {
                self.sasl = None;
                self.error(Reply::new(501, "5.7.0", "Authentication aborted"));
                Next::Continue
            }
            Step::Malformed(why) => {
                self.sasl = None;
                self.error(Reply::new(501, "5.5.2", format!("Error: {why}")));
                Next::Continue
            }
        }
    }

    /// Checks credentials on the blocking pool and answers 235 or, after a delay, 535.
    async fn verify(
        &mut self,
        mechanism: &'static str,
        user: String,
        password: Vec<u8>,
    ) -> std::io::Result<()> {
        let ok = match self.shared.current_auth() {
            Some(auth) => {
                let u = user.clone();
                smol::unblock(move || auth.verify(&u, &password)).await
            }
            None => false,
        };
        if ok {
            log::info!(
                "{}: sasl_method={mechanism}, sasl_username={user}",
                self.client
            );
            self.authenticated = Some(user);
            self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
            return Ok(());
        }
        // Postfix's wording, so fail2ban's postfix-sasl filter works unchanged.
        log::warn!(
            "{}: SASL {mechanism} authentication failed: authentication failure",
            self.client
        );
        self.auth_failures += 1;
        smol::Timer::after(AUTH_FAILURE_DELAY).await;
        self.reply(Reply::new(
            535,
            "5.7.8",
            "Error: authentication failed: authentication failure",
        ));
        if self.auth_failures >= MAX_AUTH_FAILURES {
            log::warn!("too many failed AUTH attempts from {}", self.client);
            self.reply(Reply::new(
                421,
                "4.7.0",
                "Error: too many failed authentication attempts",
            ));
            self.state = State::Closing;
        }
        Ok(())
    }

    fn ehlo_reply(&self) -> Reply {
        let cfg = &self.shared.cfg;
        let mut lines = vec![
            cfg.hostname.clone(),
            "PIPELINING".to_string(),
            format!("SIZE {}", cfg.limits.max_message_size),
        ];
        if !self.tls_active() && matches!(self.level, InboundTls::May | InboundTls::Encrypt) {
            lines.push("STARTTLS".to_string());
        }
        // AUTH only inside TLS, on every listener (the seeds; Postfix
        // smtpd_tls_auth_only): a password never crosses the wire in clear.
        if self.tls_active() && self.shared.current_auth().is_some() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        lines.extend(["ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8"].map(String::from));
        Reply::plain(250, lines)
    }

    fn mail(&mut self, from: Option<Mailbox>, params: MailParams) {
        if self.state == State::Fresh {
            return self.error(canned::bad_sequence("Error: send HELO/EHLO first"));
        }
        if self.txn.is_some() {
            return self.error(canned::bad_sequence("Error: nested MAIL command"));
        }
        if matches!(self.role, Role::Submission | Role::Smtps) && self.authenticated.is_none() {
            return self.error(Reply::new(530, "5.7.0", "Authentication required"));
        }
        let max = self.shared.cfg.limits.max_message_size;
        if params.size.is_some_and(|s| s > max) {
            return self.reply(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"));
        }
        self.txn = Some(Transaction {
            sender: from,
            params,
            recipients: Vec::new(),
        });
        self.state = State::Transaction;
        self.reply(canned::ok("2.1.0"));
    }

    fn rcpt(&mut self, to: Mailbox) {
        let cfg = &self.shared.cfg;
        let max_rcpt = cfg.limits.max_recipients;
        let Some(txn) = &self.txn else {
            return self.error(canned::bad_sequence("Error: need MAIL command"));
        };
        if txn.recipients.len() >= max_rcpt {
            return self.reply(Reply::new(452, "4.5.3", "Error: too many recipients"));
        }
        // RFC 5321 §4.5.1: <postmaster> without a domain must be accepted.
        let rcpt = if to.is_bare_postmaster() {
            format!("postmaster@{}", cfg.domains[0])
        } else {
            to.to_string()
        };
        let reply = match route::classify(&rcpt, &cfg.domains) {
            Destination::Local { .. } => None,
            Destination::Invalid(why) => Some(Reply::new(
                550,
                "5.1.1",
                format!("<{rcpt}>: Recipient address rejected: {why}"),
            )),
            Destination::Remote { .. } => {
                if self.authenticated.is_some() || cfg.may_relay(self.ip) {
                    None
                } else {
                    log::info!(
                        "NOQUEUE: reject: RCPT from {}: 554 5.7.1 <{rcpt}>: Relay access denied; from=<{}> to=<{rcpt}>",
                        self.client,
                        txn.sender.as_ref().map(|m| m.to_string()).unwrap_or_default()
                    );
                    Some(canned::relay_denied(&rcpt))
                }
            }
        };
        match reply {
            Some(r) => self.error(r),
            None => {
                if let Some(t) = self.txn.as_mut() {
                    t.recipients.push(rcpt);
                }
                self.reply(canned::ok("2.1.5"));
            }
        }
    }

    /// RFC 3848 protocol keyword for the `Received:` header.
    fn protocol(&self) -> String {
        let base = if self.esmtp { "ESMTP" } else { "SMTP" };
        let s = if self.tls_active() { "S" } else { "" };
        let a = if self.authenticated.is_some() {
            "A"
        } else {
            ""
        };
        if self.esmtp {
            format!("{base}{s}{a}")
        } else {
            base.to_string()
        }
    }

    /// Submission mode (RFC 6409 §8): adds `Date:` and `Message-ID:` when the client's
    /// header section (starting at `start` in `content`) has none.
    fn complete_headers(&self, content: &mut Vec<u8>, start: usize, id: &QueueId) {
        let headers = &content[start..];
        let end = if headers.starts_with(b"\r\n") {
            0
        } else {
            headers
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| i + 2)
                .unwrap_or(headers.len())
        };
        let has = |name: &[u8]| {
            headers[..end].split(|&b| b == b'\n').any(|line| {
                line.len() > name.len()
                    && line[..name.len()].eq_ignore_ascii_case(name)
                    && line[name.len()] == b':'
            })
        };
        let mut add = String::new();
        if !has(b"Date") {
            add.push_str(&format!(
                "Date: {}\r\n",
                crate::clock::rfc5322_date(unix_now())
            ));
        }
        if !has(b"Message-ID") {
            add.push_str(&format!(
                "Message-ID: <{}.{id}@{}>\r\n",
                unix_now(),
                self.shared.cfg.hostname
            ));
        }
        if !add.is_empty() {
            content.splice(start..start, add.into_bytes());
        }
    }

    fn received_header(&self, id: &QueueId, recipients: &[String]) -> String {
        let cfg = &self.shared.cfg;
        let mut h = format!(
            "Received: from {} (unknown [{}])\r\n",
            self.helo.as_deref().unwrap_or("unknown"),
            self.ip
        );
        if let Some(tls) = &self.tls {
            h.push_str(&format!("\t(using {tls})\r\n"));
        }
        if let Some(user) = &self.authenticated {
            // The user name, never anything of the password.
            h.push_str(&format!("\t(Authenticated sender: {user})\r\n"));
        }
        h.push_str(&format!(
            "\tby {} (tinymta) with {} id {}",
            cfg.hostname,
            self.protocol(),
            id
        ));
        match recipients {
            [one] => h.push_str(&format!("\r\n\tfor <{one}>; ")),
            _ => h.push_str(";\r\n\t"),
        }
        h.push_str(&crate::clock::rfc5322_date(unix_now()));
        h.push_str("\r\n");
        h
    }

    /// DATA: streams the content into a new queue file, makes it durable and only then
    /// replies 250. Returns `Ok(false)` when the session must end.
    async fn receive_message(&mut self) -> std::io::Result<bool> {
        let Some(txn) = self.txn.take() else {
            return Ok(true);
        };
        self.state = State::Ready;
        let id = QueueId::generate();
        let env = Envelope {
            id: id.clone(),
            arrival: unix_now(),
            sender: txn
                .sender
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
            recipients: txn.recipients.clone(),
            client: self.client.clone(),
            protocol: self.protocol(),
        };
        let spool = self.shared.spool.clone();
        let mut reader = DataReader::new(self.shared.cfg.limits.max_message_size);
        let mut chunk = self.received_header(&id, &txn.recipients).into_bytes();
        // Submission mode completes the header section once it has arrived (before the
        // first piece is written).
        let mut headers_pending = matches!(self.role, Role::Submission | Role::Smtps);
        let header_start = chunk.len();
        let mut file: Option<File> = None;
        let mut write_error: Option<std::io::Error> = None;

        // Content may already be buffered behind the DATA line (pipelining).
        let pending = self.input.take_pending();
        let used = reader.feed(&pending, &mut chunk);
        self.input.extend(&pending[used..]);
        while !reader.is_done() {
            match self.read_input(self.shared.cfg.limits.data_timeout).await {
                Ok(Input::Bytes) => {
                    let pending = self.input.take_pending();
                    let used = reader.feed(&pending, &mut chunk);
                    self.input.extend(&pending[used..]);
                }
                other => {
                    spool.abandon(&id);
                    match other {
                        Ok(Input::TimedOut) => {
                            log::info!("timeout after DATA from {}", self.client);
                            self.reply(canned::timeout());
                            self.flush().await?;
                        }
                        Ok(Input::ShuttingDown) => {
                            // Finishing would take unbounded time; the client retries.
                            self.reply(canned::shutting_down());
                            self.flush().await?;
                        }
                        Ok(_) => log::info!("lost connection after DATA from {}", self.client),
                        Err(e) => return Err(e),
                    }
                    return Ok(false);
                }
            }
            if chunk.len() >= WRITE_CHUNK && write_error.is_none() && reader.verdict().is_none() {
                if std::mem::take(&mut headers_pending) {
                    self.complete_headers(&mut chunk, header_start, &id);
                }
                let (f, c, res) = write_chunk(
                    spool.clone(),
                    env.clone(),
                    file.take(),
                    std::mem::take(&mut chunk),
                )
                .await;
                file = f;
                chunk = c;
                chunk.clear();
                write_error = res.err();
            }
        }

        if headers_pending {
            self.complete_headers(&mut chunk, header_start, &id);
        }
        if let Some(r) = reader.verdict() {
            spool.abandon(&id);
            log::info!("{id}: reject: DATA from {}: {}", self.client, r.summary());
            self.error(r);
            return Ok(true);
        }
        let size = reader.size();
        let res = match write_error {
            Some(e) => Err(e),
            None => {
                let (spool2, env2, id2) = (spool.clone(), env.clone(), id.clone());
                let f = file.take();
                let res = smol::unblock(move || -> std::io::Result<()> {
                    let mut f = match f {
                        Some(f) => f,
                        None => spool2.create(&env2)?,
                    };
                    f.write_all(&chunk)?;
                    spool2.finish(&id2, f)
                })
                .await;
                match res {
                    Ok(()) => self.shared.commit.commit().await,
                    Err(e) => Err(e),
                }
            }
        };
        match res {
            Ok(()) => {
                logline::queued(&id.0, &env.sender, size, env.recipients.len());
                self.reply(Reply::new(250, "2.0.0", format!("Ok: queued as {id}")));
                let _ = self.shared.scheduler.try_send(Event::New(id));
            }
            Err(e) => {
                spool.abandon(&id);
                log::error!("{id}: cannot write queue file: {e}");
                self.reply(Reply::new(451, "4.3.0", "Error: queue file write error"));
            }
        }
        Ok(true)
    }
}

/// Writes one piece of content to the queue file on the blocking pool, creating the
/// file first if needed. Hands the file and the (emptied) buffer back.
async fn write_chunk(
    spool: crate::queue::Spool,
    env: Envelope,
    file: Option<File>,
    chunk: Vec<u8>,
) -> (Option<File>, Vec<u8>, std::io::Result<()>) {
    smol::unblock(move || {
        let mut f = match file {
            Some(f) => f,
            None => match spool.create(&env) {
                Ok(f) => f,
                Err(e) => return (None, chunk, Err(e)),
            },
        };
        let res = f.write_all(&chunk);
        (Some(f), chunk, res)
    })
    .await
}
