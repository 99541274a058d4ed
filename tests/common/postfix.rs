//! A private Postfix instance as a test peer.
//!
//! Each instance lives in its own directory under /tmp:
//!
//! ```text
//! DIR/conf/{main.cf,master.cf}   config_directory (what `postfix -c` gets)
//! DIR/queue/                     queue_directory (pid file: queue/pid/master.pid)
//! DIR/data/                      data_directory (owned by `postfix`)
//! DIR/postfix.log                maillog_file (written by postlogd)
//! DIR/tls/                       generated server certificate when asked for
//! ```
//!
//! Config and queue are siblings, not nested: `postfix-script` warns about every queue
//! directory "not owned by root" when the queue sits inside the config directory.
//!
//! Gotchas this module handles:
//! - `postfix start` exits 0 and prints nothing when stderr is not a TTY, even when the
//!   master never started: we wait for "daemon started" in the maillog, and on failure
//!   rerun `postfix check` under `script` (a pty) to put Postfix's complaint into the error.
//! - "mail for [127.0.0.1]:2525 loops back to myself": the smtp client treats every
//!   address in `inet_interfaces` as itself, also for a `[ip]:port` relayhost.
//!   `inet_interfaces` must name an address of a real interface (127.0.0.1 or ::1, not
//!   127.0.0.7), so we set it to `[::1]` (with `inet_protocols = all`) when ::1 exists;
//!   then no IPv4 loopback address counts as "myself" and relaying to 127.0.0.1 works.
//!   The smtpd listener is an explicit `127.0.0.x:port` master.cf entry, which does not
//!   depend on `inet_interfaces`. Without ::1 we fall back to 127.0.0.1 (then a
//!   relayhost on 127.0.0.1 would bounce: give peers other 127.x addresses).
//! - Every Postfix program sleeps (300 ms steps, up to ~2 s) until main.cf/master.cf
//!   are a couple of seconds old (util/load_file.c "cool down"): we date freshly
//!   written config files 10 s back, so start-up takes ~0.5 s instead of ~2.7 s.
//! - chroot is off for every service; `smtpd_peername_lookup = no` so no reverse DNS
//!   query leaves the machine for 127.x clients.
//! - Retries are fast (`queue_run_delay`, backoff 1-2 s) so a test that starts the
//!   receiving side late, or calls [`Postfix::flush`], does not wait minutes.
//! - SASL (an authenticated smarthost, [`PostfixOptions::sasl_users`]): Cyrus with the
//!   sasldb auxprop plugin and no saslauthd, as TESTBENCH.md describes — the `smtpd`
//!   application's config in `DIR/conf/sasl/smtpd.conf` (Debian's smtpd reads
//!   `$config_directory/sasl/` and ignores `cyrus_sasl_config_path`), users in
//!   `DIR/conf/sasl/sasldb2` owned by `postfix` (smtpd reads it unprivileged); logins are
//!   `user@realm`. AUTH is offered only by services that set
//!   `smtpd_sasl_auth_enable=yes`.
//!
//! Every wait is bounded; `Drop` stops the instance (`postfix stop`, then SIGKILL to the
//! master's process group) and removes the directory unless `TINYMTA_KEEP_POSTFIX` is set.
//! The first `start` in a process also removes instances left by test processes that
//! died without dropping theirs (see `sweep_stale_instances`).

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::certs::{self_signed_with, CertPair, Key};
use super::{free_port, output_text, run_bounded, run_checked, send_signal};

/// How a private Postfix instance is set up.
#[derive(Clone, Debug)]
pub struct PostfixOptions {
    /// smtpd listener "127.0.0.x:port"; `None` for a client-only instance (no smtpd).
    pub listen: Option<String>,
    /// `relayhost`, e.g. "[127.0.0.1]:2525".
    pub relayhost: Option<String>,
    /// Sink: accept mail for any domain from 127.0.0.0/8, queue it, then discard it
    /// (`default_transport = discard`, as the TESTBENCH baselines).
    pub sink: bool,
    /// Offer STARTTLS on the smtpd listener with a generated self-signed certificate
    /// (`smtpd_tls_security_level = may`); see [`Postfix::cert_path`].
    pub smtpd_tls: bool,
    /// The smtpd certificate (e.g. signed by a test CA) instead of the generated one;
    /// implies `smtpd_tls`.
    pub smtpd_cert: Option<CertPair>,
    /// SASL logins (`user@realm`, password) smtpd accepts where a service enables AUTH.
    pub sasl_users: Vec<(String, String)>,
    /// `myhostname`; default "pfN.test".
    pub hostname: Option<String>,
    /// Extra main.cf settings; they replace defaults of the same name.
    pub main_cf: Vec<(String, String)>,
    /// Extra `-o name=value` overrides for the smtpd listener.
    pub smtpd_overrides: Vec<(String, String)>,
    /// Extra master.cf lines, verbatim.
    pub master_cf: Vec<String>,
    /// Bound on start-up (default 20 s).
    pub start_timeout: Duration,
}

