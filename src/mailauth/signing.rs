//! DKIM signing of the mail we originate, as the daemon does it: the keys of
//! `--dkim-key` by domain ([`DkimKeys`]), and a [`Signer`] fed the message as it is
//! queued — the header section kept (up to [`MAX_HEADER`]), the body only hashed, in
//! pieces — that gives the `DKIM-Signature:` fields at the end.
//!
//! The header section is signed as delivery will send it: rewritten by the same
//! `Tables::rewrite_headers` (`--sender-rewrite`) that SMTP delivery applies, so the
//! signature covers the `From:` that leaves, and the keys are those of that `From:`'s
//! domain.
//!
//! Which messages are signed (logged-in, local and relay-network clients) is the
//! caller's decision. The signature is made once, when the message is queued, and is
//! stored with it (`Spool::finish_with_headers`): every attempt and every recipient
//! carries the same one.

use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use super::dkim::{check_dns_name, signature_fields, BodyHasher, Canon, SignError, SigningKey};
use super::dmarc::from_domain;
use crate::address::Tables;
use crate::headers::Header;

/// The largest header section kept for signing; a message with a larger one is queued
/// unsigned (a router's mail has a few KB of header).
pub const MAX_HEADER: usize = 64 * 1024;

/// One `--dkim-key DOMAIN:SELECTOR:KEYFILE`, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// The flag's value, for messages.
    pub text: String,
    pub domain: String,
    pub selector: String,
    pub path: PathBuf,
}

impl KeySpec {
    /// Parses `DOMAIN:SELECTOR:KEYFILE` (the file name may contain colons).
    pub fn parse(text: &str) -> Result<KeySpec, String> {
        let mut parts = text.splitn(3, ':');
        let (Some(domain), Some(selector), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(
                "expected DOMAIN:SELECTOR:KEYFILE, e.g. example.org:mail2025:/etc/tinymta/mail2025.example.org.key"
                    .into(),
            );
        };
        if path.is_empty() {
            return Err("no key file after DOMAIN:SELECTOR:".into());
        }
        Ok(KeySpec {
            text: text.to_string(),
            domain: check_dns_name("domain", domain.trim_end_matches('.'))?,
            selector: check_dns_name("selector", selector)?,
            path: PathBuf::from(path),
        })
    }
}

/// A `--dkim-key` that cannot be used: the flag's value and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub spec: String,
    pub message: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}': {}", self.spec, self.message)
    }
}

/// The signing keys by domain: one per algorithm, so a domain signs with an RSA key,
/// an Ed25519 key, or both (two signatures, RFC 8463 §6).
#[derive(Debug, Default)]
pub struct DkimKeys {
    domains: Vec<(String, Vec<SigningKey>)>,
}

impl DkimKeys {
    /// Reads every key file; the first that cannot be used is the error.
    pub fn load(specs: &[KeySpec]) -> Result<DkimKeys, KeyError> {
        let mut keys = DkimKeys::default();
        for spec in specs {
            let error = |message: String| KeyError {
                spec: spec.text.clone(),
                message,
            };
            let key = SigningKey::load(&spec.domain, &spec.selector, &spec.path).map_err(error)?;
            keys.add(key).map_err(error)?;
        }
        Ok(keys)
    }

    fn add(&mut self, key: SigningKey) -> Result<(), String> {
        let i = match self.domains.iter().position(|(d, _)| d == key.domain()) {
            Some(i) => i,
            None => {
                self.domains.push((key.domain().to_string(), Vec::new()));
                self.domains.len() - 1
            }
        };
        let (domain, keys) = &mut self.domains[i];
        if let Some(k) = keys.iter().find(|k| k.selector() == key.selector()) {
            return Err(format!(
                "selector {} of {domain} is given twice: each key needs a selector (a record) of its own",
                k.selector()
            ));
        }
        if let Some(k) = keys.iter().find(|k| k.algorithm() == key.algorithm()) {
            return Err(format!(
                "a second {} key for {domain} (selector {} has one): give one RSA and one Ed25519 key per domain at most",
                key.algorithm().name(),
                k.selector()
            ));
        }
        keys.push(key);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The keys of `domain` (lower case), in the order given.
    pub fn of(&self, domain: &str) -> &[SigningKey] {
        self.domains
            .iter()
            .find(|(d, _)| d == domain)
            .map_or(&[], |(_, k)| k)
    }
}

/// The keys as last loaded, shared by the sessions and the scheduler and replaced on
/// SIGHUP; an `Arc` so that signing can run on the blocking pool.
pub type SharedKeys = Rc<RefCell<Arc<DkimKeys>>>;

/// Why a message we originate was queued without a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsigned {
    /// No key for the `From:` domain: nothing to report, most mail is so.
    NoKey,
    /// No `From:` domain to sign for (DMARC's rule: one `From:` field with one
    /// address); the reason.
    NoAuthor(&'static str),
    /// The header section is over [`MAX_HEADER`].
    HeaderTooLarge,
    /// OpenSSL refused.
    Crypto(String),
}

impl fmt::Display for Unsigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsigned::NoKey => f.write_str("no --dkim-key for the From: domain"),
            Unsigned::NoAuthor(why) => write!(f, "no From: domain to sign for: {why}"),
            Unsigned::HeaderTooLarge => {
                write!(f, "the header section is over {MAX_HEADER} bytes")
            }
            Unsigned::Crypto(e) => write!(f, "signing failed: {e}"),
        }
    }
}

