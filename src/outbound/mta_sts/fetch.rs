//! The HTTPS fetch of `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (RFC 8461
//! §3.3): addresses from our resolver, TLS with SNI and the `verify` level's check
//! (the chain against the system store or `--tls-ca-file`/`--tls-ca-dir`, the name
//! `mta-sts.DOMAIN` in the certificate), one `GET` with `Connection: close`, the
//! response head parsed by `httparse`, the body read by `Content-Length`, chunked
//! transfer coding, or to the end of the connection. No redirects (§3.3), at most
//! [`MAX_BODY`] bytes, everything within one timeout.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use smol::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use smol::Async;

use super::policy::StsPolicy;
use crate::dns::Resolver;
use crate::outbound::policy::Policy;
use crate::outbound::tlsrpt::FailureType;
use crate::tls::client::{client_tls, ClientSettings, PeerCheck};
use crate::tls::level::Level;
use crate::tls::names::NamePattern;
use crate::tls::MaybeTls;

/// The largest policy body read (RFC 8461 §3.3 suggests 64 KB).
pub const MAX_BODY: usize = 64 * 1024;
/// The largest response head (status line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// The most header lines parsed.
const MAX_HEADERS: usize = 64;
/// The whole fetch, connection to last byte (RFC 8461 §3.3 suggests one minute).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
const HTTPS_PORT: u16 = 443;

/// Why no policy came back, in TLS-RPT's terms (`sts-policy-fetch-error`,
/// `sts-policy-invalid`, `sts-webpki-invalid`) and in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub kind: FailureType,
    pub detail: String,
}

impl FetchError {
    fn fetch(detail: String) -> FetchError {
        FetchError {
            kind: FailureType::StsPolicyFetchError,
            detail,
        }
    }
    fn invalid(detail: String) -> FetchError {
        FetchError {
            kind: FailureType::StsPolicyInvalid,
            detail,
        }
    }
}

/// The policy host of `domain`.
pub fn policy_host(domain: &str) -> String {
    format!("mta-sts.{domain}")
}

/// Fetches and parses `domain`'s policy, within [`FETCH_TIMEOUT`].
pub async fn fetch(
    resolver: &Resolver,
    tls: &ClientSettings,
    domain: &str,
) -> Result<StsPolicy, FetchError> {
    let host = policy_host(domain);
    let work = fetch_from(resolver, tls, &host);
    let timeout = async {
        smol::Timer::after(FETCH_TIMEOUT).await;
        Err(FetchError::fetch(format!(
            "https://{host}/: no complete answer within {} s",
            FETCH_TIMEOUT.as_secs()
        )))
    };
    smol::future::or(work, timeout).await
}

