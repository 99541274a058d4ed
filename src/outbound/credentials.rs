//! `--relay-credentials FILE`: who tinymta logs in as at a smarthost, in the syntax of
//! Postfix's `smtp_sasl_password_maps`, and getting the secret for one connection
//! (a password from the file, or an OAuth 2.0 bearer token from a file or a command).
//! Which mechanism carries it is `sasl`'s business; when AUTH may happen at all (TLS
//! verified at least to `encrypt`) is the delivery agent's.
//!
//! # Syntax
//!
//! ```text
//! # key                          value
//! [smtp.example.com]:587         alice@example.com:app password with spaces:and colons
//! [smtp.gmail.com]:587           router@gmail.com:oauth2:file:/etc/tinymta/gmail.token
//! [smtp.office365.com]:587       router@example.org:xoauth2:command:/usr/bin/m365-token --tenant t1
//! alerts@example.org             alerts@example.org:another-password
//! @example.net                   shared@example.net:password3
//! ```
//!
//! One entry per line, `key whitespace value`; blank lines and `#` comments are
//! skipped, a line starting with whitespace continues the previous value (joined with a
//! space). Keys compare case-insensitively, as Postfix folds them:
//!
//! - `[host]:port`, `[host]` (port 25): a next hop written with brackets, as in
//!   `--relayhost [smtp.example.com]:587`. Port names (`submission`, `smtps`) are
//!   accepted and equal their numbers.
//! - `host`, `host:port`, `domain`: the name of the server connected to (an MX host or
//!   an unbracketed relay host), or a next-hop domain.
//! - `user@domain`, `@domain`: the envelope sender, looked up only with per-sender
//!   relaying on (Postfix `smtp_sender_dependent_authentication`).
//!
//! The value is `user:secret`, split at the first `:` as Postfix does, so a password may
//! contain `:` (but a user name may not). The secret is a password, except that these
//! forms name where an OAuth 2.0 access token comes from:
//!
//! - `oauth2:file:/absolute/path`: the token is the first line of that file, read at
//!   each connection (so an external refresher can replace it). The file must be
//!   private like this one.
//! - `oauth2:command:/absolute/program arg ...`: the program is run (no shell, no PATH
//!   search; arguments split at whitespace, no quoting) at each connection; the token is
//!   the first line of its standard output. It must exit 0 within 30 seconds.
//!
//! `oauth2:` sends the token with OAUTHBEARER (RFC 7628) when the server offers it,
//! else XOAUTH2; `xoauth2:` prefers XOAUTH2 (Gmail and Microsoft 365 document it).
//! Hence a password cannot begin with `oauth2:` or `xoauth2:` (any letter case); such a
//! value that is not one of the forms above is an error rather than a password.
//!
//! # Lookup order
//!
//! As Postfix's `smtp_sasl_passwd_lookup()` (src/smtp/smtp_sasl_glue.c), first hit wins:
//! the sender address, then `@domain` of the sender (Postfix `mail_addr_find()`; only
//! with per-sender relaying), then the server's host name, then the next-hop
//! destination as routing wrote it (`[host]:port`, `[host]`, `host:port` or the
//! recipient domain). As in Postfix, `[host]` does not match a next hop
//! `[host]:587`: SASL_README says to write the key in the form of the relay host.
//!
//! # Safety
//!
//! The file holds secrets and, with `command:`, decides what runs as the daemon's
//! user: `load` refuses a file that group or others may read or write, or that another
//! user than root or the daemon's owns, and a program that group or others may write.
//! No secret appears in errors, logs or `Debug` output.

use std::fmt;
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use smol::future::FutureExt;
use smol::io::AsyncReadExt;
use smol::Async;

use super::sasl::{self, Login, Mechanism, Secret};
use crate::domain::{canonical_host, check_name, is_ip, split_host_port, NameRules};
use crate::keyed::Keyed;

