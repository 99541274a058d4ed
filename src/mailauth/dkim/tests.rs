//! Signing and verification together, against an in-memory DNS: RFC 8463's example
//! message and keys (Appendix A), round trips of our own signatures, what a relay may
//! and a forger may not change, and each verdict of `verify.rs`'s table.

use openssl::pkey::{Id, PKey, Private};
use openssl::sha::sha256;

use super::canon::header_data;
use super::*;
use crate::dns::DnsError;
use crate::headers::Header;
use crate::mailauth::fake_dns::FakeDns;

/// RFC 8463 §A.1's RSA key (1024 bits, PKCS#1) and Ed25519 seed, and §A.2's records.
const RSA_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIICXQIBAAKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi
Y/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM
KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB
AoGAH0cxOhFZDgzXWhDhnAJDw5s4roOXN4OhjiXa8W7Y3rhX3FJqmJSPuC8N9vQm
6SVbaLAE4SG5mLMueHlh4KXffEpuLEiNp9Ss3O4YfLiQpbRqE7Tm5SxKjvvQoZZe
zHorimOaChRL2it47iuWxzxSiRMv4c+j70GiWdxXnxe4UoECQQDzJB/0U58W7RZy
6enGVj2kWF732CoWFZWzi1FicudrBFoy63QwcowpoCazKtvZGMNlPWnC7x/6o8Gc
uSe0ga2xAkEA8C7PipPm1/1fTRQvj1o/dDmZp243044ZNyxjg+/OPN0oWCbXIGxy
WvmZbXriOWoSALJTjExEgraHEgnXssuk7QJBALl5ICsYMu6hMxO73gnfNayNgPxd
WFV6Z7ULnKyV7HSVYF0hgYOHjeYe9gaMtiJYoo0zGN+L3AAtNP9huqkWlzECQE1a
licIeVlo1e+qJ6Mgqr0Q7Aa7falZ448ccbSFYEPD6oFxiOl9Y9se9iYHZKKfIcst
o7DUw1/hz2Ck4N5JrgUCQQCyKveNvjzkkd8HjYs0SwM0fPjK16//5qDZ2UiDGnOe
uEzxBDAr518Z8VFbR41in3W4Y3yCDgQlLlcETrS+zYcL
-----END RSA PRIVATE KEY-----
";
const ED_SEED: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const RSA_RECORD: &str = "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";
const ED_RECORD: &str = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const DOMAIN: &str = "football.example.com";
const SIGNED_AT: u64 = 1_528_637_909;

/// RFC 8463's two keys.
fn rfc8463_dns() -> FakeDns {
    FakeDns::new()
        .txt("brisbane._domainkey.football.example.com", &[ED_RECORD])
        .txt("test._domainkey.football.example.com", &[RSA_RECORD])
}

/// RFC 8463 §A.3: the signed message.
const RFC8463: &str = "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r
 d=football.example.com; i=@football.example.com;\r
 q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r
 subject : date : message-id : from : subject : date;\r
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r
 b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r
 Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r
 d=football.example.com; i=@football.example.com;\r
 q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r
 date : message-id : from : subject : date;\r
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r
 b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r
 DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r
 dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r
From: Joe SixPack <joe@football.example.com>\r
To: Suzie Q <suzie@shopping.example.net>\r
Subject: Is dinner ready?\r
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r
Message-ID: <20030712040037.46341.5F8J@football.example.com>\r
\r
Hi.\r
\r
We lost the game.  Are you hungry yet?\r
\r
Joe.\r
";

fn rsa_key(selector: &str) -> SigningKey {
    let key = PKey::private_key_from_pem(RSA_PEM.as_bytes()).unwrap();
    SigningKey::new(DOMAIN, selector, key).unwrap()
}

fn ed_pkey() -> PKey<Private> {
    let seed = openssl::base64::decode_block(ED_SEED).unwrap();
    PKey::private_key_from_raw_bytes(&seed, Id::ED25519).unwrap()
}

fn ed_key(selector: &str) -> SigningKey {
    SigningKey::new(DOMAIN, selector, ed_pkey()).unwrap()
}

fn check(message: &[u8], dns: &FakeDns, now: u64) -> Vec<Verdict> {
    smol::block_on(verify(message, dns, now))
}

fn results(message: &[u8], dns: &FakeDns, now: u64) -> Vec<(DkimResult, Option<String>)> {
    check(message, dns, now)
        .into_iter()
        .map(|v| (v.result, v.reason))
        .collect()
}

