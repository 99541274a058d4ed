//! `tinymta check-tls DEST`: what a delivery to DEST would do, without sending mail —
//! the policy that matches, the hosts and whether their DNS was validated, the TLSA
//! records, and the TLS handshake (STARTTLS, or implicit TLS for `smtps:[host]:port`)
//! with its Verified/Trusted/Untrusted/Anonymous verdict (like `posttls-finger`, under
//! tinymta's own policy table).

use super::client::Candidate;
use super::remote::{self, open_session, plan, tlsa_lookup, Remote, TlsPlan, TlsaLookup};
use super::route::NextHop;
use super::transport::parse_nexthop;
use super::Settings;
use crate::cli::CheckTlsArgs;
use crate::exit;
use crate::host::system_hostname;
use crate::tls::level::Level;

/// Runs the check for `args.dest` under `out` (the outbound flags, validated by the
/// caller as for `serve`).
pub fn run(out: Settings, args: CheckTlsArgs) -> i32 {
    let dest = args.dest.trim().to_ascii_lowercase();
    let hop = if dest.starts_with('[') || dest.contains(':') {
        match parse_nexthop(&dest, out.mx_port) {
            Some(h) => h,
            None => {
                eprintln!(
                    "tinymta: check-tls '{dest}': expected a domain, [host]:port, host:port \
                     or smtps:[host]:port"
                );
                return exit::USAGE;
            }
        }
    } else {
        NextHop::Domain(dest.trim_end_matches('.').to_string())
    };
    let helo = args.hostname.clone().unwrap_or_else(system_hostname);
    let remote = Remote::new(&out, &helo, None);
    smol::block_on(check(&remote, &helo, &hop))
}

async fn check(remote: &Remote, helo: &str, hop: &NextHop) -> i32 {
    let policy = remote.policy_for(hop);
    println!("destination: {}", describe(hop));
    println!("policy: {} (from {})", policy.level.name(), policy.source);
    let hosts = match remote::resolve(remote, hop).await {
        Ok(h) => h,
        Err(f) => {
            println!(
                "result: {} ({} {})",
                if f.permanent { "bounce" } else { "defer" },
                f.dsn,
                f.detail
            );
            return exit::TEMPFAIL;
        }
    };
    for host in &hosts {
        let addrs: Vec<String> = host.addrs.iter().map(|a| a.to_string()).collect();
        println!(
            "host: {} port {} addresses {} (DNSSEC {})",
            host.name,
            host.port,
            addrs.join(" "),
            if host.secure {
                "validated"
            } else {
                "not validated"
            }
        );
        if matches!(policy.level, Level::Dane | Level::DaneOnly) {
            match tlsa_lookup(remote, host).await {
                TlsaLookup::Usable(records) => {
                    for r in &records {
                        println!(
                            "  TLSA _{}._tcp.{}: {} (validated, usable)",
                            host.port,
                            host.name,
                            r.presentation()
                        );
                    }
                }
                TlsaLookup::Unusable => {
                    println!("  TLSA: validated, none usable: mandatory TLS without authentication")
                }
                TlsaLookup::Insecure => println!("  TLSA: none validated: opportunistic TLS"),
                TlsaLookup::Failed(why) => println!("  TLSA: {why}"),
            }
        }
        let tls_plan = match plan(remote, &policy, hop, host).await {
            Ok(p) => p,
            Err(why) => {
                println!("  skipped: {why}");
                continue;
            }
        };
        for ip in &host.addrs {
            let cand = Candidate {
                host: host.name.clone(),
                ip: *ip,
                port: host.port,
            };
            match open_session(remote, helo, "check-tls", &policy, &tls_plan, &cand).await {
                Ok((session, info)) => {
                    let starttls = session.ext.starttls;
                    session.quit().await;
                    match info {
                        Some(info) => {
                            if let Some(note) = &info.note {
                                println!("  {note}");
                            }
                            println!(
                                "  {} TLS connection established to {}: {} {}",
                                info.trust,
                                cand.name(),
                                info,
                                if hop.implicit_tls() {
                                    "implicit TLS"
                                } else {
                                    "via STARTTLS"
                                }
                            );
                            println!("result: deliver over TLS ({})", info.trust);
                        }
                        None => {
                            let why = match (&tls_plan, starttls) {
                                (TlsPlan::Off, _) => "TLS disabled by policy",
                                (_, false) => "STARTTLS not offered",
                                _ => "TLS handshake failed, plaintext retry",
                            };
                            println!("  plaintext connection to {} ({why})", cand.name());
                            println!("result: deliver in plaintext");
                        }
                    }
                    return 0;
                }
                Err(f) => println!("  {}: {}", cand.name(), f.detail),
            }
        }
    }
    println!(
        "result: defer (no host could be used under policy {})",
        policy.level.name()
    );
    exit::TEMPFAIL
}

fn describe(hop: &NextHop) -> String {
    let transport = if hop.implicit_tls() { "smtps:" } else { "" };
    match hop {
        NextHop::Domain(d) => format!("{d} (MX lookup)"),
        NextHop::Host {
            bracketed: true, ..
        } => format!("{transport}{hop}"),
        NextHop::Host { .. } => format!("{transport}{hop} (MX lookup)"),
    }
}