/// How long a token command may take.
pub const TOKEN_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest bearer token accepted: Microsoft's JWTs run to a few KiB, and the base64 of
/// the initial response must stay under RFC 4954's 12288-octet AUTH line.
const MAX_TOKEN: usize = 8192;
/// How much of a token command's standard error is kept for the error message.
const MAX_STDERR: usize = 4096;

/// The parsed credentials file.
#[derive(Default)]
pub struct Credentials {
    /// By canonical key; in file order.
    entries: Keyed<Entry>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({} entries)", self.entries.len())
    }
}

/// One `key user:secret` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub user: String,
    pub secret: SecretSource,
    /// `FILE:LINE`, for log lines and errors.
    pub source: String,
}

/// Where the secret of an entry comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Password(String),
    Token {
        from: TokenSource,
        /// The bearer mechanisms to try, in order.
        mechanisms: &'static [Mechanism],
    },
}

/// Where a bearer token is fetched at each connection.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    /// The program (absolute path) and its arguments.
    Command(Vec<String>),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Password(_) => f.write_str("Password(hidden)"),
            SecretSource::Token { from, .. } => write!(f, "Token(from {from})"),
        }
    }
}

impl fmt::Display for TokenSource {
    /// The file, or the program only: arguments may carry a client secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(p) => write!(f, "file {}", p.display()),
            TokenSource::Command(argv) => write!(f, "command {}", argv[0]),
        }
    }
}

impl Entry {
    /// The mechanisms this entry can use, in preference order.
    pub fn mechanisms(&self) -> &'static [Mechanism] {
        match &self.secret {
            SecretSource::Password(_) => sasl::PASSWORD_MECHANISMS,
            SecretSource::Token { mechanisms, .. } => mechanisms,
        }
    }

    /// The user and secret for one connection: the password, or a token fetched now.
    /// Errors name the entry and the token source, never the secret.
    pub async fn login(&self, command_timeout: Duration) -> Result<Login, String> {
        let secret = match &self.secret {
            SecretSource::Password(p) => Secret::Password(p.clone()),
            SecretSource::Token { from, .. } => {
                let token = match from {
                    TokenSource::File(path) => {
                        let path = path.clone();
                        crate::runtime::unblock(move || read_token_file(&path)).await
                    }
                    TokenSource::Command(argv) => run_token_command(argv, command_timeout).await,
                };
                Secret::Bearer(token.map_err(|e| format!("{}: {e}", self.source))?)
            }
        };
        Ok(Login {
            user: self.user.clone(),
            secret,
        })
    }
}

impl Credentials {
    /// Reads and checks the file: private to its owner (root or the daemon's user),
    /// every line well-formed, every token command a program only its owner may change.
    pub fn load(path: &Path) -> Result<Credentials, String> {
        let origin = path.display().to_string();
        private_file(path, 0o077, "credentials file")
            .map_err(|e| format!("{e}; check --relay-credentials"))?;
        let text = fs::read_to_string(path).map_err(|e| format!("{origin}: cannot read: {e}"))?;
        let creds = Credentials::parse(&text, &origin)?;
        for entry in creds.entries.values() {
            if let SecretSource::Token {
                from: TokenSource::Command(argv),
                ..
            } = &entry.secret
            {
                let program = Path::new(&argv[0]);
                let meta = private_file(program, 0o022, "token command")
                    .map_err(|e| format!("{}: {e}", entry.source))?;
                if !meta.is_file() || meta.mode() & 0o111 == 0 {
                    return Err(format!(
                        "{}: token command {} is not an executable file",
                        entry.source,
                        program.display()
                    ));
                }
            }
        }
        Ok(creds)
    }

