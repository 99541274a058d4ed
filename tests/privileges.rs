//! `serve` started as root gives up root (`--user`): the kernel's view of the process
//! (`/proc/PID/task/*/status`), who owns what it writes, and that it still works as
//! that user — a privileged port bound before the switch, SMTP mail delivered to a
//! Maildir, a SIGHUP reload of a table only that user's group may read, and `sendmail`
//! run by another unprivileged user, through the maildrop, which that user cannot use
//! to forge a queue file.
//!
//! Needs root (it creates two throwaway system users, removed at the end even when a
//! check fails); run as another user it fails saying so.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{output_text, run_bounded, run_with_timeout, tinymta_bin, Server, TempDir, DOMAIN};

/// A system user (and its group of the same name) made for this test, removed when
/// dropped; or an existing one, left alone.
struct User {
    name: String,
    uid: u32,
    gid: u32,
    created: bool,
}

impl User {
    /// `useradd --system --user-group` of a name unique to this run; `fallback` (an
    /// existing user) when users cannot be made here.
    fn create(tag: &str, fallback: &str) -> User {
        let name = format!("tmta{tag}{}", std::process::id() % 100_000);
        let made = run_bounded(
            Command::new("useradd").args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ]),
            None,
            Duration::from_secs(30),
        );
        let (name, created) = match made {
            Ok(out) if out.status.success() => (name, true),
            other => {
                eprintln!("useradd {name} failed ({other:?}): using {fallback}");
                (fallback.to_string(), false)
            }
        };
        let id = |flag: &str| -> u32 {
            let out = run_with_timeout(
                Command::new("id").args([flag, &name]),
                None,
                Duration::from_secs(10),
            );
            assert!(
                out.status.success(),
                "id {flag} {name}: {}",
                output_text(&out)
            );
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        User {
            name,
            uid,
            gid,
            created,
        }
    }

    /// The command `words` as this user: its uid and gid, no supplementary groups.
    fn command(&self, words: Vec<String>) -> Command {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={}", self.uid),
            &format!("--regid={}", self.gid),
            "--clear-groups",
            "--",
        ])
        .args(words)
        .env("LOGNAME", &self.name)
        .env("USER", &self.name)
        .current_dir("/");
        c
    }
}

impl Drop for User {
    fn drop(&mut self) {
        if self.created {
            let _ = run_bounded(
                Command::new("userdel").arg(&self.name),
                None,
                Duration::from_secs(30),
            );
            // userdel removes the user's own group; an older one may leave it.
            let _ = run_bounded(
                Command::new("groupdel").arg(&self.name),
                None,
                Duration::from_secs(30),
            );
        }
    }
}

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "tests/privileges.rs must run as root: it starts `serve` as root and creates \
         throwaway users (run `sudo cargo test --test privileges`)"
    );
}

/// A free port below 1024 on 127.0.0.1: only root can bind it (checked), so a
/// listener there shows the daemon bound it before it gave up root.
fn privileged_port() -> u16 {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(1024);
    assert!(
        start > 600,
        "ip_unprivileged_port_start is {start}: no privileged port to test with"
    );
    (600..start.min(1024))
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1024 on 127.0.0.1")
}

/// The `Name:` line of a /proc status file, its fields split.
fn status_field(status: &str, name: &str) -> Vec<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name}: in\n{status}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn sendmail(user: &User, state: &Path, args: &[&str], msg: &str) -> Output {
    let mut cmd = user.command(common::exec_words(tinymta_bin()));
    cmd.args(["sendmail", "--hostname", DOMAIN, "--state-dir"])
        .arg(state)
        .args(args);
    run_with_timeout(&mut cmd, Some(msg.as_bytes()), Duration::from_secs(30))
}