/// The signature fields made for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// `DKIM-Signature:` fields, CRLF-terminated, to put before the content.
    pub fields: Vec<u8>,
    /// `d=`.
    pub domain: String,
    /// `s=` of each signature, in order.
    pub selectors: Vec<String>,
}

/// Collects what a signature needs from a message fed to it in pieces, in order, as
/// it is written to the queue: the header section (at most [`MAX_HEADER`]) is kept,
/// the body goes through a relaxed [`BodyHasher`] and is not kept.
pub struct Signer {
    /// The header section, until the line that ends it has arrived; then only it.
    head: Vec<u8>,
    /// Where in `head` the last field found starts: everything before is settled, so
    /// the search for the end of the section goes on from there.
    settled: usize,
    /// Set once the header section is complete: the body goes here.
    body: Option<BodyHasher>,
    too_large: bool,
}

impl Default for Signer {
    fn default() -> Self {
        Signer::new()
    }
}

impl Signer {
    pub fn new() -> Signer {
        Signer {
            head: Vec::new(),
            settled: 0,
            body: None,
            too_large: false,
        }
    }

    /// The next piece of the message.
    pub fn update(&mut self, chunk: &[u8]) {
        if self.too_large {
            return;
        }
        if let Some(body) = &mut self.body {
            body.update(chunk);
            return;
        }
        let take = chunk.len().min(MAX_HEADER - self.head.len());
        self.head.extend_from_slice(&chunk[..take]);
        if let Some(start) = self.body_start() {
            let mut body = BodyHasher::new(Canon::Relaxed, None);
            body.update(&self.head[start..]);
            body.update(&chunk[take..]);
            self.head.truncate(start);
            self.head.shrink_to_fit();
            self.body = Some(body);
        } else if self.head.len() == MAX_HEADER {
            self.too_large = true;
            self.head = Vec::new();
        }
    }

    /// Where the body starts, once the header section is complete in `head`: the
    /// complete lines are scanned as `Header::parse` scans a whole message (the same
    /// rule delivery reads the header by), from the last field on, since a folded line
    /// may still continue it.
    fn body_start(&mut self) -> Option<usize> {
        let complete = self.head.windows(2).rposition(|w| w == b"\r\n")? + 2;
        if complete <= self.settled {
            return None;
        }
        let h = Header::parse(&self.head[self.settled..complete]);
        if self.settled + h.end < complete {
            return Some(self.settled + h.body);
        }
        if let Some(last) = h.fields.last() {
            self.settled += h.end - last.raw.len();
        }
        None
    }

    /// What is left to do once the whole message has been fed: the header section as
    /// it will leave over SMTP (`tables`' sender rewriting), the body hash, and the
    /// `From:` domain whose keys sign it.
    pub fn finish(mut self, tables: &Tables) -> Pending {
        if self.too_large {
            return Pending(Err(Unsigned::HeaderTooLarge));
        }
        let body = match self.body.take() {
            Some(body) => body,
            // The message ended in its header section.
            None => {
                let start = Header::parse(&self.head).body;
                let mut body = BodyHasher::new(Canon::Relaxed, None);
                body.update(&self.head[start..]);
                self.head.truncate(start);
                body
            }
        };
        let header = match tables.rewrite_headers(&self.head) {
            Some(rewritten) => rewritten.header,
            None => self.head,
        };
        Pending(match from_domain(&Header::parse(&header)) {
            Ok(domain) => Ok(Signable {
                header,
                body_hash: body.finish().0,
                domain,
            }),
            Err(why) => Err(Unsigned::NoAuthor(why)),
        })
    }
}

/// A message ready to sign, or why it cannot be: what [`Signer::finish`] leaves for
/// the keys, on any thread (RSA signing takes a while on a router's CPU).
pub struct Pending(Result<Signable, Unsigned>);

struct Signable {
    /// The header fields as they will leave.
    header: Vec<u8>,
    body_hash: [u8; 32],
    domain: String,
}

