//! `tinymta check-tls DEST`: what a delivery to DEST would do, without sending mail —
//! the policy that matches, the hosts and whether their DNS was validated, the TLSA
//! records, and the TLS handshake (STARTTLS, or implicit TLS for `smtps:[host]:port`)
//! with its Verified/Trusted/Untrusted/Anonymous verdict (like `posttls-finger`, under
//! tinymta's own policy table).

use super::client::Candidate;
use super::mta_sts::{fetch::policy_host, Mode};
use super::remote::{self, host_plan, open_session, tlsa_lookup, Remote, TlsPlan, TlsaLookup};
use super::route::NextHop;
use super::transport::parse_nexthop;
use super::Settings;
use crate::cli::CheckTlsArgs;
use crate::exit;
use crate::host::system_hostname;
use crate::text::Joined;

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
    crate::runtime::block_on(check(&remote, &helo, &hop))
}

async fn check(remote: &Remote, helo: &str, hop: &NextHop) -> i32 {
    let dp = remote
        .delivery_policy(hop, remote.policy_for(hop), true)
        .await;
    let policy = &dp.effective;
    println!("destination: {}", describe(hop));
    print_sts(remote, hop, &dp);
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
            addrs.joined(" "),
            if host.secure {
                "validated"
            } else {
                "not validated"
            }
        );
        if let Some(a) = dp.sts() {
            let allowed = a.policy.allows(&host.name);
            println!(
                "  MTA-STS: {} mx pattern",
                if allowed { "matches an" } else { "matches no" }
            );
        }
        if dp.table.level.uses_dane() {
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
        let tls_plan = match host_plan(remote, &dp, hop, host).await {
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
            match open_session(remote, helo, "check-tls", policy, &tls_plan, &cand).await {
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

/// The MTA-STS part: whether it applies, the policy found (its lines as served, so
/// they can be compared with another implementation's) and what delivery enforces.
fn print_sts(remote: &Remote, hop: &NextHop, dp: &remote::DeliveryPolicy) {
    let NextHop::Domain(domain) = hop else {
        return;
    };
    if !remote.sts.enabled {
        println!("mta-sts: off (--mta-sts no)");
        return;
    }
    if dp.table.is_table_entry() {
        println!(
            "mta-sts: not used: the policy table lists {domain} ({})",
            dp.table.source
        );
        return;
    }
    if let Some(e) = &dp.sts.failure {
        println!("mta-sts: {}: {}", e.kind.name(), e.detail);
    }
    let Some(a) = &dp.sts.active else {
        println!("mta-sts: no policy for {domain}");
        return;
    };
    println!(
        "mta-sts: policy id={} from https://{}/.well-known/mta-sts.txt ({}, expires {})",
        a.id,
        policy_host(domain),
        a.source.describe(),
        crate::clock::rfc5322_date(a.expires)
    );
    println!("mta-sts: mode: {}", a.policy.mode);
    for mx in &a.policy.mx {
        println!("mta-sts: mx: {mx}");
    }
    println!("mta-sts: max_age: {}", a.policy.max_age);
    let would = match a.policy.mode {
        Mode::Enforce => {
            "only MX hosts matching an mx pattern, over TLS with a verified \
                          certificate for the MX name; otherwise the mail waits"
        }
        Mode::Testing => "nothing: delivery as without a policy (failures are reported)",
        Mode::None => "nothing: the domain withdrew its policy",
    };
    println!("mta-sts: enforces {would}");
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
