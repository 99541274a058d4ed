//! The server side of one SMTP session as a sans-IO state machine, with named states
//! as in OpenSMTPD's `smtp_session.c`: command lines in, replies and the next action
//! (`Next`) out. It owns the protocol rules — command order, the inbound TLS level
//! rules (RFC 3207), the relay decision, the recipient limit — and what it adds to the
//! header of what it accepts (in `headers`' formats). At RCPT it asks the address
//! tables (`address::Rewriter`) what the recipient becomes, so unknown users, forged
//! SRS addresses and alias loops are refused there with a 550 — never accepted and
//! bounced later — and the transaction carries the expanded recipients the queue file
//! is written with.
//!
//! Sockets, timers, the TLS handshake and the queue file belong to `connection`, which
//! feeds this machine; AUTH is `sasl`'s.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use super::checks::{self, MessageChecks, SpfQuery};
use super::relay::may_relay;
use super::sasl::{self, Credentials, Login, Progress, Verdict, AUTH_FAILURE_DELAY};
use super::{AuthUsers, InboundTls, Listener, Role, Settings};
use crate::address::{Recipient, Recipients, Rewriter, SharedRewriter};
use crate::auth::Sasl;
use crate::clock::unix_now;
use crate::headers::{self, Header, Origin};
use crate::logline;
use crate::mailauth::spf::{self, SpfResult};
use crate::outbound::route::Route;
use crate::queue::{Envelope, EnvelopeDsn, QueueId};
use crate::smtp::command::{self, Command, MailParams};
use crate::smtp::dsn::RcptDsn;
use crate::smtp::line::Line;
use crate::smtp::reply::{canned, Reply};
use crate::smtp::{Mailbox, MAX_COMMAND_LINE};
use crate::tls::{ClientCert, TlsInfo};

/// Errors (syntax, sequence, unknown commands) before the client is disconnected,
/// as Postfix's `smtpd_hard_error_limit`.
const MAX_ERRORS: u32 = 20;

/// Where the session is in the protocol, with the data that only exists there.
pub enum State {
    /// Greeting sent, or TLS just started: HELO/EHLO expected.
    Fresh,
    /// HELO/EHLO done; no transaction.
    Ready,
    /// MAIL accepted: collecting recipients until DATA or the first BDAT (boxed: it is
    /// the largest state by far, with the MAIL parameters and the DSN requests).
    Transaction(Box<Transaction>),
    /// BDAT chunks arriving (RFC 3030): the transaction is with the connection, which
    /// holds the content so far. `failed`: a chunk was refused with this reply; the
    /// chunks the client pipelined behind it are discarded with it until `BDAT LAST`
    /// or RSET (§4.2: the client must not send more, the server must cope).
    Chunking { failed: Option<Reply> },
    /// AUTH accepted: the client's next line belongs to this SASL exchange.
    Auth(Sasl),
    /// QUIT, too many errors, or too many failed AUTH attempts.
    Closing,
}

/// The envelope being collected.
pub struct Transaction {
    sender: Option<Mailbox>,
    params: MailParams,
    /// As the client gave them (the recipient limit, the `Received:` header).
    recipients: Vec<String>,
    /// What they became, for the queue file.
    queued: Recipients,
    /// The DSN requests of the RCPTs (NOTIFY, ORCPT), per queued recipient; those of
    /// MAIL are in `params`.
    rcpt_dsn: Vec<(String, RcptDsn)>,
    /// Mail from outside: the SPF result, made at the first accepted RCPT, and the
    /// time its lookups took.
    spf: Option<Box<(SpfResult, Duration)>>,
    /// The accepted recipient waiting for that result.
    waiting: Option<Box<(Mailbox, RcptDsn, Recipient)>>,
}

/// What the client called itself.
struct Hello {
    name: String,
    /// EHLO rather than HELO.
    esmtp: bool,
}

/// What the connection must do once the replies queued so far are sent.
pub enum Next {
    /// Read the next line.
    Continue,
    /// Hand-shake TLS, then report it with `tls_started`.
    StartTls,
    /// Read the message content of this transaction (354 is queued).
    Data(Transaction),
    /// Read the `size` octets of a BDAT chunk into the message; `start`: the first
    /// chunk, with the transaction it begins the content of. `last`: then store it.
    /// The session is `Chunking` until then (or `Ready` after the last).
    Chunk {
        size: u64,
        last: bool,
        start: Option<Transaction>,
    },
    /// Read and discard the `size` octets of a refused BDAT chunk (its reply is queued).
    Skip(u64),
    /// Check these credentials, then report with `credentials_checked`.
    Verify(Credentials),
    /// Evaluate SPF for this transaction, then report with `spf_checked`.
    CheckSpf(SpfQuery),
}

pub struct Session {
    settings: Rc<Settings>,
    /// The address tables as they are now (a SIGHUP may replace them).
    rewriter: SharedRewriter,
    role: Role,
    level: InboundTls,
    ip: IpAddr,
    /// `unknown[ip]`, Postfix's client name (no reverse lookup yet).
    client: String,
    state: State,
    /// From HELO/EHLO, for the `Received:` header; `None` while `Fresh`.
    hello: Option<Hello>,
    tls: Option<TlsInfo>,
    login: Login,
    errors: u32,
    /// Replies in wire form, not yet sent: with PIPELINING the connection sends them
    /// in one write when it has no complete command left to answer.
    output: Vec<u8>,
}

impl Session {
    pub fn new(
        settings: Rc<Settings>,
        rewriter: SharedRewriter,
        users: AuthUsers,
        listener: &Listener,
        ip: IpAddr,
    ) -> Session {
        // A [::] listener sees IPv4 clients as IPv4-mapped IPv6: name them as IPv4.
        let ip = ip.to_canonical();
        Session {
            settings,
            rewriter,
            role: listener.role,
            level: listener.tls,
            ip,
            client: logline::client_name(None, ip),
            state: State::Fresh,
            hello: None,
            tls: None,
            login: Login::new(users),
            errors: 0,
            output: Vec::new(),
        }
    }

    pub fn client(&self) -> &str {
        &self.client
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Port 465: the handshake comes before the greeting.
    pub fn implicit_tls(&self) -> bool {
        self.level == InboundTls::Implicit
    }

    pub fn is_closing(&self) -> bool {
        matches!(self.state, State::Closing)
    }

    /// Whether a BDAT transaction is under way: when not, content the connection holds
    /// from earlier chunks is abandoned (RSET, EHLO, STARTTLS, QUIT ended it).
    pub fn is_chunking(&self) -> bool {
        matches!(self.state, State::Chunking { .. })
    }

    /// The longest line the current state accepts, CRLF included.
    pub fn line_limit(&self) -> usize {
        match self.state {
            State::Auth(_) => sasl::MAX_SASL_LINE,
            _ => MAX_COMMAND_LINE,
        }
    }

    /// Takes the replies queued so far, in wire form.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Bytes of replies queued and not yet taken.
    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    pub fn reply(&mut self, r: Reply) {
        self.output.extend_from_slice(r.to_wire().as_bytes());
    }

    /// Replies with an error and counts it; too many close the session.
    pub fn error(&mut self, r: Reply) {
        self.reply(r);
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            log::warn!("too many errors from {}", self.client);
            self.reply(Reply::new(421, "4.7.0", "Error: too many errors"));
            self.state = State::Closing;
        }
    }

    /// The 220 banner.
    pub fn greet(&mut self) {
        let banner = Reply::plain(
            220,
            vec![format!("{} ESMTP tinymta", self.settings.hostname)],
        );
        self.reply(banner);
    }