async fn fetch_from(
    resolver: &Resolver,
    settings: &ClientSettings,
    host: &str,
) -> Result<StsPolicy, FetchError> {
    let addrs = resolver
        .ips(host)
        .await
        .map_err(|e| FetchError::fetch(format!("{host}: address lookup failed: {e}")))?
        .records;
    if addrs.is_empty() {
        return Err(FetchError::fetch(format!("{host}: no address records")));
    }
    let mut last = String::new();
    let mut tcp = None;
    for ip in addrs {
        match Async::<TcpStream>::connect(SocketAddr::new(ip, HTTPS_PORT)).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("https://{host}/ ({ip}): cannot connect: {e}"),
        }
    }
    let tcp = tcp.ok_or_else(|| FetchError::fetch(last))?;
    // The verify level's context and check, named for the policy host: PKIX chain,
    // and `mta-sts.DOMAIN` among the certificate's names.
    let policy = Policy {
        source: "MTA-STS policy host".into(),
        ..Policy::default_for(Level::Verify)
    };
    let check = PeerCheck::Pkix {
        names: vec![NamePattern::Exact(host.to_string())],
    };
    let tls = client_tls(settings, policy.tls(), Some(host), check)
        .map_err(|e| FetchError::fetch(format!("https://{host}/: {e}")))?;
    let mut stream = MaybeTls::Plain(tcp);
    stream.connect(&tls).await.map_err(|e| {
        // The check's words (tls::client::peer_check): the certificate, not the
        // connection, failed.
        let kind = if e.starts_with("server certificate") || e.starts_with("server sent no") {
            FailureType::StsWebpkiInvalid
        } else {
            FailureType::StsPolicyFetchError
        };
        FetchError {
            kind,
            detail: format!("https://{host}/: {e}"),
        }
    })?;
    let request = format!(
        "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tinymta\r\n\
         Accept: text/plain\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .and(stream.flush().await)
        .map_err(|e| FetchError::fetch(format!("https://{host}/: {e}")))?;
    let body = read_response(&mut stream).await.map_err(|e| FetchError {
        detail: format!("https://{host}/.well-known/mta-sts.txt: {}", e.detail),
        ..e
    })?;
    let text = String::from_utf8(body)
        .map_err(|_| FetchError::invalid(format!("{host}: the policy is not UTF-8 text")))?;
    StsPolicy::parse(&text).map_err(|e| FetchError::invalid(format!("{host}: policy: {e}")))
}

/// How the body of a response ends.
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