impl Default for PostfixOptions {
    fn default() -> Self {
        PostfixOptions {
            listen: None,
            relayhost: None,
            sink: false,
            smtpd_tls: false,
            smtpd_cert: None,
            sasl_users: Vec::new(),
            hostname: None,
            main_cf: Vec::new(),
            smtpd_overrides: Vec::new(),
            master_cf: Vec::new(),
            start_timeout: Duration::from_secs(20),
        }
    }
}

impl PostfixOptions {
    /// A queue-and-discard sink listening on `listen` ("127.0.0.x:port").
    pub fn sink(listen: &str) -> Self {
        PostfixOptions {
            listen: Some(listen.to_string()),
            sink: true,
            ..Default::default()
        }
    }

    /// A client-only instance (no listener) that sends everything to `relayhost`.
    pub fn client(relayhost: &str) -> Self {
        PostfixOptions {
            relayhost: Some(relayhost.to_string()),
            ..Default::default()
        }
    }

    /// Builder helper: add a main.cf setting.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.main_cf.push((name.to_string(), value.to_string()));
        self
    }
}

/// A running private Postfix instance. Stopped and removed on drop.
pub struct Postfix {
    /// Instance root (see module docs).
    pub dir: PathBuf,
    /// config_directory, the argument to `postfix -c`, `postqueue -c`, `sendmail -C`.
    pub conf_dir: PathBuf,
    /// smtpd listener "127.0.0.x:port", or "" for a client-only instance.
    pub listen: String,
    /// `myhostname`.
    pub hostname: String,
    /// maillog_file.
    pub log_path: PathBuf,
    /// PID of the master process.
    pub master_pid: u32,
    command_dir: PathBuf,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn next_id() -> u32 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// A fresh loopback address 127.A.B.C (never 127.0.0.1), distinct per process and call,
/// so parallel tests and parallel test binaries do not share addresses.
pub fn unique_loopback() -> String {
    let pid = std::process::id();
    let n = next_id();
    // A in 64..=191 from the pid; B.C from pid bits and a per-process counter.
    let a = 64 + (pid % 128);
    let b = ((pid / 128) % 64) * 4 + (n / 250) % 4;
    let c = 2 + n % 250;
    format!("127.{a}.{b}.{c}")
}

/// "127.x.y.z:port" on a fresh loopback address with a free port.
pub fn unique_listen_addr() -> String {
    let ip = unique_loopback();
    let port = free_port(&ip);
    format!("{ip}:{port}")
}

/// Whether the loopback interface has ::1.
fn have_ipv6_loopback() -> bool {
    fs::read_to_string("/proc/net/if_inet6")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("00000000000000000000000000000001"))
        })
        .unwrap_or(false)
}

fn postconf_default(name: &str) -> Option<String> {
    let out = run_bounded(
        Command::new("postconf").args(["-dh", name]),
        None,
        Duration::from_secs(10),
    )
    .ok()?;
    if out.status.success() {
        let v = output_text(&out).trim().to_string();
        if !v.is_empty() {
            return Some(v);
        }
    }
    None
}

