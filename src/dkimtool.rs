//! `tinymta dkim`: the operator's side of DKIM keys. `keygen` makes a signing key
//! (RSA through `tls::cert::generate_key`, or Ed25519), writes it as PKCS#8 PEM
//! atomically with mode 0600 (`tls::cert::write_private`) and prints the TXT record
//! to publish; `check` looks that record up through the daemon's resolver and judges
//! it by the verifier's own rules (`mailauth::dkim::KeyRecord::public_key`), so "it
//! matches" means a receiver can verify with it.
//!
//! Flags, messages and exit codes live here; keys and records are `mailauth::dkim`'s.

use std::fs;
use std::path::{Path, PathBuf};

use openssl::pkey::PKey;

use crate::cli::{DkimAction, DkimArgs, DkimCheckArgs, DkimKeygenArgs};
use crate::dns::Resolver;
use crate::exit;
use crate::mailauth::dkim::{check_dns_name, parse_record, Algorithm, SigningKey};
use crate::text::Joined;
use crate::tls::cert::{generate_key, write_private, KeyKind};

/// A failure: the exit code and the message for stderr.
type Failure = (i32, String);

/// Runs `tinymta dkim ...`; returns the exit code.
pub fn run(args: DkimArgs) -> i32 {
    let res = match args.action {
        DkimAction::Keygen(a) => keygen(&a),
        DkimAction::Check(a) => check(&a),
    };
    match res {
        Ok(()) => 0,
        Err((code, msg)) => {
            eprintln!("tinymta dkim: {msg}");
            code
        }
    }
}

/// `--domain` and `--selector`, checked and lower-cased.
fn names(domain: &str, selector: &str) -> Result<(String, String), Failure> {
    let usage = |e| (exit::USAGE, e);
    let domain = check_dns_name("--domain", domain.trim_end_matches('.')).map_err(usage)?;
    let selector = check_dns_name("--selector", selector).map_err(usage)?;
    Ok((domain, selector))
}

/// `RSA 2048`, `Ed25519`, for messages.
fn describe(key: &SigningKey) -> String {
    match key.algorithm() {
        Algorithm::Ed25519Sha256 => "Ed25519".to_string(),
        _ => format!("RSA {}", key.bits()),
    }
}

/// The record in zone-file syntax, `S._domainkey.D. IN TXT "..." "..."`: cut into
/// character-strings of at most 255 octets (RFC 1035 §3.3.14), which verifiers join
/// back without spaces (RFC 6376 §3.6.2.2). The record is ASCII without quotes or
/// backslashes, so it needs no escaping.
pub fn zone_line(key: &SigningKey, record: &str) -> String {
    let strings: Vec<String> = record
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!(
        "{}._domainkey.{}. IN TXT {}",
        key.selector(),
        key.domain(),
        strings.joined(" ")
    )
}

fn keygen(a: &DkimKeygenArgs) -> Result<(), Failure> {
    let (domain, selector) = names(&a.domain, &a.selector)?;
    let usage = |e: String| (exit::USAGE, e);
    let rsa_bits = match (a.ed25519, a.bits) {
        (true, Some(_)) => {
            return Err(usage(
                "--ed25519 and --bits exclude each other (an Ed25519 key has one size)".into(),
            ))
        }
        (true, None) => None,
        (false, None) => Some(2048),
        (false, Some(bits @ (1024 | 2048 | 3072 | 4096))) => Some(bits),
        (false, Some(bits)) => {
            return Err(usage(format!(
                "--bits must be 1024, 2048, 3072 or 4096, not {bits}"
            )))
        }
    };
    let path = a.out.as_ref().map_or_else(
        || PathBuf::from(format!("{selector}.{domain}.key")),
        PathBuf::from,
    );
    if !a.force && fs::symlink_metadata(&path).is_ok() {
        return Err((
            exit::CANTCREAT,
            format!(
                "{} exists; give --force to replace it (and publish the new record: the old one will not match)",
                path.display()
            ),
        ));
    }
    if rsa_bits == Some(1024) {
        eprintln!("tinymta dkim: warning: 1024 bits is the least receivers accept (RFC 8301); 2048 is recommended");
    }
    let software = |e: String| (exit::SOFTWARE, e);
    let pkey = match rsa_bits {
        Some(bits) => generate_key(KeyKind::Rsa(bits)),
        None => PKey::generate_ed25519(),
    }
    .map_err(|e| software(format!("cannot generate the key: {e}")))?;
    let pem = pkey
        .private_key_to_pem_pkcs8()
        .map_err(|e| software(format!("cannot encode the key: {e}")))?;
    let key = SigningKey::new(&domain, &selector, pkey).map_err(software)?;
    let record = key.record().map_err(software)?;
    write_private(&path, &pem, 0o600).map_err(|e| (exit::CANTCREAT, e))?;
    println!(
        "wrote {} key {} (mode 0600)",
        describe(&key),
        path.display()
    );
    println!();
    println!("publish this TXT record in the DNS zone of {domain}:");
    println!();
    println!("{}", zone_line(&key, &record));
    println!();
    println!(
        "(in a DNS provider's web form: name {selector}._domainkey, type TXT, value {record})"
    );
    println!(
        "then check it: tinymta dkim check --domain {domain} --selector {selector} --key {}",
        path.display()
    );
    Ok(())
}