/// Reads one HTTP/1.1 response: a 200 with a `text/plain` body of at most
/// [`MAX_BODY`] bytes gives the body; any other status (a redirect included) is an
/// error.
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, FetchError> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let (head_len, framing) = loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => break (n, framing_of(&response)?),
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(FetchError::fetch(format!(
                    "response head longer than {MAX_HEAD} bytes"
                )))
            }
            Err(e) => return Err(FetchError::fetch(format!("malformed HTTP response: {e}"))),
        }
        let n = read_some(stream, &mut chunk).await?;
        if n == 0 {
            return Err(FetchError::fetch(
                "connection closed before the response head".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut raw = buf.split_off(head_len);
    loop {
        let done = match framing {
            Framing::Length(len) if raw.len() >= len => {
                raw.truncate(len);
                return Ok(raw);
            }
            Framing::Chunked => dechunk(&raw)?,
            _ => None,
        };
        if let Some(body) = done {
            return Ok(body);
        }
        // Chunk sizes and line ends add a little to the body's cap.
        if raw.len() > MAX_BODY + 1024 {
            return Err(too_large());
        }
        let n = read_some(stream, &mut chunk).await?;
        if n == 0 {
            return match framing {
                Framing::Close if raw.len() <= MAX_BODY => Ok(raw),
                Framing::Close => Err(too_large()),
                _ => Err(FetchError::fetch(
                    "connection closed before the end of the body".into(),
                )),
            };
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

fn too_large() -> FetchError {
    FetchError::fetch(format!("policy larger than {} KB", MAX_BODY / 1024))
}

async fn read_some<S: AsyncRead + Unpin>(s: &mut S, buf: &mut [u8]) -> Result<usize, FetchError> {
    s.read(buf)
        .await
        .map_err(|e| FetchError::fetch(format!("read error: {e}")))
}

/// The status check (200 only: RFC 8461 §3.3 forbids following redirects), the media
/// type (§3.2: `text/plain`) and how the body is framed.
fn framing_of(r: &httparse::Response) -> Result<Framing, FetchError> {
    let code = r.code.unwrap_or(0);
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if (300..400).contains(&code) {
        let to = header("location").unwrap_or_default();
        return Err(FetchError::fetch(format!(
            "HTTP {code} redirect to '{to}' (MTA-STS forbids following redirects)"
        )));
    }
    if code != 200 {
        return Err(FetchError::fetch(format!(
            "HTTP {code} {}",
            r.reason.unwrap_or("")
        )));
    }
    let media = header("content-type").unwrap_or_default();
    let essence = media.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("text/plain") {
        return Err(FetchError::invalid(format!(
            "Content-Type '{media}' is not text/plain"
        )));
    }
    if let Some(te) = header("transfer-encoding") {
        if te.eq_ignore_ascii_case("chunked") {
            return Ok(Framing::Chunked);
        }
        return Err(FetchError::fetch(format!(
            "unsupported Transfer-Encoding '{te}'"
        )));
    }
    match header("content-length") {
        Some(len) => match len.parse::<usize>() {
            Ok(n) if n <= MAX_BODY => Ok(Framing::Length(n)),
            Ok(_) => Err(too_large()),
            Err(_) => Err(FetchError::fetch(format!("bad Content-Length '{len}'"))),
        },
        None => Ok(Framing::Close),
    }
}

/// The body of a complete chunked transfer coding in `raw`, `None` while incomplete.
fn dechunk(raw: &[u8]) -> Result<Option<Vec<u8>>, FetchError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&raw[at..]) {
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(FetchError::fetch("malformed chunked body".into())),
        };
        at += size_len;
        if size == 0 {
            // Trailer fields, then an empty line.
            let rest = &raw[at..];
            if rest.starts_with(b"\r\n") {
                return Ok(Some(body));
            }
            return Ok(rest.windows(4).any(|w| w == b"\r\n\r\n").then_some(body));
        }
        let size = usize::try_from(size)
            .ok()
            .filter(|s| body.len() + s <= MAX_BODY)
            .ok_or_else(too_large)?;
        if raw.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&raw[at..at + size]);
        if &raw[at + size..at + size + 2] != b"\r\n" {
            return Err(FetchError::fetch("malformed chunked body".into()));
        }
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Vec<u8>, FetchError> {
        // Fed in small pieces, so every partial state is met.
        struct Trickle<'a>(&'a [u8]);
        impl AsyncRead for Trickle<'_> {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let n = buf.len().min(self.0.len()).min(7);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                std::task::Poll::Ready(Ok(n))
            }
        }
        smol::block_on(read_response(&mut Trickle(bytes)))
    }

    const POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx.example\r\nmax_age: 60\r\n";

    #[test]
    fn bodies_by_length_chunks_and_close() {
        let by_length = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{POLICY}extra",
            POLICY.len()
        );
        assert_eq!(read(by_length.as_bytes()).unwrap(), POLICY.as_bytes());
        let (a, b) = POLICY.split_at(10);
        let chunked = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:X};ext=1\r\n{b}\r\n0\r\nX-Trailer: y\r\n\r\n",
            a.len(),
            b.len()
        );
        assert_eq!(read(chunked.as_bytes()).unwrap(), POLICY.as_bytes());
        let to_close = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n{POLICY}");
        assert_eq!(read(to_close.as_bytes()).unwrap(), POLICY.as_bytes());
    }

    #[test]
    fn refusals() {
        let kind = |r: &str| read(r.as_bytes()).unwrap_err();
        let redirect = kind("HTTP/1.1 301 Moved\r\nLocation: https://elsewhere/\r\n\r\n");
        assert_eq!(redirect.kind, FailureType::StsPolicyFetchError);
        assert!(redirect.detail.contains("redirect"), "{}", redirect.detail);
        assert!(kind("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .detail
            .contains("404"));
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n").kind,
            FailureType::StsPolicyInvalid
        );
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(kind(&big).detail.contains("larger"));
        let endless = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n{}",
            "x".repeat(MAX_BODY + 2000)
        );
        assert!(kind(&endless).detail.contains("larger"));
        let big_chunk = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            MAX_BODY + 1
        );
        assert!(kind(&big_chunk).detail.contains("larger"));
        assert!(kind(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 50\r\n\r\nshort"
        )
        .detail
        .contains("closed"));
        assert!(kind("garbage\r\n\r\n").detail.contains("malformed"));
        assert!(kind("").detail.contains("closed"));
    }
}