#[test]
fn serve_started_as_root_runs_as_its_user_and_still_works() {
    require_root();
    let daemon = User::create("d", "nobody");
    let submitter = User::create("s", "daemon");
    assert_ne!(daemon.uid, submitter.uid);

    // The aliases: readable by root and the daemon's group only.
    let dir = TempDir::new("privs");
    let aliases = dir.path().join("aliases");
    let write_aliases = |text: &str| {
        std::fs::write(&aliases, text).unwrap();
        std::os::unix::fs::chown(&aliases, Some(0), Some(daemon.gid)).unwrap();
        std::fs::set_permissions(&aliases, std::fs::Permissions::from_mode(0o640)).unwrap();
    };
    write_aliases("postmaster: root\nbob: alice\n");
    // The smarthost logins: mode 0600, owned by the daemon's user (read as root at
    // start, as that user on SIGHUP).
    let credentials = dir.path().join("relay-credentials");
    let write_credentials = |text: &str| {
        std::fs::write(&credentials, text).unwrap();
        std::os::unix::fs::chown(&credentials, Some(daemon.uid), Some(daemon.gid)).unwrap();
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write_credentials("[smtp.example.net]:587  router@example.net:first\n");

    // Started with a supplementary group, which it must give up too.
    let wrapper = dir.path().join("with-groups");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec setpriv --groups=1,{} -- {} \"$@\"\n",
            submitter.gid,
            common::exec_words(tinymta_bin()).join(" ")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = privileged_port();
    let smtp = format!("127.0.0.1:{port}");
    let mut s = Server::start_binary_at(
        &wrapper,
        &smtp,
        &[
            "--user",
            &daemon.name,
            "--aliases",
            aliases.to_str().unwrap(),
            "--relay-credentials",
            credentials.to_str().unwrap(),
        ],
    );
    s.wait_log(&format!(
        "running as user {} (uid {}",
        daemon.name, daemon.uid
    ));
    assert!(
        !s.log().contains("cannot read it"),
        "the aliases are readable by the daemon's group:\n{}",
        s.log()
    );

    // Every thread: the user's uid and gid (real, effective, saved, fs), no groups,
    // no_new_privs.
    // Under qemu-user the process also has the emulator's own helper thread (its RCU
    // thread), which never runs guest code and keeps the ids it started with: there
    // the guest's main thread is checked, on the host every thread.
    let tasks: Vec<_> = if common::test_runner().is_some() {
        vec![std::path::PathBuf::from(format!("/proc/{}", s.pid()))]
    } else {
        std::fs::read_dir(format!("/proc/{}/task", s.pid()))
            .unwrap()
            .map(|t| t.unwrap().path())
            .collect()
    };
    assert!(!tasks.is_empty());
    for task in &tasks {
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        assert_eq!(
            status_field(&status, "Uid"),
            vec![daemon.uid.to_string(); 4],
            "{status}"
        );
        assert_eq!(
            status_field(&status, "Gid"),
            vec![daemon.gid.to_string(); 4],
            "{status}"
        );
        assert_eq!(
            status_field(&status, "Groups"),
            Vec::<String>::new(),
            "{status}"
        );
        assert_eq!(status_field(&status, "NoNewPrivs"), ["1"], "{status}");
    }

    // The queue is the user's; the maildrop is writable by all, listable by none.
    for sub in [
        "queue",
        "queue/messages",
        "queue/tmp",
        "queue/status",
        "maildrop",
    ] {
        let meta = std::fs::metadata(s.state.join(sub)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (daemon.uid, daemon.gid), "{sub}");
    }
    let maildrop = std::fs::metadata(s.state.join("maildrop")).unwrap();
    assert_eq!(maildrop.permissions().mode() & 0o7777, 0o1733);

    // SMTP on the privileged port, delivered (alias bob -> alice) by the daemon's user.
    s.submit(
        "sender@example.org",
        &[&format!("bob@{DOMAIN}")],
        "Subject: one\r\n\r\nfirst",
    );
    let got = s.wait_delivered("alice", 1);
    assert!(got[0].contains("Subject: one"), "{got:?}");
    for e in std::fs::read_dir(s.maildir("alice")).unwrap() {
        let meta = e.unwrap().metadata().unwrap();
        assert_eq!(meta.uid(), daemon.uid, "Maildir file owner");
    }

    // SIGHUP re-reads the aliases and the logins as that user: bob now goes to carol,
    // and the second login is there.
    write_aliases("postmaster: root\nbob: carol\n");
    write_credentials(
        "[smtp.example.net]:587  router@example.net:first\n\
         [smtp.example.org]:465  router@example.org:second\n",
    );
    s.signal("HUP");
    s.wait_log("SIGHUP: address tables reloaded");
    s.wait_log("SIGHUP: --relay-credentials reloaded (2 entries)");
    s.submit(
        "sender@example.org",
        &[&format!("bob@{DOMAIN}")],
        "Subject: two\r\n\r\nsecond",
    );
    let got = s.wait_delivered("carol", 1);
    assert!(got[0].contains("Subject: two"), "{got:?}");
    assert_eq!(s.delivered("alice").len(), 1);

    // sendmail from another unprivileged user: through the maildrop, delivered, with
    // the uid the kernel gave the dropped file (not one the user could write).
    let out = sendmail(
        &submitter,
        &s.state,
        &[&format!("bob@{DOMAIN}")],
        "Subject: three\n\nfrom a user\n",
    );
    assert!(out.status.success(), "sendmail: {}", output_text(&out));
    let got = s.wait_delivered("carol", 2);
    let third = got
        .iter()
        .find(|m| m.contains("Subject: three"))
        .expect("third message");
    assert!(
        third.contains(&format!("(tinymta, from userid {})", submitter.uid)),
        "{third}"
    );
    assert!(
        third.contains(&format!("From: {}@{DOMAIN}", submitter.name)),
        "{third}"
    );
    s.wait_log(&format!("maildrop from uid {}", submitter.uid));
    s.wait_until("the maildrop to be emptied", || {
        std::fs::read_dir(s.state.join("maildrop")).unwrap().count() == 0
    });

    // What the user cannot do: write the queue, list the maildrop, or pass off a file
    // of their own as a queue file or as someone else's.
    let sh = |script: &str| {
        let mut c = submitter.command(vec!["/bin/sh".into()]);
        c.args(["-c", script]);
        run_with_timeout(&mut c, None, Duration::from_secs(10))
    };
    let state = s.state.display().to_string();
    let denied = sh(&format!("echo x > {state}/queue/messages/FORGED"));
    assert!(!denied.status.success(), "{}", output_text(&denied));
    assert!(!s.state.join("queue/messages/FORGED").exists());
    let listed = sh(&format!("ls {state}/maildrop"));
    assert!(!listed.status.success(), "{}", output_text(&listed));
    let forged = sh(&format!(
        "printf 'tinymta-queue 2\\nid FORGED1\\nsender root@{DOMAIN}\\nclient local\\nrcpt carol@{DOMAIN}\\n\\nSubject: forged\\r\\n\\r\\nx\\r\\n' > {state}/maildrop/FORGED1.x && \
         printf 'tinymta-maildrop 1\\nsender root@{DOMAIN}\\nuid 0\\nrcpt carol@{DOMAIN}\\n\\nSubject: forged\\r\\n\\r\\nx\\r\\n' > {state}/maildrop/FORGED2.x"
    ));
    assert!(forged.status.success(), "{}", output_text(&forged));
    // A datagram on the pickup socket, as sendmail sends, makes the daemon look.
    let poke = std::os::unix::net::UnixDatagram::unbound().unwrap();
    poke.send_to(b"maildrop", s.state.join("pickup")).unwrap();
    s.wait_log("FORGED1.x from uid");
    s.wait_log("FORGED2.x from uid");
    assert!(
        s.log().contains(&format!(
            "FORGED2.x from uid {}: refused and removed: unexpected envelope line \"uid\"",
            submitter.uid
        )),
        "{}",
        s.log()
    );
    s.wait_until("the forged files to be removed", || {
        std::fs::read_dir(s.state.join("maildrop")).unwrap().count() == 0
    });
    assert!(!s.delivered("carol").iter().any(|m| m.contains("forged")));
    assert_eq!(s.delivered("carol").len(), 2);

    assert_eq!(s.stop(), Some(0), "clean exit as the user:\n{}", s.log());
}

#[test]
fn a_missing_user_is_a_clear_error() {
    require_root();
    let dir = TempDir::new("privs-missing");
    let out = run_with_timeout(
        common::tinymta_command().args([
            "serve",
            "--smtp",
            &format!("127.0.0.1:{}", common::free_port("127.0.0.1")),
            "--user",
            "no-such-user-tinymta",
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ]),
        None,
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(64), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("--user 'no-such-user-tinymta': no such user"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn only_root_can_change_user() {
    require_root();
    let out = run_with_timeout(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(common::exec_words(tinymta_bin()))
            .args([
                "serve",
                "--smtp",
                &format!("127.0.0.1:{}", common::free_port("127.0.0.1")),
                "--user",
                "root",
                "--state-dir",
                "/nonexistent/tinymta-state",
            ]),
        None,
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(64), "{}", output_text(&out));
    assert!(
        output_text(&out)
            .contains("--user 'root': only root can change to another user (running as uid 65534)"),
        "{}",
        output_text(&out)
    );
}
