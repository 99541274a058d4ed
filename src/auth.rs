//! SMTP AUTH: the `--auth-file` password table (PBKDF2-SHA256 from OpenSSL, compared in
//! constant time), the SASL PLAIN and LOGIN exchanges (RFC 4616, and the de-facto
//! LOGIN) as a small sans-IO state machine, and `tinymta passwd`.
//!
//! This module decides nothing about TLS or roles: the session offers AUTH only inside
//! TLS and calls `Sasl` with what the client sent.

use std::io::{BufRead, Write};
use std::num::NonZeroU32;
use std::path::Path;

use openssl::base64;
use openssl::hash::MessageDigest;

use crate::keyed::Keyed;

/// PBKDF2 rounds for new entries: about 40 ms on a 500 MHz MIPS router, so a login
/// costs little while a stolen file still resists guessing (Dovecot uses 5000).
pub const DEFAULT_ITERATIONS: u32 = 20_000;
/// OpenSSL takes the count as a C `int`.
const MAX_ITERATIONS: u32 = i32::MAX as u32;
const SCHEME: &str = "$pbkdf2-sha256$";
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// One user's stored credential.
#[derive(Clone)]
struct Credential {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

/// The users of `--auth-file`.
#[derive(Clone, Default)]
pub struct AuthFile {
    users: Keyed<Credential>,
}

impl std::fmt::Debug for AuthFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print hashes, even in debug output.
        write!(f, "AuthFile({} users)", self.users.len())
    }
}

impl AuthFile {
    /// Reads `user:$pbkdf2-sha256$iterations$salt$hash` lines (salt and hash in base64);
    /// `#` comments and blank lines are skipped. Errors name the file and line.
    pub fn load(path: &Path) -> Result<AuthFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        AuthFile::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<AuthFile, String> {
        let mut file = AuthFile::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |what: &str| format!("{origin}:{}: {what}", n + 1);
            let (user, stored) = line.split_once(':').ok_or_else(|| {
                err("expected user:$pbkdf2-sha256$... (make lines with `tinymta passwd USER`)")
            })?;
            if user.is_empty() {
                return Err(err("empty user name"));
            }
            let rest = stored.strip_prefix(SCHEME).ok_or_else(|| {
                err("unknown password scheme (only $pbkdf2-sha256$ is supported)")
            })?;
            let parts: Vec<&str> = rest.split('$').collect();
            let [iterations, salt, hash] = parts[..] else {
                return Err(err("expected $pbkdf2-sha256$ITERATIONS$SALT$HASH"));
            };
            let iterations = iterations
                .parse::<u32>()
                .ok()
                .and_then(NonZeroU32::new)
                .filter(|n| n.get() <= MAX_ITERATIONS)
                .ok_or_else(|| err("bad iteration count"))?;
            let salt = base64::decode_block(salt).map_err(|_| err("salt is not base64"))?;
            let hash = base64::decode_block(hash).map_err(|_| err("hash is not base64"))?;
            if hash.len() != HASH_LEN {
                return Err(err("hash must be 32 bytes (PBKDF2-HMAC-SHA256)"));
            }
            if file.users.contains_key(user) {
                return Err(err(&format!("user '{user}' is listed twice")));
            }
            let credential = Credential {
                iterations,
                salt,
                hash,
            };
            file.users.insert(user.to_string(), credential);
        }
        Ok(file)
    }

    /// True when `password` is the user's. Unknown users cost the same PBKDF2 work, so
    /// timing does not tell which user names exist.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(c) => pbkdf2(password, &c.salt, c.iterations.get())
                .is_ok_and(|hash| openssl::memcmp::eq(&hash, &c.hash)),
            None => {
                let _ = pbkdf2(password, b"tinymta-no-such-user", DEFAULT_ITERATIONS);
                false
            }
        }
    }
}

/// PBKDF2-HMAC-SHA256 of `password`, `HASH_LEN` bytes (the stored hashes have that
/// length: `parse` checks it, so the constant-time comparison gets equal lengths).
fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> Result<[u8; HASH_LEN], String> {
    if iterations > MAX_ITERATIONS {
        return Err(format!("iterations must be at most {MAX_ITERATIONS}"));
    }
    let mut out = [0u8; HASH_LEN];
    openssl::pkcs5::pbkdf2_hmac(
        password,
        salt,
        iterations as usize,
        MessageDigest::sha256(),
        &mut out,
    )
    .map_err(|e| format!("PBKDF2 failed: {e}"))?;
    Ok(out)
}

/// Makes an `--auth-file` line for `user`.
pub fn make_entry(user: &str, password: &[u8], iterations: u32) -> Result<String, String> {
    if iterations == 0 {
        return Err("iterations must be at least 1".to_string());
    }
    let mut salt = [0u8; SALT_LEN];
    openssl::rand::rand_bytes(&mut salt).map_err(|_| "no random source".to_string())?;
    let hash = pbkdf2(password, &salt, iterations)?;
    Ok(format!(
        "{user}:{SCHEME}{iterations}${}${}",
        base64::encode_block(&salt),
        base64::encode_block(&hash)
    ))
}

