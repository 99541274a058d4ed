//! One client connection: reads lines from the socket into a `Session`, sends its
//! replies, and does the I/O the session asks for — the TLS handshake, the password
//! check on the blocking pool, and streaming DATA into a durable queue file before
//! the 250. Timeouts and shutdown are watched here; protocol rules are the session's.

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncWriteExt};
use smol::Async;

use std::sync::Arc;

use super::checks::{self, MessageChecks};
use super::sasl::Credentials;
use super::session::{Next, Session, Transaction};
use super::{Listener, Shared};
use crate::clock::unix_now;
use crate::logline;
use crate::mailauth::signing::{DkimKeys, Signer};
use crate::queue::scheduler::Event;
use crate::queue::spool::is_out_of_space;
use crate::queue::{Envelope, QueueId};
use crate::smtp::data::DataReader;
use crate::smtp::line::LineBuffer;
use crate::smtp::reply::{canned, Reply};
use crate::tls::session::{self, Side};
use crate::tls::MaybeTls;

/// Content is written to the queue file in pieces of about this size, so a large
/// message never sits whole in memory.
const WRITE_CHUNK: usize = 64 * 1024;

/// Replies are written out once this much is queued, even in the middle of a pipelined
/// batch: a client sending commands without reading the answers makes us hold at most
/// this (plus one reply), never a reply for every command it sent.
const OUTPUT_LIMIT: usize = 16 * 1024;

/// How long the orderly end of a connection (the TLS close_notify) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Outcome of waiting for input.
enum Input {
    Bytes,
    Closed,
    TimedOut,
    ShuttingDown,
}

pub struct Connection {
    shared: Rc<Shared>,
    session: Session,
    conn: MaybeTls<Async<TcpStream>>,
    input: LineBuffer,
    /// The message of a BDAT transaction between its chunks.
    chunks: Option<Box<Incoming>>,
    /// When the current command began to be awaited: partial lines do not extend the
    /// deadline, so a client trickling bytes (slowloris) is dropped at the timeout.
    waiting_since: Instant,
}

impl Connection {
    pub fn new(
        shared: Rc<Shared>,
        listener: &Listener,
        stream: Async<TcpStream>,
        peer: SocketAddr,
    ) -> Connection {
        let session = Session::new(
            shared.settings.clone(),
            shared.rewriter.clone(),
            shared.auth.clone(),
            listener,
            peer.ip(),
        );
        Connection {
            shared,
            session,
            conn: MaybeTls::Plain(stream),
            input: LineBuffer::default(),
            chunks: None,
            waiting_since: Instant::now(),
        }
    }

    /// The whole session, greeting to disconnect. It borrows the connection, which its
    /// caller's task owns: a future of a method that takes `self` by value holds the
    /// value twice (the argument and the local it is moved into), on top of the
    /// caller's copy — 750 bytes more in every session's task.
    pub async fn run(&mut self) {
        let client = self.session.client().to_string();
        log::info!("connect from {client} to {}", self.session.role().name());
        if self.session.implicit_tls() && !Box::pin(self.handshake()).await {
            log::info!("disconnect from {client}");
            return;
        }
        self.session.greet();
        if self.serve().await.is_err() {
            log::info!("lost connection from {client}");
        } else {
            // Bounded: a TLS close_notify is a write, and the client may not read it.
            let conn = &mut self.conn;
            let _ = async { conn.close().await }
                .or(async {
                    smol::Timer::after(CLOSE_TIMEOUT).await;
                    Ok(())
                })
                .await;
        }
        // A BDAT transaction the client never finished.
        self.abandon_chunks();
        log::info!("disconnect from {client}");
    }

