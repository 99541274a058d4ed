//! A private validating resolver for tests: unbound serving zones we write, some
//! DNSSEC-signed with ldns (TESTBENCH.md "DNS with DNSSEC"), optionally tampered after
//! signing so the validator answers SERVFAIL (bogus). Every wait is bounded; the
//! process is killed by PID on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require_tool, run_checked, run_with_timeout, TempDir};

/// A zone to serve.
pub struct Zone {
    pub name: String,
    records: Vec<String>,
    signed: bool,
    /// After signing, replace the first occurrence of `.0` with `.1` in the signed file.
    tamper: Vec<(String, String)>,
}

impl Zone {
    /// A zone with SOA and NS; `signed` makes it DNSSEC-signed with a trust anchor.
    pub fn new(name: &str, signed: bool) -> Zone {
        Zone {
            name: name.to_string(),
            records: Vec::new(),
            signed,
            tamper: Vec::new(),
        }
    }

    /// Adds a record in zone-file syntax, e.g. `"mx1 IN A 127.0.0.20"`.
    pub fn record(mut self, rr: &str) -> Zone {
        self.records.push(rr.to_string());
        self
    }

    /// Corrupts the signed data so validation fails for that RRset: in the signed
    /// zone file, the first line containing `find` gets it replaced by `replace`.
    pub fn tamper(mut self, find: &str, replace: &str) -> Zone {
        self.tamper.push((find.to_string(), replace.to_string()));
        self
    }

    fn text(&self) -> String {
        let mut t = format!(
            "$ORIGIN {0}.\n$TTL 300\n@ IN SOA ns.{0}. hostmaster.{0}. 1 3600 600 86400 300\n@ IN NS ns.{0}.\nns IN A 127.0.0.1\n",
            self.name
        );
        for r in &self.records {
            t.push_str(r);
            t.push('\n');
        }
        t
    }
}

/// A running unbound.
pub struct Unbound {
    child: Option<Child>,
    pub dir: TempDir,
    /// `127.0.0.1:PORT`, for `--resolver`.
    pub addr: String,
}

