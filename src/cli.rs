//! The command line: every subcommand and flag, its default and its help text.
//! Parsing only; turning flags into a validated configuration is `config`'s job.

use argh::FromArgs;

#[derive(FromArgs, Debug)]
/// tinymta: a small mail transfer agent with a complete TLS policy engine.
pub struct TopLevel {
    /// print the version and the compiled cipher profile
    #[argh(switch)]
    pub version: bool,

    #[argh(subcommand)]
    pub command: Option<Subcommand>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
// Parsed once at start-up: the size of the serve variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Subcommand {
    Serve(ServeArgs),
    Sendmail(SendmailArgs),
    Queue(QueueArgs),
    TlsInfo(TlsInfoArgs),
    CheckTls(CheckTlsArgs),
    Passwd(PasswdArgs),
    Cert(crate::certtool::CertArgs),
}

#[derive(FromArgs, Debug, Default)]
/// Run the MTA in the foreground (logs to stderr).
#[argh(subcommand, name = "serve")]
pub struct ServeArgs {
    /// MX/relay listener address, repeatable (default [::]:25 as root, 127.0.0.1:2525
    /// otherwise); giving any listener flag replaces all three defaults
    #[argh(option)]
    pub smtp: Vec<String>,
    /// submission listener (STARTTLS and AUTH required), repeatable (default [::]:587 /
    /// 127.0.0.1:2587)
    #[argh(option)]
    pub submission: Vec<String>,
    /// implicit-TLS submission listener, repeatable (default [::]:465 / 127.0.0.1:2465)
    #[argh(option)]
    pub smtps: Vec<String>,
    /// banner and EHLO name (default: the system host name)
    #[argh(option)]
    pub hostname: Option<String>,
    /// queue, generated certificate and Maildirs (default /var/spool/tinymta as root,
    /// ./tinymta-state otherwise)
    #[argh(option)]
    pub state_dir: Option<String>,
    /// domain delivered locally, repeatable (default: the host name)
    #[argh(option)]
    pub domain: Vec<String>,
    /// root of the local Maildirs: DIR/<domain>/<local-part>/ (default <state-dir>/mail)
    #[argh(option)]
    pub mail_dir: Option<String>,
    /// client network allowed to relay, CIDR, repeatable (default 127.0.0.0/8 and ::1/128)
    #[argh(option)]
    pub relay_network: Vec<String>,
    /// server certificate chain, PEM (default: a generated demonstration certificate);
    /// give it twice, with two --tls-key, for an RSA and an ECDSA certificate at once
    #[argh(option)]
    pub tls_cert: Vec<String>,
    /// server private key, PEM (one per --tls-cert, in the same order)
    #[argh(option)]
    pub tls_key: Vec<String>,
    /// users for SMTP AUTH: lines made by `tinymta passwd USER` (default: no AUTH)
    #[argh(option)]
    pub auth_file: Option<String>,
    /// TLS on --smtp listeners: none, may or encrypt (default may)
    #[argh(option, default = "String::from(\"may\")")]
    pub tls_level: String,
    /// largest message accepted, in bytes (default 10240000)
    #[argh(option, default = "10_240_000")]
    pub max_message_size: u64,
    /// most concurrent SMTP sessions (default 1000)
    #[argh(option, default = "1000")]
    pub max_sessions: usize,
    /// most concurrent sessions from one client address (default 100)
    #[argh(option, default = "100")]
    pub max_sessions_per_ip: usize,
    /// most recipients in one message (default 1000)
    #[argh(option, default = "1000")]
    pub max_recipients: usize,
    /// send all non-local mail via this host: [HOST]:PORT (brackets: no MX lookup)
    #[argh(option)]
    pub relayhost: Option<String>,
    /// per-domain next hops, lines 'domain  [host]:port' (local domains too: relayed)
    #[argh(option)]
    pub transport: Option<String>,
    /// outbound per-destination TLS policy table (Postfix smtp_tls_policy_maps syntax)
    #[argh(option)]
    pub tls_policy: Option<String>,
    /// outbound TLS level when the policy table has no match: none, may, encrypt, dane,
    /// dane-only, fingerprint, verify or secure (default may)
    #[argh(option, default = "String::from(\"may\")")]
    pub tls_default_level: String,
    /// trust anchors (PEM bundle) for the verify and secure levels (default: system store)
    #[argh(option)]
    pub tls_ca_file: Option<String>,
    /// directory of hashed CA certificates for verify and secure (default: system store)
    #[argh(option)]
    pub tls_ca_dir: Option<String>,
    /// digest of fingerprint-level matches: sha256, sha1 or md5 (default sha256)
    #[argh(option, default = "String::from(\"sha256\")")]
    pub tls_fingerprint_digest: String,
    /// client certificate (PEM chain) presented to every destination
    #[argh(option)]
    pub tls_client_cert: Option<String>,
    /// key of --tls-client-cert
    #[argh(option)]
    pub tls_client_key: Option<String>,
    /// DNS server to ask, ADDR[:PORT], trusted for the DNSSEC AD bit (default: the
    /// first nameserver in /etc/resolv.conf)
    #[argh(option)]
    pub resolver: Option<String>,
    /// port used for MX deliveries (default 25; for tests)
    #[argh(option, default = "25")]
    pub mx_port: u16,
    /// where TLS-failure alerts go (at most one per destination per hour)
    #[argh(option)]
    pub alert_rcpt: Option<String>,
    /// seconds a queued message is retried before it bounces (default 432000, 5 days)
    #[argh(option, default = "432_000")]
    pub queue_lifetime: u64,
    /// first retry delay in seconds (default 300)
    #[argh(option, default = "300")]
    pub retry_min: u64,
    /// longest retry delay in seconds (default 3600)
    #[argh(option, default = "3600")]
    pub retry_max: u64,
    /// seconds to wait for a command before disconnecting (default 300)
    #[argh(option, default = "300")]
    pub command_timeout: u64,
    /// seconds to wait for message content in DATA (default 600)
    #[argh(option, default = "600")]
    pub data_timeout: u64,
}

