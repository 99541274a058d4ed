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
    Newaliases(NewaliasesArgs),
    Queue(QueueArgs),
    TlsInfo(TlsInfoArgs),
    CheckTls(CheckTlsArgs),
    Passwd(PasswdArgs),
    Cert(CertArgs),
    Dkim(DkimArgs),
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
    /// when started as root: the user to run as once the listeners are bound and the
    /// files opened (default tinymta if that user exists; otherwise stays root, with a
    /// warning)
    #[argh(option)]
    pub user: Option<String>,
    /// domain delivered locally, repeatable (default: the host name)
    #[argh(option)]
    pub domain: Vec<String>,
    /// root of the local Maildirs: DIR/<domain>/<local-part>/ (default <state-dir>/mail)
    #[argh(option)]
    pub mail_dir: Option<String>,
    /// aliases for every local domain, /etc/aliases syntax: 'name: target, target',
    /// targets local names or addresses (|command, /file and :include: are refused);
    /// expanded when mail is queued, re-read on SIGHUP
    #[argh(option)]
    pub aliases: Option<String>,
    /// whole-address aliases, Postfix virtual(5) syntax: 'info@example.org  a@x, b@y',
    /// '@example.org  catchall@x'; a domain with entries is accepted from anyone (for
    /// those entries); re-read on SIGHUP
    #[argh(option, long = "virtual")]
    pub virtual_map: Option<String>,
    /// local users, local parts or addresses one a line; with it, --aliases or
    /// --virtual, a local recipient in none of them gets 550 5.1.1 at RCPT (default:
    /// every local part is accepted); re-read on SIGHUP
    #[argh(option)]
    pub local_recipients: Option<String>,
    /// domain of the SRS addresses that forwarded mail from foreign senders is sent
    /// with, and bounces to them are taken back at (default: the first --domain); SRS
    /// is on with this, --aliases or --virtual; the key is <state-dir>/srs.secret,
    /// made on first start
    #[argh(option)]
    pub srs_domain: Option<String>,
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
    /// ask TLS clients for a certificate and log its subject and fingerprints
    /// (Postfix smtpd_tls_ask_ccert); a client without one is served as before
    #[argh(switch)]
    pub tls_ask_ccert: bool,
    /// client network, CIDR, repeatable, whose clients must present a certificate that
    /// verifies against --tls-ccert-ca-file: MAIL gets 530 5.7.0 otherwise (implies
    /// --tls-ask-ccert)
    #[argh(option)]
    pub tls_require_ccert: Vec<String>,
    /// CA certificates (PEM bundle) that client certificates are verified against
    /// (no default: without it no client certificate is Trusted)
    #[argh(option)]
    pub tls_ccert_ca_file: Option<String>,
    /// client certificates that may relay like --relay-network: a file of certificate
    /// or public-key fingerprints, one a line, in the --tls-fingerprint-digest
    /// (Postfix relay_clientcerts; implies --tls-ask-ccert)
    #[argh(option)]
    pub relay_ccert: Option<String>,
    /// DKIM signing key DOMAIN:SELECTOR:KEYFILE (made by `tinymta dkim keygen`),
    /// repeatable, an RSA and an Ed25519 key per domain at most: mail from logged-in,
    /// local and --relay-network clients whose From: domain (after --sender-rewrite)
    /// has a key is signed when queued; re-read on SIGHUP
    #[argh(option)]
    pub dkim_key: Vec<String>,
    /// users for SMTP AUTH: lines made by `tinymta passwd USER` (default: no AUTH)
    #[argh(option)]
    pub auth_file: Option<String>,
    /// TLS on --smtp listeners: none, may or encrypt (default may)
    #[argh(option, default = "String::from(\"may\")")]
    pub tls_level: String,
    /// largest message accepted, in bytes (default 10240000)
    #[argh(option, default = "10_240_000")]
    pub max_message_size: u64,
    /// bytes the queue's file system must keep free, as Postfix's queue_minfree: below
    /// it MAIL gets 452 4.3.1 until space returns (default 2 x --max-message-size; 0:
    /// no check)
    #[argh(option)]
    pub queue_min_free: Option<u64>,
    /// most concurrent SMTP sessions (default 1000)
    #[argh(option, default = "1000")]
    pub max_sessions: usize,
    /// most concurrent sessions from one client address (default 100)
    #[argh(option, default = "100")]
    pub max_sessions_per_ip: usize,
    /// most recipients in one message (default 1000)
    #[argh(option, default = "1000")]
    pub max_recipients: usize,
    /// send all non-local mail via this host: [HOST]:PORT (brackets: no MX lookup;
    /// STARTTLS), or smtps:[HOST]:PORT for TLS from the first byte (port 465)
    #[argh(option)]
    pub relayhost: Option<String>,
    /// per-domain next hops, lines 'domain  [host]:port' or 'domain
    /// smtps:[host]:465' (local domains too: relayed)
    #[argh(option)]
    pub transport: Option<String>,
    /// outbound per-destination TLS policy table (Postfix smtp_tls_policy_maps syntax)
    #[argh(option)]
    pub tls_policy: Option<String>,
    /// smarthost logins (Postfix smtp_sasl_password_maps syntax), lines
    /// '[smtp.example.com]:587  user:password', or user:oauth2:file:/path or
    /// user:oauth2:command:/program args for an OAuth 2.0 token; sent only over TLS at
    /// policy level encrypt or higher (or smtps:); the file must be mode 0600;
    /// re-read on SIGHUP
    #[argh(option)]
    pub relay_credentials: Option<String>,
    /// next hop by envelope sender (Postfix sender_dependent_relayhost_maps), lines
    /// 'alerts@example.org  [smtp.example.com]:587' or '@example.net
    /// smtps:[mail.example.net]:465', before --relayhost; --relay-credentials is then
    /// looked up by sender first
    #[argh(option)]
    pub sender_relay: Option<String>,
    /// sender addresses of mail leaving over SMTP (Postfix smtp_generic_maps), lines
    /// 'root@router.lan  alerts@example.com' or '@router.lan  @example.com': envelope
    /// sender, From:, Sender: and Reply-To:; local deliveries keep the original;
    /// re-read on SIGHUP
    #[argh(option)]
    pub sender_rewrite: Option<String>,
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
    /// apply the MTA-STS policies (RFC 8461) of recipient domains the --tls-policy
    /// table does not list: yes or no (default yes)
    #[argh(option)]
    pub mta_sts: Option<String>,
    /// where TLS-failure alerts go (at most one per destination per hour)
    #[argh(option)]
    pub alert_rcpt: Option<String>,
    /// send the daily TLS reports (RFC 8460) to the domains that ask for them: yes or
    /// no (default yes)
    #[argh(option)]
    pub tls_rpt: Option<String>,
    /// organization-name of the TLS reports (default: the host name)
    #[argh(option)]
    pub tls_rpt_org: Option<String>,
    /// contact-info of the TLS reports, an address; its domain is the submitter and
    /// the From: (default postmaster@HOSTNAME)
    #[argh(option)]
    pub tls_rpt_contact: Option<String>,
    /// reporting period in seconds instead of the UTC day (for tests)
    #[argh(option, hidden_help)]
    pub tls_rpt_interval: Option<u64>,
    /// seconds a queued message is retried before it bounces (default 432000, 5 days)
    #[argh(option, default = "432_000")]
    pub queue_lifetime: u64,
    /// seconds a message waits in the queue before its sender gets a delay warning
    /// (DSN, once per recipient; default 14400, 4 hours; 0: never)
    #[argh(option, default = "14_400")]
    pub delay_warning_time: u64,
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
    /// seconds a TLS handshake (STARTTLS or port 465) may take before the connection
    /// is dropped (default 30)
    #[argh(option, default = "30")]
    pub tls_handshake_timeout: u64,
    /// refuse mail from outside --relay-network whose SPF result is fail, at RCPT
    /// (550 5.7.23); without it SPF is only reported in Authentication-Results
    #[argh(switch)]
    pub spf_reject: bool,
    /// refuse mail from outside --relay-network that fails DMARC where the From
    /// domain's policy is p=reject, after DATA (550 5.7.1); without it (and for
    /// p=quarantine) DMARC is only reported in Authentication-Results
    #[argh(switch)]
    pub dmarc_reject: bool,
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
    /// state directory of the daemon (default /var/spool/tinymta if it exists, for
    /// any user; otherwise as for serve)
    #[argh(option)]
    pub state_dir: Option<String>,
    /// host name used for the sender when -f is not given and in the Received: header
    #[argh(option)]
    pub hostname: Option<String>,
    /// delivery status notifications wanted for every recipient: 'never', or any of
    /// 'success,delay,failure' (DSN NOTIFY, RFC 3461; default failure and delay)
    #[argh(option, short = 'N')]
    pub notify: Option<String>,
    /// what a failure notification returns: 'full' message or 'hdrs' (DSN RET)
    #[argh(option, short = 'R')]
    pub ret: Option<String>,
    /// envelope ID the notifications quote (DSN ENVID; printable ASCII, 100 at most)
    #[argh(option, short = 'V')]
    pub envid: Option<String>,
    /// recipients
    #[argh(positional, greedy)]
    pub recipients: Vec<String>,
}