    /// Parses file text; `origin` names it in errors (`origin:LINE: message`).
    pub fn parse(text: &str, origin: &str) -> Result<Credentials, String> {
        // (key, line number, value) with continuation lines joined.
        let mut raws: Vec<(&str, usize, String)> = Vec::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let body = line.trim();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            if line.starts_with(char::is_whitespace) {
                let Some((_, _, value)) = raws.last_mut() else {
                    return Err(format!(
                        "{origin}:{n}: this line starts with whitespace, which continues \
                         the previous entry, but there is none; remove the indentation"
                    ));
                };
                value.push(' ');
                value.push_str(body);
                continue;
            }
            let (key, value) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
            raws.push((key, n, value.trim().to_string()));
        }
        let mut creds = Credentials::default();
        for (key, n, value) in raws {
            let source = format!("{origin}:{n}");
            let canonical = canonical_key(key).map_err(|e| format!("{source}: {e}"))?;
            if let Some(first) = creds.get(&canonical) {
                return Err(format!(
                    "{source}: duplicate key '{key}' (first defined at {}); keep one entry",
                    first.source
                ));
            }
            let (user, secret) = parse_value(&value).map_err(|e| format!("{source}: {e}"))?;
            let entry = Entry {
                user,
                secret,
                source,
            };
            creds.entries.insert(canonical, entry);
        }
        Ok(creds)
    }

    /// The entry for a connection, in Postfix's order (see the module doc): `sender`
    /// only with per-sender relaying on (`None` otherwise, and for the null sender);
    /// `server` the host name connected to (MX or relay host); `next_hop` the
    /// destination as routing wrote it: `[host]:port`, `[host]`, `host:port` or the
    /// recipient domain.
    pub fn lookup(&self, sender: Option<&str>, server: &str, next_hop: &str) -> Option<&Entry> {
        sender
            .and_then(|s| self.lookup_sender(s))
            .or_else(|| self.find([canonical_key(server), canonical_key(next_hop)]))
    }

    /// The entry for the sender alone: the address, then `@domain` (`None` for the null
    /// sender). The part of [`Credentials::lookup`] that can differ between two
    /// messages to the same server, so a reused session is keyed by it.
    pub fn lookup_sender(&self, sender: &str) -> Option<&Entry> {
        let (_, domain) = sender.rsplit_once('@')?;
        self.find([canonical_key(sender), canonical_key(&format!("@{domain}"))])
    }

    /// The first of `keys` with an entry. A name that cannot be a key (a quoted local
    /// part, say) just matches nothing.
    fn find<const N: usize>(&self, keys: [Result<String, String>; N]) -> Option<&Entry> {
        keys.iter()
            .filter_map(|k| k.as_ref().ok())
            .find_map(|k| self.get(k))
    }

    fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A key in the one form lookups build: lower case, hosts canonical, port 25 left out
/// (`[h]`, `[h]:25` and `[h]:smtp` are one next hop).
fn canonical_key(key: &str) -> Result<String, String> {
    let lower = key.to_lowercase();
    if let Some((local, domain)) = lower.rsplit_once('@') {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        check_name(domain, NameRules::ADDRESS)
            .map_err(|e| format!("'{key}': the domain is not valid ({e})"))?;
        if local.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("'{key}': not a mail address"));
        }
        // `@domain` (every sender of the domain) or a whole address.
        return Ok(format!("{local}@{domain}"));
    }
    let hp = split_host_port(&lower).ok_or_else(|| {
        format!("'{key}': expected [host]:port, [host], host, domain, user@domain or @domain")
    })?;
    let host = canonical_host(hp.host);
    if !is_ip(&host) {
        check_name(&host, NameRules::DNS)
            .map_err(|e| format!("'{key}': the host name is not valid ({e})"))?;
    }
    let port = hp
        .port_or(25)
        .ok_or_else(|| format!("'{key}': '{}' is not a port", hp.port.unwrap_or("")))?;
    let host = if hp.bracketed {
        format!("[{host}]")
    } else {
        host
    };
    Ok(if port == 25 {
        host
    } else {
        format!("{host}:{port}")
    })
}

