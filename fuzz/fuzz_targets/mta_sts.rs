//! MTA-STS texts from the network: the `_mta-sts` TXT records (`record_id`), the
//! policy file (`StsPolicy::parse`) and the HTTP response it comes in
//! (`fetch::read_response`, fed in pieces).
//!
//! Invariants (beyond "no panic"):
//! - an id is 1 to 32 letters and digits;
//! - a parsed policy has `max_age` at most a year, `mx` patterns in lower case without
//!   a trailing dot, at least one unless the mode is `none`, and its own text parses
//!   to the same policy (the cache stores that text);
//! - a read body is at most 64 KB.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::pin::Pin;
use std::task::{Context, Poll};
use tinymta::outbound::mta_sts::fetch::{read_response, MAX_BODY};
use tinymta::outbound::mta_sts::policy::{record_id, MAX_AGE_CAP};
use tinymta::outbound::mta_sts::{Mode, StsPolicy};

struct Pieces<'a>(&'a [u8], usize);

impl smol::io::AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let step = self.1;
        let n = buf.len().min(self.0.len()).min(step);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Poll::Ready(Ok(n))
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let records: Vec<String> = text.split('\u{1}').map(str::to_string).collect();
    if let Ok(id) = record_id(&records) {
        assert!((1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    if let Ok(p) = StsPolicy::parse(&text) {
        assert!(p.max_age <= MAX_AGE_CAP);
        assert!(p.mode == Mode::None || !p.mx.is_empty());
        for m in &p.mx {
            assert!(!m.ends_with('.') && *m == m.to_ascii_lowercase(), "{m:?}");
        }
        assert_eq!(StsPolicy::parse(&p.text).as_ref(), Ok(&p));
    }
    let step = 1 + data.first().map_or(0, |b| *b as usize % 64);
    if let Ok(body) = smol::block_on(read_response(&mut Pieces(data, step))) {
        assert!(body.len() <= MAX_BODY);
    }
});
