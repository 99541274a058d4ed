//! SMTP load generator for `bench/throughput`, on the same smol + OpenSSL stack as tinymta.
//!
//! `--concurrency` clients run at once on one thread (a smol `LocalExecutor`: pin it to
//! one core with `taskset`). Each client runs SMTP sessions one after another until
//! `--messages` messages have been handed out. A session is: greeting, EHLO, [STARTTLS,
//! handshake, EHLO], then up to `--per-session` transactions MAIL/RCPT/DATA back to back
//! (no RSET between accepted messages), QUIT.
//!
//! With `--tls resume` each client keeps the TLS session (TLS 1.3 ticket or TLS 1.2
//! session) it received on its first connection and offers it on the later ones; a
//! newer session, when the server sends one, replaces it. The session is kept in its DER
//! form and every connection offers its own copy, as `openssl s_client -sess_in` does:
//! OpenSSL changes a session object that a connection used (here, a TLS 1.3 session
//! object offered once was not resumed the second time, while the same session read
//! back from DER was). Whether the server took it is `SSL_session_reused`, counted as
//! `resumed`. Certificates are not verified: this is for test servers on loopback.
//!
//! Output: one line on stdout,
//!
//! ```text
//! RESULT messages=5000 refused=0 lost=0 errors=0 seconds=2.104 rate=2376.4 sessions=500 handshakes=0 resumed=0 client_cpu=0.31 tls=none
//! ```
//!
//! `messages` were accepted (250 after the data), `refused` got a 4xx/5xx reply,
//! `lost` were handed to a session that failed before their transaction finished,
//! `errors` counts those failed sessions, `client_cpu` is this process's CPU time over
//! the wall time (1.0 = one core saturated: the client would be the bottleneck). The
//! first refusal and the first error are printed on stderr. Exit status 0 when every
//! message was accepted, 1 otherwise (and on a bad option), 2 when the server address or
//! the TLS context cannot be used.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argh::FromArgs;
use async_openssl::SslStream;
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslContext, SslMethod, SslSession, SslSessionCacheMode, SslVerifyMode};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, LocalExecutor, Timer};

#[derive(Clone, Copy, PartialEq)]
enum TlsMode {
    Plain,
    Full,
    Resume,
}

fn parse_tls(s: &str) -> Result<TlsMode, String> {
    match s {
        "none" => Ok(TlsMode::Plain),
        "full" => Ok(TlsMode::Full),
        "resume" => Ok(TlsMode::Resume),
        _ => Err(format!("--tls {s}: expected none, full or resume")),
    }
}

#[derive(FromArgs)]
/// SMTP load generator: concurrent sessions of several messages each, in plaintext or
/// with STARTTLS (a full handshake per session, or resuming the previous session).
struct Args {
    /// server to load, HOST:PORT
    #[argh(positional)]
    server: String,
    /// sessions running at once (default 20)
    #[argh(option, short = 'c', default = "20")]
    concurrency: usize,
    /// messages in total (default 5000)
    #[argh(option, short = 'n', default = "5000")]
    messages: usize,
    /// messages per SMTP session, MAIL/RCPT/DATA repeated without RSET (default 10)
    #[argh(option, short = 'm', default = "10")]
    per_session: usize,
    /// message size in bytes, headers included (default 1024)
    #[argh(option, short = 'l', default = "1024")]
    size: usize,
    /// none (plaintext), full (STARTTLS with a full handshake every session) or resume
    /// (STARTTLS offering the session received on the previous connection); default none
    #[argh(option, from_str_fn(parse_tls), default = "TlsMode::Plain")]
    tls: TlsMode,
    /// send MAIL, RCPT and DATA in one write when the server offers PIPELINING
    #[argh(switch)]
    pipelining: bool,
    /// envelope sender (default load@loadgen.test)
    #[argh(option, short = 'f', default = "String::from(\"load@loadgen.test\")")]
    from: String,
    /// envelope recipient (default sink@example.net)
    #[argh(option, short = 't', default = "String::from(\"sink@example.net\")")]
    to: String,
    /// EHLO name (default loadgen.test)
    #[argh(option, default = "String::from(\"loadgen.test\")")]
    helo: String,
    /// seconds to wait for the connection, the handshake or any reply (default 30)
    #[argh(option, default = "30")]
    timeout: u64,
}