    /// The command loop. Errors are I/O failures: the connection is gone.
    async fn serve(&mut self) -> std::io::Result<()> {
        loop {
            while !self.session.is_closing() {
                if self.session.output_len() >= OUTPUT_LIMIT {
                    self.flush().await?;
                }
                let Some(line) = self.input.next_line(self.session.line_limit()) else {
                    break;
                };
                self.waiting_since = Instant::now();
                let next = self.session.line(line);
                if !matches!(next, Next::Chunk { .. }) && !self.session.is_chunking() {
                    self.abandon_chunks();
                }
                match next {
                    Next::Continue => {}
                    Next::Chunk { size, last, start } => {
                        // Boxed as DATA is, for the same reason.
                        if !Box::pin(self.receive_chunk(size, last, start)).await? {
                            return Ok(());
                        }
                        self.waiting_since = Instant::now();
                    }
                    Next::Skip(size) => {
                        if !Box::pin(self.read_chunk(size, None)).await? {
                            return Ok(());
                        }
                        self.waiting_since = Instant::now();
                    }
                    Next::StartTls => {
                        self.flush().await?;
                        let dropped = self.input.clear();
                        if dropped > 0 {
                            log::warn!(
                                "discarding {dropped} bytes pipelined after STARTTLS from {}",
                                self.session.client()
                            );
                        }
                        if !Box::pin(self.handshake()).await {
                            return Ok(());
                        }
                    }
                    Next::Data(txn) => {
                        self.flush().await?;
                        // Boxed: its state (the DATA reader, the DKIM signer, the piece
                        // buffer's handle) exists only while a message arrives, and would
                        // otherwise make every idle session's task as large.
                        if !Box::pin(self.receive_message(txn)).await? {
                            return Ok(());
                        }
                        self.waiting_since = Instant::now();
                    }
                    Next::CheckSpf(query) => {
                        self.flush().await?;
                        let started = Instant::now();
                        let settings = &self.shared.settings;
                        // Boxed, like DATA below: an SPF evaluation's state (its DNS
                        // lookups) exists only while it runs.
                        let spf = Box::pin(checks::spf(
                            settings.resolver.as_ref(),
                            &settings.hostname,
                            &query,
                        ))
                        .await;
                        self.session.spf_checked(spf, started.elapsed());
                        self.waiting_since = Instant::now();
                    }
                    Next::Verify(credentials) => {
                        let ok = Box::pin(self.check(&credentials)).await;
                        if let Some(pause) = self.session.credentials_checked(credentials, ok) {
                            smol::Timer::after(pause).await;
                        }
                        self.waiting_since = Instant::now();
                    }
                }
            }
            self.flush().await?;
            if self.session.is_closing() {
                return Ok(());
            }
            let left = self
                .shared
                .settings
                .limits
                .command_timeout
                .saturating_sub(self.waiting_since.elapsed());
            match self.read_input(left).await? {
                Input::Bytes => {}
                Input::Closed => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Input::TimedOut => {
                    log::info!("timeout after command from {}", self.session.client());
                    return self.say_goodbye(canned::timeout()).await;
                }
                Input::ShuttingDown => return self.say_goodbye(canned::shutting_down()).await,
            }
        }
    }

    /// Sends everything queued and then `last`, before the connection ends.
    async fn say_goodbye(&mut self, last: Reply) -> std::io::Result<()> {
        self.session.reply(last);
        self.flush().await
    }

    /// Sends the session's queued replies, within the command timeout: a client that
    /// stops reading them (its TCP window stays full) is dropped then, like one that
    /// stops sending.
    async fn flush(&mut self) -> std::io::Result<()> {
        let out = self.session.take_output();
        if out.is_empty() {
            return Ok(());
        }
        let timeout = self.shared.settings.limits.command_timeout;
        let conn = &mut self.conn;
        let sent = async {
            conn.write_all(&out).await?;
            conn.flush().await?;
            Ok(true)
        }
        .or(async {
            smol::Timer::after(timeout).await;
            Ok::<_, std::io::Error>(false)
        })
        .await?;
        if sent {
            Ok(())
        } else {
            log::info!(
                "timeout sending reply to {}: it does not read",
                self.session.client()
            );
            Err(std::io::ErrorKind::TimedOut.into())
        }
    }

