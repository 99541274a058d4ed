//! A connection that starts in plaintext and may switch to TLS (STARTTLS), or starts
//! in TLS (port 465), as one `AsyncRead + AsyncWrite` type over smol sockets.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_openssl::SslStream;
use openssl::ssl::{Ssl, SslContext};
use smol::io::{AsyncRead, AsyncWrite};

use super::fingerprint::Digest;
use super::{ClientCert, TlsInfo};

use crate::text::Joined;

/// Plaintext or TLS over the same transport.
pub enum MaybeTls<S: Unpin> {
    Plain(S),
    Tls(Box<SslStream<S>>),
    /// Only while a handshake is in progress or after it failed.
    Gone,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MaybeTls<S> {
    /// Takes the plaintext transport out for a handshake (either side); the
    /// connection stays `Gone` unless the handshake puts a TLS stream back.
    pub(super) fn take_plain(&mut self) -> Result<S, String> {
        match std::mem::replace(self, MaybeTls::Gone) {
            MaybeTls::Plain(s) => Ok(s),
            other => {
                *self = other;
                Err("TLS already active".to_string())
            }
        }
    }

    /// The certificates the peer sent, leaf first (empty in plaintext).
    pub fn peer_chain(&self) -> Vec<openssl::x509::X509> {
        let MaybeTls::Tls(tls) = self else {
            return Vec::new();
        };
        let ssl = tls.ssl();
        let mut chain: Vec<_> = ssl
            .peer_cert_chain()
            .map(|c| c.iter().map(|x| x.to_owned()).collect())
            .unwrap_or_default();
        // The client side's chain includes the leaf; fall back to the leaf alone
        // should a library return an empty chain.
        if chain.is_empty() {
            chain.extend(ssl.peer_certificate());
        }
        chain
    }

    /// Runs the server side of a handshake on a plaintext connection; a client
    /// certificate's fingerprints are taken with `digest`. On failure the connection is
    /// gone; the error text says why (for the log line).
    pub async fn accept(&mut self, ctx: &SslContext, digest: Digest) -> Result<TlsInfo, String> {
        let transport = self.take_plain()?;
        let ssl = Ssl::new(ctx).map_err(|e| e.to_string())?;
        let mut tls = SslStream::new(ssl, transport).map_err(|e| e.to_string())?;
        Pin::new(&mut tls).accept().await.map_err(handshake_error)?;
        let mut info = TlsInfo::from_ssl(tls.ssl());
        // Only there when the context asked for one (`ClientCertRequest`).
        info.client_cert = tls
            .ssl()
            .peer_certificate()
            .map(|c| Box::new(ClientCert::of(&c, digest)));
        *self = MaybeTls::Tls(Box::new(tls));
        Ok(info)
    }
}

/// Shortens OpenSSL's error text to what an administrator needs in a log line.
pub(super) fn handshake_error(e: openssl::ssl::Error) -> String {
    match e.ssl_error() {
        Some(stack) => stack
            .errors()
            .iter()
            .map(|e| e.reason().unwrap_or("unknown").to_string())
            .collect::<Vec<_>>()
            .joined(", "),
        None => match e.io_error() {
            Some(io) => io.to_string(),
            None => "connection closed during handshake".to_string(),
        },
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTls::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTls::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTls::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_close(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
            MaybeTls::Gone => Poll::Ready(Ok(())),
        }
    }
}