fn check(a: &DkimCheckArgs) -> Result<(), Failure> {
    let (domain, selector) = names(&a.domain, &a.selector)?;
    let path = Path::new(&a.key);
    fs::metadata(path).map_err(|e| (exit::NOINPUT, format!("--key {}: {e}", a.key)))?;
    let key = SigningKey::load(&domain, &selector, path).map_err(|e| (exit::DATAERR, e))?;
    let resolver = Resolver::from_flag_or_system(a.resolver.as_deref()).map_err(|e| {
        let code = if a.resolver.is_some() {
            exit::USAGE
        } else {
            exit::TEMPFAIL
        };
        (code, e)
    })?;
    let name = format!("{selector}._domainkey.{domain}");
    let lookup = crate::runtime::block_on(resolver.txt(&name))
        .map_err(|e| (exit::TEMPFAIL, format!("cannot look up {name}: {e}")))?;
    let record = key.record().map_err(|e| (exit::SOFTWARE, e))?;
    let to_publish = format!("the record to publish:\n\n{}\n", zone_line(&key, &record));
    if lookup.records.is_empty() {
        let what = if lookup.nxdomain {
            "no such name"
        } else {
            "no TXT record"
        };
        return Err((exit::DATAERR, format!("{name}: {what}; {to_publish}")));
    }
    let mut problems = Vec::new();
    for (i, text) in lookup.records.iter().enumerate() {
        let judged = parse_record(text)
            .map_err(|e| format!("not a key record: {e}"))
            .and_then(|rec| {
                let public = rec.public_key(key.algorithm())?;
                if key.matches(&public) {
                    Ok(rec)
                } else {
                    Err("another key (made for another key file, or not updated yet)".into())
                }
            });
        match judged {
            Ok(rec) => {
                println!(
                    "{name}: the published key matches {} ({})",
                    a.key,
                    describe(&key)
                );
                if rec.testing {
                    println!("note: the record has t=y (testing): remove it once mail verifies");
                }
                if lookup.authenticated {
                    println!("(the answer was DNSSEC-validated)");
                }
                return Ok(());
            }
            Err(e) => problems.push(format!("TXT record {}: {e}", i + 1)),
        }
    }
    Err((
        exit::DATAERR,
        format!(
            "{name} does not publish the key of {}:\n  {}\n{to_publish}",
            a.key,
            problems.joined("\n  ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_cut_into_255_octet_strings() {
        let key = SigningKey::new(
            "Example.com",
            "s1",
            generate_key(KeyKind::Rsa(2048)).unwrap(),
        )
        .unwrap();
        let record = key.record().unwrap();
        assert!(record.len() > 255);
        let line = zone_line(&key, &record);
        let (name, strings) = line.split_once(" IN TXT ").unwrap();
        assert_eq!(name, "s1._domainkey.example.com.");
        let parts: Vec<&str> = strings.split("\" \"").collect();
        assert_eq!(parts.len(), record.len().div_ceil(255));
        assert!(parts.iter().all(|p| p.trim_matches('"').len() <= 255));
        assert_eq!(strings.replace("\" \"", "").trim_matches('"'), record);
    }
}