/// `user:secret` with the token-source forms of the module doc.
fn parse_value(value: &str) -> Result<(String, SecretSource), String> {
    let Some((user, secret)) = value.split_once(':') else {
        return Err(if value.is_empty() {
            "no credentials after the key; write user:password".to_string()
        } else {
            "no ':' between user and password; write user:password".to_string()
        });
    };
    if user.is_empty() {
        return Err("empty user name before the ':'".to_string());
    }
    if user.chars().any(char::is_control) {
        return Err("the user name contains a control character".to_string());
    }
    for (prefix, mechanisms) in [
        ("oauth2:", sasl::BEARER_MECHANISMS),
        ("xoauth2:", sasl::XOAUTH2_FIRST),
    ] {
        let Some(source) = strip_prefix_ignore_case(secret, prefix) else {
            continue;
        };
        let from = token_source(source).ok_or_else(|| {
            format!(
                "after '{prefix}' write file:/path/to/token or command:/path/to/program \
                 [args] with an absolute path (a password cannot begin with '{prefix}')"
            )
        })?;
        return Ok((user.to_string(), SecretSource::Token { from, mechanisms }));
    }
    if secret.is_empty() {
        return Err("empty password after the ':'".to_string());
    }
    if secret.contains('\0') {
        return Err("the password contains a NUL character".to_string());
    }
    Ok((user.to_string(), SecretSource::Password(secret.to_string())))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `file:/path` or `command:/program args`; absolute paths only, because the daemon's
/// working directory and PATH are nobody's choice.
fn token_source(s: &str) -> Option<TokenSource> {
    if let Some(path) = s.strip_prefix("file:") {
        let path = Path::new(path.trim());
        return path
            .is_absolute()
            .then(|| TokenSource::File(path.to_path_buf()));
    }
    let argv: Vec<String> = s
        .strip_prefix("command:")?
        .split_whitespace()
        .map(str::to_string)
        .collect();
    Path::new(argv.first()?)
        .is_absolute()
        .then_some(TokenSource::Command(argv))
}

/// Checks that `path` is owned by root or the daemon's user and has none of `bits` in
/// its mode; the error names the file, its mode and the fix.
fn private_file(path: &Path, bits: u32, what: &str) -> Result<fs::Metadata, String> {
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| format!("{what} {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & bits != 0 {
        let fix = if bits & 0o044 != 0 {
            "chmod 600"
        } else {
            "chmod go-w"
        };
        return Err(format!(
            "{what} {shown} is accessible by group or others (mode {mode:04o}); run \
             {fix} {shown}"
        ));
    }
    let euid = rustix::process::geteuid().as_raw();
    // The daemon's user (`--user`) while `serve` is still root: the file is read
    // again on SIGHUP as that user, so it may well be theirs.
    let daemon = crate::privileges::switching_to();
    if meta.uid() != 0 && meta.uid() != euid && Some(meta.uid()) != daemon {
        return Err(format!(
            "{what} {shown} is owned by uid {}, neither root nor this process's user \
             (uid {euid}); chown it",
            meta.uid()
        ));
    }
    Ok(meta)
}

/// The token in a token file (checked like the credentials file).
fn read_token_file(path: &Path) -> Result<String, String> {
    private_file(path, 0o077, "token file")?;
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN as u64 + 2).read_to_end(&mut bytes))
        .map_err(|e| format!("token file {}: {e}", path.display()))?;
    bearer_token(&bytes).map_err(|e| format!("token file {}: {e}", path.display()))
}

