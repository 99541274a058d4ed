//! A scripted SMTP capture server for behaviours real servers do not offer on demand:
//! announcing STARTTLS and then breaking the handshake, or offering AUTH where a real
//! server would not (in plaintext) with replies a test chooses. It records every line it
//! receives (commands, AUTH answers) and every message it accepts, so a test can prove
//! what was sent, byte for byte, and that nothing was sent in plaintext. It can also
//! announce `REQUIRETLS` (RFC 8689) after STARTTLS, which no peer on this machine
//! speaks (Postfix has it from 3.11 only).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslStream};

use super::certs::CertPair;

/// What the server does about TLS.
#[derive(Clone, Debug)]
pub enum TlsMode {
    /// STARTTLS is not announced.
    Plain,
    /// STARTTLS is announced and answered 220, then junk is sent and the connection
    /// closed: every handshake fails.
    Broken,
    /// STARTTLS is announced and done with this certificate and key.
    StartTls(CertPair),
}

/// AUTH as the server announces and answers it.
#[derive(Clone, Debug)]
struct Auth {
    /// The EHLO `AUTH` keyword's mechanisms, e.g. `PLAIN LOGIN XOAUTH2`.
    mechanisms: String,
    /// The replies to the AUTH command and to each answer after a `334`, in order.
    replies: Vec<String>,
    /// AUTH is announced before STARTTLS too (a server that would take a password in
    /// plaintext).
    in_plaintext: bool,
}

pub struct Capture {
    pub addr: String,
    stop: Arc<AtomicBool>,
    commands: Arc<Mutex<Vec<String>>>,
    messages: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    pub fn start(addr: &str, mode: TlsMode) -> Capture {
        Capture::spawn(addr, mode, None, false)
    }

    /// Like `start`, announcing `REQUIRETLS` in the EHLO reply after STARTTLS.
    pub fn with_requiretls(addr: &str, mode: TlsMode) -> Capture {
        Capture::spawn(addr, mode, None, true)
    }

    /// Like `start`, announcing `AUTH mechanisms` (after STARTTLS; before it too when
    /// `mode` is `Plain`) and answering the exchange with `replies` (the reply to the
    /// AUTH command first; each `334` reply reads one answer line).
    pub fn with_auth(addr: &str, mode: TlsMode, mechanisms: &str, replies: &[&str]) -> Capture {
        let auth = Auth {
            mechanisms: mechanisms.to_string(),
            replies: replies.iter().map(|r| r.to_string()).collect(),
            in_plaintext: matches!(mode, TlsMode::Plain),
        };
        Capture::spawn(addr, mode, Some(auth), false)
    }

    fn spawn(addr: &str, mode: TlsMode, auth: Option<Auth>, requiretls: bool) -> Capture {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let acceptor = match &mode {
            TlsMode::StartTls(pair) => {
                let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
                b.set_certificate_chain_file(&pair.cert).unwrap();
                b.set_private_key_file(&pair.key, SslFiletype::PEM).unwrap();
                Some(b.build())
            }
            _ => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (st, cm, ms) = (stop.clone(), commands.clone(), messages.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let mut session = Session {
                            conn: Conn::Plain(stream),
                            input: Vec::new(),
                            commands: &cm,
                            requiretls,
                        };
                        let _ = session.serve(&mode, acceptor.as_ref(), auth.as_ref(), &ms);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Capture {
            addr: addr.to_string(),
            stop,
            commands,
            messages,
            thread: Some(thread),
        }
    }

    /// Every line received, in order (commands, AUTH answers; not message content).
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
    /// Between the plaintext stream and its TLS wrapper.
    Gone,
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
            Conn::Gone => Ok(0),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
            Conn::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
            Conn::Gone => Ok(()),
        }
    }
}

/// One connection.
struct Session<'a> {
    conn: Conn,
    input: Vec<u8>,
    commands: &'a Mutex<Vec<String>>,
    /// Announce REQUIRETLS once TLS is up.
    requiretls: bool,
}

