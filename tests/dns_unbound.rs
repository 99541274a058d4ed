//! tinymta's DNS client (`tinymta::dns::Resolver`) against a real validating resolver:
//! unbound serving a signed `example.test` (with one record tampered with after
//! signing) and an unsigned `plain.test`, validating with the KSK's DS as trust anchor,
//! as TESTBENCH.md describes (tests/common/dns.rs starts it).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::dns::{Unbound, Zone};
use tinymta::dns::{DnsError, Mx, Resolver};

const TLSA_HEX: &str = "8cb0fc6c527506a053f4f14c8464bebbd6dede2738d11468dd953d7d6a3021f1";

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    smol::block_on(f)
}

fn start_unbound() -> Unbound {
    let mut signed = Zone::new("example.test", true)
        .record("@ IN MX 10 mx.example.test.")
        .record("mx IN A 127.0.0.1")
        .record(&format!("_25._tcp.mx IN TLSA 3 1 1 {TLSA_HEX}"))
        .record("tampered IN A 192.0.2.77")
        .record("@ IN TXT \"v=spf1 \" \"-all\"");
    // Eight 200-octet TXT records plus signature: more than 1232 octets, so unbound
    // answers over UDP with TC=1 and the lookup must go on over TCP.
    for i in 0..8 {
        signed = signed.record(&format!("big IN TXT \"{}\"", i.to_string().repeat(200)));
    }
    // Tamper with one record after signing: its RRSIG no longer verifies.
    let signed = signed.tamper("192.0.2.77", "192.0.2.78");
    let plain = Zone::new("plain.test", false).record("@ IN MX 5 mail.plain.test.");
    let u = Unbound::start(&[signed, plain]);
    // The tampered address was in the signed zone exactly once, and now is changed.
    let zone = std::fs::read_to_string(u.dir.path().join("example.test.zone.signed")).unwrap();
    assert_eq!(
        (
            zone.matches("192.0.2.77").count(),
            zone.matches("192.0.2.78").count()
        ),
        (0, 1),
        "{zone}"
    );
    u
}

#[test]
fn unbound_validates_signed_zone() {
    let u = start_unbound();
    let addr: SocketAddr = u.addr.parse().unwrap();
    let r = Resolver::new(addr).with_timeout(Duration::from_secs(2));

    let mx = block(r.mx("example.test")).unwrap();
    assert!(mx.authenticated, "MX not authenticated: {mx:?}");
    assert_eq!(
        mx.records,
        vec![Mx {
            preference: 10,
            exchange: "mx.example.test".into()
        }]
    );

    let tlsa = block(r.tlsa("_25._tcp.mx.example.test.")).unwrap();
    assert!(tlsa.authenticated, "TLSA not authenticated: {tlsa:?}");
    assert_eq!(tlsa.records.len(), 1);
    assert_eq!(
        (
            tlsa.records[0].usage,
            tlsa.records[0].selector,
            tlsa.records[0].matching
        ),
        (3, 1, 1)
    );
    let hex: String = tlsa.records[0]
        .data
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, TLSA_HEX);

    let ips = block(r.ips("mx.example.test")).unwrap();
    assert!(ips.authenticated, "{ips:?}");
    assert_eq!(ips.records, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);

    let txt = block(r.txt("example.test")).unwrap();
    assert!(txt.authenticated);
    assert_eq!(txt.records, vec!["v=spf1 -all".to_string()]);

    let big = block(r.txt("big.example.test")).unwrap();
    assert!(big.authenticated);
    assert_eq!(big.records.len(), 8);
    assert!(big.records.contains(&"7".repeat(200)));

    // Validated denial of existence (NSEC3).
    let none = block(r.mx("nowhere.example.test")).unwrap();
    assert!(none.nxdomain && none.authenticated, "{none:?}");
    let nodata = block(r.txt("mx.example.test")).unwrap();
    assert!(
        nodata.records.is_empty() && !nodata.nxdomain && nodata.authenticated,
        "{nodata:?}"
    );

    // The record changed after signing is bogus: SERVFAIL.
    assert_eq!(
        block(r.ips("tampered.example.test")),
        Err(DnsError::ServFail)
    );

    // An unsigned zone is insecure: answered, AD clear.
    let plain = block(r.mx("plain.test")).unwrap();
    assert!(!plain.authenticated);
    assert_eq!(plain.records[0].exchange, "mail.plain.test");
}