/// Is `pid` alive (and not a zombie)?
fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 is the state; the command name (field 2) is in parentheses.
        Ok(s) => s
            .rsplit(')')
            .next()
            .map(|r| !r.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Process group of `pid`.
fn pgid_of(pid: u32) -> Option<u32> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit(')').next()?;
    // After ")": state ppid pgrp ...
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Whether a TCP socket listens on `addr` ("ip:port", IPv4), from /proc/net/tcp.
pub fn is_listening(addr: &str) -> bool {
    let Ok(sa) = addr.parse::<std::net::SocketAddrV4>() else {
        // Not a plain IPv4 address: fall back to connecting.
        return std::net::TcpStream::connect(addr).is_ok();
    };
    // The kernel writes the address in its own byte order; under QEMU the test may be
    // big-endian while the host kernel is little-endian, so accept both orders.
    let octets = sa.ip().octets();
    let forms = [
        format!("{:08X}:{:04X}", u32::from_le_bytes(octets), sa.port()),
        format!("{:08X}:{:04X}", u32::from_be_bytes(octets), sa.port()),
        format!("{:08X}:{:04X}", 0u32, sa.port()),
    ];
    fs::read_to_string("/proc/net/tcp")
        .map(|t| {
            t.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && forms.iter().any(|x| f[1] == x.as_str()) && f[3] == "0A"
            })
        })
        .unwrap_or(false)
}

/// Postfix (util/load_file.c) sleeps in steps of 300 ms until main.cf and master.cf
/// are at least about 2 s old ("let the file cool down"): a freshly written config
/// costs every daemon up to 2 s at start-up. Date both files 10 s back.
fn age_config(conf_dir: &Path) -> Result<(), String> {
    let past = std::time::SystemTime::now() - Duration::from_secs(10);
    for f in ["main.cf", "master.cf"] {
        let p = conf_dir.join(f);
        fs::File::options()
            .write(true)
            .open(&p)
            .and_then(|f| f.set_modified(past))
            .map_err(|e| format!("set mtime of {p:?}: {e}"))?;
    }
    Ok(())
}

