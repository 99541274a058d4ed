//! Shared test harness: starts the real `tinymta` binary on loopback with its own state
//! directory and ports, talks SMTP to it (plaintext and TLS), runs external peers with
//! time limits, and cleans up every process it started by PID.
//!
//! `TINYMTA_TEST_RUNNER` (e.g. `qemu-mips-static`) runs the binary under an emulator
//! for the cross-architecture runs in `cross/test`.

#![allow(dead_code)]

pub mod capture;
pub mod certs;
pub mod dkim;
pub mod dns;
pub mod dns_server;
pub mod netns;
pub mod postfix;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};

/// The emulator from `TINYMTA_TEST_RUNNER` (cross/test), if any.
pub fn test_runner() -> Option<String> {
    std::env::var("TINYMTA_TEST_RUNNER")
        .ok()
        .filter(|r| !r.is_empty())
}

/// The tinymta binary at `bin` as a Command, through the emulator when cross-testing.
/// A script (`#!`) is a host program and runs as itself: it puts the emulator in front
/// of the binary it execs, with `exec_words`.
pub fn command_for(bin: &Path) -> Command {
    match test_runner() {
        Some(runner) if !is_script(bin) => {
            let mut c = Command::new(runner);
            c.arg(bin);
            c
        }
        _ => Command::new(bin),
    }
}

/// The words that run the binary at `bin`, the emulator first when cross-testing: for
/// the commands that exec it themselves (setpriv, a wrapper script).
pub fn exec_words(bin: &Path) -> Vec<String> {
    test_runner()
        .into_iter()
        .chain([bin.display().to_string()])
        .collect()
}

fn is_script(path: &Path) -> bool {
    let mut start = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut start))
        .is_ok()
        && &start == b"#!"
}

/// The messages delivered to `user@domain` under the state directory `state` (its
/// Maildir's `new/`), sorted; none when it does not exist yet.
pub fn maildir_messages(state: &Path, domain: &str, user: &str) -> Vec<String> {
    let dir = state.join("mail").join(domain).join(user).join("new");
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The binary under test.
pub fn tinymta_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tinymta"))
}

/// The binary under test, as a Command (through the emulator when cross-testing).
pub fn tinymta_command() -> Command {
    command_for(tinymta_bin())
}

/// Runs the binary to completion (for subcommands such as `queue list`).
pub fn tinymta(args: &[&str]) -> Output {
    run_with_timeout(tinymta_command().args(args), None, Duration::from_secs(60))
}

/// The one process runner of the tests: runs `cmd` with optional stdin to completion,
/// killing it by PID after `limit`. stdout and stderr go to files, not pipes: a daemon
/// the command starts (the Postfix master) may keep inherited descriptors open, so
/// reading a pipe to its end could hang, and a child never blocks on a full pipe.
/// Err when the command cannot start or timed out (with what it printed).
pub fn run_bounded(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    limit: Duration,
) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    let tmp = TempDir::new("cmd");
    let (out_path, err_path) = (tmp.path().join("stdout"), tmp.path().join("stderr"));
    let create = |p: &Path| fs::File::create(p).map_err(|e| format!("{desc}: {p:?}: {e}"));
    cmd.stdout(create(&out_path)?)
        .stderr(create(&err_path)?)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {desc}: {e}"))?;
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let data = data.to_vec();
        // Not joined: a process that keeps the pipe open without reading it must not
        // hold up the test.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("{desc}: wait: {e}")),
        }
    };
    let (stdout, stderr) = (
        fs::read(&out_path).unwrap_or_default(),
        fs::read(&err_path).unwrap_or_default(),
    );
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "{desc} timed out after {limit:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )),
    }
}

/// [`run_bounded`], and Err unless the command exited 0.
pub fn run_checked(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    limit: Duration,
) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    let out = run_bounded(cmd, stdin, limit)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!("{desc}: {}\n{}", out.status, output_text(&out)))
    }
}

/// [`run_bounded`] for tests: a command that cannot start or times out fails the test.
pub fn run_with_timeout(cmd: &mut Command, stdin: Option<&[u8]>, limit: Duration) -> Output {
    run_bounded(cmd, stdin, limit).unwrap_or_else(|e| panic!("{e}"))
}

/// `kill -SIG -- TARGET` (a PID, or `-PGID` for a process group), bounded.
pub fn send_signal(sig: &str, target: &str) {
    let _ = run_bounded(
        Command::new("kill").args([&format!("-{sig}"), "--", target]),
        None,
        Duration::from_secs(5),
    );
}