/// What every client shares: the target, the TLS context and the message template.
struct Config {
    addr: SocketAddr,
    tls: TlsMode,
    ctx: SslContext,
    /// Where the new-session callback puts the sessions a connection receives.
    received: Index<Ssl, ReceivedSession>,
    per_session: usize,
    pipelining: bool,
    helo: String,
    envelope: Envelope,
    timeout: Duration,
    /// The body after the headers, already ending in `\r\n.\r\n`.
    body: Vec<u8>,
}

/// The transaction's commands, formatted once.
struct Envelope {
    from: String,
    to: String,
    mail: Vec<u8>,
    rcpt: Vec<u8>,
}

#[derive(Default)]
struct Stats {
    /// Messages not yet handed to a session.
    remaining: Cell<usize>,
    accepted: Cell<usize>,
    refused: Cell<usize>,
    lost: Cell<usize>,
    errors: Cell<usize>,
    sessions: Cell<usize>,
    handshakes: Cell<usize>,
    resumed: Cell<usize>,
    tls: RefCell<Option<String>>,
    first_refusal: RefCell<Option<String>>,
    first_error: RefCell<Option<String>>,
}

fn bump(c: &Cell<usize>, by: usize) {
    c.set(c.get() + by);
}

fn note_first(slot: &RefCell<Option<String>>, what: impl FnOnce() -> String) {
    let mut slot = slot.borrow_mut();
    if slot.is_none() {
        *slot = Some(what());
    }
}

/// The header block has a fixed length (zero-padded numbers), so the body can be built
/// once to make every message `--size` bytes long.
fn header(env: &Envelope, client: usize, session: usize, n: usize) -> String {
    format!(
        "From: <{}>\r\nTo: <{}>\r\nSubject: loadgen {client:05}.{session:07}.{n:05}\r\n\
         Message-ID: <loadgen.{client:05}.{session:07}.{n:05}.{}@loadgen.test>\r\n\r\n",
        env.from,
        env.to,
        std::process::id()
    )
}

/// Lines of 70 `X` (no line starts with a dot), `len` bytes in all, then the end of data.
fn body(len: usize) -> Vec<u8> {
    let len = len.max(2);
    let mut b = Vec::with_capacity(len + 3);
    while b.len() < len {
        let left = len - b.len();
        let text = left.saturating_sub(2).min(70);
        b.extend(std::iter::repeat_n(b'X', text));
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b".\r\n");
    b
}

enum Stream {
    Plain(Async<TcpStream>),
    Tls(Box<SslStream<Async<TcpStream>>>),
    /// Only while the handshake runs, or after it failed.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection gone")
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
            Stream::Gone => Err(gone()),
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(buf).await,
            Stream::Tls(s) => s.write_all(buf).await,
            Stream::Gone => Err(gone()),
        }
    }
}

/// `f`, or an error naming `what` when it takes longer than `t`.
async fn within<T>(
    t: Duration,
    what: &str,
    f: impl Future<Output = io::Result<T>>,
) -> Result<T, String> {
    smol::future::or(
        async { f.await.map_err(|e| format!("{what}: {e}")) },
        async {
            Timer::after(t).await;
            Err(format!("{what}: nothing within {} s", t.as_secs()))
        },
    )
    .await
}

/// The newest session received on one connection, DER-encoded (filled by OpenSSL's
/// new-session callback: after a full handshake, and for each TLS 1.3 ticket).
type ReceivedSession = Arc<Mutex<Option<Vec<u8>>>>;

struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    fn text(&self) -> String {
        self.lines.join(" / ")
    }

    /// Whether an EHLO reply lists the extension `kw`.
    fn offers(&self, kw: &str) -> bool {
        self.lines.iter().skip(1).any(|l| {
            l.get(4..)
                .and_then(|ext| ext.split_ascii_whitespace().next())
                .is_some_and(|e| e.eq_ignore_ascii_case(kw))
        })
    }
}

/// One SMTP connection: the stream and what has been read but not yet parsed.
struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
    timeout: Duration,
}

impl Conn {
    async fn send(&mut self, what: &str, bytes: &[u8]) -> Result<(), String> {
        within(self.timeout, what, self.stream.write_all(bytes)).await
    }

