//! DMARC records, `From:` domains and the Tree Walk (RFC 7489, RFC 9989):
//! `dmarc::parse_record` on arbitrary TXT text, `dmarc::from_domain` on an arbitrary
//! header section, `dmarc::walk_targets` on arbitrary names.
//!
//! Invariants (beyond "no panic"):
//! - a record parses only when its first tag is `v=DMARC1`, and `pct` is in 0..=100;
//! - a record parses the same with `; ` appended (a trailing separator is allowed);
//! - a From domain found is lower case, a DNS name, of a header with one From field;
//! - the walk asks at most eight names, each a proper suffix (in labels) of the one
//!   before, ending with a single label.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymta::headers::Header;
use tinymta::mailauth::dmarc::{from_domain, parse_record, walk_targets};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = parse_record(&text) {
        assert!(text.trim_start().starts_with('v'), "{text:?}");
        assert!(r.pct <= 100);
        if !text.trim_end().ends_with(';') {
            assert_eq!(parse_record(&format!("{text};")).as_ref(), Ok(&r), "{text:?}");
        }
    }

    let header = Header::parse(data);
    if let Ok(domain) = from_domain(&header) {
        assert_eq!(domain, domain.to_ascii_lowercase());
        assert!(!domain.is_empty() && !domain.ends_with('.'));
        assert_eq!(header.fields.iter().filter(|f| f.is("From")).count(), 1);
    }

    let name = text.trim_matches('.');
    if !name.is_empty() && !name.contains("..") {
        let targets = walk_targets(name);
        assert!(targets.len() <= 8, "{targets:?}");
        assert_eq!(targets[0], name);
        for pair in targets.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(b.split('.').count() < a.split('.').count(), "{targets:?}");
            assert!(a.ends_with(&format!(".{b}")), "{targets:?}");
        }
        assert_eq!(targets.last().unwrap().split('.').count(), 1, "{targets:?}");
    }
});