    async fn read_input(&mut self, timeout: Duration) -> std::io::Result<Input> {
        let shutdown = self.shared.shutdown.clone();
        let (conn, input) = (&mut self.conn, &mut self.input);
        let res = async { Some(std::future::poll_fn(|cx| read_into(conn, input, cx)).await) }
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
            Some(Ok(_)) => Ok(Input::Bytes),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => Ok(Input::ShuttingDown),
            Some(Err(e)) => Err(e),
        }
    }

    /// Server-side TLS handshake, within `--tls-handshake-timeout` (a handshake that
    /// never finishes must not hold a session slot); on success the session starts over.
    async fn handshake(&mut self) -> bool {
        let ctx = self.shared.current_tls();
        let timeout = self.shared.settings.limits.tls_handshake_timeout;
        let conn = &mut self.conn;
        let digest = self.shared.settings.client_certs.digest;
        let res = async { conn.accept(&ctx, digest).await }
            .or(async {
                smol::Timer::after(timeout).await;
                Err(format!("timeout after {} s", timeout.as_secs()))
            })
            .await;
        match res {
            Ok(info) => {
                logline::tls_inbound_established(self.session.client(), &info);
                session::count(Side::Inbound, self.session.client(), info.resumed);
                self.session.tls_started(info);
                true
            }
            Err(reason) => {
                logline::tls_inbound_failed(self.session.client(), &reason);
                false
            }
        }
    }

    /// Checks credentials against the current users on the blocking pool (PBKDF2 is
    /// slow by design); no users (removed by a reload) means no.
    async fn check(&self, credentials: &Credentials) -> bool {
        let Some(users) = self.shared.current_auth() else {
            return false;
        };
        let user = credentials.user.clone();
        let password = credentials.password.clone();
        crate::runtime::unblock(move || users.verify(&user, &password)).await
    }

    /// Starts a message for `txn`: the new queue file's envelope, our `Received:`
    /// field, the checks and the signer its content will go through.
    fn start_message(&self, txn: &Transaction, reader: DataReader, verb: &'static str) -> Incoming {
        let id = QueueId::generate();
        let env = self.session.envelope(&id, txn);
        // Room for a whole piece and the last read past it (twice its size at most, when
        // bare LFs become CRLF), so the buffer never doubles beyond that.
        let mut chunk = Vec::with_capacity(WRITE_CHUNK + 2 * READ_CHUNK);
        chunk.extend_from_slice(self.session.received_header(&id, txn).as_bytes());
        let header_start = chunk.len();
        // The mail of our own clients is DKIM-signed, once, here: the signer sees the
        // content as it is written and keeps only the header section.
        let dkim = self.shared.current_dkim();
        let signer = (self.session.is_own_client() && !dkim.is_empty()).then(Signer::new);
        Incoming {
            id,
            env,
            verb,
            reader,
            chunk,
            header_start,
            // Submission mode completes the header section once it has arrived (before
            // the first piece is written).
            headers_pending: self.session.is_submission(),
            // Mail from outside is checked; its header section is held until complete.
            checks: self.session.message_checks(txn),
            file: None,
            write_error: None,
            dkim,
            signer,
        }
    }

    /// DATA: streams the content into a new queue file, makes it durable and only then
    /// replies 250. Returns `Ok(false)` when the session must end.
    async fn receive_message(&mut self, txn: Transaction) -> std::io::Result<bool> {
        let max_size = self.shared.settings.limits.max_message_size;
        let mut msg = self.start_message(&txn, DataReader::new(max_size), "DATA");
        let spool = self.shared.spool.clone();
        loop {
            // Content may already be buffered behind the DATA line (pipelining).
            let pending = self.input.take_pending();
            let used = msg.absorb(&pending);
            self.input.extend(&pending[used..]);
            if msg.reader.is_done() {
                break;
            }
            msg.write_if_full(&self.session, &spool).await;
            if !self.more_content(msg.verb).await? {
                spool.abandon(&msg.id);
                return Ok(false);
            }
        }
        self.store_message(msg).await;
        Ok(true)
    }

    /// One BDAT chunk (RFC 3030): its octets go into the message begun by the first
    /// chunk, or are discarded when the session refused it. After the last, the message
    /// is stored as DATA's is. Returns `Ok(false)` when the session must end.
    async fn receive_chunk(
        &mut self,
        size: u64,
        last: bool,
        start: Option<Transaction>,
    ) -> std::io::Result<bool> {
        let spool = self.shared.spool.clone();
        if let Some(txn) = start {
            let max_size = self.shared.settings.limits.max_message_size;
            let reader = DataReader::chunked(max_size);
            self.chunks = Some(Box::new(self.start_message(&txn, reader, "BDAT")));
        }
        let Some(mut msg) = self.chunks.take() else {
            // Not reached: the session asks for a chunk only inside a BDAT transaction.
            let ok = self.read_chunk(size, None).await?;
            self.session
                .chunk_refused(Reply::new(451, "4.3.0", "Error: BDAT transaction lost"));
            return Ok(ok);
        };
        if !self.read_chunk(size, Some(&mut msg)).await? {
            spool.abandon(&msg.id);
            return Ok(false);
        }
        if last {
            msg.end_chunks();
            self.store_message(*msg).await;
        } else if let Some(r) = msg.reader.verdict() {
            spool.abandon(&msg.id);
            log::info!(
                "{}: reject: BDAT from {}: {}",
                msg.id,
                self.session.client(),
                r.summary()
            );
            self.session.chunk_refused(r);
        } else {
            self.session.chunk_received(size);
            self.chunks = Some(msg);
        }
        Ok(true)
    }

    /// Drops the content of earlier chunks once their transaction ended without
    /// `BDAT LAST` (RSET, EHLO, STARTTLS).
    fn abandon_chunks(&mut self) {
        if let Some(msg) = self.chunks.take() {
            self.shared.spool.abandon(&msg.id);
        }
    }

    /// Reads the `size` octets of a chunk into `msg`, or discards them (`None`): the
    /// count is authoritative, whatever the octets look like. `Ok(false)`: the session
    /// must end.
    async fn read_chunk(
        &mut self,
        mut size: u64,
        mut msg: Option<&mut Incoming>,
    ) -> std::io::Result<bool> {
        let spool = self.shared.spool.clone();
        loop {
            let pending = self.input.take_pending();
            let n = size.min(pending.len() as u64) as usize;
            self.input.extend(&pending[n..]);
            size -= n as u64;
            if let Some(m) = msg.as_deref_mut() {
                m.absorb(&pending[..n]);
                m.write_if_full(&self.session, &spool).await;
            }
            if size == 0 {
                return Ok(true);
            }
            // The replies to earlier chunks go out while this one arrives.
            self.flush().await?;
            if !self.more_content("BDAT").await? {
                return Ok(false);
            }
        }
    }

    /// Waits for more of a message's content. `Ok(false)`: none will come (timeout,
    /// shutdown, the client left); the client was told where it could be.
    async fn more_content(&mut self, verb: &str) -> std::io::Result<bool> {
        match self
            .read_input(self.shared.settings.limits.data_timeout)
            .await?
        {
            Input::Bytes => return Ok(true),
            Input::TimedOut => {
                log::info!("timeout after {verb} from {}", self.session.client());
                self.say_goodbye(canned::timeout()).await?;
            }
            // Finishing would take unbounded time; the client retries.
            Input::ShuttingDown => self.say_goodbye(canned::shutting_down()).await?,
            Input::Closed => {
                log::info!(
                    "lost connection after {verb} from {}",
                    self.session.client()
                )
            }
        }
        Ok(false)
    }

    /// The end of a message, by DATA or BDAT: the verdicts on its content, the checks'
    /// outcome, its DKIM signature, then the queue file made durable before the 250.
    async fn store_message(&mut self, msg: Incoming) {
        let Incoming {
            id,
            env,
            verb,
            reader,
            mut chunk,
            header_start,
            headers_pending,
            checks,
            mut file,
            write_error,
            dkim,
            mut signer,
        } = msg;
        let spool = self.shared.spool.clone();
        if headers_pending {
            self.session.complete_headers(&mut chunk, header_start, &id);
        }
        let refusal = reader.verdict();
        let refusal = refusal.or_else(|| checks.as_ref().and_then(|c| c.refusal()));
        if let Some(r) = refusal {
            spool.abandon(&id);
            log::info!(
                "{id}: reject: {verb} from {}: {}",
                self.session.client(),
                r.summary()
            );
            self.session.error(r);
            return;
        }
        let mut added = String::new();
        let mut auth = None;
        if let Some(c) = checks {
            if c.removed() > 0 {
                log::info!(
                    "{id}: removed {} Authentication-Results field(s) with our authserv-id from {}",
                    c.removed(),
                    self.session.client()
                );
            }
            let outcome = c.finish(self.shared.settings.resolver.as_ref()).await;
            if let Some(r) = outcome.refusal(self.shared.settings.enforce) {
                spool.abandon(&id);
                log::info!(
                    "{id}: reject: {verb} from {}: {}; auth={}",
                    self.session.client(),
                    r.summary(),
                    outcome.summary
                );
                self.session.reply(r);
                return;
            }
            added = outcome.field;
            auth = Some(outcome.summary);
        }
        let size = reader.size();
        if let Some(s) = &mut signer {
            s.update(&chunk);
        }
        let pending = signer.map(|s| s.finish(&self.shared.rewriter.borrow().tables));
        let res = match write_error {
            Some(e) => Err(e),
            None => {
                let (spool2, env2, id2) = (spool.clone(), env.clone(), id.clone());
                let f = file.take();
                let res = crate::runtime::unblock(move || {
                    let mut f = match f {
                        Some(f) => f,
                        None => spool2.create(&env2)?,
                    };
                    f.write_all(&chunk)?;
                    // Our own clients' mail gets its signature, mail from outside
                    // its Authentication-Results field; never both.
                    let signing = pending.map(|p| p.sign(&dkim, unix_now()));
                    let fields = signing.as_ref().and_then(|s| s.as_ref().ok());
                    let fields = fields.map_or(added.as_bytes(), |s| &s.fields);
                    spool2.finish_with_headers(&id2, f, fields)?;
                    Ok(signing)
                })
                .await;
                match res {
                    Ok(signing) => self.shared.commit.commit().await.map(|()| signing),
                    Err(e) => Err(e),
                }
            }
        };
        match res {
            Ok(signing) => {
                let mut notes: Vec<String> = signing
                    .and_then(|s| logline::dkim(&id.0, &s))
                    .into_iter()
                    .collect();
                notes.extend(auth.map(|a| format!("auth={a}")));
                notes.extend(logline::requiretls(env.requiretls));
                logline::queued(&id.0, &env.sender, size, env.recipients.len(), &notes);
                self.session
                    .reply(Reply::new(250, "2.0.0", format!("Ok: queued as {id}")));
                let _ = self.shared.scheduler.try_send(Event::New(id));
            }
            Err(e) => {
                // Not acknowledged, so nothing of it may stay: the client sends it again.
                spool.withdraw(&id);
                log::error!(
                    "{id}: cannot write queue file: {e}; not accepted from {}",
                    self.session.client()
                );
                self.session.reply(if is_out_of_space(&e) {
                    Reply::new(452, "4.3.1", "Insufficient system storage")
                } else {
                    Reply::new(451, "4.3.0", "Error: queue file write error")
                });
            }
        }
    }
}