    async fn line(&mut self, what: &str) -> Result<String, String> {
        loop {
            if let Some(i) = self.buf[self.start..].iter().position(|&b| b == b'\n') {
                let raw = &self.buf[self.start..self.start + i];
                let line = String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw));
                let line = line.into_owned();
                self.start += i + 1;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                return Ok(line);
            }
            if self.buf.len() - self.start > 64 * 1024 {
                return Err(format!("{what}: reply line longer than 64 KiB"));
            }
            let mut chunk = [0u8; 4096];
            let n = within(self.timeout, what, self.stream.read(&mut chunk)).await?;
            if n == 0 {
                return Err(format!("{what}: connection closed by the server"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn reply(&mut self, what: &str) -> Result<Reply, String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line(what).await?;
            let code = line
                .get(..3)
                .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| format!("{what}: malformed reply line {line:?}"))?;
            let last = line.as_bytes().get(3).is_none_or(|&b| b == b' ');
            lines.push(line);
            if last {
                return Ok(Reply { code, lines });
            }
        }
    }

    /// A reply that must have `code`, else the session fails.
    async fn expect(&mut self, what: &str, code: u16) -> Result<Reply, String> {
        let r = self.reply(what).await?;
        if r.code != code {
            return Err(format!("{what}: {}", r.text()));
        }
        Ok(r)
    }

    async fn ehlo(&mut self, helo: &str) -> Result<Reply, String> {
        self.send("EHLO", format!("EHLO {helo}\r\n").as_bytes())
            .await?;
        self.expect("EHLO", 250).await
    }

    /// The client side of STARTTLS after the server's 220, offering the DER-encoded
    /// session `offer` if any. Returns where the sessions this connection receives go.
    async fn starttls(
        &mut self,
        cfg: &Config,
        offer: Option<&[u8]>,
        stats: &Stats,
    ) -> Result<ReceivedSession, String> {
        if self.start != self.buf.len() {
            return Err("STARTTLS: the server sent bytes after its 220".to_string());
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err("STARTTLS: TLS already active".to_string());
        };
        let mut ssl = Ssl::new(&cfg.ctx).map_err(|e| format!("TLS: {e}"))?;
        if let Some(der) = offer {
            let session = SslSession::from_der(der).map_err(|e| format!("TLS session: {e}"))?;
            // SAFETY: the session was received on a connection made from `cfg.ctx`, the
            // context this `Ssl` comes from (what `SSL_set_session` requires), and this
            // copy belongs to no other connection.
            unsafe { ssl.set_session(&session) }.map_err(|e| format!("TLS: {e}"))?;
        }
        let received = ReceivedSession::default();
        ssl.set_ex_data(cfg.received, received.clone());
        let mut tls = SslStream::new(ssl, tcp).map_err(|e| format!("TLS: {e}"))?;
        let handshake = async {
            Pin::new(&mut tls)
                .connect()
                .await
                .map_err(|e| io::Error::other(e.to_string()))
        };
        within(self.timeout, "TLS handshake", handshake).await?;
        bump(&stats.handshakes, 1);
        if tls.ssl().session_reused() {
            bump(&stats.resumed, 1);
        }
        note_first(&stats.tls, || {
            let ssl = tls.ssl();
            let cipher = ssl.current_cipher().map_or("?", |c| c.name());
            format!("{}/{cipher}", ssl.version_str())
        });
        self.stream = Stream::Tls(Box::new(tls));
        Ok(received)
    }

    /// Ends TLS with a close_notify (errors do not matter: every message is settled).
    async fn close(&mut self) {
        if let Stream::Tls(tls) = &mut self.stream {
            let _ = within(self.timeout, "TLS close", tls.close()).await;
        }
    }
}

enum Outcome {
    Accepted,
    Refused(String),
}