fn pass() -> (DkimResult, Option<String>) {
    (DkimResult::Pass, None)
}

fn not(result: DkimResult, reason: &str) -> (DkimResult, Option<String>) {
    (result, Some(reason.to_string()))
}

const MESSAGE: &str = "Received: from a by b; Fri, 1 Jan 2027 00:00:00 +0000\r
From: Joe <joe@football.example.com>\r
To: Suzie Q <suzie@shopping.example.net>\r
Cc: coach@football.example.com\r
Cc: bench@football.example.com\r
Subject: Is dinner\r
 ready?\r
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r
List-Unsubscribe: <https://football.example.com/u/1>\r
X-Campaign: 7\r
\r
Hi.\r
  trailing space   \r
\r
\r
";

fn signed(message: &str, keys: &[SigningKey]) -> String {
    let fields = sign(message.as_bytes(), keys, SIGNED_AT).unwrap();
    format!("{}{message}", String::from_utf8(fields).unwrap())
}

#[test]
fn rfc8463_example_verifies() {
    let dns = rfc8463_dns();
    let v = check(RFC8463.as_bytes(), &dns, SIGNED_AT + 60);
    assert_eq!(
        v.iter().map(|v| v.result).collect::<Vec<_>>(),
        [DkimResult::Pass; 2]
    );
    assert_eq!(
        v[0].resinfo(),
        "dkim=pass header.d=football.example.com header.s=brisbane header.b=\"/gCrinpc\""
    );
    assert_eq!(v[1].header_b(), "F45dVWDf");
    assert_eq!(v[1].algorithm, Some(Algorithm::RsaSha256));
    assert_eq!(dns.asked().len(), 2);
}

#[test]
fn rfc8463_signatures_are_reproduced_byte_for_byte() {
    // Both algorithms are deterministic: our canonicalisation and signing primitives
    // over the example's header give the RFC's b= values.
    let header = Header::parse(RFC8463.as_bytes());
    for (i, key) in [ed_key("brisbane"), rsa_key("test")].iter().enumerate() {
        let field = header.fields.iter().filter(|f| f.is(FIELD)).nth(i).unwrap();
        let raw = std::str::from_utf8(field.raw).unwrap();
        let at = raw.find(" b=").unwrap() + 3;
        let published: String = raw[at..].split_whitespace().collect();
        let names: Vec<String> = "from:to:subject:date:message-id:from:subject:date"
            .split(':')
            .map(String::from)
            .collect();
        let data = header_data(
            Canon::Relaxed,
            &header.fields,
            &names,
            &raw.as_bytes()[..at],
            FIELD.len(),
        );
        let sig = key.sign_hash(&sha256(&data)).unwrap();
        assert_eq!(openssl::base64::encode_block(&sig), published, "{key:?}");
    }
}

#[test]
fn dual_signatures_verify_and_carry_the_header_list() {
    let msg = signed(MESSAGE, &[rsa_key("test"), ed_key("brisbane")]);
    assert!(msg.starts_with("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;"));
    let dns = rfc8463_dns();
    assert_eq!(results(msg.as_bytes(), &dns, SIGNED_AT), [pass(), pass()]);
    let header = Header::parse(msg.as_bytes());
    let sig = header.fields.iter().find(|f| f.is(FIELD)).unwrap();
    let value = sig.value();
    let h: String = value
        .split("; ")
        .find_map(|t| t.strip_prefix("h="))
        .unwrap()
        .replace(' ', "");
    // Each listed field as often as present, From once more; others not at all.
    assert_eq!(h, "From:From:Subject:Date:To:Cc:Cc:List-Unsubscribe");
    assert!(value.contains("; t=1528637909;"), "{value}");
    assert!(!value.contains(" l="), "{value}");
    let fields_end = msg.find("Received:").unwrap();
    assert!(
        msg[..fields_end].split("\r\n").all(|l| l.len() <= 78),
        "{msg}"
    );
}