#[derive(FromArgs, Debug, Default)]
/// Check the address tables `serve` reads and print every problem as FILE:LINE:
/// syntax, refused |command, /file and :include: targets, alias loops. Exit 0 when all
/// is well, 65 for problems, 78 for a file that cannot be read. Also run as
/// `newaliases` through a symbolic link. Unlike Postfix's newaliases it builds no
/// database: tinymta reads the files themselves, at start and on SIGHUP.
#[argh(subcommand, name = "newaliases")]
pub struct NewaliasesArgs {
    /// aliases file, as for serve (default /etc/aliases when no table is given)
    #[argh(option)]
    pub aliases: Option<String>,
    /// virtual alias table, as for serve
    #[argh(option, long = "virtual")]
    pub virtual_map: Option<String>,
    /// local recipient table, as for serve
    #[argh(option)]
    pub local_recipients: Option<String>,
    /// local domain, repeatable, as for serve (default: the system host name)
    #[argh(option)]
    pub domain: Vec<String>,
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
    #[argh(option)]
    pub iterations: Option<u32>,
}

#[derive(FromArgs, Debug, Default)]
/// Resolve DEST, connect and report the TLS outcome under the policy table, like
/// posttls-finger. DEST is a domain (MX lookup), [host]:port or host:port.
#[argh(subcommand, name = "check-tls")]
pub struct CheckTlsArgs {
    /// destination: example.com, [mx.example.com]:25, 192.0.2.7:2525 or
    /// smtps:[smtp.example.com]:465 (implicit TLS)
    #[argh(positional)]
    pub dest: String,
    /// name sent in EHLO (default: the system host name)
    #[argh(option)]
    pub hostname: Option<String>,
    /// send all non-local mail via this host: [HOST]:PORT (brackets: no MX lookup;
    /// STARTTLS), or smtps:[HOST]:PORT for TLS from the first byte (port 465)
    #[argh(option)]
    pub relayhost: Option<String>,
    /// per-domain next hops, lines 'domain  [host]:port' or 'domain
    /// smtps:[host]:465' (local domains too: relayed)
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
    /// apply the MTA-STS policies (RFC 8461) of recipient domains the --tls-policy
    /// table does not list: yes or no (default yes)
    #[argh(option)]
    pub mta_sts: Option<String>,
}