/// stdout, then stderr, as text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The one port picker of the tests: `n` distinct ports on `ip` that nobody uses right
/// now, for TCP nor UDP (unbound binds both), held open together while chosen so they
/// differ from each other.
pub fn free_ports(ip: &str, n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    let mut attempts = 0;
    while held.len() < n {
        attempts += 1;
        assert!(attempts < 1000, "no free TCP+UDP ports on {ip}");
        let tcp = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}:0: {e}"));
        let port = tcp.local_addr().unwrap().port();
        if let Ok(udp) = UdpSocket::bind((ip, port)) {
            held.push((port, tcp, udp));
        }
    }
    held.into_iter().map(|(port, ..)| port).collect()
}

/// A port on `ip` that nobody uses right now (see [`free_ports`]).
pub fn free_port(ip: &str) -> u16 {
    free_ports(ip, 1)[0]
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "tinymta-test-{tag}-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("TINYMTA_KEEP_TEST_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A running `tinymta serve` on loopback.
pub struct Server {
    /// The tinymta binary (the one cargo built for the tests, or another build).
    pub bin: PathBuf,
    pub child: Option<Child>,
    pub dir: TempDir,
    pub state: PathBuf,
    pub smtp: String,
    pub submission: String,
    pub smtps: String,
    pub log_path: PathBuf,
    pub extra: Vec<String>,
    /// `TINYMTA_LOG` for the process ("info" unless started with [`Server::start_logging`]).
    pub log_filter: String,
}

pub const DOMAIN: &str = "example.test";
pub const HOSTNAME: &str = "mx.example.test";

impl Server {
    /// Starts with the three listeners on free ports, domain `example.test`, and any
    /// extra flags.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(tinymta_bin(), None, extra, "info")
    }

    /// Like `start` (or `start_at` with `smtp`), logging with `TINYMTA_LOG=filter`
    /// (e.g. "debug" for lines only logged at that level).
    pub fn start_logging(filter: &str, smtp: Option<&str>, extra: &[&str]) -> Server {
        Server::start_with(tinymta_bin(), smtp, extra, filter)
    }

    /// Like `start`, with the `--smtp` listener on `smtp` (e.g. a receiving MX on
    /// `127.0.0.21:PORT`).
    pub fn start_at(smtp: &str, extra: &[&str]) -> Server {
        Server::start_with(tinymta_bin(), Some(smtp), extra, "info")
    }

    /// Like `start`, running the tinymta binary at `bin` (e.g. a build with other
    /// features).
    pub fn start_binary(bin: &Path, extra: &[&str]) -> Server {
        Server::start_with(bin, None, extra, "info")
    }

    /// `start_binary` with the `--smtp` listener on `smtp`.
    pub fn start_binary_at(bin: &Path, smtp: &str, extra: &[&str]) -> Server {
        Server::start_with(bin, Some(smtp), extra, "info")
    }

    /// Picks free ports for the listeners not given and starts; a port taken by another
    /// test between picking and binding ("cannot listen") is retried with new ones.
    fn start_with(bin: &Path, smtp: Option<&str>, extra: &[&str], log_filter: &str) -> Server {
        for _attempt in 0..5 {
            let ports = free_ports("127.0.0.1", 3);
            let dir = TempDir::new("server");
            let state = dir.path().join("state");
            let mut s = Server {
                bin: bin.to_path_buf(),
                child: None,
                state,
                smtp: smtp
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("127.0.0.1:{}", ports[0])),
                submission: format!("127.0.0.1:{}", ports[1]),
                smtps: format!("127.0.0.1:{}", ports[2]),
                log_path: dir.path().join("tinymta.log"),
                dir,
                extra: extra.iter().map(|s| s.to_string()).collect(),
                log_filter: log_filter.to_string(),
            };
            match s.try_spawn() {
                Ok(()) => return s,
                Err(log) if log.contains("cannot listen on") => continue,
                Err(log) => panic!("tinymta exited at start:\n{log}"),
            }
        }
        panic!("tinymta could not get free ports in 5 attempts");
    }

    /// (Re)starts the process with the same state directory and ports.
    pub fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("tinymta exited at start:\n{log}");
        }
    }

    /// Starts the process and waits until it is ready; Err(log) if it exited.
    fn try_spawn(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut cmd = command_for(&self.bin);
        cmd.args([
            "serve",
            "--smtp",
            &self.smtp,
            "--submission",
            &self.submission,
        ])
        .args([
            "--smtps",
            &self.smtps,
            "--domain",
            DOMAIN,
            "--hostname",
            HOSTNAME,
        ])
        .arg("--state-dir")
        .arg(&self.state)
        // Never the system resolver: tests stay on loopback. Port 9 (discard) has no
        // DNS server, so lookups fail at once unless a test passes its own --resolver.
        .args(if self.extra.iter().any(|a| a == "--resolver") {
            vec![]
        } else {
            vec!["--resolver", "127.0.0.1:9"]
        })
        .args(&self.extra)
        .env("TINYMTA_LOG", &self.log_filter)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        self.child = Some(cmd.spawn().expect("start tinymta"));
        let start = Instant::now();
        // Ready means every listener is bound and the signal handlers are in place: the
        // "started" line comes after both (slow under QEMU). The log is appended to
        // across restarts, so count the lines.
        let started_before = self.log().matches(" started: ").count();
        while self.log().matches(" started: ").count() == started_before
            || TcpStream::connect(&self.smtp).is_err()
        {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exit status {status}\n{}", self.log()));
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tinymta did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends `sig` (e.g. "HUP") to the running process (none without one).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            send_signal(sig, &c.id().to_string());
        }
    }

    /// SIGKILL and reap: a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        send_signal("TERM", &c.id().to_string());
        let start = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.code();
            }
            if start.elapsed() > Duration::from_secs(40) {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends one message over SMTP (port 25 role, plain EHLO) and asserts it was
    /// queued; returns its queue ID.
    pub fn submit(&self, from: &str, to: &[&str], content: &str) -> String {
        let mut c = Client::greeted(&self.smtp);
        c.ehlo(false);
        let r = c.send_mail(from, to, content);
        assert_eq!(r.code, 250, "{r:?}");
        r.lines[0].rsplit(' ').next().unwrap().to_string()
    }

    /// Waits (bounded) for a log line containing `needle`; returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.log().lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no log line with {needle:?} in:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn maildir(&self, user: &str) -> PathBuf {
        self.state.join("mail").join(DOMAIN).join(user).join("new")
    }

    /// Messages delivered to `user@example.test`.
    pub fn delivered(&self, user: &str) -> Vec<String> {
        self.delivered_in(DOMAIN, user)
    }

    /// Messages delivered to `user@domain`.
    pub fn delivered_in(&self, domain: &str, user: &str) -> Vec<String> {
        maildir_messages(&self.state, domain, user)
    }

    /// Waits (bounded) until `user` has at least `n` messages; returns them.
    pub fn wait_delivered(&self, user: &str, n: usize) -> Vec<String> {
        self.wait_delivered_in(DOMAIN, user, n)
    }

    /// Waits (bounded) until `user@domain` has at least `n` messages; returns them.
    pub fn wait_delivered_in(&self, domain: &str, user: &str, n: usize) -> Vec<String> {
        let start = Instant::now();
        loop {
            let d = self.delivered_in(domain, user);
            if d.len() >= n {
                return d;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{user} has {} of {n} messages; log:\n{}",
                d.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Files in the queue's `messages/` directory.
    pub fn queued(&self) -> usize {
        fs::read_dir(self.state.join("queue/messages"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Waits (bounded) until the queue's `messages/` is empty. A delivered message
    /// leaves its Maildir copy before its queue file goes (under QEMU well before).
    pub fn wait_queue_drained(&self) {
        self.wait_until("an empty queue", || self.queued() == 0);
    }

    /// Waits (bounded: 30 s) until `cond` holds; the daemon's log is in the panic.
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Polls `f` until it returns something (bounded by `limit`); `what` names it in the
/// panic.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal SMTP client for tests: raw lines out, whole replies in.
pub struct Client {
    stream: Stream,
    reader_buf: Vec<u8>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A reply: code and the text lines (without the code).
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
    pub fn has_keyword(&self, kw: &str) -> bool {
        self.lines
            .iter()
            .skip(1)
            .any(|l| l.split(' ').next() == Some(kw))
    }
}

fn tls_connector() -> SslConnector {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.build()
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client {
            stream: Stream::Plain(s),
            reader_buf: Vec::new(),
        }
    }

    /// How long a reply may take (20 s from `connect`); for a server that is made to
    /// wait on purpose.
    pub fn set_read_timeout(&self, limit: Duration) {
        if let Stream::Plain(s) = &self.stream {
            s.set_read_timeout(Some(limit)).unwrap();
        }
    }

    /// Connects and reads the 220 greeting.
    pub fn greeted(addr: &str) -> Client {
        let mut c = Client::connect(addr);
        assert_eq!(c.reply().code, 220);
        c
    }

    /// Implicit TLS (port 465), then the greeting.
    pub fn greeted_tls(addr: &str) -> Client {
        let mut c = Client::connect(addr);
        c.start_tls();
        assert_eq!(c.reply().code, 220);
        c
    }

    pub fn start_tls(&mut self) {
        let Stream::Plain(tcp) = &self.stream else {
            panic!("already TLS")
        };
        let tcp = tcp.try_clone().unwrap();
        let cfg = tls_connector().configure().unwrap().verify_hostname(false);
        let tls = cfg.connect("mx.example.test", tcp).expect("TLS handshake");
        self.stream = Stream::Tls(Box::new(tls));
    }

    /// The server certificate of the TLS session, PEM.
    pub fn peer_cert_pem(&self) -> Vec<u8> {
        match &self.stream {
            Stream::Tls(s) => s.ssl().peer_certificate().unwrap().to_pem().unwrap(),
            Stream::Plain(_) => panic!("not TLS"),
        }
    }

    /// Sends raw bytes.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    /// Sends a line with CRLF.
    pub fn send(&mut self, line: &str) {
        self.raw(format!("{line}\r\n").as_bytes());
    }

    /// Reads one (possibly multi-line) reply.
    pub fn reply(&mut self) -> Reply {
        self.try_reply()
            .expect("connection closed while waiting for a reply")
    }

    pub fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line()?;
            assert!(line.len() >= 3, "short reply line {line:?}");
            let code: u16 = line[..3]
                .parse()
                .unwrap_or_else(|_| panic!("bad reply {line:?}"));
            lines.push(line.get(4..).unwrap_or("").to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(Reply { code, lines });
            }
        }
    }

    fn read_line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.reader_buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.reader_buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.reader_buf.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Sends a command and returns the reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(line);
        self.reply()
    }

    /// EHLO, then STARTTLS and EHLO again when `tls`.
    pub fn ehlo(&mut self, tls: bool) -> Reply {
        let r = self.cmd("EHLO client.test");
        assert_eq!(r.code, 250, "{r:?}");
        if !tls {
            return r;
        }
        assert_eq!(self.cmd("STARTTLS").code, 220);
        self.start_tls();
        let r = self.cmd("EHLO client.test");
        assert_eq!(r.code, 250);
        r
    }

    /// A whole transaction; returns the reply to the end of data.
    pub fn send_mail(&mut self, from: &str, to: &[&str], body: &str) -> Reply {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        assert_eq!(r.code, 250, "MAIL: {r:?}");
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>"));
            assert_eq!(r.code, 250, "RCPT {t}: {r:?}");
        }
        assert_eq!(self.cmd("DATA").code, 354);
        self.raw(body.as_bytes());
        self.raw(b"\r\n.\r\n");
        self.reply()
    }

    /// True when the server closed the connection.
    pub fn is_closed(&mut self) -> bool {
        self.read_line().is_none()
    }
}

/// Reads a file line by line (for a log-like file).
pub fn lines_of(path: &Path) -> Vec<String> {
    fs::File::open(path)
        .map(|f| BufReader::new(f).lines().map_while(Result::ok).collect())
        .unwrap_or_default()
}

/// An `--auth-file` in `dir` with these users and passwords, made by `tinymta passwd`
/// (few iterations: tests log in often); its path.
pub fn auth_file(dir: &Path, users: &[(&str, &str)]) -> String {
    let mut text = String::new();
    for (user, pw) in users {
        let out = run_with_timeout(
            tinymta_command().args(["passwd", user, "--iterations", "1000"]),
            Some(format!("{pw}\n").as_bytes()),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "{out:?}");
        let line = String::from_utf8(out.stdout).unwrap();
        assert!(
            line.starts_with(&format!("{user}:$pbkdf2-sha256$1000$")),
            "{line}"
        );
        assert!(!line.contains(pw), "the password must not appear");
        text.push_str(&line);
    }
    let path = dir.join("users");
    fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Runs swaks (bounded); returns its exit code and stdout+stderr.
pub fn swaks(args: &[&str]) -> (i32, String) {
    let bin = require_tool("swaks", "swaks");
    let out = run_with_timeout(Command::new(bin).args(args), None, Duration::from_secs(60));
    (out.status.code().unwrap_or(-1), output_text(&out))
}

/// Path of a command, or a panic saying which package the test command installs it from.
pub fn require_tool(name: &str, package: &str) -> String {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = format!("{dir}/{name}");
        if Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{name} is not installed: `bash tests/run` installs it (Debian package {package})");
}
