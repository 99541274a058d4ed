//! SMTP AUTH from the client side against a scripted fake smarthost on loopback: the
//! exact lines `ClientSession::authenticate` sends for PLAIN, LOGIN, XOAUTH2 (with
//! Google's error dance) and OAUTHBEARER (RFC 7628), how failures are told apart, and
//! that nothing is sent on a session without TLS. Real Postfix/Cyrus peers are for the
//! end-to-end tests; this one pins the bytes.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::thread::JoinHandle;
use std::time::Duration;

mod common;

use common::TempDir;
use openssl::base64;
use openssl::ssl::{SslAcceptor, SslMethod};
use tinymta::outbound::client::{Candidate, ClientSession, Timeouts};
use tinymta::outbound::credentials::Credentials;
use tinymta::outbound::sasl::{self, AuthFailure, Login, Mechanism, Secret};
use tinymta::tls::cert::{generate_key, self_signed, KeyKind, Subject};
use tinymta::tls::client::inspection_tls;

const SERVER_NAME: &str = "smtp.example.com";

/// What the fake server does before its script.
#[derive(Clone, Copy, PartialEq)]
enum Tls {
    /// Offers STARTTLS and AUTH only after it.
    StartTls,
    /// Never offers STARTTLS, but does offer AUTH (a server that would take a password
    /// in plaintext).
    Plaintext,
}

/// Reads CRLF lines and writes replies on a plaintext or TLS stream.
struct Peer<S> {
    stream: S,
    seen: Vec<String>,
}

impl<S: Read + Write> Peer<S> {
    fn line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.stream.read(&mut byte) {
                Ok(1) => {}
                _ => return None,
            }
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
        let line = String::from_utf8_lossy(&line)
            .trim_end_matches('\r')
            .to_string();
        self.seen.push(line.clone());
        Some(line)
    }

    fn send(&mut self, reply: &str) {
        self.stream.write_all(reply.as_bytes()).unwrap();
        self.stream.flush().unwrap();
    }

    /// Answers one line with `reply`.
    fn answer(&mut self, reply: &str) -> Option<()> {
        self.line()?;
        self.send(reply);
        Some(())
    }

    /// The scripted replies, one per client line, then QUIT until the client leaves.
    fn run_script(&mut self, auth: &str, script: &[&str]) {
        self.answer(&format!(
            "250-{SERVER_NAME}\r\n250-PIPELINING\r\n250 {auth}\r\n"
        ));
        for reply in script {
            if self.answer(&format!("{reply}\r\n")).is_none() {
                return;
            }
        }
        while let Some(l) = self.line() {
            if l.eq_ignore_ascii_case("QUIT") {
                self.send("221 2.0.0 bye\r\n");
                return;
            }
            self.send("502 5.5.2 not in the script\r\n");
        }
    }
}