#[test]
fn what_a_relay_may_change_and_a_forger_may_not() {
    let msg = signed(MESSAGE, &[rsa_key("test"), ed_key("brisbane")]);
    let dns = rfc8463_dns();
    let both = |m: &str| {
        let r = results(m.as_bytes(), &dns, SIGNED_AT);
        assert_eq!(r[0], r[1], "{m}");
        r[0].clone()
    };
    // A trace field on top, an unsigned field, refolding and whitespace at line ends.
    assert_eq!(
        both(&format!("Received: from x by y; now\r\n{msg}")),
        pass()
    );
    assert_eq!(both(&msg.replace("X-Campaign: 7", "X-Campaign: 8")), pass());
    assert_eq!(
        both(&msg.replace("Subject: Is", "Subject:\r\n\t  Is ")),
        pass()
    );
    assert_eq!(both(&msg.replace("Hi.\r\n", "Hi.  \r\n")), pass());
    assert_eq!(both(&format!("{msg}\r\n\r\n")), pass());
    // Fields added on top of the signed instances pass: only From is over-signed.
    assert_eq!(
        both(&msg.replace("X-Campaign", "Reply-To: m@evil.example\r\nX-C")),
        pass()
    );
    assert_eq!(
        both(&msg.replace("\r\nCc: coach", "\r\nCc: x@evil.example\r\nCc: coach")),
        pass()
    );
    let broken = not(DkimResult::Fail, "signature did not verify");
    assert_eq!(both(&msg.replace("Is dinner", "Is lunch")), broken);
    assert_eq!(both(&msg.replace("To: Suzie", "To: Eve")), broken);
    assert_eq!(
        both(&msg.replace("Cc: coach", "Cc: x@evil.example")),
        broken
    );
    assert_eq!(
        both(&msg.replace("\r\nFrom: Joe", "\r\nFrom: M <m@evil.example>\r\nFrom: Joe")),
        broken
    );
    let body = not(DkimResult::Fail, "body hash did not verify");
    assert_eq!(both(&msg.replace("Hi.", "Hi!")), body);
    assert_eq!(both(&format!("{msg}P.S.\r\n")), body);
}

#[test]
fn a_message_without_from_is_not_signed() {
    let err = sign(b"Subject: x\r\n\r\nbody\r\n", &[ed_key("s")], 0).unwrap_err();
    assert_eq!(err, SignError::NoFrom);
    // No key, no signature.
    assert!(sign(MESSAGE.as_bytes(), &[], 0).unwrap().is_empty());
}

#[test]
fn keys_and_their_records() {
    let ed = ed_key("brisbane");
    assert_eq!(ed.record().unwrap(), ED_RECORD);
    assert_eq!(ed.algorithm(), Algorithm::Ed25519Sha256);
    let rsa = rsa_key("test");
    assert_eq!(rsa.record().unwrap(), RSA_RECORD);
    assert_eq!((rsa.algorithm(), rsa.bits()), (Algorithm::RsaSha256, 1024));
    let record = parse_record(ED_RECORD).unwrap();
    assert!(ed.matches(&record.public_key(Algorithm::Ed25519Sha256).unwrap()));
    assert!(!rsa.matches(&record.public_key(Algorithm::Ed25519Sha256).unwrap()));
    assert_eq!(
        format!("{ed:?}"),
        "SigningKey(ed25519-sha256 brisbane._domainkey.football.example.com)"
    );
    let small = PKey::from_rsa(openssl::rsa::Rsa::generate(512).unwrap()).unwrap();
    assert!(SigningKey::new(DOMAIN, "s", small)
        .unwrap_err()
        .contains("512 bits"));
    assert!(SigningKey::new("exa mple.com", "s", ed_pkey()).is_err());
    assert!(SigningKey::new(DOMAIN, "s;x=1", ed_pkey()).is_err());
    let ec = openssl::ec::EcKey::generate(
        &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
    )
    .unwrap();
    assert!(SigningKey::new(DOMAIN, "s", PKey::from_ec_key(ec).unwrap()).is_err());
}

/// A DKIM-Signature field with exactly the given tags (`b=` is added last), signed
/// with `key` over `message`'s header and body as the tags say.
fn field_with(message: &str, key: &SigningKey, tags: &str) -> String {
    let parsed = parse_tags(tags.as_bytes()).unwrap();
    let sig =
        Signature::from_tags(&parse_tags(format!("{tags}; bh=AAAA; b=AAAA").as_bytes()).unwrap())
            .unwrap();
    assert!(parsed.iter().all(|t| t.name != "b" && t.name != "bh"));
    let header = Header::parse(message.as_bytes());
    let mut body = BodyHasher::new(sig.body_canon, sig.length);
    body.update(&message.as_bytes()[header.body..]);
    let bh = openssl::base64::encode_block(&body.finish().0);
    let unsigned = format!("{FIELD}: {tags}; bh={bh};\r\n b=");
    let data = header_data(
        sig.header_canon,
        &header.fields,
        &sig.headers,
        unsigned.as_bytes(),
        FIELD.len(),
    );
    let b = key.sign_hash(&sha256(&data)).unwrap();
    format!("{unsigned}{}\r\n", openssl::base64::encode_block(&b))
}