#[derive(FromArgs, Debug)]
/// Queue a message read from standard input (the sendmail interface). Also run as
/// `sendmail` through a symbolic link; -oi, -odb, -F and similar are accepted.
#[argh(subcommand, name = "sendmail")]
pub struct SendmailArgs {
    /// take recipients from the To:, Cc: and Bcc: headers (Bcc: is removed)
    #[argh(switch, short = 't')]
    pub read_recipients: bool,
    /// a line with a single dot does not end the message
    #[argh(switch, short = 'i')]
    pub ignore_dots: bool,
    /// envelope sender address (default: the user at the host name)
    #[argh(option, short = 'f')]
    pub from: Option<String>,
    /// full name of the sender (accepted for compatibility, unused)
    #[argh(option, short = 'F')]
    pub full_name: Option<String>,
    /// state directory of the daemon (default as for serve)
    #[argh(option)]
    pub state_dir: Option<String>,
    /// host name used for the sender when -f is not given and in the Received: header
    #[argh(option)]
    pub hostname: Option<String>,
    /// recipients
    #[argh(positional, greedy)]
    pub recipients: Vec<String>,
}

#[derive(FromArgs, Debug)]
/// Inspect and steer the queue (safe while the daemon runs).
#[argh(subcommand, name = "queue")]
pub struct QueueArgs {
    /// state directory of the daemon (default as for serve)
    #[argh(option)]
    pub state_dir: Option<String>,
    #[argh(subcommand)]
    pub action: QueueAction,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum QueueAction {
    List(QueueList),
    Show(QueueShow),
    Delete(QueueDelete),
    Flush(QueueFlush),
}

#[derive(FromArgs, Debug)]
/// List queued messages, like mailq.
#[argh(subcommand, name = "list")]
pub struct QueueList {}

#[derive(FromArgs, Debug)]
/// Print a queued message with its envelope and delivery status.
#[argh(subcommand, name = "show")]
pub struct QueueShow {
    /// queue ID
    #[argh(positional)]
    pub id: String,
}

#[derive(FromArgs, Debug)]
/// Delete a queued message without delivering it.
#[argh(subcommand, name = "delete")]
pub struct QueueDelete {
    /// queue ID
    #[argh(positional)]
    pub id: String,
}

#[derive(FromArgs, Debug)]
/// Ask the running daemon to retry every deferred message now.
#[argh(subcommand, name = "flush")]
pub struct QueueFlush {}

#[derive(FromArgs, Debug)]
/// Print the compiled cipher profile and the effective suites per protocol.
#[argh(subcommand, name = "tls-info")]
pub struct TlsInfoArgs {}

#[derive(FromArgs, Debug)]
/// Print an --auth-file line for USER. The password is read twice without echo from a
/// terminal, or as one line from standard input (for scripts).
#[argh(subcommand, name = "passwd")]
pub struct PasswdArgs {
    /// the user name clients give in AUTH
    #[argh(positional)]
    pub user: String,
    /// PBKDF2-SHA256 rounds (default 20000: cheap on a router, costly to guess)
    #[argh(option, default = "crate::auth::DEFAULT_ITERATIONS")]
    pub iterations: u32,
}

#[derive(FromArgs, Debug, Default)]
/// Resolve DEST, connect and report the TLS outcome under the policy table, like
/// posttls-finger. DEST is a domain (MX lookup), [host]:port or host:port.
#[argh(subcommand, name = "check-tls")]
pub struct CheckTlsArgs {
    /// destination: example.com, [mx.example.com]:25 or 192.0.2.7:2525
    #[argh(positional)]
    pub dest: String,
    /// name sent in EHLO (default: the system host name)
    #[argh(option)]
    pub hostname: Option<String>,
    /// send all non-local mail via this host: [HOST]:PORT (brackets: no MX lookup)
    #[argh(option)]
    pub relayhost: Option<String>,
    /// per-domain next hops, lines 'domain  [host]:port' (local domains too: relayed)
    #[argh(option)]
    pub transport: Option<String>,
    /// outbound per-destination TLS policy table (Postfix smtp_tls_policy_maps syntax)
    #[argh(option)]
    pub tls_policy: Option<String>,
    /// outbound TLS level when the policy table has no match: none, may, encrypt, dane,
    /// dane-only, fingerprint, verify or secure (default may)
    #[argh(option, default = "String::from(\"may\")")]
    pub tls_default_level: String,
    /// trust anchors (PEM bundle) for the verify and secure levels (default: system store)
    #[argh(option)]
    pub tls_ca_file: Option<String>,
    /// directory of hashed CA certificates for verify and secure (default: system store)
    #[argh(option)]
    pub tls_ca_dir: Option<String>,
    /// digest of fingerprint-level matches: sha256, sha1 or md5 (default sha256)
    #[argh(option, default = "String::from(\"sha256\")")]
    pub tls_fingerprint_digest: String,
    /// client certificate (PEM chain) presented to every destination
    #[argh(option)]
    pub tls_client_cert: Option<String>,
    /// key of --tls-client-cert
    #[argh(option)]
    pub tls_client_key: Option<String>,
    /// DNS server to ask, ADDR[:PORT], trusted for the DNSSEC AD bit (default: the
    /// first nameserver in /etc/resolv.conf)
    #[argh(option)]
    pub resolver: Option<String>,
    /// port used for MX deliveries (default 25; for tests)
    #[argh(option, default = "25")]
    pub mx_port: u16,
}

/// Rewrites a traditional sendmail command line into the argh form: `-oi` → `-i`,
/// `-ffrom` → `-f from`, `-Fname` → `-F name`, and drops options that are meaningless
/// here (`-odb`, `-odi`, `-oem`, `-oee`, `-U`, `-v`...), as Postfix's sendmail does.
pub fn normalize_sendmail_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-oi" | "-i" => out.push("-i".to_string()),
            "-t" => out.push("-t".to_string()),
            "-f" | "-F" | "-r" => {
                out.push(if a == "-F" { "-F" } else { "-f" }.to_string());
                if let Some(v) = it.next() {
                    out.push(v.clone());
                }
            }
            "--" => {
                out.push("--".to_string());
                out.extend(it.by_ref().cloned());
            }
            s if s.starts_with("--") => {
                out.push(a.clone());
                if matches!(s, "--state-dir" | "--hostname") {
                    if let Some(v) = it.next() {
                        out.push(v.clone());
                    }
                }
            }
            s if s.starts_with("-f") || s.starts_with("-r") => {
                out.push("-f".to_string());
                out.push(s[2..].to_string());
            }
            s if s.starts_with("-F") => {
                out.push("-F".to_string());
                out.push(s[2..].to_string());
            }
            s if s.starts_with("-o") || s.starts_with("-B") || s.starts_with("-N") => {
                // -oX options, -B body type, -N dsn: accepted and ignored.
                if matches!(s, "-B" | "-N" | "-R" | "-V") {
                    it.next();
                }
            }
            "-U" | "-v" | "-n" | "-m" | "-em" | "-ee" | "-bm" => {}
            _ => out.push(a.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Vec<String> {
        normalize_sendmail_args(&s.split(' ').map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn sendmail_compat_flags() {
        assert_eq!(
            norm("-oi -fcron@host -odb a@b"),
            ["-i", "-f", "cron@host", "a@b"]
        );
        assert_eq!(
            norm("-t -i -F Cron -f x@y"),
            ["-t", "-i", "-F", "Cron", "-f", "x@y"]
        );
        assert_eq!(norm("--state-dir /s -U a@b"), ["--state-dir", "/s", "a@b"]);
    }
}
