//! A network namespace of the test's own (TESTBENCH.md "Network namespaces"): loopback
//! up, extra loopback addresses, its own /etc/resolv.conf, so real ports (25, 53, 443)
//! and the system resolver of programs run inside (posttls-finger, Python) are the
//! test's; and `tinymta serve` processes inside it. Needs root. Everything is removed
//! or killed by PID on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{run_bounded, run_checked, run_with_timeout, test_runner, TempDir};

/// `program` run inside namespace `ns`.
fn ns_command(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]);
    if program == env!("CARGO_BIN_EXE_tinymta") {
        c.args(test_runner());
    }
    c.arg(program);
    c
}

/// A network namespace with loopback up and its own resolv.conf; removed on drop.
pub struct Netns(pub String);

fn ip(args: &[&str]) {
    run_checked(Command::new("ip").args(args), None, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
}

impl Netns {
    /// A namespace named after the process and `tag` (tests of one binary run in
    /// parallel).
    pub fn new(tag: &str) -> Netns {
        let name = format!("tinymta{}{tag}", std::process::id());
        let _ = run_bounded(
            Command::new("ip").args(["netns", "del", &name]),
            None,
            Duration::from_secs(10),
        );
        ip(&["netns", "add", &name]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        let etc = format!("/etc/netns/{name}");
        fs::create_dir_all(&etc).unwrap();
        fs::write(format!("{etc}/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        Netns(name)
    }

    /// `program` run inside the namespace (the tinymta under test through the
    /// emulator of cross runs).
    pub fn command(&self, program: &str) -> Command {
        ns_command(&self.0, program)
    }

    /// `tinymta check-tls FLAGS DOMAIN` inside the namespace, asking the resolver on
    /// its 127.0.0.1:53 (bounded: 60 s).
    pub fn check_tls(&self, flags: &[&str], domain: &str) -> Output {
        run_with_timeout(
            self.command(env!("CARGO_BIN_EXE_tinymta"))
                .args(["check-tls", "--resolver", "127.0.0.1:53"])
                .args(flags)
                .arg(domain),
            None,
            Duration::from_secs(60),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run_bounded(
            Command::new("ip").args(["netns", "del", &self.0]),
            None,
            Duration::from_secs(10),
        );
        let _ = fs::remove_dir_all(format!("/etc/netns/{}", self.0));
    }
}

/// `tinymta serve` inside a namespace with a state directory of its own, its output
/// in a log file; killed by PID on drop.
pub struct NsDaemon {
    child: Option<Child>,
    pub dir: TempDir,
    args: Vec<String>,
    ns: String,
}

impl NsDaemon {
    /// Starts `tinymta serve ARGS --state-dir DIR/state` and waits (bounded) for its
    /// `started:` line.
    pub fn start(ns: &Netns, tag: &str, args: &[String]) -> NsDaemon {
        let mut d = NsDaemon {
            child: None,
            dir: TempDir::new(tag),
            args: args.to_vec(),
            ns: ns.0.clone(),
        };
        d.spawn();
        d
    }

    /// (Re)starts the process with the same arguments and state.
    pub fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let before = self.log().matches(" started: ").count();
        let child = ns_command(&self.ns, env!("CARGO_BIN_EXE_tinymta"))
            .arg("serve")
            .args(&self.args)
            .arg("--state-dir")
            .arg(self.state())
            .env("TINYMTA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        while self.log().matches(" started: ").count() == before {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("tinymta exited at start ({st}):\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tinymta did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Messages in the Maildir of `user@domain`.
    pub fn delivered(&self, domain: &str, user: &str) -> Vec<String> {
        super::maildir_messages(&self.state(), domain, user)
    }

    /// Waits (bounded) for a log line that contains every one of `needles`.
    pub fn wait_log(&self, needles: &[&str]) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self
                .log()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return l.to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no log line with {needles:?} in:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NsDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits (bounded) until `path` exists.
pub fn wait_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