/// One message arriving, by DATA or BDAT: the queue file as far as it is written, the
/// piece not written yet, and what sees the content go by (the checks, the DKIM
/// signer). Both commands fill it and store it the same way.
struct Incoming {
    id: QueueId,
    env: Envelope,
    /// "DATA" or "BDAT", for the log.
    verb: &'static str,
    reader: DataReader,
    chunk: Vec<u8>,
    /// Where the client's header section starts in the first piece (after `Received:`).
    header_start: usize,
    headers_pending: bool,
    checks: Option<MessageChecks>,
    file: Option<File>,
    write_error: Option<std::io::Error>,
    dkim: Arc<DkimKeys>,
    signer: Option<Signer>,
}

impl Incoming {
    /// Decodes content into the piece; returns the bytes of `input` it took (DATA
    /// stops at the end of data; a chunk takes all).
    fn absorb(&mut self, input: &[u8]) -> usize {
        let new = self.chunk.len();
        let used = self.reader.feed(input, &mut self.chunk);
        self.seen(new);
        used
    }

    /// BDAT LAST: the content is complete.
    fn end_chunks(&mut self) {
        let new = self.chunk.len();
        self.reader.end_chunks(&mut self.chunk);
        self.seen(new);
    }

    /// The checks see the bytes of the piece from `new` on.
    fn seen(&mut self, new: usize) {
        if let Some(c) = &mut self.checks {
            let done = self.reader.is_done();
            c.content(&mut self.chunk, self.header_start, new, done);
        }
    }