/// Runs a token command without a shell and returns the first line of its output.
async fn run_token_command(argv: &[String], timeout: Duration) -> Result<String, String> {
    let program = &argv[0];
    let mut child = Command::new(program)
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("token command {program}: cannot run: {e}"))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(format!("token command {program}: no output pipes"));
    };
    let run = async {
        // As plain descriptors: one copy of the reading loop for both pipes.
        let out = read_pipe(stdout.into(), MAX_TOKEN + 2);
        let err = read_pipe(stderr.into(), MAX_STDERR);
        let (out, err) = smol::future::zip(out, err).await;
        // Output is complete; the exit status says whether to trust it.
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok((status, out?, err?)),
                Ok(None) => smol::Timer::after(Duration::from_millis(10)).await,
                Err(e) => return Err(e.to_string()),
            };
        }
    }
    .or(async {
        smol::Timer::after(timeout).await;
        Err(format!("did not finish within {}s", timeout.as_secs()))
    })
    .await;
    let (status, out, err) = match run {
        Ok(done) => done,
        Err(e) => {
            // Killed by its PID, the only process we started; reaped off this thread.
            let _ = child.kill();
            crate::runtime::unblock_detached(move || {
                let _ = child.wait();
            });
            return Err(format!("token command {program}: {e}"));
        }
    };
    if !status.success() {
        let why = String::from_utf8_lossy(&err);
        let why = why.lines().next().unwrap_or("").trim();
        return Err(format!("token command {program} failed ({status}): {why}"));
    }
    bearer_token(&out).map_err(|e| format!("token command {program}: {e}"))
}