impl Pending {
    /// A whole message at once, as [`Signer`] fed it would give.
    pub fn of(message: &[u8], tables: &Tables) -> Pending {
        let mut s = Signer::new();
        s.update(message);
        s.finish(tables)
    }

    /// Signs with the keys of the `From:` domain, `now` being the signing time.
    pub fn sign(self, keys: &DkimKeys, now: u64) -> Result<Signed, Unsigned> {
        let m = self.0?;
        let keys = keys.of(&m.domain);
        if keys.is_empty() {
            return Err(Unsigned::NoKey);
        }
        let fields =
            signature_fields(&Header::parse(&m.header), &m.body_hash, keys, now).map_err(|e| {
                match e {
                    SignError::NoFrom => Unsigned::NoAuthor("no From field"),
                    SignError::Crypto(e) => Unsigned::Crypto(e),
                }
            })?;
        Ok(Signed {
            fields,
            domain: m.domain,
            selectors: keys.iter().map(|k| k.selector().to_string()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;

    use super::*;
    use crate::address::Texts;
    use crate::mailauth::dkim::sign;

    const NOW: u64 = 1_764_583_200;

    const MESSAGE: &[u8] = b"Received: by router.lan (tinymta, from userid 0)\r\n\tid X; date\r\n\
From: Cron Daemon <root@router.lan>\r\n\
To: admin@example.net\r\n\
Subject: backup\r\n done\r\n\
\r\n\
line one  \r\n\
\r\n\
From: not a header\r\n\r\n\r\n";

    fn rsa(domain: &str, selector: &str) -> SigningKey {
        let key = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        SigningKey::new(domain, selector, key).unwrap()
    }

    fn ed(domain: &str, selector: &str) -> SigningKey {
        SigningKey::new(domain, selector, PKey::generate_ed25519().unwrap()).unwrap()
    }

    fn keys(list: Vec<SigningKey>) -> DkimKeys {
        let mut k = DkimKeys::default();
        for key in list {
            k.add(key).unwrap();
        }
        k
    }

    fn generic(text: &str) -> Tables {
        let texts = Texts {
            sender_rewrite: Some(("generic".into(), text.into())),
            ..Texts::default()
        };
        let mut errors = Vec::new();
        let t = Tables::parse(&texts, &["router.lan".into()], &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        t
    }

    /// `msg` fed in pieces of `size` bytes, signed.
    fn signed(
        msg: &[u8],
        size: usize,
        tables: &Tables,
        keys: &DkimKeys,
    ) -> Result<Signed, Unsigned> {
        let mut s = Signer::new();
        for piece in msg.chunks(size) {
            s.update(piece);
        }
        s.finish(tables).sign(keys, NOW)
    }

    #[test]
    fn pieces_of_any_size_sign_as_the_whole_message() {
        let msg = String::from_utf8_lossy(MESSAGE).replace("router.lan>", "example.org>");
        let k = keys(vec![rsa("example.org", "r1"), ed("example.org", "e1")]);
        let whole = sign(msg.as_bytes(), k.of("example.org"), NOW).unwrap();
        let none = Tables::empty(&[]);
        for size in [1, 2, 3, 7, 64, msg.len()] {
            let s = signed(msg.as_bytes(), size, &none, &k).unwrap();
            assert_eq!(s.fields, whole, "pieces of {size}");
            assert_eq!(
                (s.domain.as_str(), &s.selectors[..]),
                ("example.org", &["r1".to_string(), "e1".to_string()][..])
            );
        }
        // Two signatures, RSA then Ed25519, each From over-signed.
        let text = String::from_utf8(whole).unwrap();
        assert_eq!(text.matches("DKIM-Signature:").count(), 2);
        assert!(text.contains("a=rsa-sha256;") && text.contains("a=ed25519-sha256;"));
        assert!(text.contains("c=relaxed/relaxed;"));
        assert!(text.contains("h=From:From:Subject:To;"), "{text}");
    }

    #[test]
    fn the_rewritten_from_is_signed_and_chooses_the_key() {
        let k = keys(vec![ed("example.com", "e1")]);
        let t = generic("@router.lan @example.com\n");
        let s = signed(MESSAGE, 5, &t, &k).unwrap();
        assert_eq!(s.domain, "example.com");
        // What delivery sends: the same rewrite of the same header section.
        let out = t.rewrite_headers(MESSAGE).unwrap();
        let leaving = [&out.header[..], &MESSAGE[out.rest..]].concat();
        assert!(
            String::from_utf8_lossy(&leaving).contains("From: Cron Daemon <root@example.com>\r\n")
        );
        assert_eq!(s.fields, sign(&leaving, k.of("example.com"), NOW).unwrap());
        // Without the rewrite the From: domain has no key.
        assert_eq!(
            signed(MESSAGE, 5, &Tables::empty(&[]), &k),
            Err(Unsigned::NoKey)
        );
    }

    #[test]
    fn what_is_not_signed() {
        let k = keys(vec![ed("router.lan", "e1")]);
        let none = Tables::empty(&[]);
        assert!(signed(MESSAGE, 100, &none, &k).is_ok());
        for (msg, why) in [
            (&b"To: a@router.lan\r\n\r\nbody\r\n"[..], "no From field"),
            (
                b"From: a@router.lan\r\nFrom: b@router.lan\r\n\r\nx\r\n",
                "more than one From field",
            ),
            (
                b"From: a@router.lan, b@router.lan\r\n\r\nx\r\n",
                "more than one address in From",
            ),
            (
                b"From: Router\r\n\r\nx\r\n",
                "the From address is not valid",
            ),
        ] {
            assert_eq!(
                signed(msg, 3, &none, &k),
                Err(Unsigned::NoAuthor(why)),
                "{}",
                String::from_utf8_lossy(msg)
            );
        }
        // The domain is compared in lower case.
        assert!(signed(b"From: \"A\" <a@Router.LAN>\r\n\r\nx\r\n", 3, &none, &k).is_ok());
        // A header section over the limit: unsigned, however it is fed; one that
        // fits, empty line included, is signed.
        let filler = b"X-Filler: 0123456789012345678901234567890123456789\r\n";
        let mut fits = b"From: a@router.lan\r\n".to_vec();
        while fits.len() + filler.len() + 2 <= MAX_HEADER {
            fits.extend_from_slice(filler);
        }
        let over = [&fits[..], filler, b"\r\nbody\r\n"].concat();
        fits.extend_from_slice(b"\r\nbody\r\n");
        for size in [1000, over.len()] {
            assert_eq!(
                signed(&over, size, &none, &k),
                Err(Unsigned::HeaderTooLarge)
            );
            assert!(signed(&fits, size, &none, &k).is_ok());
        }
    }

    #[test]
    fn where_the_header_section_ends() {
        let k = keys(vec![ed("router.lan", "e1")]);
        let none = Tables::empty(&[]);
        for (what, msg) in [
            (
                "a line that is not a field",
                &b"From: a@router.lan\r\nnot a field\r\nmore\r\n"[..],
            ),
            (
                "a folded last field",
                b"From: a@router.lan\r\nSubject: a\r\n b\r\n\r\nbody\r\n",
            ),
            ("no body", b"From: a@router.lan\r\nSubject: a\r\n"),
            (
                "no empty line, no final CRLF",
                b"From: a@router.lan\r\nSubject: a",
            ),
        ] {
            let whole = sign(msg, k.of("router.lan"), NOW).unwrap();
            for size in [1, 2, 5, msg.len()] {
                assert_eq!(
                    signed(msg, size, &none, &k).unwrap().fields,
                    whole,
                    "{what}, pieces of {size}"
                );
            }
        }
    }

    #[test]
    fn key_specs_and_their_errors() {
        let s = KeySpec::parse("Example.ORG.:Mail2025:/etc/k:1.key").unwrap();
        assert_eq!(
            (s.domain.as_str(), s.selector.as_str()),
            ("example.org", "mail2025")
        );
        assert_eq!(s.path, PathBuf::from("/etc/k:1.key"));
        for (bad, why) in [
            ("example.org", "expected DOMAIN:SELECTOR:KEYFILE"),
            ("example.org:s1", "expected DOMAIN:SELECTOR:KEYFILE"),
            ("example.org:s1:", "no key file"),
            ("exa mple.org:s1:/k", "invalid domain"),
            (":s1:/k", "invalid domain"),
            ("example.org:s_1!:/k", "invalid selector"),
        ] {
            let e = KeySpec::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let mut k = keys(vec![rsa("example.org", "r1")]);
        let e = k.add(rsa("example.org", "r2")).unwrap_err();
        assert!(
            e.starts_with("a second rsa-sha256 key for example.org (selector r1"),
            "{e}"
        );
        let e = k.add(ed("example.org", "r1")).unwrap_err();
        assert!(
            e.starts_with("selector r1 of example.org is given twice"),
            "{e}"
        );
        k.add(ed("example.org", "e1")).unwrap();
        k.add(ed("example.net", "e1")).unwrap();
        assert_eq!(k.of("example.org").len(), 2);
        assert_eq!(k.of("example.net").len(), 1);
        assert!(k.of("other.example").is_empty());
        let e = DkimKeys::load(&[KeySpec::parse("example.org:s1:/nonexistent/s1.key").unwrap()])
            .unwrap_err();
        assert_eq!(e.spec, "example.org:s1:/nonexistent/s1.key");
        assert!(e.message.starts_with("/nonexistent/s1.key: "), "{e}");
    }
}