const SMALL: &str = "From: joe@football.example.com\r\nSubject:  Hello \r\n\r\nbody \r\n\r\n";

#[test]
fn both_canonicalisations_and_the_length_tag() {
    let dns = rfc8463_dns();
    let key = rsa_key("test");
    for c in [
        "simple/simple",
        "simple/relaxed",
        "relaxed/simple",
        "relaxed",
        "simple",
    ] {
        let tags =
            format!("v=1; a=rsa-sha256; c={c}; d=football.example.com; s=test; h=from:subject");
        let msg = format!("{}{SMALL}", field_with(SMALL, &key, &tags));
        assert_eq!(results(msg.as_bytes(), &dns, 0), [pass()], "{c}");
        // Simple header canonicalisation notices a change of whitespace; relaxed not.
        let respaced = msg.replace("Subject:  Hello", "Subject: Hello");
        let expect = if c.starts_with("simple") {
            not(DkimResult::Fail, "signature did not verify")
        } else {
            pass()
        };
        assert_eq!(results(respaced.as_bytes(), &dns, 0), [expect], "{c}");
    }
    // l=: what follows the signed length may change, the signed part may not.
    let tags = "v=1; a=rsa-sha256; c=relaxed/relaxed; d=football.example.com; s=test; h=from; l=4";
    let msg = format!("{}{SMALL}", field_with(SMALL, &key, tags));
    assert_eq!(
        results(format!("{msg}appended\r\n").as_bytes(), &dns, 0),
        [pass()]
    );
    assert_eq!(
        results(msg.replace("body", "Body").as_bytes(), &dns, 0),
        [not(DkimResult::Fail, "body hash did not verify")]
    );
    let tags =
        "v=1; a=rsa-sha256; c=relaxed/relaxed; d=football.example.com; s=test; h=from; l=400";
    let msg = format!("{}{SMALL}", field_with(SMALL, &key, tags));
    assert_eq!(
        results(msg.as_bytes(), &dns, 0),
        [not(DkimResult::Fail, "l= is longer than the body")]
    );
}

#[test]
fn time_identity_and_key_flags() {
    let key = ed_key("brisbane");
    let base =
        "v=1; a=ed25519-sha256; c=relaxed/relaxed; d=football.example.com; s=brisbane; h=from";
    let msg = |extra: &str| {
        format!(
            "{}{SMALL}",
            field_with(SMALL, &key, &format!("{base}{extra}"))
        )
    };
    let dns = rfc8463_dns();
    let at = |extra: &str, now: u64| results(msg(extra).as_bytes(), &dns, now);
    assert_eq!(at("; t=1000; x=2000", 2000), [pass()]);
    assert_eq!(
        at("; t=1000; x=2000", 2400),
        [not(DkimResult::Fail, "signature expired (x=)")]
    );
    assert_eq!(at("; t=1000", 800), [pass()]);
    assert_eq!(
        at("; t=1000", 100),
        [not(
            DkimResult::Neutral,
            "signature timestamp in the future (t=)"
        )]
    );
    assert_eq!(at("; i=joe@sub.football.example.com", 0), [pass()]);
    let strict = FakeDns::new().txt(
        "brisbane._domainkey.football.example.com",
        &[&format!("{ED_RECORD}; t=s:y")],
    );
    let v = check(msg("; i=@sub.football.example.com").as_bytes(), &strict, 0);
    assert_eq!(v[0].result, DkimResult::PermError);
    let v = check(msg("; i=@football.example.com").as_bytes(), &strict, 0);
    assert_eq!((v[0].result, v[0].testing), (DkimResult::Pass, true));
}

