//! Who may relay: the `--relay-network` list and the decision made at RCPT for a
//! client that is not logged in, the client certificates listed in `--relay-ccert`
//! (Postfix's `relay_clientcerts` with `permit_tls_clientcerts`), and the networks
//! whose clients must present a verified certificate (`--tls-require-ccert`). An
//! authenticated client may always relay; that part is the session's.

use std::net::IpAddr;

use crate::tls::fingerprint::{parse_fingerprint, Digest};
use crate::tls::{ClientCert, Trust};

/// An IP network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr: ip, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // Compare IPv4-mapped IPv6 clients (from a [::] listener) as IPv4.
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// True if a client at `ip` may relay to foreign domains without logging in.
pub fn may_relay(networks: &[Cidr], ip: IpAddr) -> bool {
    networks.iter().any(|n| n.contains(ip))
}

/// What inbound does with client certificates.
#[derive(Debug, Clone, Default)]
pub struct ClientCertPolicy {
    /// Ask every TLS client for a certificate (`--tls-ask-ccert`, implied by the
    /// other two).
    pub ask: bool,
    /// Clients from these networks must present a certificate that verifies against
    /// `--tls-ccert-ca-file` before MAIL.
    pub required: Vec<Cidr>,
    /// Certificate or public-key fingerprints that may relay (`--relay-ccert`).
    pub relay: Vec<Vec<u8>>,
    /// The digest of those fingerprints and of the logged ones
    /// (`--tls-fingerprint-digest`, as for the `fingerprint` level).
    pub digest: Digest,
}

impl ClientCertPolicy {
    /// Whether a client at `ip` must present a verified certificate.
    pub fn is_required(&self, ip: IpAddr) -> bool {
        may_relay(&self.required, ip)
    }

    /// Whether `cert` (with the `trust` its handshake gave) satisfies the requirement:
    /// it chains to `--tls-ccert-ca-file`.
    pub fn satisfies(&self, cert: Option<&ClientCert>, trust: Trust) -> bool {
        cert.is_some() && matches!(trust, Trust::Trusted | Trust::Verified)
    }

    /// Whether `cert` is listed in `--relay-ccert`: a pinned certificate or key needs
    /// no CA (the handshake proved the client holds its key), as Postfix's
    /// `relay_clientcerts`.
    pub fn may_relay(&self, cert: Option<&ClientCert>) -> bool {
        cert.is_some_and(|c| c.is_listed(&self.relay))
    }
}

/// Reads a `--relay-ccert` table: one fingerprint a line, colon-hex or plain hex of the
/// `digest`'s length, of a certificate or of its public key, then anything (a name
/// for the reader, as Postfix's `relay_clientcerts` values); `#` starts a comment line.
/// Errors name `FILE:LINE`.
pub fn parse_relay_ccert(text: &str, file: &str, digest: Digest) -> Result<Vec<Vec<u8>>, String> {
    let mut listed = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let word = line.split_whitespace().next().unwrap_or_default();
        let fp = parse_fingerprint(word).ok_or_else(|| {
            format!(
                "{file}:{}: '{word}' is not a fingerprint (hex, e.g. 3D:7A:...)",
                n + 1
            )
        })?;
        if fp.len() != digest.output_len() {
            return Err(format!(
                "{file}:{}: '{word}' has {} bytes, a {digest} fingerprint {} (--tls-fingerprint-digest)",
                n + 1,
                fp.len(),
                digest.output_len()
            ));
        }
        listed.push(fp);
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_ccert_table_syntax() {
        let a = "AB:".repeat(31) + "AB";
        let b = "cd".repeat(32);
        let text = format!("# pinned\n\n{a}  laptop\n  {b}\n");
        let listed = parse_relay_ccert(&text, "f", Digest::Sha256).unwrap();
        assert_eq!(listed, [vec![0xab; 32], vec![0xcd; 32]]);
        let e = parse_relay_ccert("AB:CD\n", "f", Digest::Sha256).unwrap_err();
        assert!(
            e.starts_with("f:1: 'AB:CD' has 2 bytes, a sha256 fingerprint 32"),
            "{e}"
        );
        let e = parse_relay_ccert("\nlaptop AB\n", "f", Digest::Sha256).unwrap_err();
        assert!(e.starts_with("f:2: 'laptop' is not a fingerprint"), "{e}");
        assert_eq!(
            parse_relay_ccert(&"01".repeat(20), "f", Digest::Sha1)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn cidr_matching() {
        let n = Cidr::parse("192.168.1.0/24").unwrap();
        assert!(n.contains("192.168.1.77".parse().unwrap()));
        assert!(!n.contains("192.168.2.1".parse().unwrap()));
        assert!(n.contains("::ffff:192.168.1.5".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("::1/128")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("bogus").is_none());
    }
}