/// Reads a child's pipe to its end, keeping at most `limit` bytes (the rest is read
/// and dropped so the child never blocks on a full pipe).
async fn read_pipe(pipe: OwnedFd, limit: usize) -> Result<Vec<u8>, String> {
    // As a File, the pipe is something smol can read without blocking.
    let mut pipe = Async::new(fs::File::from(pipe)).map_err(|e| e.to_string())?;
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = pipe.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(kept);
        }
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// The first line of `output` as a bearer token: RFC 6750 `b64token` characters only,
/// so nothing can break the SASL framing (`\x01`, NUL, CR/LF).
fn bearer_token(output: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(output);
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err("no token (the first line is empty)".to_string());
    }
    if token.len() > MAX_TOKEN {
        return Err(format!("the token is longer than {MAX_TOKEN} characters"));
    }
    let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if !token.chars().all(b64token) {
        return Err("the first line is not a bearer token (RFC 6750 characters only)".into());
    }
    Ok(token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# Postfix smtp_sasl_password_maps syntax
[smtp.example.com]:submission  alice@example.com:pa:ss word
[smtp.example.com]             port25@example.com:pw25
smtp.example.com               byname@example.com:pwname
example.net                    bydomain@example.net:pwdomain
alerts@Example.ORG             alerts@example.org:pwalerts
@example.org                   shared@example.org:pwshared
[smtp.gmail.com]:587           router@gmail.com:oauth2:file:/etc/tinymta/gmail.token
[smtp.office365.com]:587       router@example.org:XOAUTH2:command:/usr/bin/m365-token
  --tenant t1
";

    fn creds() -> Credentials {
        Credentials::parse(SAMPLE, "creds").unwrap()
    }

    fn user<'a>(c: &'a Credentials, sender: Option<&str>, server: &str, hop: &str) -> &'a str {
        c.lookup(sender, server, hop)
            .map_or("-", |e| e.user.as_str())
    }

    #[test]
    fn values_split_at_the_first_colon() {
        let c = creds();
        let e = c.lookup(None, "x", "[SMTP.example.com]:587").unwrap();
        assert_eq!(e.user, "alice@example.com");
        assert_eq!(e.secret, SecretSource::Password("pa:ss word".into()));
        assert_eq!(e.source, "creds:2");
        assert_eq!(e.mechanisms(), sasl::PASSWORD_MECHANISMS);
    }

    #[test]
    fn token_sources() {
        let c = creds();
        let gmail = c.lookup(None, "x", "[smtp.gmail.com]:587").unwrap();
        assert_eq!(
            gmail.secret,
            SecretSource::Token {
                from: TokenSource::File("/etc/tinymta/gmail.token".into()),
                mechanisms: sasl::BEARER_MECHANISMS,
            }
        );
        let m365 = c.lookup(None, "x", "[smtp.office365.com]:587").unwrap();
        assert_eq!(
            m365.secret,
            SecretSource::Token {
                from: TokenSource::Command(
                    ["/usr/bin/m365-token", "--tenant", "t1"]
                        .map(String::from)
                        .to_vec()
                ),
                mechanisms: sasl::XOAUTH2_FIRST,
            }
        );
        // Debug shows where a token comes from, never a password or the arguments.
        let shown = format!(
            "{:?} {:?}",
            c.lookup(None, "x", "[smtp.example.com]:587"),
            m365
        );
        assert!(!shown.contains("pa:ss") && !shown.contains("t1"), "{shown}");
    }

    #[test]
    fn lookup_order_is_postfixs() {
        let c = creds();
        let hop = "[smtp.example.com]:587";
        // Sender first, then @domain of the sender (only when the caller passes it).
        assert_eq!(
            user(&c, Some("ALERTS@example.org"), "smtp.example.com", hop),
            "alerts@example.org"
        );
        assert_eq!(
            user(&c, Some("cron@example.org"), "smtp.example.com", hop),
            "shared@example.org"
        );
        // Then the server's host name, before the next hop.
        assert_eq!(
            user(&c, Some("x@other.test"), "smtp.example.com", hop),
            "byname@example.com"
        );
        assert_eq!(user(&c, None, "mx.other.test", hop), "alice@example.com");
        // `[h]` is `[h]:25`, not every port of h.
        assert_eq!(
            user(&c, None, "mx.other.test", "[smtp.example.com]:25"),
            "port25@example.com"
        );
        assert_eq!(
            user(&c, None, "mx.other.test", "[smtp.example.com]:2525"),
            "-"
        );
        // MX delivery: the MX host name, then the recipient domain (no parent domains).
        assert_eq!(
            user(&c, None, "mx1.example.net", "example.net"),
            "bydomain@example.net"
        );
        assert_eq!(user(&c, None, "mx1.example.net", "sub.example.net"), "-");
        // The null sender has no per-sender entry.
        assert_eq!(user(&c, Some(""), "mx.other.test", "other.test"), "-");
        // The sender's part alone, which keys reused sessions.
        let by_sender = |s: &str| c.lookup_sender(s).map(|e| e.source.as_str());
        assert_eq!(by_sender("Alerts@example.org"), Some("creds:6"));
        assert_eq!(by_sender("cron@example.org"), Some("creds:7"));
        assert_eq!(by_sender("x@smtp.example.com"), None);
        assert_eq!(by_sender(""), None);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, want) in [
            ("[a.example]:587 alice", "f:1: no ':' between user"),
            ("[a.example]:587", "f:1: no credentials"),
            ("[a.example]:587 :pw", "f:1: empty user name"),
            ("[a.example]:587 u:", "f:1: empty password"),
            (
                "\n[a.example]:x u:p",
                "f:2: '[a.example]:x': 'x' is not a port",
            ),
            ("[a.example u:p", "f:1: '[a.example': expected"),
            (
                "bad_host!.example u:p",
                "f:1: 'bad_host!.example': the host name",
            ),
            ("x@bad..example u:p", "f:1: 'x@bad..example': the domain"),
            (
                "a.example u:oauth2:file:relative",
                "f:1: after 'oauth2:' write file:",
            ),
            ("a.example u:oauth2:shell:/bin/x", "f:1: after 'oauth2:'"),
            ("a.example u:xoauth2:command:bin/x", "f:1: after 'xoauth2:'"),
            ("  u:p", "f:1: this line starts with whitespace"),
            (
                "a.example u:p\nA.EXAMPLE v:q",
                "f:2: duplicate key 'A.EXAMPLE' (first defined at f:1)",
            ),
            (
                "[a.example]:smtp u:p\n[a.example] v:q",
                "f:2: duplicate key",
            ),
        ] {
            let e = Credentials::parse(text, "f").unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn tokens_are_checked() {
        assert_eq!(
            bearer_token(b"ya29.a-b_c~d+e/f==\nsecond line").unwrap(),
            "ya29.a-b_c~d+e/f=="
        );
        assert!(bearer_token(b"\nya29").is_err());
        assert!(bearer_token(b"tok\x01en").is_err());
        assert!(bearer_token(b"two words").is_err());
        assert!(bearer_token(&vec![b'a'; MAX_TOKEN + 1]).is_err());
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tinymta-creds-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(path: &Path, text: &str, mode: u32) {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn load_refuses_files_others_can_read() {
        let d = temp_dir("mode");
        let f = d.join("creds");
        write(&f, "[a.example]:587 u:p\n", 0o640);
        let e = Credentials::load(&f).unwrap_err();
        assert!(
            e.contains(&f.display().to_string()) && e.contains("mode 0640"),
            "{e}"
        );
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Credentials::load(&f).unwrap().len(), 1);
        // A token command anyone may replace would run as the daemon.
        let prog = d.join("token.sh");
        write(&prog, "#!/bin/sh\necho tok\n", 0o777);
        write(
            &f,
            &format!("a.example u:oauth2:command:{}\n", prog.display()),
            0o600,
        );
        let e = Credentials::load(&f).unwrap_err();
        assert!(
            e.starts_with(&format!("{}:1: token command", f.display())),
            "{e}"
        );
        fs::set_permissions(&prog, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Credentials::load(&f)
            .unwrap_err()
            .contains("not an executable"));
        fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(Credentials::load(&f).is_ok());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn logins_fetch_tokens_now() {
        let d = temp_dir("tokens");
        let token = d.join("token");
        write(&token, "ya29.first\n", 0o600);
        let entry = |secret| Entry {
            user: "u@example.com".into(),
            secret,
            source: "creds:1".into(),
        };
        let from_file = entry(SecretSource::Token {
            from: TokenSource::File(token.clone()),
            mechanisms: sasl::BEARER_MECHANISMS,
        });
        let command = |argv: &[&str]| {
            entry(SecretSource::Token {
                from: TokenSource::Command(argv.iter().map(|s| s.to_string()).collect()),
                mechanisms: sasl::BEARER_MECHANISMS,
            })
        };
        smol::block_on(async {
            let t = Duration::from_secs(10);
            let bearer = |s: &str| Secret::Bearer(s.to_string());
            assert_eq!(
                from_file.login(t).await.unwrap().secret,
                bearer("ya29.first")
            );
            // Read at each connection: a refresher's new token is used next time.
            write(&token, "ya29.second\n", 0o600);
            assert_eq!(
                from_file.login(t).await.unwrap().secret,
                bearer("ya29.second")
            );
            fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
            let e = from_file.login(t).await.unwrap_err();
            assert!(
                e.starts_with("creds:1: token file") && e.contains("mode 0644"),
                "{e}"
            );

            let echo = command(&["/bin/echo", "ya29.fromcmd"]);
            assert_eq!(echo.login(t).await.unwrap().secret, bearer("ya29.fromcmd"));
            let e = command(&["/bin/false"]).login(t).await.unwrap_err();
            assert!(
                e.starts_with("creds:1: token command /bin/false failed"),
                "{e}"
            );
            let slow = command(&["/bin/sleep", "5"]);
            let e = slow.login(Duration::from_millis(200)).await.unwrap_err();
            assert!(e.contains("did not finish within"), "{e}");
            let e = command(&["/nonexistent/x"]).login(t).await.unwrap_err();
            assert!(e.contains("cannot run"), "{e}");
        });
        fs::remove_dir_all(&d).unwrap();
    }
}