/// One MAIL/RCPT/DATA transaction. A refusal leaves the session usable (RSET after
/// a refused MAIL or RCPT); an unreadable reply fails the session.
async fn transaction(
    conn: &mut Conn,
    cfg: &Config,
    pipelining: bool,
    message: &[u8],
) -> Result<Outcome, String> {
    let env = &cfg.envelope;
    let (mail, rcpt, data) = if pipelining {
        let mut cmds = Vec::with_capacity(env.mail.len() + env.rcpt.len() + 6);
        cmds.extend_from_slice(&env.mail);
        cmds.extend_from_slice(&env.rcpt);
        cmds.extend_from_slice(b"DATA\r\n");
        conn.send("MAIL/RCPT/DATA", &cmds).await?;
        let mail = conn.reply("MAIL").await?;
        let rcpt = conn.reply("RCPT").await?;
        let data = conn.reply("DATA").await?;
        (mail, Some(rcpt), Some(data))
    } else {
        conn.send("MAIL", &env.mail).await?;
        let mail = conn.reply("MAIL").await?;
        let (mut rcpt, mut data) = (None, None);
        if mail.positive() {
            conn.send("RCPT", &env.rcpt).await?;
            let r = conn.reply("RCPT").await?;
            if r.positive() {
                conn.send("DATA", b"DATA\r\n").await?;
                data = Some(conn.reply("DATA").await?);
            }
            rcpt = Some(r);
        }
        (mail, rcpt, data)
    };
    let data_open = data.as_ref().is_some_and(|d| d.code == 354);
    if mail.positive() && rcpt.as_ref().is_some_and(Reply::positive) && data_open {
        conn.send("message", message).await?;
        let end = conn.reply("end of data").await?;
        return Ok(if end.code == 250 {
            Outcome::Accepted
        } else {
            Outcome::Refused(format!("end of data: {}", end.text()))
        });
    }
    let why = if !mail.positive() {
        format!("MAIL: {}", mail.text())
    } else if let Some(r) = rcpt.as_ref().filter(|r| !r.positive()) {
        format!("RCPT: {}", r.text())
    } else {
        format!("DATA: {}", data.as_ref().map_or(String::new(), Reply::text))
    };
    if data_open {
        // 354 after a refused RCPT (pipelined): close the empty message.
        conn.send("end of data", b".\r\n").await?;
        conn.reply("end of data").await?;
    }
    conn.send("RSET", b"RSET\r\n").await?;
    conn.expect("RSET", 250).await?;
    Ok(Outcome::Refused(why))
}

/// One connection carrying `count` messages. `done` counts the transactions that
/// finished (accepted or refused), so that a failure knows how many were lost.
async fn session(
    client: usize,
    number: usize,
    count: usize,
    cfg: &Config,
    stats: &Stats,
    offer: &mut Option<Vec<u8>>,
    done: &mut usize,
) -> Result<(), String> {
    let tcp = within(
        cfg.timeout,
        "connect",
        Async::<TcpStream>::connect(cfg.addr),
    )
    .await?;
    tcp.get_ref()
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let mut conn = Conn {
        stream: Stream::Plain(tcp),
        buf: Vec::with_capacity(4096),
        start: 0,
        timeout: cfg.timeout,
    };
    conn.expect("greeting", 220).await?;
    let mut ehlo = conn.ehlo(&cfg.helo).await?;
    if cfg.tls != TlsMode::Plain {
        if !ehlo.offers("STARTTLS") {
            return Err("EHLO: the server does not offer STARTTLS".to_string());
        }
        conn.send("STARTTLS", b"STARTTLS\r\n").await?;
        conn.expect("STARTTLS", 220).await?;
        let offered = offer.as_deref().filter(|_| cfg.tls == TlsMode::Resume);
        let received = conn.starttls(cfg, offered, stats).await?;
        ehlo = conn.ehlo(&cfg.helo).await?;
        // A TLS 1.3 ticket arrives after the handshake, before the EHLO reply. When the
        // server sent nothing new (Postfix sends no ticket on a resumed connection),
        // the session offered stays the one to offer.
        let newer = received.lock().unwrap().take();
        if newer.is_some() {
            *offer = newer;
        }
    }
    let pipelining = cfg.pipelining && ehlo.offers("PIPELINING");
    let mut message = Vec::with_capacity(256 + cfg.body.len());
    for n in 0..count {
        message.clear();
        message.extend_from_slice(header(&cfg.envelope, client, number, n).as_bytes());
        message.extend_from_slice(&cfg.body);
        match transaction(&mut conn, cfg, pipelining, &message).await? {
            Outcome::Accepted => bump(&stats.accepted, 1),
            Outcome::Refused(why) => {
                bump(&stats.refused, 1);
                note_first(&stats.first_refusal, || why);
            }
        }
        *done += 1;
    }
    // Every message is settled; how the server says goodbye does not matter.
    if conn.send("QUIT", b"QUIT\r\n").await.is_ok() {
        let _ = conn.reply("QUIT").await;
    }
    // A clean TLS end, as a real client does (OpenSSL also marks the session of a
    // connection freed without SSL_shutdown as not resumable).
    conn.close().await;
    Ok(())
}