/// Where a SASL exchange stands after the client's last input.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send `334 <challenge>` (already base64) and wait for the next line.
    Challenge(&'static str),
    /// Credentials complete: check them.
    Credentials { user: String, password: Vec<u8> },
    /// The client cancelled with `*` (RFC 4954: 501).
    Cancelled,
    /// Malformed input (RFC 4954: 501 5.5.2).
    Malformed(&'static str),
}

/// A SASL exchange in progress.
#[derive(Debug)]
pub enum Sasl {
    Plain,
    LoginUser,
    LoginPassword { user: String },
}

const USERNAME_PROMPT: &str = "VXNlcm5hbWU6"; // "Username:"
const PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6"; // "Password:"

fn decode(line: &str) -> Option<Vec<u8>> {
    if line == "=" {
        return Some(Vec::new()); // RFC 4954: an empty initial response
    }
    base64::decode_block(line.trim()).ok()
}

impl Sasl {
    /// Starts `mechanism`; `None` for one we do not offer.
    pub fn start(mechanism: &str, initial: Option<&str>) -> Option<(Sasl, Step)> {
        match mechanism {
            "PLAIN" => Some(match initial {
                Some(ir) => (Sasl::Plain, Sasl::Plain.plain(ir)),
                None => (Sasl::Plain, Step::Challenge("")),
            }),
            "LOGIN" => Some(match initial {
                Some(ir) => {
                    let mut s = Sasl::LoginUser;
                    let step = s.next(ir);
                    (s, step)
                }
                None => (Sasl::LoginUser, Step::Challenge(USERNAME_PROMPT)),
            }),
            _ => None,
        }
    }

    /// The mechanism's name, as in the AUTH command and the log.
    pub fn mechanism(&self) -> &'static str {
        match self {
            Sasl::Plain => "PLAIN",
            Sasl::LoginUser | Sasl::LoginPassword { .. } => "LOGIN",
        }
    }

    /// Feeds the client's next line.
    pub fn next(&mut self, line: &str) -> Step {
        if line.trim() == "*" {
            return Step::Cancelled;
        }
        match self {
            Sasl::Plain => self.plain(line),
            Sasl::LoginUser => match decode(line).and_then(|u| String::from_utf8(u).ok()) {
                Some(user) => {
                    *self = Sasl::LoginPassword { user };
                    Step::Challenge(PASSWORD_PROMPT)
                }
                None => Step::Malformed("invalid base64 in the user name"),
            },
            Sasl::LoginPassword { user } => match decode(line) {
                Some(password) => Step::Credentials {
                    user: std::mem::take(user),
                    password,
                },
                None => Step::Malformed("invalid base64 in the password"),
            },
        }
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`; an authzid other than the user is
    /// refused (no proxy authorisation).
    fn plain(&self, line: &str) -> Step {
        let Some(raw) = decode(line) else {
            return Step::Malformed("invalid base64 in PLAIN response");
        };
        let mut parts = raw.split(|&b| b == 0);
        let (Some(authz), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Step::Malformed("PLAIN response is not authzid NUL user NUL password");
        };
        let Ok(user) = String::from_utf8(user.to_vec()) else {
            return Step::Malformed("user name is not UTF-8");
        };
        if !authz.is_empty() && authz != user.as_bytes() {
            return Step::Malformed("authorization identity differs from the user");
        }
        Step::Credentials {
            user,
            password: password.to_vec(),
        }
    }
}

/// `tinymta passwd USER`: reads the password (twice, without echo, from a terminal;
/// one line from a pipe) and prints the `--auth-file` line.
pub fn passwd_command(user: &str, iterations: u32) -> i32 {
    if user.is_empty() || user.contains([':', '\n', '\r']) || user.chars().any(char::is_whitespace)
    {
        eprintln!(
            "tinymta passwd: '{user}' is not a usable user name (no ':', spaces or newlines)"
        );
        return crate::exit::USAGE;
    }
    let stdin = std::io::stdin();
    let password = if rustix::termios::isatty(&stdin) {
        let first = read_hidden("Password: ");
        let second = read_hidden("Again: ");
        match (first, second) {
            (Ok(a), Ok(b)) if a == b => a,
            (Ok(_), Ok(_)) => {
                eprintln!("tinymta passwd: the passwords differ");
                return crate::exit::DATAERR;
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("tinymta passwd: cannot read the password: {e}");
                return crate::exit::DATAERR;
            }
        }
    } else {
        let mut line = String::new();
        if let Err(e) = stdin.lock().read_line(&mut line) {
            eprintln!("tinymta passwd: cannot read the password: {e}");
            return crate::exit::DATAERR;
        }
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        eprintln!("tinymta passwd: empty password refused");
        return crate::exit::DATAERR;
    }
    match make_entry(user, password.as_bytes(), iterations) {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("tinymta passwd: {e}");
            crate::exit::USAGE
        }
    }
}

/// Reads one line from the terminal with echo off (restored afterwards).
fn read_hidden(prompt: &str) -> std::io::Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    let mut line = String::new();
    let res = stdin.lock().read_line(&mut line);
    tcsetattr(&stdin, OptionalActions::Now, &saved)?;
    eprintln!();
    res.map(|_| line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        base64::encode_block(s)
    }

    #[test]
    fn entries_round_trip_and_verify() {
        let line = make_entry("alice", b"s3cret", 1000).unwrap();
        assert!(line.starts_with("alice:$pbkdf2-sha256$1000$"));
        let f = AuthFile::parse(&format!("# users\n{line}\n"), "auth").unwrap();
        assert!(f.verify("alice", b"s3cret"));
        assert!(!f.verify("alice", b"S3cret"));
        assert!(!f.verify("bob", b"s3cret"));
        assert_eq!(format!("{f:?}"), "AuthFile(1 users)");
    }

    #[test]
    fn verifies_a_known_pbkdf2_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1 (first 32 bytes).
        // Entries made by any earlier version (or by another PBKDF2 tool) must verify.
        let hash: Vec<u8> = "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
            .as_bytes()
            .chunks(2)
            .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
            .collect();
        let line = format!("u:$pbkdf2-sha256$1${}${}", b64(b"salt"), b64(&hash));
        let f = AuthFile::parse(&line, "auth").unwrap();
        assert!(f.verify("u", b"passwd"));
        assert!(!f.verify("u", b"passwe"));
    }

    #[test]
    fn iteration_counts_openssl_cannot_take_are_refused() {
        let line = format!(
            "u:$pbkdf2-sha256$2147483648${}${}",
            b64(b"salt"),
            b64(&[0; 32])
        );
        assert!(AuthFile::parse(&line, "f")
            .unwrap_err()
            .starts_with("f:1: bad iteration count"));
        assert!(make_entry("u", b"p", 2_147_483_648)
            .unwrap_err()
            .contains("at most 2147483647"));
    }

    #[test]
    fn file_errors_name_the_line() {
        assert_eq!(
            AuthFile::parse("\nalice\n", "auth")
                .err()
                .unwrap()
                .split(':')
                .take(2)
                .collect::<Vec<_>>(),
            ["auth", "2"]
        );
        assert!(AuthFile::parse("a:$md5$x", "f")
            .unwrap_err()
            .contains("unknown password scheme"));
        assert!(AuthFile::parse("a:$pbkdf2-sha256$0$AAAA$AAAA", "f")
            .unwrap_err()
            .contains("iteration"));
        let line = make_entry("a", b"p", 10).unwrap();
        assert!(AuthFile::parse(&format!("{line}\n{line}\n"), "f")
            .unwrap_err()
            .starts_with("f:2: user 'a' is listed twice"));
    }

    #[test]
    fn plain_exchanges() {
        let (_, step) = Sasl::start("PLAIN", Some(&b64(b"\0alice\0pw"))).unwrap();
        assert_eq!(
            step,
            Step::Credentials {
                user: "alice".into(),
                password: b"pw".to_vec()
            }
        );
        let (mut s, step) = Sasl::start("PLAIN", None).unwrap();
        assert_eq!(step, Step::Challenge(""));
        assert_eq!(
            s.next(&b64(b"alice\0alice\0pw")),
            Step::Credentials {
                user: "alice".into(),
                password: b"pw".to_vec()
            }
        );
        assert!(matches!(
            s.next(&b64(b"bob\0alice\0pw")),
            Step::Malformed(_)
        ));
        assert!(matches!(s.next("not base64!"), Step::Malformed(_)));
        assert!(matches!(s.next(&b64(b"only-one-part")), Step::Malformed(_)));
        assert_eq!(s.next("*"), Step::Cancelled);
        assert!(Sasl::start("CRAM-MD5", None).is_none());
    }

    #[test]
    fn login_exchanges() {
        let (mut s, step) = Sasl::start("LOGIN", None).unwrap();
        assert_eq!(step, Step::Challenge(USERNAME_PROMPT));
        assert_eq!(s.next(&b64(b"alice")), Step::Challenge(PASSWORD_PROMPT));
        assert_eq!(
            s.next(&b64(b"pw")),
            Step::Credentials {
                user: "alice".into(),
                password: b"pw".to_vec()
            }
        );
        let (mut s, step) = Sasl::start("LOGIN", Some(&b64(b"bob"))).unwrap();
        assert_eq!(step, Step::Challenge(PASSWORD_PROMPT));
        assert_eq!(s.next("*"), Step::Cancelled);
    }
}