    /// TLS is up: the session starts over (RFC 3207 §4.2).
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.hello = None;
        self.state = State::Fresh;
    }

    fn tls_active(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether the client is one of ours — logged in, in `--relay-network`, or with a
    /// certificate listed in `--relay-ccert` — rather than the Internet: it may relay,
    /// and its mail is mail we originate (DKIM-signed), not mail we receive.
    pub fn is_own_client(&self) -> bool {
        self.login.user().is_some()
            || may_relay(&self.settings.relay_networks, self.ip)
            || self.settings.client_certs.may_relay(self.client_cert())
    }

    /// The certificate the client presented in this TLS session.
    fn client_cert(&self) -> Option<&ClientCert> {
        self.tls.as_ref().and_then(|t| t.client_cert.as_deref())
    }

    /// `--tls-require-ccert`: the refusal of MAIL for a client from a listed network
    /// without a certificate that verified (Postfix's `smtpd_tls_req_ccert` refuses at
    /// MAIL too, so EHLO, STARTTLS and QUIT still work).
    fn missing_client_cert(&self) -> Option<Reply> {
        let policy = &self.settings.client_certs;
        if !policy.is_required(self.ip) {
            return None;
        }
        let Some(tls) = &self.tls else {
            return Some(canned::must_starttls());
        };
        (!policy.satisfies(tls.client_cert.as_deref(), tls.trust)).then(|| {
            Reply::new(
                530,
                "5.7.0",
                "Error: a client certificate issued by a trusted CA is required",
            )
        })
    }

    /// Submission (ports 587, 465): AUTH is required and the header section is
    /// completed (RFC 6409).
    pub fn is_submission(&self) -> bool {
        matches!(self.role, Role::Submission | Role::Smtps)
    }

    /// Handles one input line and queues its reply.
    pub fn line(&mut self, line: Line) -> Next {
        // Inside an AUTH exchange the line is the client's SASL response, and whatever
        // it is, it moves the exchange on or ends it.
        let exchange = match std::mem::replace(&mut self.state, State::Ready) {
            State::Auth(exchange) => Some(exchange),
            other => {
                self.state = other;
                None
            }
        };
        match (line, exchange) {
            (Line::TooLong, _) => {
                self.error(canned::line_too_long());
                Next::Continue
            }
            (Line::Complete(bytes), Some(exchange)) => {
                self.progress(sasl::respond(exchange, &bytes))
            }
            (Line::Complete(bytes), None) => self.command(&bytes),
        }
    }

    fn progress(&mut self, p: Progress) -> Next {
        match p {
            Progress::Challenge(exchange, challenge) => {
                self.state = State::Auth(exchange);
                self.reply(challenge);
                Next::Continue
            }
            Progress::Verify(credentials) => Next::Verify(credentials),
            Progress::Refused(r) => {
                self.error(r);
                Next::Continue
            }
        }
    }

    /// Reports the check of credentials from `Next::Verify`. Returns the pause the
    /// connection must make before it sends the reply.
    pub fn credentials_checked(&mut self, credentials: Credentials, ok: bool) -> Option<Duration> {
        match self.login.verdict(&self.client, credentials, ok) {
            Verdict::LoggedIn(r) => {
                self.reply(r);
                None
            }
            Verdict::Failed { reply, farewell } => {
                self.reply(reply);
                if let Some(bye) = farewell {
                    self.reply(bye);
                    self.state = State::Closing;
                }
                Some(AUTH_FAILURE_DELAY)
            }
        }
    }

    fn command(&mut self, line: &[u8]) -> Next {
        let utf8 = matches!(&self.state, State::Transaction(t) if t.params.smtputf8);
        let cmd = match command::parse(line, utf8) {
            Ok(c) => c,
            Err(r) => {
                self.error(r);
                if command::is_bdat(line) && !self.is_closing() {
                    // Where its chunk ends is unknown: its bytes would be taken for
                    // commands. Postfix and Exim hang up too.
                    self.reply(Reply::new(
                        421,
                        "4.5.0",
                        "Error: cannot find the end of that BDAT chunk",
                    ));
                    self.state = State::Closing;
                }
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
            return match cmd {
                Command::Bdat { size, .. } => Next::Skip(size),
                _ => Next::Continue,
            };
        }
        match cmd {
            Command::Ehlo(name) => {
                self.hello(name, true);
                let r = self.ehlo_reply();
                self.reply(r);
            }
            Command::Helo(name) => {
                self.hello(name, false);
                let r = Reply::plain(250, vec![self.settings.hostname.clone()]);
                self.reply(r);
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, dsn } => return self.rcpt(to, dsn),
            Command::Data => return self.data(),
            Command::Bdat { size, last } => return self.bdat(size, last),
            Command::Rset => {
                if let State::Transaction(_) | State::Chunking { .. } = self.state {
                    self.state = State::Ready;
                }
                self.reply(canned::ok("2.0.0"));
            }
            Command::Noop => self.reply(canned::ok("2.0.0")),
            Command::Quit => {
                self.reply(Reply::new(221, "2.0.0", "Bye"));
                self.state = State::Closing;
            }
            Command::Vrfy => self.reply(Reply::new(
                252,
                "2.0.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Command::Expn => self.error(Reply::new(502, "5.5.1", "Error: EXPN not supported")),
            Command::Help => self.reply(Reply::new(214, "2.0.0", "See RFC 5321")),
            Command::Starttls => return self.starttls(),
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                let p = self.login.start(
                    self.tls_active(),
                    &self.state,
                    &mechanism,
                    initial_response.as_deref(),
                );
                return self.progress(p);
            }
        }
        Next::Continue
    }

    /// HELO/EHLO: (re)starts the session, dropping any transaction (RFC 5321 §4.1.4).
    fn hello(&mut self, name: String, esmtp: bool) {
        self.hello = Some(Hello { name, esmtp });
        self.state = State::Ready;
    }

    fn ehlo_reply(&self) -> Reply {
        let mut lines = vec![
            self.settings.hostname.clone(),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.settings.limits.max_message_size),
        ];
        if !self.tls_active() && matches!(self.level, InboundTls::May | InboundTls::Encrypt) {
            lines.push("STARTTLS".to_string());
        }
        lines.extend(self.login.ehlo_keyword(self.tls_active()).map(String::from));
        lines.extend(["ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8"].map(String::from));
        if self.tls_active() {
            // RFC 8689 §2: only where the client's hop is itself TLS.
            lines.push("REQUIRETLS".to_string());
        }
        // RFC 3030 without BINARYMIME: chunks carry 7bit/8BITMIME content as DATA does.
        lines.push("CHUNKING".to_string());
        Reply::plain(250, lines)
    }

    fn starttls(&mut self) -> Next {
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
        Next::Continue
    }

    fn mail(&mut self, from: Option<Mailbox>, params: MailParams) {
        match self.state {
            State::Fresh => return self.error(canned::bad_sequence("Error: send HELO/EHLO first")),
            State::Transaction(_) | State::Chunking { .. } => {
                return self.error(canned::bad_sequence("Error: nested MAIL command"))
            }
            _ => {}
        }
        if self.is_submission() && self.login.user().is_none() {
            return self.error(Reply::new(530, "5.7.0", "Authentication required"));
        }
        if params.requiretls && !self.tls_active() {
            // RFC 8689 §4.1: the hop that brings the message must be TLS too.
            return self.reply(Reply::new(
                530,
                "5.7.10",
                "REQUIRETLS needs a TLS connection",
            ));
        }
        if let Some(r) = self.missing_client_cert() {
            log::info!(
                "NOQUEUE: reject: MAIL from {}: {}: no verified client certificate",
                self.client,
                r.summary()
            );
            return self.error(r);
        }
        let max = self.settings.limits.max_message_size;
        if params.size.is_some_and(|s| s > max) {
            return self.reply(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"));
        }
        if !self.settings.queue_space.admits(params.size.unwrap_or(0)) {
            return self.reply(Reply::new(452, "4.3.1", "Insufficient system storage"));
        }
        self.state = State::Transaction(Box::new(Transaction {
            sender: from,
            params,
            recipients: Vec::new(),
            queued: Recipients::default(),
            rcpt_dsn: Vec::new(),
            spf: None,
            waiting: None,
        }));
        self.reply(canned::ok("2.1.0"));
    }

    fn rcpt(&mut self, to: Mailbox, dsn: RcptDsn) -> Next {
        let txn = match &self.state {
            State::Transaction(txn) => txn,
            State::Chunking { .. } => {
                self.error(canned::bad_sequence("Error: RCPT after BDAT"));
                return Next::Continue;
            }
            _ => {
                self.error(canned::bad_sequence("Error: need MAIL command"));
                return Next::Continue;
            }
        };
        if txn.recipients.len() >= self.settings.limits.max_recipients {
            self.reply(Reply::new(452, "4.5.3", "Error: too many recipients"));
            return Next::Continue;
        }
        // RFC 5321 §4.5.1: <postmaster> without a domain must be accepted.
        let rcpt = if to.is_bare_postmaster() {
            Mailbox {
                local: "postmaster".into(),
                domain: self.settings.router.local_domains[0].clone(),
            }
        } else {
            to
        };
        let rewriter = self.rewriter.borrow().clone();
        let accepted = self.decide(&rewriter, &rcpt);
        let State::Transaction(txn) = &self.state else {
            return Next::Continue;
        };
        // Mail from outside: SPF is evaluated once, for the first recipient accepted.
        if let (Ok(_), None, true) = (&accepted, &txn.spf, self.is_checked()) {
            let query = SpfQuery {
                ip: self.ip,
                mail_from: txn
                    .sender
                    .as_ref()
                    .map(Mailbox::to_string)
                    .unwrap_or_default(),
                helo: self
                    .hello
                    .as_ref()
                    .map(|h| h.name.clone())
                    .unwrap_or_default(),
            };
            if let (State::Transaction(t), Ok(accepted)) = (&mut self.state, accepted) {
                t.waiting = Some(Box::new((rcpt, dsn, accepted)));
            }
            return Next::CheckSpf(query);
        }
        self.rcpt_decided(rcpt, dsn, accepted);
        Next::Continue
    }

    /// Replies to RCPT once it is decided, SPF included.
    fn rcpt_decided(&mut self, rcpt: Mailbox, dsn: RcptDsn, accepted: Result<Recipient, Reply>) {
        let State::Transaction(t) = &self.state else {
            return;
        };
        let accepted = match t.spf.as_deref() {
            Some((spf, _))
                if self.settings.enforce.spf_reject && spf.result == spf::Verdict::Fail =>
            {
                accepted.and(Err(checks::spf_refusal(spf, self.ip)))
            }
            _ => accepted,
        };
        match accepted {
            Err(r) => {
                let sender = t.sender.as_ref().map(|m| m.to_string());
                log::info!(
                    "NOQUEUE: reject: RCPT from {}: {}; from=<{}> to=<{rcpt}>",
                    self.client,
                    r.summary(),
                    sender.unwrap_or_default()
                );
                self.error(r)
            }
            Ok(accepted) => {
                if let State::Transaction(t) = &mut self.state {
                    t.recipients.push(rcpt.to_string());
                    // Every address the recipient became asks for what it asked.
                    if !dsn.is_empty() {
                        for target in &accepted.targets {
                            t.rcpt_dsn.push((target.to_string(), dsn.clone()));
                        }
                    }
                    t.queued.add(accepted);
                }
                self.reply(canned::ok("2.1.5"));
            }
        }
    }

    /// Reports the SPF result asked for with `Next::CheckSpf`, and the time it took;
    /// the recipient that waited for it gets its reply.
    pub fn spf_checked(&mut self, spf: SpfResult, spent: Duration) {
        let State::Transaction(t) = &mut self.state else {
            return;
        };
        t.spf = Some(Box::new((spf, spent)));
        if let Some((rcpt, dsn, accepted)) = t.waiting.take().map(|w| *w) {
            self.rcpt_decided(rcpt, dsn, Ok(accepted));
        }
    }

    /// Whether mail in this session is checked: the client is not one of ours.
    fn is_checked(&self) -> bool {
        !self.is_own_client()
    }

    /// The checks of the message of `txn`, when it comes from outside.
    pub fn message_checks(&self, txn: &Transaction) -> Option<MessageChecks> {
        let (spf, spent) = txn.spf.as_deref().cloned()?;
        Some(MessageChecks::new(spf, spent, &self.settings.hostname))
    }

    /// Whether `rcpt` is accepted, and what it becomes; or the reply that refuses it.
    fn decide(&self, rewriter: &Rewriter, rcpt: &Mailbox) -> Result<Recipient, Reply> {
        let rejected = |status: &str, why: &dyn std::fmt::Display| {
            Reply::new(
                550,
                status,
                format!("<{rcpt}>: Recipient address rejected: {why}"),
            )
        };
        let accepted = rewriter
            .recipient(rcpt, unix_now())
            .map_err(|e| rejected(e.status(), &e))?;
        // Ours to accept from anyone: a local domain (even when a transport entry
        // relays it onward), a virtual domain, a bounce returning through SRS.
        // Anything else only from relay clients.
        let router = &self.settings.router;
        let ours = accepted.returned
            || router.is_local(&rcpt.domain)
            || rewriter.is_virtual_domain(&rcpt.domain);
        if !ours && !self.is_own_client() {
            return Err(canned::relay_denied(&rcpt.to_string()));
        }
        // Routed as delivery will route them: a local part that cannot be a Maildir is
        // refused now rather than bounced.
        for t in &accepted.targets {
            if let Route::Invalid(why) = router.route(&t.to_string()) {
                return Err(rejected("5.1.1", &why));
            }
        }
        Ok(accepted)
    }

    /// DATA: the transaction leaves the state with `Next::Data`; the next command after
    /// the content finds the session `Ready`.
    fn data(&mut self) -> Next {
        match self.take_transaction("DATA") {
            Ok(txn) => {
                self.reply(Reply::plain(
                    354,
                    vec!["End data with <CR><LF>.<CR><LF>".into()],
                ));
                Next::Data(txn)
            }
            Err(refusal) => {
                self.error(refusal);
                Next::Continue
            }
        }
    }

    /// The transaction with recipients that DATA or the first BDAT takes out of the
    /// state (leaving `Ready`), or the refusal; a transaction without recipients stays.
    fn take_transaction(&mut self, verb: &str) -> Result<Transaction, Reply> {
        match std::mem::replace(&mut self.state, State::Ready) {
            State::Transaction(t) if !t.recipients.is_empty() => Ok(*t),
            other => {
                let refusal = match other {
                    State::Transaction(_) => Reply::new(554, "5.5.1", "Error: no valid recipients"),
                    // RFC 3030 §3: DATA and BDAT do not mix in one transaction.
                    State::Chunking { .. } => {
                        canned::bad_sequence(&format!("Error: {verb} after BDAT"))
                    }
                    _ => canned::bad_sequence("Error: need MAIL command"),
                };
                self.state = other;
                Err(refusal)
            }
        }
    }

    /// BDAT: the first chunk takes the transaction as DATA does; the next ones add to
    /// it. A refused chunk is read and discarded (`Next::Skip`), so the session stays
    /// in step with the client.
    fn bdat(&mut self, size: u64, last: bool) -> Next {
        let next_state = || {
            if last {
                State::Ready
            } else {
                State::Chunking { failed: None }
            }
        };
        match &self.state {
            State::Chunking { failed: Some(r) } => {
                let r = r.clone();
                self.error(r);
                if last {
                    self.state = State::Ready;
                }
                Next::Skip(size)
            }
            State::Chunking { failed: None } => {
                self.state = next_state();
                Next::Chunk {
                    size,
                    last,
                    start: None,
                }
            }
            _ => match self.take_transaction("BDAT") {
                Ok(txn) => {
                    self.state = next_state();
                    Next::Chunk {
                        size,
                        last,
                        start: Some(txn),
                    }
                }
                Err(refusal) => {
                    self.error(refusal);
                    Next::Skip(size)
                }
            },
        }
    }

    /// The connection has read a BDAT chunk that is not the last.
    pub fn chunk_received(&mut self, size: u64) {
        self.reply(Reply::new(
            250,
            "2.0.0",
            format!("Ok: {size} octets received"),
        ));
    }

    /// The connection refused the content at the chunk it has just read (too large,
    /// a bad line): the rest of the chunks of the transaction get the same reply.
    pub fn chunk_refused(&mut self, r: Reply) {
        if let State::Chunking { failed } = &mut self.state {
            *failed = Some(r.clone());
        }
        self.error(r);
    }

    /// The queue file's envelope for `txn`: the expanded recipients, and the sender
    /// SRS-rewritten if they forward the mail.
    pub fn envelope(&self, id: &QueueId, txn: &Transaction) -> Envelope {
        let now = unix_now();
        let sender = txn.sender.as_ref().map(|m| m.to_string());
        let sender = self.rewriter.borrow().sender(
            sender.as_deref().unwrap_or_default(),
            txn.queued.forwarded(),
            now,
        );
        Envelope {
            id: id.clone(),
            arrival: now,
            sender,
            recipients: txn.queued.as_slice().to_vec(),
            client: self.client.clone(),
            protocol: self.protocol(),
            unexpanded: false,
            requiretls: txn.params.requiretls,
            dsn: {
                let mut dsn = EnvelopeDsn {
                    message: txn.params.dsn.clone(),
                    rcpts: Vec::new(),
                };
                for (rcpt, d) in &txn.rcpt_dsn {
                    dsn.set(rcpt, d);
                }
                dsn
            },
        }
    }

    /// RFC 3848 protocol keyword for the `Received:` header.
    fn protocol(&self) -> String {
        let esmtp = self.hello.as_ref().is_some_and(|h| h.esmtp);
        if !esmtp {
            return "SMTP".to_string();
        }
        let s = if self.tls_active() { "S" } else { "" };
        let a = if self.login.user().is_some() { "A" } else { "" };
        format!("ESMTP{s}{a}")
    }

    /// Submission mode (RFC 6409 §8): adds `Date:` and `Message-ID:` when the client's
    /// header section (starting at `start` in `content`) has none.
    pub fn complete_headers(&self, content: &mut Vec<u8>, start: usize, id: &QueueId) {
        let header = Header::parse(&content[start..]);
        let add = headers::missing_origination_fields(
            &header,
            unix_now(),
            &id.0,
            &self.settings.hostname,
        );
        content.splice(start..start, add.into_bytes());
    }

    /// The `Received:` field for the message of `txn`.
    pub fn received_header(&self, id: &QueueId, txn: &Transaction) -> String {
        let origin = Origin::Smtp {
            helo: self.hello.as_ref().map_or("unknown", |h| h.name.as_str()),
            ip: self.ip,
            tls: self.tls.as_ref().map(TlsInfo::to_string),
            client_cert: self.tls.as_ref().and_then(|t| {
                Some(logline::client_cert_comment(
                    t.client_cert.as_deref()?,
                    t.trust,
                ))
            }),
            user: self.login.user(),
            protocol: &self.protocol(),
        };
        headers::received(
            &origin,
            &self.settings.hostname,
            &id.0,
            &txn.recipients,
            unix_now(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::sync::Arc;

    use openssl::base64;

    use super::*;
    use crate::address::envelope::test_rewriter;
    use crate::auth::{make_entry, AuthFile};
    use crate::inbound::relay::Cidr;
    use crate::inbound::Limits;
    use crate::outbound::route::Router;
    use crate::tls::Trust;

    /// A session without a socket, and what it answered.
    struct Client {
        session: Session,
        /// The SPF result the "connection" reports when asked to check.
        spf: spf::Verdict,
        /// The SPF checks asked for.
        spf_asked: Vec<SpfQuery>,
    }

    impl Client {
        fn new(role: Role, tls: InboundTls, ip: &str) -> Client {
            let users = make_entry("alice", b"pw", 1).unwrap();
            Client::with_users(
                role,
                tls,
                ip,
                Some(AuthFile::parse(&users, "test").unwrap()),
            )
        }

        fn with_users(role: Role, tls: InboundTls, ip: &str, users: Option<AuthFile>) -> Client {
            let router = Router {
                local_domains: vec!["example.org".into()],
                ..Router::default()
            };
            Client::with_router(role, tls, ip, users, router)
        }

        fn with_router(
            role: Role,
            tls: InboundTls,
            ip: &str,
            users: Option<AuthFile>,
            router: Router,
        ) -> Client {
            let settings = Settings {
                hostname: "mx.example.org".into(),
                router,
                relay_networks: vec![Cidr::parse("127.0.0.0/8").unwrap()],
                client_certs: Default::default(),
                limits: Limits {
                    max_message_size: 1000,
                    max_sessions: 10,
                    max_sessions_per_ip: 10,
                    max_recipients: 3,
                    command_timeout: Duration::from_secs(1),
                    data_timeout: Duration::from_secs(1),
                    tls_handshake_timeout: Duration::from_secs(1),
                },
                enforce: checks::Enforce::default(),
                resolver: None,
                queue_space: crate::queue::spool::FreeSpace::unchecked(),
            };
            let listener = Listener {
                addr: "127.0.0.1:25".parse().unwrap(),
                role,
                tls,
            };
            let users = Rc::new(RefCell::new(users.map(Arc::new)));
            let rewriter = Rewriter::none(&settings.router.local_domains);
            let rewriter = Rc::new(RefCell::new(Rc::new(rewriter)));
            let ip = ip.parse().unwrap();
            Client {
                session: Session::new(Rc::new(settings), rewriter, users, &listener, ip),
                spf: spf::Verdict::None,
                spf_asked: Vec::new(),
            }
        }

        /// Port 25 from `ip` with these address tables and SRS in example.org.
        fn with_tables(ip: &str, aliases: &str, virtual_map: &str, recipients: &str) -> Client {
            let c = Client::new(Role::Smtp, InboundTls::May, ip);
            c.session
                .rewriter
                .replace(Rc::new(rewriter(aliases, virtual_map, recipients)));
            c
        }

        /// Port 25 at `--tls-level may`, from a relay network.
        fn mx() -> Client {
            Client::new(Role::Smtp, InboundTls::May, "127.0.0.1")
        }

        /// Sends one line; returns the action and the replies in wire form.
        fn exchange(&mut self, line: &str) -> (Next, String) {
            let next = self.session.line(Line::Complete(line.as_bytes().to_vec()));
            (next, self.output())
        }

        /// Sends one line that needs no action from the connection but an SPF check,
        /// which gets `self.spf`.
        fn send(&mut self, line: &str) -> String {
            let (mut next, mut out) = self.exchange(line);
            if let Next::CheckSpf(query) = next {
                let result = SpfResult {
                    result: self.spf,
                    identity: spf::Identity::MailFrom,
                    sender: query.mail_from.clone(),
                    domain: query.mail_from.rsplit('@').next().unwrap().to_string(),
                    mechanism: None,
                    explanation: None,
                    problem: None,
                };
                self.spf_asked.push(query);
                self.session.spf_checked(result, Duration::from_secs(1));
                next = Next::Continue;
                out += &self.output();
            }
            assert!(matches!(next, Next::Continue), "{line}: {out}");
            out
        }

        fn output(&mut self) -> String {
            String::from_utf8(self.session.take_output()).unwrap()
        }

        fn start_tls(&mut self) {
            let (next, out) = self.exchange("STARTTLS");
            assert!(matches!(next, Next::StartTls), "{out}");
            assert_eq!(out, "220 2.0.0 Ready to start TLS\r\n");
            self.session.tls_started(TlsInfo {
                protocol: "TLSv1.3".into(),
                cipher: "TLS_AES_256_GCM_SHA384".into(),
                secret_bits: 256,
                algorithm_bits: 256,
                trust: Trust::Anonymous,
                note: None,
                resumed: false,
                client_cert: None,
            });
        }

        /// AUTH PLAIN with an initial response; the credentials it asks to check.
        fn auth_plain(&mut self, user: &str, password: &str) -> Credentials {
            let response = base64::encode_block(format!("\0{user}\0{password}").as_bytes());
            match self.exchange(&format!("AUTH PLAIN {response}")) {
                (Next::Verify(c), out) if out.is_empty() => c,
                (_, out) => panic!("AUTH PLAIN: {out}"),
            }
        }

        fn log_in(&mut self) {
            let credentials = self.auth_plain("alice", "pw");
            assert_eq!(self.session.credentials_checked(credentials, true), None);
            assert_eq!(self.output(), "235 2.7.0 Authentication successful\r\n");
        }

        /// Sends DATA; returns the transaction it hands to the connection.
        fn data(&mut self) -> Transaction {
            match self.exchange("DATA") {
                (Next::Data(t), out) => {
                    assert_eq!(out, "354 End data with <CR><LF>.<CR><LF>\r\n");
                    t
                }
                (_, out) => panic!("DATA: {out}"),
            }
        }
    }

    /// Tables for example.org (empty text: no such table), SRS with a fixed secret.
    fn rewriter(aliases: &str, virtual_map: &str, recipients: &str) -> Rewriter {
        test_rewriter("example.org", aliases, virtual_map, recipients)
    }

    const OK_MAIL: &str = "250 2.1.0 Ok\r\n";
    const OK_RCPT: &str = "250 2.1.5 Ok\r\n";
    const NEED_MAIL: &str = "503 5.5.1 Error: need MAIL command\r\n";
    const NEED_HELO: &str = "503 5.5.1 Error: send HELO/EHLO first\r\n";

    #[test]
    fn greeting_and_ehlo_keywords_follow_the_tls_level() {
        let mut c = Client::mx();
        c.session.greet();
        assert_eq!(c.output(), "220 mx.example.org ESMTP tinymta\r\n");
        assert_eq!(
            c.send("EHLO client.example.net"),
            "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-STARTTLS\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
        );
        assert_eq!(
            c.send("MAIL FROM:<a@example.net> REQUIRETLS"),
            "530 5.7.10 REQUIRETLS needs a TLS connection\r\n"
        );
        c.start_tls();
        let ehlo = c.send("EHLO client.example.net");
        assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
        assert!(ehlo.contains("250-AUTH PLAIN LOGIN\r\n"), "{ehlo}");
        assert!(ehlo.contains("250-REQUIRETLS\r\n"), "{ehlo}");
        assert_eq!(c.send("MAIL FROM:<a@example.net> REQUIRETLS"), OK_MAIL);

        let mut c = Client::new(Role::Smtp, InboundTls::None, "127.0.0.1");
        let ehlo = c.send("EHLO client.example.net");
        assert!(
            !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
            "{ehlo}"
        );
        assert_eq!(
            c.send("STARTTLS"),
            "502 5.5.1 Error: command not implemented\r\n"
        );
        assert_eq!(c.send("HELO client"), "250 mx.example.org\r\n");
    }

    #[test]
    fn a_transaction_in_order_hands_its_envelope_to_data() {
        let mut c = Client::mx();
        c.send("EHLO client.example.net");
        assert_eq!(c.send("MAIL FROM:<carol@example.net> SIZE=100"), OK_MAIL);
        assert_eq!(c.send("RCPT TO:<Bob@example.org>"), OK_RCPT);
        assert_eq!(c.send("RCPT TO:<postmaster>"), OK_RCPT);
        let txn = c.data();
        let id = QueueId("ABC123".into());
        let env = c.session.envelope(&id, &txn);
        assert_eq!(env.sender, "carol@example.net");
        assert_eq!(
            env.recipients,
            ["Bob@example.org", "postmaster@example.org"]
        );
        assert_eq!(env.client, "unknown[127.0.0.1]");
        assert_eq!(env.protocol, "ESMTP");
        let received = c.session.received_header(&id, &txn);
        assert!(
            received.starts_with(
                "Received: from client.example.net (unknown [127.0.0.1])\r\n\
                 \tby mx.example.org (tinymta) with ESMTP id ABC123;\r\n\t"
            ),
            "{received}"
        );
        // After DATA the session is ready for the next transaction.
        assert_eq!(c.send("RCPT TO:<bob@example.org>"), NEED_MAIL);
        assert_eq!(c.send("MAIL FROM:<>"), OK_MAIL);
    }

    #[test]
    fn commands_out_of_order_get_503() {
        let mut c = Client::mx();
        assert_eq!(c.send("MAIL FROM:<carol@example.net>"), NEED_HELO);
        assert_eq!(c.send("RCPT TO:<bob@example.org>"), NEED_MAIL);
        assert_eq!(c.send("DATA"), NEED_MAIL);
        c.send("EHLO client.example.net");
        assert_eq!(c.send("DATA"), NEED_MAIL);
        c.send("MAIL FROM:<carol@example.net>");
        assert_eq!(
            c.send("MAIL FROM:<carol@example.net>"),
            "503 5.5.1 Error: nested MAIL command\r\n"
        );
        assert_eq!(c.send("DATA"), "554 5.5.1 Error: no valid recipients\r\n");
        // The refused DATA keeps the transaction.
        assert_eq!(c.send("RCPT TO:<bob@example.org>"), OK_RCPT);
        c.data();
    }

    /// Sends a BDAT line; the action the connection gets and the replies.
    fn bdat(c: &mut Client, line: &str) -> (Option<(u64, bool, bool)>, Option<u64>, String) {
        match c.exchange(line) {
            (Next::Chunk { size, last, start }, out) => {
                (Some((size, last, start.is_some())), None, out)
            }
            (Next::Skip(n), out) => (None, Some(n), out),
            (_, out) => (None, None, out),
        }
    }

    #[test]
    fn bdat_takes_the_transaction_at_its_first_chunk_and_refuses_mixing() {
        let mut c = Client::mx();
        c.send("EHLO client.example.net");
        // Without a transaction the chunk is discarded, with a 503.
        assert_eq!(bdat(&mut c, "BDAT 5"), (None, Some(5), NEED_MAIL.into()));
        c.send("MAIL FROM:<carol@example.net>");
        assert_eq!(
            bdat(&mut c, "BDAT 7 LAST"),
            (
                None,
                Some(7),
                "554 5.5.1 Error: no valid recipients\r\n".into()
            )
        );
        c.send("RCPT TO:<bob@example.org>");
        assert_eq!(
            bdat(&mut c, "BDAT 10"),
            (Some((10, false, true)), None, "".into())
        );
        assert!(c.session.is_chunking());
        c.session.chunk_received(10);
        assert_eq!(c.output(), "250 2.0.0 Ok: 10 octets received\r\n");
        assert_eq!(c.send("DATA"), "503 5.5.1 Error: DATA after BDAT\r\n");
        assert_eq!(
            c.send("RCPT TO:<bob@example.org>"),
            "503 5.5.1 Error: RCPT after BDAT\r\n"
        );
        assert_eq!(
            c.send("MAIL FROM:<carol@example.net>"),
            "503 5.5.1 Error: nested MAIL command\r\n"
        );
        assert!(
            c.session.is_chunking(),
            "refusals keep the BDAT transaction"
        );
        assert_eq!(
            bdat(&mut c, "BDAT 0 LAST"),
            (Some((0, true, false)), None, "".into())
        );
        assert!(!c.session.is_chunking());
        assert_eq!(c.send("MAIL FROM:<carol@example.net>"), OK_MAIL);

        // RSET ends a BDAT transaction; so does EHLO.
        c.send("RCPT TO:<bob@example.org>");
        bdat(&mut c, "BDAT 1");
        assert_eq!(c.send("RSET"), "250 2.0.0 Ok\r\n");
        assert!(!c.session.is_chunking());
        assert_eq!(bdat(&mut c, "BDAT 1").1, Some(1));
    }

    #[test]
    fn chunks_after_a_refused_chunk_are_discarded_until_last() {
        let mut c = Client::mx();
        c.send("EHLO client.example.net");
        c.send("MAIL FROM:<carol@example.net>");
        c.send("RCPT TO:<bob@example.org>");
        bdat(&mut c, "BDAT 2000");
        let too_big = "552 5.3.4 Error: message file too big\r\n";
        c.session
            .chunk_refused(Reply::new(552, "5.3.4", "Error: message file too big"));
        assert_eq!(c.output(), too_big);
        assert_eq!(bdat(&mut c, "BDAT 10"), (None, Some(10), too_big.into()));
        assert_eq!(bdat(&mut c, "BDAT 3 LAST"), (None, Some(3), too_big.into()));
        assert!(!c.session.is_chunking());
        assert_eq!(c.send("MAIL FROM:<carol@example.net>"), OK_MAIL);
    }

    #[test]
    fn a_bdat_that_cannot_be_parsed_ends_the_session() {
        let mut c = Client::mx();
        c.send("EHLO client.example.net");
        assert_eq!(
            c.send("BDAT ten"),
            "501 5.5.4 Syntax: BDAT count [LAST]\r\n\
             421 4.5.0 Error: cannot find the end of that BDAT chunk\r\n"
        );
        assert!(c.session.is_closing());
        // Before STARTTLS at the encrypt level, a chunk is discarded with the 530.
        let mut c = Client::new(Role::Smtp, InboundTls::Encrypt, "127.0.0.1");
        assert_eq!(bdat(&mut c, "BDAT 4 LAST").1, Some(4));
    }

    #[test]
    fn rset_ends_the_transaction_but_not_the_greeting() {
        let mut c = Client::mx();
        assert_eq!(c.send("RSET"), "250 2.0.0 Ok\r\n");
        assert_eq!(c.send("MAIL FROM:<carol@example.net>"), NEED_HELO);
        c.send("EHLO client.example.net");
        c.send("MAIL FROM:<carol@example.net>");
        c.send("RCPT TO:<bob@example.org>");
        assert_eq!(c.send("RSET"), "250 2.0.0 Ok\r\n");
        assert_eq!(c.send("RCPT TO:<bob@example.org>"), NEED_MAIL);
        assert_eq!(c.send("MAIL FROM:<carol@example.net>"), OK_MAIL);
        // EHLO resets a transaction too.
        c.send("EHLO client.example.net");
        assert_eq!(c.send("RCPT TO:<bob@example.org>"), NEED_MAIL);
    }

    #[test]
    fn encrypt_level_answers_530_until_starttls_then_starts_over() {
        let mut c = Client::new(Role::Smtp, InboundTls::Encrypt, "127.0.0.1");
        let must = "530 5.7.0 Must issue a STARTTLS command first\r\n";
        assert!(c
            .send("EHLO client.example.net")
            .contains("250-STARTTLS\r\n"));
        assert_eq!(c.send("MAIL FROM:<carol@example.net>"), must);
        assert_eq!(c.send("HELO client"), must);
        assert_eq!(c.send("RSET"), must);
        assert_eq!(c.send("NOOP"), "250 2.0.0 Ok\r\n");
        c.start_tls();
        // RFC 3207 §4.2: the EHLO before TLS no longer counts.
        assert_eq!(c.send("MAIL FROM:<carol@example.net>"), NEED_HELO);
        c.send("EHLO client.example.net");
        assert_eq!(c.send("MAIL FROM:<carol@example.net>"), OK_MAIL);
        assert_eq!(
            c.send("STARTTLS"),
            "554 5.5.1 Error: TLS already active\r\n"
        );
    }

    #[test]
    fn auth_only_inside_tls_and_once() {
        let mut c = Client::mx();
        c.send("EHLO client.example.net");
        assert_eq!(
            c.send("AUTH PLAIN AGFsaWNlAHB3"),
            "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
        );
        c.start_tls();
        assert_eq!(
            c.send("AUTH PLAIN AGFsaWNlAHB3"),
            "503 5.5.1 Error: send EHLO first\r\n"
        );
        c.send("EHLO client.example.net");
        assert_eq!(
            c.send("AUTH CRAM-MD5"),
            "504 5.5.4 Error: unsupported authentication mechanism\r\n"
        );
        let credentials = c.auth_plain("alice", "pw");
        assert_eq!(
            (credentials.mechanism, credentials.user.as_str()),
            ("PLAIN", "alice")
        );
        assert_eq!(credentials.password, b"pw");
        assert_eq!(c.session.credentials_checked(credentials, true), None);
        assert_eq!(c.output(), "235 2.7.0 Authentication successful\r\n");
        assert_eq!(
            c.send("AUTH PLAIN AGFsaWNlAHB3"),
            "503 5.5.1 Error: already authenticated\r\n"
        );
        c.send("MAIL FROM:<alice@example.org>");
        c.send("RCPT TO:<bob@example.org>");
        let txn = c.data();
        let received = c.session.received_header(&QueueId("ID".into()), &txn);
        assert!(
            received.contains(
                "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
            ),
            "{received}"
        );
        assert!(
            received.contains("\t(Authenticated sender: alice)\r\n"),
            "{received}"
        );
        assert!(received.contains(" with ESMTPSA id ID\r\n\tfor <bob@example.org>; "));
    }

    #[test]
    fn auth_is_refused_when_disabled_or_inside_a_transaction() {
        let mut c = Client::with_users(Role::Smtp, InboundTls::May, "127.0.0.1", None);
        c.start_tls();
        assert!(!c.send("EHLO client.example.net").contains("AUTH"));
        assert_eq!(
            c.send("AUTH PLAIN AGFsaWNlAHB3"),
            "503 5.5.1 Error: authentication not enabled\r\n"
        );
        let mut c = Client::mx();
        c.start_tls();
        c.send("EHLO client.example.net");
        c.send("MAIL FROM:<carol@example.net>");
        assert_eq!(
            c.send("AUTH PLAIN AGFsaWNlAHB3"),
            "503 5.5.1 Error: MAIL transaction in progress\r\n"
        );
    }

    #[test]
    fn login_exchange_line_by_line_and_its_ends() {
        let mut c = Client::mx();
        c.start_tls();
        c.send("EHLO client.example.net");
        assert_eq!(c.session.line_limit(), MAX_COMMAND_LINE);
        assert_eq!(c.send("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n");
        // The exchange takes the next lines, up to RFC 4954's longer limit.
        assert_eq!(c.session.line_limit(), sasl::MAX_SASL_LINE);
        assert_eq!(c.send("YWxpY2U="), "334 UGFzc3dvcmQ6\r\n");
        match c.exchange("cHc=") {
            (Next::Verify(creds), out) if out.is_empty() => {
                assert_eq!((creds.mechanism, creds.user.as_str()), ("LOGIN", "alice"));
            }
            (_, out) => panic!("{out}"),
        }
        assert_eq!(c.session.line_limit(), MAX_COMMAND_LINE);

        assert_eq!(c.send("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n");
        assert_eq!(c.send("*"), "501 5.7.0 Authentication aborted\r\n");
        assert_eq!(c.send("NOOP"), "250 2.0.0 Ok\r\n");

        assert_eq!(c.send("AUTH PLAIN"), "334 \r\n");
        assert_eq!(
            c.send("not base64!"),
            "501 5.5.2 Error: invalid base64 in PLAIN response\r\n"
        );
        assert_eq!(c.send("AUTH PLAIN"), "334 \r\n");
        let next = c.session.line(Line::TooLong);
        assert!(matches!(next, Next::Continue));
        assert_eq!(c.output(), "500 5.5.2 Error: line too long\r\n");
        // Back to commands: the over-long line ended the exchange.
        assert_eq!(c.send("NOOP"), "250 2.0.0 Ok\r\n");
    }

    #[test]
    fn failed_auth_pauses_and_the_third_failure_closes() {
        let mut c = Client::new(Role::Submission, InboundTls::Encrypt, "192.0.2.7");
        c.start_tls();
        c.send("EHLO client.example.net");
        let failed = "535 5.7.8 Error: authentication failed: authentication failure\r\n";
        for _ in 0..2 {
            let credentials = c.auth_plain("alice", "wrong");
            assert_eq!(
                c.session.credentials_checked(credentials, false),
                Some(AUTH_FAILURE_DELAY)
            );
            assert_eq!(c.output(), failed);
            assert!(!c.session.is_closing());
        }
        let credentials = c.auth_plain("alice", "wrong");
        assert_eq!(
            c.session.credentials_checked(credentials, false),
            Some(AUTH_FAILURE_DELAY)
        );
        assert_eq!(
            c.output(),
            format!("{failed}421 4.7.0 Error: too many failed authentication attempts\r\n")
        );
        assert!(c.session.is_closing());
    }

    #[test]
    fn submission_wants_auth_before_mail_and_then_may_relay() {
        let mut c = Client::new(Role::Submission, InboundTls::Encrypt, "192.0.2.7");
        c.start_tls();
        c.send("EHLO client.example.net");
        assert_eq!(
            c.send("MAIL FROM:<alice@example.org>"),
            "530 5.7.0 Authentication required\r\n"
        );
        c.log_in();
        assert_eq!(c.send("MAIL FROM:<alice@example.org>"), OK_MAIL);
        assert_eq!(c.send("RCPT TO:<dave@example.net>"), OK_RCPT);
    }

    #[test]
    fn a_local_domain_relayed_by_transport_is_routed_as_delivery_routes_it() {
        // With a transport entry, mail for the local domain goes to the gateway: it is
        // accepted from anyone (it is ours) and no Maildir rule applies to its local
        // parts, exactly as delivery will route it.
        let router = Router {
            local_domains: vec!["example.org".into()],
            transport: crate::outbound::transport::TransportTable::parse(
                "example.org  [192.0.2.25]:25\n",
                "transport",
            )
            .unwrap(),
            sender_relay: None,
            relayhost: None,
        };
        let mut c = Client::with_router(Role::Smtp, InboundTls::May, "192.0.2.7", None, router);
        c.send("EHLO client.example.net");
        c.send("MAIL FROM:<carol@example.net>");
        assert_eq!(c.send("RCPT TO:<a/b@example.org>"), OK_RCPT);
        assert_eq!(
            c.send("RCPT TO:<dave@example.net>"),
            "554 5.7.1 <dave@example.net>: Relay access denied\r\n"
        );
    }

    #[test]
    fn relay_is_denied_with_554_outside_the_relay_networks() {
        let mut c = Client::new(Role::Smtp, InboundTls::May, "192.0.2.7");
        c.send("EHLO client.example.net");
        c.send("MAIL FROM:<carol@example.net>");
        assert_eq!(
            c.send("RCPT TO:<dave@example.net>"),
            "554 5.7.1 <dave@example.net>: Relay access denied\r\n"
        );
        assert_eq!(c.send("RCPT TO:<bob@example.org>"), OK_RCPT);
        assert_eq!(
            c.send("RCPT TO:<a/b@example.org>"),
            "550 5.1.1 <a/b@example.org>: Recipient address rejected: \
             local part cannot be delivered to a Maildir\r\n"
        );
        // An IPv4 client on a [::] listener is matched (and named) as IPv4.
        let mut c = Client::new(Role::Smtp, InboundTls::May, "::ffff:127.0.0.1");
        assert_eq!(c.session.client(), "unknown[127.0.0.1]");
        c.send("EHLO client.example.net");
        c.send("MAIL FROM:<carol@example.net>");
        assert_eq!(c.send("RCPT TO:<dave@example.net>"), OK_RCPT);
    }

    #[test]
    fn limits_give_452_for_recipients_and_552_for_size() {
        let mut c = Client::mx();
        c.send("EHLO client.example.net");
        assert_eq!(
            c.send("MAIL FROM:<carol@example.net> SIZE=1001"),
            "552 5.3.4 Message size exceeds fixed limit\r\n"
        );
        c.send("MAIL FROM:<carol@example.net> SIZE=1000");
        for n in 0..3 {
            assert_eq!(c.send(&format!("RCPT TO:<u{n}@example.org>")), OK_RCPT);
        }
        assert_eq!(
            c.send("RCPT TO:<u3@example.org>"),
            "452 4.5.3 Error: too many recipients\r\n"
        );
        assert_eq!(c.data().recipients.len(), 3);
    }

    #[test]
    fn quit_and_too_many_errors_close_the_session() {
        let mut c = Client::mx();
        assert_eq!(c.send("QUIT"), "221 2.0.0 Bye\r\n");
        assert!(c.session.is_closing());

        let mut c = Client::mx();
        let unknown = "502 5.5.2 Error: command not recognized\r\n";
        for _ in 0..19 {
            assert_eq!(c.send("BOGUS"), unknown);
        }
        assert!(!c.session.is_closing());
        assert_eq!(
            c.send("BOGUS"),
            format!("{unknown}421 4.7.0 Error: too many errors\r\n")
        );
        assert!(c.session.is_closing());
    }

    #[test]
    fn submission_completes_missing_date_and_message_id() {
        let c = Client::new(Role::Submission, InboundTls::Encrypt, "192.0.2.7");
        assert!(c.session.is_submission());
        let id = QueueId("ID".into());
        let mut content = b"Received: x\r\nSubject: hi\r\n\r\nbody\r\n".to_vec();
        c.session.complete_headers(&mut content, 13, &id);
        let text = String::from_utf8(content).unwrap();
        assert!(text.starts_with("Received: x\r\nDate: "), "{text}");
        assert!(
            text.contains(".ID@mx.example.org>\r\nSubject: hi\r\n\r\nbody\r\n"),
            "{text}"
        );

        let mut content = b"Date: today\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n".to_vec();
        let before = content.clone();
        c.session.complete_headers(&mut content, 0, &id);
        assert_eq!(content, before);
        assert!(!Client::mx().session.is_submission());
    }

    #[test]
    fn unknown_local_users_get_550_at_rcpt_once_a_table_exists() {
        let mut c = Client::with_tables("192.0.2.7", "root: alice\n", "", "alice\nbob\n");
        c.send("EHLO client.example.net");
        c.send("MAIL FROM:<carol@example.net>");
        assert_eq!(
            c.send("RCPT TO:<mallory@example.org>"),
            "550 5.1.1 <mallory@example.org>: Recipient address rejected: \
             User unknown in local recipient table\r\n"
        );
        for known in ["<bob@example.org>", "<Root@example.org>", "<postmaster>"] {
            assert_eq!(c.send(&format!("RCPT TO:{known}")), OK_RCPT, "{known}");
        }
        // The queue file gets the expanded recipients; the trace header the given ones.
        let txn = c.data();
        let env = c.session.envelope(&QueueId("ID".into()), &txn);
        assert_eq!(
            env.recipients,
            [
                "bob@example.org",
                "alice@example.org",
                "postmaster@example.org"
            ]
        );
        assert!(!env.unexpanded);
        assert_eq!(env.sender, "carol@example.net", "nothing was forwarded");
        // Without any table every local part is accepted, as before.
        let mut c = Client::new(Role::Smtp, InboundTls::May, "192.0.2.7");
        c.send("EHLO client.example.net");
        c.send("MAIL FROM:<carol@example.net>");
        assert_eq!(c.send("RCPT TO:<mallory@example.org>"), OK_RCPT);
    }

    #[test]
    fn alias_loops_are_refused_at_rcpt_and_expansions_deduplicated() {
        let mut c = Client::with_tables(
            "192.0.2.7",
            "a: b\nb: a\nteam: alice, bob\nalice: alice\nbob: bob\n",
            "",
            "",
        );
        c.send("EHLO client.example.net");
        c.send("MAIL FROM:<carol@example.net>");
        let r = c.send("RCPT TO:<a@example.org>");
        assert!(
            r.starts_with("550 5.4.6 <a@example.org>: Recipient address rejected: alias loop: "),
            "{r}"
        );
        assert_eq!(c.send("RCPT TO:<team@example.org>"), OK_RCPT);
        assert_eq!(c.send("RCPT TO:<bob@example.org>"), OK_RCPT);
        let txn = c.data();
        let env = c.session.envelope(&QueueId("ID".into()), &txn);
        assert_eq!(env.recipients, ["alice@example.org", "bob@example.org"]);
        let received = c.session.received_header(&QueueId("ID".into()), &txn);
        assert!(
            !received.contains("for <"),
            "two given recipients: {received}"
        );
    }

    #[test]
    fn virtual_domains_are_accepted_from_anyone_for_their_entries() {
        let mut c = Client::with_tables(
            "192.0.2.7",
            "",
            "info@virt.example  alice@example.org\n@catch.example  bob@example.org\n",
            "",
        );
        c.send("EHLO client.example.net");
        c.send("MAIL FROM:<carol@example.net>");
        assert_eq!(c.send("RCPT TO:<info@virt.example>"), OK_RCPT);
        assert_eq!(c.send("RCPT TO:<anything@catch.example>"), OK_RCPT);
        assert_eq!(
            c.send("RCPT TO:<sales@virt.example>"),
            "550 5.1.1 <sales@virt.example>: Recipient address rejected: \
             User unknown in virtual alias table\r\n"
        );
        assert_eq!(
            c.send("RCPT TO:<dave@example.net>"),
            "554 5.7.1 <dave@example.net>: Relay access denied\r\n"
        );
        let txn = c.data();
        let env = c.session.envelope(&QueueId("ID".into()), &txn);
        assert_eq!(env.recipients, ["alice@example.org", "bob@example.org"]);
    }

    #[test]
    fn forwarding_uses_srs_and_the_bounce_comes_back_to_the_sender() {
        let mut c = Client::with_tables("192.0.2.7", "fwd: me@gmail.example\n", "", "");
        c.send("EHLO client.example.net");
        c.send("MAIL FROM:<carol@example.net>");
        assert_eq!(c.send("RCPT TO:<fwd@example.org>"), OK_RCPT);
        let txn = c.data();
        let env = c.session.envelope(&QueueId("ID".into()), &txn);
        assert_eq!(env.recipients, ["me@gmail.example"]);
        let srs0 = env.sender;
        assert!(
            srs0.starts_with("SRS0=") && srs0.ends_with("=example.net=carol@example.org"),
            "{srs0}"
        );
        // A local sender is not rewritten.
        c.send("MAIL FROM:<alice@example.org>");
        c.send("RCPT TO:<fwd@example.org>");
        let txn = c.data();
        assert_eq!(
            c.session.envelope(&QueueId("ID".into()), &txn).sender,
            "alice@example.org"
        );

        // The bounce to the SRS address, from a stranger: routed to the sender.
        c.send("MAIL FROM:<>");
        assert_eq!(c.send(&format!("RCPT TO:<{srs0}>")), OK_RCPT);
        let forged = srs0.replacen("SRS0=", "SRS0=AAAA", 1);
        let r = c.send(&format!("RCPT TO:<{forged}>"));
        assert_eq!(
            r,
            format!(
                "550 5.1.1 <{forged}>: Recipient address rejected: hash invalid in SRS address\r\n"
            )
        );
        let txn = c.data();
        let env = c.session.envelope(&QueueId("ID".into()), &txn);
        assert_eq!(
            (env.sender.as_str(), &env.recipients[..]),
            ("", &["carol@example.net".to_string()][..])
        );
    }

    #[test]
    fn spf_is_checked_once_for_mail_from_outside_and_refused_only_when_asked() {
        for spf_reject in [false, true] {
            let mut c = Client::new(Role::Smtp, InboundTls::May, "192.0.2.7");
            c.session.settings = Rc::new(Settings {
                enforce: checks::Enforce {
                    spf_reject,
                    dmarc_reject: false,
                },
                ..(*c.session.settings).clone()
            });
            c.spf = spf::Verdict::Fail;
            c.send("EHLO client.example.net");
            c.send("MAIL FROM:<carol@example.net>");
            // Refused for relaying before SPF is asked.
            assert!(c
                .send("RCPT TO:<dave@example.net>")
                .starts_with("554 5.7.1"));
            assert!(c.spf_asked.is_empty());
            let refused = "550 5.7.23 <carol@example.net>: Sender address rejected: SPF fail: \
                           example.net does not designate 192.0.2.7 as permitted sender\r\n";
            for rcpt in ["<bob@example.org>", "<alice@example.org>"] {
                let r = c.send(&format!("RCPT TO:{rcpt}"));
                assert_eq!(r, if spf_reject { refused } else { OK_RCPT }, "{rcpt}");
            }
            assert_eq!(
                c.spf_asked,
                [SpfQuery {
                    ip: "192.0.2.7".parse().unwrap(),
                    mail_from: "carol@example.net".into(),
                    helo: "client.example.net".into(),
                }]
            );
            if !spf_reject {
                let txn = c.data();
                assert!(c.session.message_checks(&txn).is_some());
            }
        }
        // The null sender: the HELO name is checked, in the next transaction anew.
        let mut c = Client::new(Role::Smtp, InboundTls::May, "192.0.2.7");
        c.send("HELO mail.example.net");
        for _ in 0..2 {
            c.send("MAIL FROM:<>");
            assert_eq!(c.send("RCPT TO:<bob@example.org>"), OK_RCPT);
            c.send("RSET");
        }
        assert_eq!(c.spf_asked.len(), 2);
        assert_eq!(
            (
                c.spf_asked[0].mail_from.as_str(),
                c.spf_asked[0].helo.as_str()
            ),
            ("", "mail.example.net")
        );
    }

    #[test]
    fn relay_clients_and_logged_in_users_are_not_checked() {
        let mut c = Client::mx();
        c.send("EHLO client.example.net");
        c.send("MAIL FROM:<carol@example.net>");
        c.send("RCPT TO:<bob@example.org>");
        let txn = c.data();
        assert!(c.session.message_checks(&txn).is_none());
        let mut c = Client::new(Role::Smtp, InboundTls::May, "192.0.2.7");
        c.start_tls();
        c.send("EHLO client.example.net");
        c.log_in();
        c.send("MAIL FROM:<alice@example.org>");
        c.send("RCPT TO:<bob@example.org>");
        let txn = c.data();
        assert!(c.session.message_checks(&txn).is_none());
        assert!(c.spf_asked.is_empty());
    }

    #[test]
    fn a_reload_applies_to_the_next_rcpt() {
        let mut c = Client::with_tables("192.0.2.7", "root: alice\n", "", "");
        c.send("EHLO client.example.net");
        c.send("MAIL FROM:<carol@example.net>");
        assert!(c
            .send("RCPT TO:<new@example.org>")
            .starts_with("550 5.1.1 "));
        c.session
            .rewriter
            .replace(Rc::new(rewriter("root: alice\nnew: alice\n", "", "")));
        assert_eq!(c.send("RCPT TO:<new@example.org>"), OK_RCPT);
    }
}