/// One client: sessions one after another while messages remain.
async fn client(id: usize, cfg: Rc<Config>, stats: Rc<Stats>) {
    let mut offer = None;
    let mut number = 0;
    loop {
        let count = stats.remaining.get().min(cfg.per_session);
        if count == 0 {
            return;
        }
        stats.remaining.set(stats.remaining.get() - count);
        number += 1;
        let mut done = 0;
        let result = session(id, number, count, &cfg, &stats, &mut offer, &mut done).await;
        bump(&stats.sessions, 1);
        if let Err(e) = result {
            bump(&stats.errors, 1);
            bump(&stats.lost, count - done);
            note_first(&stats.first_error, || {
                format!("client {id} session {number}: {e}")
            });
        }
    }
}

/// User + system CPU time of this process, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn tls_context() -> Result<(SslContext, Index<Ssl, ReceivedSession>), openssl::error::ErrorStack> {
    let mut b = SslContext::builder(SslMethod::tls_client())?;
    // Bench servers on loopback with self-signed certificates.
    b.set_verify(SslVerifyMode::NONE);
    // Each client keeps its own session; OpenSSL's cache stays empty, but CLIENT mode
    // is what makes it call the new-session callback.
    b.set_session_cache_mode(SslSessionCacheMode::CLIENT | SslSessionCacheMode::NO_INTERNAL);
    let received = Ssl::new_ex_index::<ReceivedSession>()?;
    b.set_new_session_callback(move |ssl, session| {
        if let (Some(slot), Ok(der)) = (ssl.ex_data(received), session.to_der()) {
            *slot.lock().unwrap() = Some(der);
        }
    });
    Ok((b.build(), received))
}

fn usage_error(msg: String) -> ! {
    eprintln!("loadgen: {msg}");
    std::process::exit(2)
}

fn main() {
    let args: Args = argh::from_env();
    let addr = match args.server.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) => usage_error(format!("{}: no address", args.server)),
        Err(e) => usage_error(format!("{}: {e} (expected HOST:PORT)", args.server)),
    };
    if args.concurrency == 0 || args.per_session == 0 {
        usage_error("--concurrency and --per-session must be at least 1".to_string());
    }
    let (ctx, received) =
        tls_context().unwrap_or_else(|e| usage_error(format!("TLS context: {e}")));
    let envelope = Envelope {
        mail: format!("MAIL FROM:<{}>\r\n", args.from).into_bytes(),
        rcpt: format!("RCPT TO:<{}>\r\n", args.to).into_bytes(),
        from: args.from,
        to: args.to,
    };
    let header_len = header(&envelope, 0, 0, 0).len();
    let cfg = Rc::new(Config {
        addr,
        tls: args.tls,
        ctx,
        received,
        per_session: args.per_session,
        pipelining: args.pipelining,
        helo: args.helo,
        timeout: Duration::from_secs(args.timeout),
        body: body(args.size.saturating_sub(header_len)),
        envelope,
    });
    let stats = Rc::new(Stats::default());
    stats.remaining.set(args.messages);

    let ex = LocalExecutor::new();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let clients: Vec<_> = (0..args.concurrency)
        .map(|id| ex.spawn(client(id, cfg.clone(), stats.clone())))
        .collect();
    smol::block_on(ex.run(async {
        for c in clients {
            c.await;
        }
    }));
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;

    let s = &stats;
    if let Some(r) = s.first_refusal.borrow().as_ref() {
        eprintln!("loadgen: first refusal: {r}");
    }
    if let Some(e) = s.first_error.borrow().as_ref() {
        eprintln!("loadgen: first error: {e}");
    }
    println!(
        "RESULT messages={} refused={} lost={} errors={} seconds={secs:.3} rate={:.1} \
         sessions={} handshakes={} resumed={} client_cpu={:.2} tls={}",
        s.accepted.get(),
        s.refused.get(),
        s.lost.get(),
        s.errors.get(),
        s.accepted.get() as f64 / secs.max(1e-9),
        s.sessions.get(),
        s.handshakes.get(),
        s.resumed.get(),
        cpu / secs.max(1e-9),
        s.tls.borrow().as_deref().unwrap_or("none"),
    );
    let all = s.accepted.get() == args.messages && s.errors.get() == 0;
    std::process::exit(if all { 0 } else { 1 });
}