/// Runs `cmd ARGS` in `dir` (ldns-keygen writes its keys there), insisting on success;
/// its stdout, trimmed.
fn run_in(dir: &Path, cmd: &str, args: &[&str]) -> String {
    let out = run_checked(
        Command::new(cmd).args(args).current_dir(dir),
        None,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Unbound {
    pub fn start(zones: &[Zone]) -> Unbound {
        Unbound::start_in(zones, None)
    }

    /// Starts inside network namespace `netns` (created by the caller) on port 53, so
    /// programs there that use the system resolver (posttls-finger) ask it.
    pub fn start_in(zones: &[Zone], netns: Option<&str>) -> Unbound {
        let in_ns = |program: &str| {
            let mut c = Command::new(if netns.is_some() { "ip" } else { program });
            if let Some(ns) = netns {
                c.args(["netns", "exec", ns, program]);
            }
            c
        };
        let unbound = require_tool("unbound", "unbound");
        require_tool("ldns-signzone", "ldnsutils");
        let dig = require_tool("dig", "bind9-dnsutils");
        let dir = TempDir::new("unbound");
        let d = dir.path().to_path_buf();
        let mut conf = format!(
            "server:\n  interface: 127.0.0.1\n  port: @PORT@\n  username: \"\"\n  chroot: \"\"\n  directory: \"{0}\"\n  pidfile: \"{0}/unbound.pid\"\n  use-syslog: no\n  logfile: \"{0}/unbound.log\"\n  verbosity: 1\n  do-not-query-localhost: no\n  module-config: \"validator iterator\"\n  local-zone: \"test.\" nodefault\n  val-log-level: 2\n",
            d.display()
        );
        let mut auth = String::new();
        for z in zones {
            let file = d.join(format!("{}.zone", z.name));
            fs::write(&file, z.text()).unwrap();
            let served: PathBuf = if z.signed {
                let ksk = run_in(&d, "ldns-keygen", &["-a", "ECDSAP256SHA256", "-k", &z.name]);
                let zsk = run_in(&d, "ldns-keygen", &["-a", "ECDSAP256SHA256", &z.name]);
                run_in(
                    &d,
                    "ldns-signzone",
                    &["-n", file.to_str().unwrap(), &ksk, &zsk],
                );
                let ds = fs::read_to_string(d.join(format!("{ksk}.ds"))).unwrap();
                conf.push_str(&format!(
                    "  trust-anchor: \"{}\"\n",
                    ds.trim().replace('\t', " ")
                ));
                let signed = d.join(format!("{}.zone.signed", z.name));
                let mut text = fs::read_to_string(&signed).unwrap();
                for (find, replace) in &z.tamper {
                    assert!(
                        text.contains(find.as_str()),
                        "tamper target {find:?} not in the signed zone"
                    );
                    text = text.replacen(find.as_str(), replace, 1);
                }
                fs::write(&signed, text).unwrap();
                signed
            } else {
                conf.push_str(&format!("  domain-insecure: \"{}\"\n", z.name));
                file
            };
            auth.push_str(&format!(
                "auth-zone:\n  name: \"{}\"\n  zonefile: \"{}\"\n  for-upstream: yes\n  for-downstream: no\n  fallback-enabled: no\n",
                z.name,
                served.display()
            ));
        }
        conf.push_str(&auth);
        let conf_path = d.join("unbound.conf");
        let zone = zones
            .first()
            .map(|z| z.name.clone())
            .unwrap_or_else(|| "test".into());
        // Another process can take the port between choosing and binding it: unbound
        // then exits at once, and we try again on another port.
        let mut u = Unbound {
            child: None,
            dir,
            addr: String::new(),
        };
        for _attempt in 0..5 {
            let port = if netns.is_some() {
                53
            } else {
                free_port("127.0.0.1")
            };
            fs::write(&conf_path, conf.replace("@PORT@", &port.to_string())).unwrap();
            let child = in_ns(&unbound)
                .args(["-d", "-c"])
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(d.join("unbound.stderr")).unwrap())
                .spawn()
                .expect("start unbound");
            u.child = Some(child);
            u.addr = format!("127.0.0.1:{port}");
            let start = Instant::now();
            loop {
                let out = run_with_timeout(
                    in_ns(&dig).args([
                        "+short",
                        "+time=1",
                        "+tries=1",
                        "-p",
                        &port.to_string(),
                        "@127.0.0.1",
                        &zone,
                        "SOA",
                    ]),
                    None,
                    Duration::from_secs(10),
                );
                if out.status.success() && !out.stdout.is_empty() {
                    return u;
                }
                if let Some(c) = u.child.as_mut() {
                    if c.try_wait().unwrap().is_some() {
                        break; // exited: port taken; retry
                    }
                }
                assert!(
                    start.elapsed() < Duration::from_secs(15),
                    "unbound did not answer:\n{}",
                    u.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("unbound could not start:\n{}", u.log());
    }

    pub fn log(&self) -> String {
        let d = self.dir.path();
        format!(
            "{}{}",
            fs::read_to_string(d.join("unbound.stderr")).unwrap_or_default(),
            fs::read_to_string(d.join("unbound.log")).unwrap_or_default()
        )
    }

    /// `dig +dnssec` output for a name and type, for assertions about the AD flag.
    pub fn dig(&self, name: &str, rtype: &str) -> String {
        let (host, port) = self.addr.split_once(':').unwrap();
        let out = run_with_timeout(
            Command::new("dig").args([
                "+dnssec",
                "+time=2",
                "+tries=1",
                "-p",
                port,
                &format!("@{host}"),
                name,
                rtype,
            ]),
            None,
            Duration::from_secs(10),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