/// The arguments of `sendmail` (after the program or subcommand name) as argh reads
/// them: the traditional options normalised, and `--state-dir`/`--hostname` moved
/// before the recipients, where argh looks for them.
pub fn sendmail_command_line(args: &[String]) -> Vec<String> {
    let mut v = vec!["sendmail".to_string()];
    v.extend(hoist_options(
        &normalize_sendmail_args(args),
        &["--state-dir", "--hostname"],
    ));
    v
}

/// Moves each `OPTION VALUE` (or `OPTION=VALUE`) named in `options` to the front, in
/// order, so a flag of a command may be typed after its subcommand or its positional
/// arguments. Nothing after `--` moves.
pub fn hoist_options(args: &[String], options: &[&str]) -> Vec<String> {
    let (mut front, mut rest) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            rest.push(a.clone());
            rest.extend(it.by_ref().cloned());
        } else if options.contains(&a.as_str()) {
            front.push(a.clone());
            front.extend(it.next().cloned());
        } else if let Some((name, value)) = a.split_once('=').filter(|(n, _)| options.contains(n)) {
            front.push(name.to_string());
            front.push(value.to_string());
        } else {
            rest.push(a.clone());
        }
    }
    front.extend(rest);
    front
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
            // The DSN options (Postfix: -N notify, -R ret, -V envid), value attached or
            // not.
            "-N" | "-R" | "-V" => {
                out.push(a.clone());
                out.extend(it.next().cloned());
            }
            s if s.len() > 2
                && (s.starts_with("-N") || s.starts_with("-R") || s.starts_with("-V")) =>
            {
                out.push(s[..2].to_string());
                out.push(s[2..].to_string());
            }
            s if s.starts_with("-o") || s.starts_with("-B") => {
                // -oX options, -B body type: accepted and ignored.
                if s == "-B" {
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

    #[test]
    fn flags_typed_after_the_subcommand_move_before_it() {
        let v = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            hoist_options(&v("list --state-dir /s"), &["--state-dir"]),
            ["--state-dir", "/s", "list"]
        );
        assert_eq!(
            hoist_options(&v("show --state-dir=/s ID"), &["--state-dir"]),
            ["--state-dir", "/s", "show", "ID"]
        );
        assert_eq!(
            hoist_options(&v("a@b -- --state-dir"), &["--state-dir"]),
            ["a@b", "--", "--state-dir"]
        );
        assert_eq!(
            sendmail_command_line(&v("-oi root --state-dir /s --hostname h")),
            [
                "sendmail",
                "--state-dir",
                "/s",
                "--hostname",
                "h",
                "-i",
                "root"
            ]
        );
    }
}