impl Session<'_> {
    /// The next line with its CRLF (`None` at the end of the connection).
    fn raw_line(&mut self) -> std::io::Result<Option<String>> {
        loop {
            if let Some(i) = self.input.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=i).collect();
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            let mut buf = [0u8; 4096];
            let n = self.conn.read(&mut buf)?;
            if n == 0 {
                return Ok(None);
            }
            self.input.extend_from_slice(&buf[..n]);
        }
    }

    /// The next line, recorded without its CRLF.
    fn line(&mut self) -> std::io::Result<Option<String>> {
        let Some(line) = self.raw_line()? else {
            return Ok(None);
        };
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        self.commands.lock().unwrap().push(line.clone());
        Ok(Some(line))
    }

    fn send(&mut self, text: &str) -> std::io::Result<()> {
        self.conn.write_all(text.as_bytes())?;
        self.conn.flush()
    }

    fn serve(
        &mut self,
        mode: &TlsMode,
        acceptor: Option<&SslAcceptor>,
        auth: Option<&Auth>,
        messages: &Mutex<Vec<String>>,
    ) -> std::io::Result<()> {
        if let Conn::Plain(s) = &self.conn {
            s.set_nonblocking(false)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
        }
        self.send("220 capture.test ESMTP\r\n")?;
        loop {
            let Some(cmd) = self.line()? else {
                return Ok(());
            };
            let tls = matches!(self.conn, Conn::Tls(_));
            let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "EHLO" => {
                    let mut ehlo = String::from("250-capture.test\r\n");
                    if !tls && !matches!(mode, TlsMode::Plain) {
                        ehlo.push_str("250-STARTTLS\r\n");
                    }
                    if let Some(a) = auth.filter(|a| tls || a.in_plaintext) {
                        ehlo.push_str(&format!("250-AUTH {}\r\n", a.mechanisms));
                    }
                    if tls && self.requiretls {
                        ehlo.push_str("250-REQUIRETLS\r\n");
                    }
                    ehlo.push_str("250 8BITMIME\r\n");
                    self.send(&ehlo)?;
                }
                "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => self.send("250 2.0.0 ok\r\n")?,
                "STARTTLS" if !tls && matches!(mode, TlsMode::Broken) => {
                    self.send("220 2.0.0 go ahead\r\n")?;
                    self.send("this is not a TLS server hello\r\n")?;
                    return Ok(());
                }
                "STARTTLS" if !tls && acceptor.is_some() => {
                    self.send("220 2.0.0 Ready to start TLS\r\n")?;
                    // Anything pipelined after STARTTLS would be plaintext injection.
                    self.input.clear();
                    let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Gone) else {
                        return Ok(());
                    };
                    match acceptor.map(|a| a.accept(tcp)) {
                        Some(Ok(s)) => self.conn = Conn::Tls(Box::new(s)),
                        _ => return Ok(()),
                    }
                }
                "AUTH" if auth.is_some_and(|a| tls || a.in_plaintext) => {
                    let replies = auth.map(|a| a.replies.clone()).unwrap_or_default();
                    for reply in replies {
                        self.send(&format!("{reply}\r\n"))?;
                        if !reply.starts_with("334") {
                            break;
                        }
                        if self.line()?.is_none() {
                            return Ok(());
                        }
                    }
                }
                "DATA" => {
                    self.send("354 go ahead\r\n")?;
                    let mut msg = String::new();
                    loop {
                        let Some(line) = self.raw_line()? else {
                            return Ok(());
                        };
                        if line == ".\r\n" {
                            break;
                        }
                        msg.push_str(&line);
                    }
                    messages.lock().unwrap().push(msg);
                    self.send("250 2.0.0 captured\r\n")?;
                }
                "QUIT" => {
                    self.send("221 2.0.0 bye\r\n")?;
                    return Ok(());
                }
                _ => self.send("502 5.5.2 unknown\r\n")?,
            }
        }
    }
}