#[test]
fn verdicts_when_the_key_is_not_there_or_not_usable() {
    let msg = signed(SMALL, &[ed_key("brisbane")]);
    let name = "brisbane._domainkey.football.example.com";
    let with = |dns: FakeDns| results(msg.as_bytes(), &dns, SIGNED_AT);
    assert_eq!(
        with(FakeDns::new()),
        [not(DkimResult::PermError, "no key for signature")]
    );
    assert_eq!(
        with(FakeDns::new().failing(name, DnsError::Timeout)),
        [not(DkimResult::TempError, "key lookup: timed out")]
    );
    assert_eq!(
        with(FakeDns::new().txt(name, &["v=DKIM1; k=ed25519; p="])),
        [not(DkimResult::PermError, "key revoked (empty p=)")]
    );
    assert_eq!(
        with(FakeDns::new().txt(name, &["v=spf1 -all"])),
        [not(
            DkimResult::PermError,
            "invalid key record: not a DKIM1 key record (v=)"
        )]
    );
    // Beside another TXT record, the key record is found.
    assert_eq!(
        with(FakeDns::new().txt(name, &["v=spf1 -all", ED_RECORD])),
        [pass()]
    );
    assert_eq!(
        with(FakeDns::new().txt(name, &[RSA_RECORD])),
        [not(
            DkimResult::PermError,
            "k=rsa key for an ed25519-sha256 signature"
        )]
    );
    // RSA under 1024 bits.
    let small = PKey::from_rsa(openssl::rsa::Rsa::generate(512).unwrap()).unwrap();
    let spki = openssl::base64::encode_block(&small.public_key_to_der().unwrap());
    let rsa_msg = signed(SMALL, &[rsa_key("test")]);
    let dns = FakeDns::new().txt(
        "test._domainkey.football.example.com",
        &[&format!("p={spki}")],
    );
    assert_eq!(
        results(rsa_msg.as_bytes(), &dns, SIGNED_AT),
        [not(
            DkimResult::PermError,
            "RSA key of 512 bits (at least 1024 required)"
        )]
    );
}

#[test]
fn sha1_syntax_errors_and_unsigned_from() {
    let dns = rfc8463_dns();
    let sha1 = format!(
        "DKIM-Signature: v=1; a=rsa-sha1; d={DOMAIN}; s=test; h=from; bh=AAAA; b=AAAA\r\n{SMALL}"
    );
    let v = check(sha1.as_bytes(), &dns, 0);
    assert_eq!(
        (v[0].result, v[0].algorithm),
        (DkimResult::Policy, Some(Algorithm::RsaSha1))
    );
    assert_eq!(v[0].resinfo(), "dkim=policy reason=\"rsa-sha1 (RFC 8301)\" header.d=football.example.com header.s=test header.b=AAAA");
    // Not even looked up.
    assert!(dns.asked().is_empty());
    let bad = format!(
        "DKIM-Signature: v=1; a=rsa-sha256; d=ex\"ample; s=test; h=to; bh=AAAA; b=A/A=\r\n{SMALL}"
    );
    let v = check(bad.as_bytes(), &dns, 0);
    assert_eq!(
        v[0].resinfo(),
        "dkim=neutral reason=\"invalid d= domain\" header.s=test header.b=\"A/A=\""
    );
    let broken = format!("DKIM-Signature: v=1; a\r\n{SMALL}");
    assert_eq!(
        results(broken.as_bytes(), &dns, 0),
        [not(DkimResult::Neutral, "tag-spec without '='")]
    );
    // h=from once, two From fields: the one on top is not covered.
    let key = ed_key("brisbane");
    let tags =
        "v=1; a=ed25519-sha256; c=relaxed/relaxed; d=football.example.com; s=brisbane; h=from";
    let two = format!("From: m@evil.example\r\n{SMALL}");
    let msg = format!("{}{two}", field_with(&two, &key, tags));
    assert_eq!(
        results(msg.as_bytes(), &dns, 0),
        [not(DkimResult::Fail, "a From field is not signed")]
    );
}

#[test]
fn signatures_are_limited_and_keys_looked_up_once() {
    let keys: Vec<SigningKey> = (0..MAX_SIGNATURES + 2)
        .map(|_| ed_key("brisbane"))
        .collect();
    let msg = signed(SMALL, &keys);
    let dns = rfc8463_dns();
    assert_eq!(
        results(msg.as_bytes(), &dns, SIGNED_AT),
        vec![pass(); MAX_SIGNATURES]
    );
    assert_eq!(dns.asked().len(), 1);
}

#[test]
fn the_verifier_takes_the_body_in_chunks() {
    let msg = signed(MESSAGE, &[rsa_key("test"), ed_key("brisbane")]);
    let header = Header::parse(msg.as_bytes());
    let mut v = Verifier::new(&header);
    assert_eq!(v.len(), 2);
    for chunk in msg.as_bytes()[header.body..].chunks(3) {
        v.body(chunk);
    }
    let verdicts = smol::block_on(v.finish(&rfc8463_dns(), SIGNED_AT));
    assert!(verdicts.iter().all(|v| v.result == DkimResult::Pass));
    assert!(Verifier::new(&Header::parse(SMALL.as_bytes())).is_empty());
}