#[derive(FromArgs, Debug)]
/// Make, inspect and install TLS certificates: self-signed certificates, requests for a
/// CA, installation for `serve --tls-cert/--tls-key`, and fingerprints for policy
/// tables and DANE TLSA records.
#[argh(
    subcommand,
    name = "cert",
    example = "tinymta cert selfsigned --cn mx.example.com --org 'Example Ltd' --key-size 4096",
    example = "tinymta cert csr --cn mx.example.com --country IT --org 'Example Ltd' --email admin@example.com",
    example = "tinymta cert install mx.example.com.crt --key mx.example.com.key --chain ca-chain.pem",
    example = "tinymta cert fingerprint --remote mx.example.org:25 --starttls"
)]
pub struct CertArgs {
    #[argh(subcommand)]
    pub action: CertAction,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum CertAction {
    SelfSigned(SelfSignedArgs),
    Csr(CsrArgs),
    Install(InstallArgs),
    Fingerprint(FingerprintArgs),
}

/// Declares a subcommand struct with the subject and key flags `selfsigned` and `csr`
/// share (argh has no flattening), so both document them with the same words.
macro_rules! key_request_args {
    ($(#[$($meta:tt)*])* pub struct $name:ident { $($fields:tt)* }) => {
        // Everything passes through as plain tokens: argh's derive cannot look inside
        // `meta` or `ty` fragments (it would not see that a type is an Option).
        $(#[$($meta)*])*
        pub struct $name {
            /// common name: the host name clients connect to, e.g. mx.example.com; also
            /// the first subjectAltName (at most 64 characters)
            #[argh(option)]
            pub cn: String,
            /// country: the two-letter ISO 3166 code, e.g. IT
            #[argh(option)]
            pub country: Option<String>,
            /// locality: town or city
            #[argh(option)]
            pub locality: Option<String>,
            /// organisation name
            #[argh(option)]
            pub org: Option<String>,
            /// organisational unit, e.g. IT
            #[argh(option)]
            pub ou: Option<String>,
            /// email address shown in the subject (emailAddress)
            #[argh(option)]
            pub email: Option<String>,
            /// another DNS name or IP address for subjectAltName, repeatable
            #[argh(option)]
            pub san: Vec<String>,
            /// RSA key size: 2048, 3072 or 4096 (default 2048; 4096 can take minutes on
            /// a router)
            #[argh(option)]
            pub key_size: Option<u32>,
            /// make an ECDSA P-256 key instead of RSA
            #[argh(switch)]
            pub ec: bool,
            /// private key file to write, mode 0600 (default ./<cn>.key)
            #[argh(option)]
            pub out_key: Option<String>,
            /// replace output files that already exist
            #[argh(switch)]
            pub force: bool,
            $($fields)*
        }

        impl $name {
            /// The subject and key flags, borrowed, for building the request.
            pub fn key_request(&self) -> KeyRequestFlags<'_> {
                KeyRequestFlags {
                    cn: &self.cn,
                    country: self.country.as_deref(),
                    locality: self.locality.as_deref(),
                    org: self.org.as_deref(),
                    ou: self.ou.as_deref(),
                    email: self.email.as_deref(),
                    san: &self.san,
                    key_size: self.key_size,
                    ec: self.ec,
                }
            }
        }
    };
}

key_request_args! {
    #[derive(FromArgs, Debug)]
    /// Generate a private key and a self-signed certificate for it (SAN: the common name
    /// and every --san). Publish its DANE 3 1 1 record or give peers its fingerprint.
    #[argh(subcommand, name = "selfsigned")]
    pub struct SelfSignedArgs {
        /// days the certificate is valid (default 3650, like the demonstration
        /// certificate; DANE-EE records ignore the expiry date)
        #[argh(option, default = "3650")]
        pub days: u32,
        /// certificate file to write (default ./<cn>.pem)
        #[argh(option)]
        pub out_cert: Option<String>,
    }
}

key_request_args! {
    #[derive(FromArgs, Debug)]
    /// Generate a private key and a certificate signing request (PKCS#10, asking for the
    /// common name and every --san) to hand to a CA; install the certificate it returns
    /// with `tinymta cert install CERT --key KEY`.
    #[argh(subcommand, name = "csr")]
    pub struct CsrArgs {
        /// request file to write (default ./<cn>.csr)
        #[argh(option)]
        pub out_csr: Option<String>,
    }
}

#[derive(FromArgs, Debug)]
/// Check a certificate and install it for `serve --tls-cert/--tls-key`: the key must
/// match, each chain certificate must have issued the one before, and every certificate
/// must be within its validity dates. Files are replaced atomically; a running daemon
/// picks them up on SIGHUP.
#[argh(subcommand, name = "install")]
pub struct InstallArgs {
    /// the certificate, PEM or DER; a PEM file may also hold the chain (leaf first) and
    /// the key
    #[argh(positional)]
    pub cert: String,
    /// private key, PEM or DER (default: a key in CERT, else the key installed now if
    /// it matches, as when renewing with the same key)
    #[argh(option)]
    pub key: Option<String>,
    /// intermediate certificates, PEM, the one that issued CERT first
    #[argh(option)]
    pub chain: Option<String>,
    /// install into DIR/tls/cert.pem and DIR/tls/key.pem (default as for serve:
    /// /var/spool/tinymta as root, ./tinymta-state otherwise)
    #[argh(option)]
    pub state_dir: Option<String>,
    /// install the certificate chain to this file instead (with --dest-key), e.g. an
    /// ECDSA certificate kept next to the RSA one (serve takes --tls-cert/--tls-key twice)
    #[argh(option)]
    pub dest_cert: Option<String>,
    /// install the private key to this file instead (with --dest-cert), mode 0600
    #[argh(option)]
    pub dest_key: Option<String>,
}

#[derive(FromArgs, Debug)]
/// Print the SHA-256, SHA-1 and MD5 fingerprints of a certificate and of its public key
/// (SPKI) in colon-hex, as policy tables take them (match=), and the DANE TLSA 3 1 1
/// record to publish.
#[argh(subcommand, name = "fingerprint")]
pub struct FingerprintArgs {
    /// certificate file, PEM or DER (the first certificate when it holds a chain)
    #[argh(positional)]
    pub file: Option<String>,
    /// connect to this server, host:port or [v6-address]:port (port 25 when omitted),
    /// and print its certificate's fingerprints
    #[argh(option)]
    pub remote: Option<String>,
    /// with --remote: EHLO and STARTTLS first (the default unless the port is 465)
    #[argh(switch)]
    pub starttls: bool,
    /// with --remote: TLS from the first byte, as on port 465 (the default there)
    #[argh(switch)]
    pub smtps: bool,
}

/// The subject and key flags as given.
pub struct KeyRequestFlags<'a> {
    pub cn: &'a str,
    pub country: Option<&'a str>,
    pub locality: Option<&'a str>,
    pub org: Option<&'a str>,
    pub ou: Option<&'a str>,
    pub email: Option<&'a str>,
    pub san: &'a [String],
    pub key_size: Option<u32>,
    pub ec: bool,
}

#[derive(FromArgs, Debug)]
/// DKIM signing keys: make one and print the DNS record to publish, or check that the
/// published record holds the key.
#[argh(
    subcommand,
    name = "dkim",
    example = "tinymta dkim keygen --domain example.com --selector mail2025",
    example = "tinymta dkim keygen --domain example.com --selector ed2025 --ed25519",
    example = "tinymta dkim check --domain example.com --selector mail2025 --key mail2025.example.com.key"
)]
pub struct DkimArgs {
    #[argh(subcommand)]
    pub action: DkimAction,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum DkimAction {
    Keygen(DkimKeygenArgs),
    Check(DkimCheckArgs),
}

#[derive(FromArgs, Debug)]
/// Generate a DKIM signing key (RSA 2048 by default, or Ed25519), write it with mode
/// 0600, and print the TXT record to publish at SELECTOR._domainkey.DOMAIN.
#[argh(subcommand, name = "keygen")]
pub struct DkimKeygenArgs {
    /// the signing domain (d=): the domain of the From: addresses signed
    #[argh(option)]
    pub domain: String,
    /// the selector (s=), e.g. mail2025: a new selector per new key lets the old
    /// record stay until mail signed with it has been delivered
    #[argh(option)]
    pub selector: String,
    /// make an Ed25519 key (RFC 8463) instead of RSA; not every receiver checks
    /// Ed25519 yet, so sign with an RSA key too
    #[argh(switch)]
    pub ed25519: bool,
    /// RSA key size: 1024, 2048, 3072 or 4096 (default 2048; some DNS hosting refuses
    /// the long records of 4096-bit keys)
    #[argh(option)]
    pub bits: Option<u32>,
    /// key file to write, mode 0600 (default ./SELECTOR.DOMAIN.key)
    #[argh(option)]
    pub out: Option<String>,
    /// replace the key file if it exists
    #[argh(switch)]
    pub force: bool,
}

#[derive(FromArgs, Debug)]
/// Look up SELECTOR._domainkey.DOMAIN and say whether it publishes the public half of
/// the key in --key, by the rules receivers apply. Exit 0 when it does, 65 when it does
/// not (no record, another key, a revoked or unusable one), 75 when DNS fails.
#[argh(subcommand, name = "check")]
pub struct DkimCheckArgs {
    /// the signing domain (d=)
    #[argh(option)]
    pub domain: String,
    /// the selector (s=)
    #[argh(option)]
    pub selector: String,
    /// the private key file (PEM: PKCS#8, or PKCS#1 for RSA)
    #[argh(option)]
    pub key: String,
    /// DNS server to ask, ADDR[:PORT] (default: the first nameserver in
    /// /etc/resolv.conf)
    #[argh(option)]
    pub resolver: Option<String>,
}