    /// Writes the piece to the queue file once it is large enough, unless the content
    /// is already refused or its header section is held for the checks.
    async fn write_if_full(&mut self, session: &Session, spool: &crate::queue::Spool) {
        let held = self.checks.as_ref().is_some_and(|c| c.holding());
        if self.chunk.len() < WRITE_CHUNK
            || self.write_error.is_some()
            || self.reader.verdict().is_some()
            || held
        {
            return;
        }
        if std::mem::take(&mut self.headers_pending) {
            session.complete_headers(&mut self.chunk, self.header_start, &self.id);
        }
        if let Some(s) = &mut self.signer {
            s.update(&self.chunk);
        }
        let (f, mut c, res) = write_chunk(
            spool.clone(),
            self.env.clone(),
            self.file.take(),
            std::mem::take(&mut self.chunk),
        )
        .await;
        self.file = f;
        c.clear();
        self.chunk = c;
        self.write_error = res.err();
    }
}

thread_local! {
    /// The one read buffer of the sessions of this thread. A session waiting for input
    /// holds none of its own (an idle session costs its state only, not 4 KB more):
    /// the buffer is lent for the duration of one `poll_read`, which keeps nothing of it
    /// when it returns `Pending`.
    static READ_BUFFER: std::cell::RefCell<[u8; READ_CHUNK]> =
        const { std::cell::RefCell::new([0; READ_CHUNK]) };
}

/// Input is read from the socket in pieces of up to this size.
const READ_CHUNK: usize = 4096;

/// Reads what the connection has into `input`; the number of bytes (0: closed).
fn read_into(
    conn: &mut MaybeTls<Async<TcpStream>>,
    input: &mut LineBuffer,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<std::io::Result<usize>> {
    READ_BUFFER.with_borrow_mut(|buf| {
        let res = std::pin::Pin::new(conn).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = res {
            input.extend(&buf[..n]);
        }
        res
    })
}

/// Writes one piece of content to the queue file on the blocking pool, creating the
/// file first if needed. Hands the file and the (emptied) buffer back.
async fn write_chunk(
    spool: crate::queue::Spool,
    env: Envelope,
    file: Option<File>,
    chunk: Vec<u8>,
) -> (Option<File>, Vec<u8>, std::io::Result<()>) {
    crate::runtime::unblock(move || {
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