/// Starts a one-connection fake smarthost announcing `auth` (e.g. `AUTH PLAIN LOGIN`)
/// and answering the lines after EHLO with `script`; joins to every line it received.
fn fake_smarthost(tls: Tls, auth: &str, script: &[&str]) -> (u16, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (auth, script) = (
        auth.to_string(),
        script.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    let handle = std::thread::spawn(move || {
        let script: Vec<&str> = script.iter().map(String::as_str).collect();
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut plain = Peer {
            stream,
            seen: Vec::new(),
        };
        plain.send(&format!("220 {SERVER_NAME} ESMTP fake\r\n"));
        if tls == Tls::Plaintext {
            plain.run_script(&auth, &script);
            return plain.seen;
        }
        plain.answer(&format!(
            "250-{SERVER_NAME}\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
        ));
        plain.answer("220 2.0.0 Ready to start TLS\r\n");
        let key = generate_key(KeyKind::EcP256).unwrap();
        let cert = self_signed(
            &Subject::common_name(SERVER_NAME),
            &[SERVER_NAME.to_string()],
            &key,
            1,
        )
        .unwrap();
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
        acceptor.set_private_key(&key).unwrap();
        acceptor.set_certificate(&cert).unwrap();
        let stream = acceptor.build().accept(plain.stream).unwrap();
        let mut tls = Peer {
            stream,
            seen: plain.seen,
        };
        tls.run_script(&auth, &script);
        tls.seen
    });
    (port, handle)
}

/// One client session against the fake smarthost.
struct Run {
    outcome: Result<(), AuthFailure>,
    /// Every line the server received.
    seen: Vec<String>,
    /// The server's port, as the client connected to it.
    port: u16,
}

/// Connects, EHLO, STARTTLS when `tls`, then AUTH with the first of `wanted` that the
/// server offers.
fn exchange(tls: Tls, auth: &str, script: &[&str], login: &Login, wanted: &[Mechanism]) -> Run {
    let (port, server) = fake_smarthost(tls, auth, script);
    let candidate = Candidate {
        host: SERVER_NAME.to_string(),
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
    };
    let outcome = smol::block_on(async {
        let mut s = ClientSession::connect(&candidate, Timeouts::default())
            .await
            .unwrap();
        s.hello("router.example.org").await.unwrap();
        if tls == Tls::StartTls {
            let ctx = inspection_tls(Some(SERVER_NAME)).unwrap();
            s.starttls(&ctx, "router.example.org").await.unwrap();
        }
        let mechanism = sasl::choose(&s.ext.auth, wanted)
            .unwrap_or_else(|| panic!("no mechanism of {wanted:?} in {:?}", s.ext.auth));
        let outcome = s.authenticate(login, mechanism).await;
        s.quit().await;
        outcome
    });
    Run {
        outcome,
        seen: server.join().unwrap(),
        port,
    }
}

/// What the client sent after the EHLO that followed STARTTLS (QUIT dropped).
fn auth_lines(seen: &[String]) -> Vec<String> {
    let last_ehlo = seen.iter().rposition(|l| l.starts_with("EHLO")).unwrap();
    seen[last_ehlo + 1..]
        .iter()
        .filter(|l| *l != "QUIT")
        .cloned()
        .collect()
}

fn password(user: &str, password: &str) -> Login {
    Login {
        user: user.to_string(),
        secret: Secret::Password(password.to_string()),
    }
}

fn bearer(user: &str, token: &str) -> Login {
    Login {
        user: user.to_string(),
        secret: Secret::Bearer(token.to_string()),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::encode_block(bytes)
}

#[test]
fn plain_sends_everything_in_the_initial_response() {
    let login = password("alice@example.com", "s3cret:with colon");
    let Run { outcome, seen, .. } = exchange(
        Tls::StartTls,
        "AUTH LOGIN PLAIN",
        &["235 2.7.0 Authentication successful"],
        &login,
        sasl::PASSWORD_MECHANISMS,
    );
    assert_eq!(outcome, Ok(()));
    assert_eq!(
        auth_lines(&seen),
        [format!(
            "AUTH PLAIN {}",
            b64(b"\0alice@example.com\0s3cret:with colon")
        )]
    );
    // STARTTLS came first and the password never travelled before it.
    let starttls = seen.iter().position(|l| l == "STARTTLS").unwrap();
    assert!(seen[..starttls].iter().all(|l| !l.starts_with("AUTH")));
}

#[test]
fn login_answers_the_two_prompts() {
    let login = password("alice@example.com", "s3cret");
    let Run { outcome, seen, .. } = exchange(
        Tls::StartTls,
        "AUTH LOGIN",
        &[
            "334 VXNlcm5hbWU6",
            "334 UGFzc3dvcmQ6",
            "235 2.7.0 Authentication successful",
        ],
        &login,
        sasl::PASSWORD_MECHANISMS,
    );
    assert_eq!(outcome, Ok(()));
    assert_eq!(
        auth_lines(&seen),
        ["AUTH LOGIN", "YWxpY2VAZXhhbXBsZS5jb20=", "czNjcmV0"]
    );
}

#[test]
fn xoauth2_token_file_and_the_error_dance() {
    // The token comes from a file through the credentials table, as at delivery.
    let dir = TempDir::new("smarthost-auth");
    let token_file = dir.path().join("gmail.token");
    std::fs::write(
        &token_file,
        "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\n",
    )
    .unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let table = format!(
        "[{SERVER_NAME}]:587 someuser@example.com:xoauth2:file:{}\n",
        token_file.display()
    );
    let creds = Credentials::parse(&table, "creds").unwrap();
    let entry = creds
        .lookup(None, SERVER_NAME, &format!("[{SERVER_NAME}]:587"))
        .unwrap();
    let login = smol::block_on(entry.login(Duration::from_secs(10))).unwrap();

    // Google's documented error challenge, then the 535 after the empty answer.
    let error_json =
        r#"{"status":"401","schemes":"bearer mac","scope":"https://mail.google.com/"}"#;
    let Run { outcome, seen, .. } = exchange(
        Tls::StartTls,
        "AUTH LOGIN PLAIN XOAUTH2 OAUTHBEARER",
        &[
            &format!("334 {}", b64(format!("{error_json}\n").as_bytes())),
            "535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 https://support.google.com/mail/?p=BadCredentials",
        ],
        &login,
        entry.mechanisms(),
    );
    assert_eq!(
        auth_lines(&seen),
        [
            // Byte for byte Google's example initial client response.
            "AUTH XOAUTH2 dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==",
            "",
        ]
    );
    match outcome {
        Err(AuthFailure::Rejected { reply, oauth_error }) => {
            assert_eq!(reply.code, 535);
            assert_eq!(reply.lines[0], "5.7.8 Username and Password not accepted.");
            assert_eq!(oauth_error.as_deref(), Some(error_json));
        }
        other => panic!("expected a permanent rejection, got {other:?}"),
    }
}

#[test]
fn oauthbearer_as_rfc7628() {
    let token = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";
    let login = bearer("user@example.com", token);
    let Run {
        outcome,
        seen,
        port,
    } = exchange(
        Tls::StartTls,
        "AUTH XOAUTH2 OAUTHBEARER",
        &["235 2.7.0 Accepted"],
        &login,
        sasl::BEARER_MECHANISMS,
    );
    assert_eq!(outcome, Ok(()));
    let lines = auth_lines(&seen);
    let ir = lines[0].strip_prefix("AUTH OAUTHBEARER ").unwrap();
    assert_eq!(
        base64::decode_block(ir).unwrap(),
        format!("n,a=user@example.com,\x01host={SERVER_NAME}\x01port={port}\x01auth=Bearer {token}\x01\x01")
            .into_bytes()
    );
    assert_eq!(lines.len(), 1);

    // A failed exchange: after the error challenge the client sends a lone ^A.
    let Run { outcome, seen, .. } = exchange(
        Tls::StartTls,
        "AUTH OAUTHBEARER",
        &[
            "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIn0=",
            "535 5.7.8 Authentication credentials invalid",
        ],
        &login,
        sasl::BEARER_MECHANISMS,
    );
    assert_eq!(auth_lines(&seen)[1], "AQ==");
    assert!(matches!(
        outcome,
        Err(AuthFailure::Rejected { oauth_error: Some(ref e), .. })
            if e == r#"{"status":"invalid_token","scope":"example_scope"}"#
    ));
}

#[test]
fn temporary_and_protocol_failures() {
    let login = password("alice@example.com", "s3cret");
    let Run { outcome, .. } = exchange(
        Tls::StartTls,
        "AUTH PLAIN",
        &["454 4.7.0 Temporary authentication failure"],
        &login,
        sasl::PASSWORD_MECHANISMS,
    );
    assert!(matches!(outcome, Err(AuthFailure::Temporary { ref reply, .. }) if reply.code == 454));

    // A challenge PLAIN has no answer for: the client cancels with `*`.
    let Run { outcome, seen, .. } = exchange(
        Tls::StartTls,
        "AUTH PLAIN",
        &["334 ", "501 5.7.0 Authentication aborted"],
        &login,
        sasl::PASSWORD_MECHANISMS,
    );
    assert!(
        matches!(outcome, Err(AuthFailure::Protocol(_))),
        "{outcome:?}"
    );
    assert_eq!(auth_lines(&seen)[1], "*");
}

#[test]
fn no_auth_without_tls() {
    let login = password("alice@example.com", "s3cret-never-sent");
    let Run { outcome, seen, .. } = exchange(
        Tls::Plaintext,
        "AUTH PLAIN LOGIN",
        &[],
        &login,
        sasl::PASSWORD_MECHANISMS,
    );
    assert_eq!(outcome, Err(AuthFailure::NotEncrypted));
    assert_eq!(seen, ["EHLO router.example.org", "QUIT"]);
}