/// Instances whose test process died without running `Drop` (killed on a timeout,
/// `panic = "abort"`): stop their master and remove their directory. A master counts
/// as ours only if its working directory is that instance's queue directory (the
/// master chdir()s there), so nothing else is ever signalled.
fn sweep_stale_instances() {
    if std::env::var_os("TINYMTA_KEEP_POSTFIX").is_some() {
        return;
    }
    let Ok(rd) = fs::read_dir("/tmp") else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("tinymta-postfix-") else {
            continue;
        };
        let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if owner == std::process::id() || pid_alive(owner) {
            continue;
        }
        let dir = e.path();
        if let Some(m) = read_master_pid(&dir) {
            let cwd = fs::read_link(format!("/proc/{m}/cwd")).ok();
            if pid_alive(m) && cwd.as_deref() == Some(dir.join("queue").as_path()) {
                if pgid_of(m) == Some(m) {
                    send_signal("KILL", &format!("-{m}"));
                } else {
                    send_signal("KILL", &m.to_string());
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

fn read_master_pid(dir: &Path) -> Option<u32> {
    fs::read_to_string(dir.join("queue/pid/master.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Postfix {
    /// Create, configure and start an instance; returns once the master logged
    /// "daemon started" (and, with a listener, the port accepts connections).
    pub fn start(opts: PostfixOptions) -> Result<Postfix, String> {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_stale_instances);
        let id = next_id();
        let dir = PathBuf::from(format!(
            "/tmp/tinymta-postfix-{}-{}",
            std::process::id(),
            id
        ));
        let _ = fs::remove_dir_all(&dir);
        let conf_dir = dir.join("conf");
        let queue_dir = dir.join("queue");
        let data_dir = dir.join("data");
        let tls_dir = dir.join("tls");
        let log_path = dir.join("postfix.log");
        for d in [&conf_dir, &queue_dir, &data_dir] {
            fs::create_dir_all(d).map_err(|e| format!("mkdir {d:?}: {e}"))?;
        }
        let hostname = opts
            .hostname
            .clone()
            .unwrap_or_else(|| format!("pf{id}.test"));
        let command_dir = PathBuf::from(
            postconf_default("command_directory").unwrap_or_else(|| "/usr/sbin".into()),
        );

        // From here on, a half-made instance is cleaned up by Drop.
        let mut pf = Postfix {
            dir: dir.clone(),
            conf_dir: conf_dir.clone(),
            listen: opts.listen.clone().unwrap_or_default(),
            hostname: hostname.clone(),
            log_path: log_path.clone(),
            master_pid: 0,
            command_dir,
        };

        let (inet_interfaces, inet_protocols) = if have_ipv6_loopback() {
            ("[::1]", "all")
        } else {
            ("127.0.0.1", "ipv4")
        };
        let d = |p: &Path| p.display().to_string();
        let mut main: Vec<(String, String)> = vec![
            ("compatibility_level", "3.6".to_string()),
            ("config_directory", d(&conf_dir)),
            ("queue_directory", d(&queue_dir)),
            ("data_directory", d(&data_dir)),
            ("maillog_file", d(&log_path)),
            ("maillog_file_prefixes", d(dir.parent().unwrap())),
            ("myhostname", hostname.clone()),
            ("mydomain", hostname.clone()),
            ("myorigin", "$myhostname".into()),
            ("mydestination", String::new()),
            ("relay_domains", String::new()),
            ("inet_interfaces", inet_interfaces.into()),
            ("inet_protocols", inet_protocols.into()),
            ("mynetworks", "127.0.0.0/8 [::1]/128".into()),
            (
                "smtpd_relay_restrictions",
                "permit_mynetworks, reject_unauth_destination".into(),
            ),
            ("smtpd_peername_lookup", "no".into()),
            ("smtpd_banner", "$myhostname ESMTP Postfix".into()),
            ("alias_maps", String::new()),
            ("alias_database", String::new()),
            ("local_recipient_maps", String::new()),
            ("biff", "no".into()),
            ("append_dot_mydomain", "no".into()),
            ("queue_run_delay", "1s".into()),
            ("minimal_backoff_time", "1s".into()),
            ("maximal_backoff_time", "2s".into()),
            ("smtp_connect_timeout", "5s".into()),
            ("smtp_helo_timeout", "15s".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(r) = &opts.relayhost {
            main.push(("relayhost".into(), r.clone()));
        }
        if opts.sink {
            for t in [
                "default_transport",
                "local_transport",
                "relay_transport",
                "virtual_transport",
            ] {
                main.push((t.into(), "discard".into()));
            }
        }
        if opts.smtpd_tls || opts.smtpd_cert.is_some() {
            fs::create_dir_all(&tls_dir).map_err(|e| format!("mkdir {tls_dir:?}: {e}"))?;
            let pair = match &opts.smtpd_cert {
                Some(pair) => pair.clone(),
                None => self_signed_with(&tls_dir, "cert", &hostname, Key::Ec),
            };
            main.push(("smtpd_tls_security_level".into(), "may".into()));
            main.push(("smtpd_tls_cert_file".into(), d(&pair.cert)));
            main.push(("smtpd_tls_key_file".into(), d(&pair.key)));
            main.push(("smtpd_tls_loglevel".into(), "1".into()));
        }
        if !opts.sasl_users.is_empty() {
            // Debian's smtpd looks in $config_directory/sasl whatever
            // cyrus_sasl_config_path says (measured with strace); both point there.
            let sasl_dir = conf_dir.join("sasl");
            sasl_database(&sasl_dir, &opts.sasl_users)?;
            main.push(("smtpd_sasl_type".into(), "cyrus".into()));
            main.push(("smtpd_sasl_path".into(), "smtpd".into()));
            main.push(("cyrus_sasl_config_path".into(), d(&sasl_dir)));
        }
        for (k, v) in &opts.main_cf {
            main.retain(|(k2, _)| k2 != k);
            main.push((k.clone(), v.clone()));
        }
        let mut main_text = String::new();
        for (k, v) in &main {
            main_text.push_str(&format!("{k} = {v}\n"));
        }
        fs::write(conf_dir.join("main.cf"), main_text).map_err(|e| e.to_string())?;

        // master.cf: the Debian defaults that matter, chroot off everywhere.
        let mut master = String::new();
        if let Some(l) = &opts.listen {
            master.push_str(&format!("{l} inet n - n - - smtpd\n"));
            for (k, v) in &opts.smtpd_overrides {
                master.push_str(&format!("  -o {k}={v}\n"));
            }
        }
        master.push_str(MASTER_CF);
        for l in &opts.master_cf {
            master.push_str(l);
            master.push('\n');
        }
        fs::write(conf_dir.join("master.cf"), master).map_err(|e| e.to_string())?;
        age_config(&conf_dir)?;

        run_checked(
            Command::new("chown").arg("postfix").arg(&data_dir),
            None,
            Duration::from_secs(5),
        )?;

        // `postfix start` creates the missing queue directories with their owners,
        // checks the installation and runs `master -w`.
        pf.postfix_start(opts.start_timeout)?;
        if let Some(l) = &opts.listen {
            let deadline = Instant::now() + Duration::from_secs(5);
            // Look for the LISTEN socket rather than connecting: a probe connection
            // would put "lost connection after CONNECT" into the log.
            while !is_listening(l) {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "postfix started but {l} refuses connections\n{}",
                        pf.log()
                    ));
                }
                sleep(Duration::from_millis(50));
            }
        }
        Ok(pf)
    }

    /// The supported way: `postfix -c DIR start` (creates the queue directories).
    fn postfix_start(&mut self, timeout: Duration) -> Result<(), String> {
        let start_out = run_bounded(
            Command::new(self.command_dir.join("postfix"))
                .arg("-c")
                .arg(&self.conf_dir)
                .arg("start"),
            None,
            timeout,
        )
        .map(|o| (o.status, output_text(&o)));
        let failed = matches!(&start_out, Ok((st, _)) if !st.success());
        self.wait_started(timeout, Some(failed)).map_err(|e| {
            format!(
                "{e}\npostfix start: {start_out:?}\ndiagnostics (postfix check on a pty):\n{}",
                self.diagnose()
            )
        })
    }

    /// Wait for "daemon started" in the log and read the master PID.
    fn wait_started(&mut self, timeout: Duration, failed: Option<bool>) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains("daemon started") {
                break;
            }
            // `postfix start` exited 1 (it still prints nothing without a TTY).
            if failed == Some(true) || Instant::now() >= deadline {
                return Err(format!(
                    "postfix did not start in {}\nlog:\n{}",
                    self.dir.display(),
                    self.log()
                ));
            }
            sleep(Duration::from_millis(20));
        }
        self.master_pid = read_master_pid(&self.dir).ok_or("no master.pid after start")?;
        Ok(())
    }

    /// What Postfix says about its configuration when stderr is a TTY.
    fn diagnose(&self) -> String {
        let cmd = format!(
            "{} -c {} check",
            self.command_dir.join("postfix").display(),
            self.conf_dir.display()
        );
        run_bounded(
            Command::new("script").args(["-qec", &cmd, "/dev/null"]),
            None,
            Duration::from_secs(15),
        )
        .map_or_else(|e| e, |o| output_text(&o))
    }

    /// The `sasl_username=` of every message smtpd accepted (its `client=` line), in
    /// log order; failed logins are not counted.
    pub fn sasl_usernames(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(": client="))
            .filter_map(|l| l.split("sasl_username=").nth(1))
            .map(|rest| rest.split([',', ' ']).next().unwrap_or("").to_string())
            .collect()
    }

    /// Server certificate (PEM) when started with `smtpd_tls`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("tls/cert.pem")
    }

    /// Inject a message with Postfix's own `sendmail -C conf` (through postdrop and
    /// pickup); Postfix then delivers it as configured (e.g. to its relayhost).
    pub fn sendmail(&self, from: &str, to: &str, message: &[u8]) -> Result<(), String> {
        self.sendmail_rcpts(from, &[to], message)
    }

    /// Like [`Postfix::sendmail`] with several recipients.
    pub fn sendmail_rcpts(&self, from: &str, to: &[&str], message: &[u8]) -> Result<(), String> {
        self.sendmail_with(&[], from, to, message)
    }

    /// Like [`Postfix::sendmail_rcpts`] with more sendmail options (`-N success`).
    pub fn sendmail_with(
        &self,
        options: &[&str],
        from: &str,
        to: &[&str],
        message: &[u8],
    ) -> Result<(), String> {
        let mut cmd = Command::new(self.command_dir.join("sendmail"));
        cmd.arg("-C")
            .arg(&self.conf_dir)
            .arg("-i")
            .args(options)
            .arg("-f")
            .arg(from)
            .arg("--")
            .args(to);
        cmd.env("MAIL_CONFIG", &self.conf_dir);
        run_checked(&mut cmd, Some(message), Duration::from_secs(20)).map(|_| ())
    }

    /// The whole maillog so far ("" before postlogd wrote anything).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Current length of the log in bytes: a mark for [`Postfix::wait_log_since`].
    pub fn log_mark(&self) -> usize {
        fs::metadata(&self.log_path)
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    /// Wait until a log line contains `needle`; returns that line. On timeout the error
    /// carries the log.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        self.wait_log_since(0, needle, timeout)
    }

    /// Like [`Postfix::wait_log`], looking only at lines after byte offset `mark`.
    pub fn wait_log_since(
        &self,
        mark: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            let tail = log.get(mark..).unwrap_or("");
            if let Some(line) = tail.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no log line containing {needle:?} within {timeout:?} in {}:\n{}",
                    self.log_path.display(),
                    tail
                ));
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Log lines containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// `postqueue -p` output ("Mail queue is empty" when empty).
    pub fn queue(&self) -> String {
        let mut cmd = Command::new(self.command_dir.join("postqueue"));
        cmd.arg("-c").arg(&self.conf_dir).arg("-p");
        run_bounded(&mut cmd, None, Duration::from_secs(10)).map_or_else(|e| e, |o| output_text(&o))
    }

    /// `postqueue -f`: retry deferred mail now.
    pub fn flush(&self) -> Result<(), String> {
        let mut cmd = Command::new(self.command_dir.join("postqueue"));
        cmd.arg("-c").arg(&self.conf_dir).arg("-f");
        run_checked(&mut cmd, None, Duration::from_secs(10)).map(|_| ())
    }

    /// Change main.cf settings (`postconf -e`) and `postfix reload`.
    pub fn reconfigure(&self, settings: &[(&str, &str)]) -> Result<(), String> {
        let mut cmd = Command::new(self.command_dir.join("postconf"));
        cmd.arg("-c").arg(&self.conf_dir).arg("-e");
        for (k, v) in settings {
            cmd.arg(format!("{k}={v}"));
        }
        run_checked(&mut cmd, None, Duration::from_secs(10))?;
        age_config(&self.conf_dir)?;
        let mark = self.log_mark();
        let mut cmd = Command::new(self.command_dir.join("postfix"));
        cmd.arg("-c").arg(&self.conf_dir).arg("reload");
        run_checked(&mut cmd, None, Duration::from_secs(10))?;
        self.wait_log_since(mark, "reload", Duration::from_secs(10))
            .map(|_| ())
    }

    /// PIDs of the master and all its descendants (the Postfix daemons).
    pub fn pids(&self) -> Vec<u32> {
        if self.master_pid == 0 || !pid_alive(self.master_pid) {
            return Vec::new();
        }
        let mut pids = vec![self.master_pid];
        let mut i = 0;
        while i < pids.len() {
            let parent = pids[i];
            if let Ok(rd) = fs::read_dir("/proc") {
                for e in rd.flatten() {
                    let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                        continue;
                    };
                    let ppid = fs::read_to_string(format!("/proc/{p}/stat"))
                        .ok()
                        .and_then(|s| {
                            s.rsplit(')')
                                .next()?
                                .split_whitespace()
                                .nth(1)?
                                .parse::<u32>()
                                .ok()
                        });
                    if ppid == Some(parent) && !pids.contains(&p) {
                        pids.push(p);
                    }
                }
            }
            i += 1;
        }
        pids
    }

    /// Sum of Pss (kB) over all Postfix processes of this instance.
    pub fn pss_kb(&self) -> u64 {
        self.pids()
            .iter()
            .filter_map(|p| fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
            .filter_map(|s| {
                s.lines()
                    .find(|l| l.starts_with("Pss:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .sum()
    }

    fn stop(&mut self) {
        let pid = if self.master_pid != 0 {
            Some(self.master_pid)
        } else {
            read_master_pid(&self.dir)
        };
        let _ = run_bounded(
            Command::new(self.command_dir.join("postfix"))
                .arg("-c")
                .arg(&self.conf_dir)
                .arg("stop"),
            None,
            Duration::from_secs(10),
        );
        self.master_pid = 0;
        let Some(pid) = pid else { return };
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid_alive(pid) && Instant::now() < deadline {
            sleep(Duration::from_millis(50));
        }
        if pid_alive(pid) {
            // The master is a session leader: its group holds the daemons.
            match pgid_of(pid) {
                Some(g) if g == pid => send_signal("KILL", &format!("-{pid}")),
                _ => send_signal("KILL", &pid.to_string()),
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while pid_alive(pid) && Instant::now() < deadline {
                sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("TINYMTA_KEEP_POSTFIX").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("keeping Postfix instance {}", self.dir.display());
        }
    }
}

/// Run `posttls-finger ARGS` with `MAIL_CONFIG` pointing at a directory with an empty
/// main.cf; returns stdout + stderr (posttls-finger always exits 0: look for
/// "Verified|Trusted|Untrusted|Anonymous TLS connection established"; there is no such
/// line when STARTTLS is not offered). Bounded to 60 s.
pub fn posttls_finger(args: &[&str]) -> String {
    let dir = PathBuf::from(format!(
        "/tmp/tinymta-ptf-{}-{}",
        std::process::id(),
        next_id()
    ));
    let _ = fs::create_dir_all(&dir);
    let _ = fs::write(dir.join("main.cf"), "");
    // A fresh main.cf would cost ~2 s of "cool down" sleep (see age_config).
    let _ = fs::File::options()
        .write(true)
        .open(dir.join("main.cf"))
        .and_then(|f| f.set_modified(std::time::SystemTime::now() - Duration::from_secs(10)));
    let mut cmd = Command::new("posttls-finger");
    cmd.args(args).env("MAIL_CONFIG", &dir);
    let out = run_bounded(&mut cmd, None, Duration::from_secs(60))
        .map_or_else(|e| e, |o| output_text(&o));
    let _ = fs::remove_dir_all(&dir);
    out
}

/// The Cyrus config of the `smtpd` application and a sasldb with `users` in `dir`
/// (TESTBENCH.md: `saslpasswd2 -p -f DB -c -u REALM USER`, the password on stdin).
fn sasl_database(dir: &Path, users: &[(String, String)]) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir:?}: {e}"))?;
    let db = dir.join("sasldb2");
    fs::write(
        dir.join("smtpd.conf"),
        format!(
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n\
             sasldb_path: {}\n",
            db.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    for (login, password) in users {
        let (user, realm) = login
            .split_once('@')
            .ok_or_else(|| format!("SASL login {login:?} is not user@realm"))?;
        run_checked(
            Command::new("saslpasswd2")
                .args(["-p", "-c", "-u", realm, "-f"])
                .arg(&db)
                .arg(user),
            Some(password.as_bytes()),
            Duration::from_secs(10),
        )?;
    }
    for (cmd, arg) in [("chown", "postfix"), ("chmod", "640")] {
        run_checked(
            Command::new(cmd).arg(arg).arg(&db),
            None,
            Duration::from_secs(5),
        )?;
    }
    Ok(())
}

/// The services of Debian's master.cf that a test peer needs, chroot off.
const MASTER_CF: &str = "\
pickup     unix  n  -  n  60     1  pickup
cleanup    unix  n  -  n  -      0  cleanup
qmgr       unix  n  -  n  300    1  qmgr
tlsmgr     unix  -  -  n  1000?  1  tlsmgr
rewrite    unix  -  -  n  -      -  trivial-rewrite
bounce     unix  -  -  n  -      0  bounce
defer      unix  -  -  n  -      0  bounce
trace      unix  -  -  n  -      0  bounce
verify     unix  -  -  n  -      1  verify
flush      unix  n  -  n  1000?  0  flush
proxymap   unix  -  -  n  -      -  proxymap
proxywrite unix  -  -  n  -      1  proxymap
smtp       unix  -  -  n  -      -  smtp
relay      unix  -  -  n  -      -  smtp
  -o syslog_name=postfix/$service_name
showq      unix  n  -  n  -      -  showq
error      unix  -  -  n  -      -  error
retry      unix  -  -  n  -      -  error
discard    unix  -  -  n  -      -  discard
local      unix  -  n  n  -      -  local
virtual    unix  -  n  n  -      -  virtual
lmtp       unix  -  -  n  -      -  lmtp
anvil      unix  -  -  n  -      1  anvil
scache     unix  -  -  n  -      1  scache
postlog    unix-dgram n - n - 1  postlogd
";
