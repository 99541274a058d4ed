//! A scripted SMTP capture server for behaviours real servers do not offer on demand:
//! announcing STARTTLS and then breaking the handshake. It records every command and
//! every message it accepts, so a test can prove nothing was sent in plaintext.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server does about TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS is not announced.
    Plain,
    /// STARTTLS is announced and answered 220, then junk is sent and the connection
    /// closed: every handshake fails.
    Broken,
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
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (st, cm, ms) = (stop.clone(), commands.clone(), messages.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = serve(stream, mode, &cm, &ms);
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

fn serve(
    stream: TcpStream,
    mode: TlsMode,
    commands: &Mutex<Vec<String>>,
    messages: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    out.write_all(b"220 capture.test ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        commands.lock().unwrap().push(cmd.clone());
        let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                if mode == TlsMode::Broken {
                    out.write_all(b"250-capture.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n")?;
                } else {
                    out.write_all(b"250-capture.test\r\n250 8BITMIME\r\n")?;
                }
            }
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => out.write_all(b"250 2.0.0 ok\r\n")?,
            "STARTTLS" if mode == TlsMode::Broken => {
                out.write_all(b"220 2.0.0 go ahead\r\n")?;
                out.write_all(b"this is not a TLS server hello\r\n")?;
                return Ok(());
            }
            "DATA" => {
                out.write_all(b"354 go ahead\r\n")?;
                let mut msg = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    msg.push_str(&line);
                }
                messages.lock().unwrap().push(msg);
                out.write_all(b"250 2.0.0 captured\r\n")?;
            }
            "QUIT" => {
                out.write_all(b"221 2.0.0 bye\r\n")?;
                return Ok(());
            }
            _ => out.write_all(b"502 5.5.2 unknown\r\n")?,
        }
    }
}
