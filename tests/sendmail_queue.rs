//! Local submission with `tinymta sendmail` (and the `sendmail` symlink) into a running
//! daemon, and the `queue` commands.

mod common;

use std::time::{Duration, Instant};

use common::{run_with_timeout, tinymta, tinymta_command, Server, TempDir};

fn sendmail(state: &std::path::Path, args: &[&str], msg: &str) -> std::process::Output {
    let mut cmd = tinymta_command();
    cmd.arg("sendmail")
        .arg("--state-dir")
        .arg(state)
        .args(["--hostname", "router.test"])
        .args(args);
    run_with_timeout(&mut cmd, Some(msg.as_bytes()), Duration::from_secs(30))
}

#[test]
fn sendmail_into_running_daemon() {
    let s = Server::start(&[]);
    let out = sendmail(
        &s.state,
        &["-oi", "-f", "cron@router.test", "root@example.test"],
        "Subject: cron\n\nbackup done\n",
    );
    assert!(out.status.success(), "{out:?}");
    // Delivered without a restart, promptly (the wakeup socket), not at the 60 s rescan.
    let start = Instant::now();
    let m = &s.wait_delivered("root", 1)[0];
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(m.contains("Return-Path: <cron@router.test>"), "{m}");
    assert!(
        m.contains("Received: by router.test (tinymta, from userid"),
        "{m}"
    );
    assert!(
        m.contains("\r\nSubject: cron\r\n\r\nbackup done\r\n"),
        "line ends must be CRLF: {m:?}"
    );
    assert!(
        m.contains("\r\nMessage-ID: <")
            && m.contains("\r\nDate: ")
            && m.contains("\r\nFrom: cron@router.test\r\n"),
        "{m}"
    );
}

#[test]
fn sendmail_t_reads_headers_and_drops_bcc() {
    let s = Server::start(&[]);
    let msg = "From: me@router.test\nTo: Alice <alice@example.test>\nCc: bob@example.test\nBcc: carol@example.test\nSubject: hi\n\nbody\n.\nnot part of the message\n";
    let out = sendmail(&s.state, &["-t"], msg);
    assert!(out.status.success(), "{out:?}");
    for u in ["alice", "bob", "carol"] {
        let m = &s.wait_delivered(u, 1)[0];
        assert!(!m.contains("Bcc:"), "Bcc must be removed: {m}");
        assert!(
            !m.contains("not part of the message"),
            "a lone dot ends input without -i"
        );
    }
}

#[test]
fn sendmail_symlink_and_errors() {
    let s = Server::start(&[]);
    let dir = TempDir::new("symlink");
    let link = dir.path().join("sendmail");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tinymta"), &link).unwrap();
    let mut cmd = common::command_for(&link);
    cmd.arg("--state-dir")
        .arg(&s.state)
        .args(["-oi", "-fsym@router.test", "sym@example.test"]);
    let out = run_with_timeout(
        &mut cmd,
        Some(b"Subject: via symlink\n\nx\n"),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(s.wait_delivered("sym", 1)[0].contains("Return-Path: <sym@router.test>"));

    let out = sendmail(&s.state, &[], "Subject: x\n\nx\n");
    assert_eq!(
        out.status.code(),
        Some(64),
        "no recipients is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no recipients"));
    let out = sendmail(&s.state, &["bad address@example.test"], "x\n");
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn queue_commands_and_restart_recovery() {
    let dir = TempDir::new("queue");
    let state = dir.path().join("state");
    let st = state.to_str().unwrap();
    // No daemon yet: sendmail still queues; a remote recipient stays deferred later.
    let out = sendmail(
        &state,
        &["-f", "a@router.test", "far@remote.test"],
        "Subject: far\n\nx\n",
    );
    assert!(out.status.success(), "{out:?}");
    let out = sendmail(
        &state,
        &["-f", "a@router.test", "near@example.test"],
        "Subject: near\n\nx\n",
    );
    assert!(out.status.success());
    let list = String::from_utf8_lossy(&tinymta(&["queue", "--state-dir", st, "list"]).stdout)
        .into_owned();
    assert!(
        list.contains("far@remote.test") && list.contains("near@example.test"),
        "{list}"
    );
    assert!(list.contains("in 2 Requests"), "{list}");
    let out = tinymta(&["queue", "--state-dir", st, "flush"]);
    assert_eq!(
        out.status.code(),
        Some(75),
        "flush without a daemon is a temporary error"
    );

    // Starting the daemon delivers what waited.
    // Remote mail goes to a closed port: deferred, quickly and locally.
    let mut s = Server::start(&["--relayhost", "[127.0.0.1]:1"]);
    s.state = state.clone();
    s.kill();
    s.spawn();
    s.wait_delivered("near", 1);
    // The Maildir file appears before the queue file is removed: wait for the removal
    // (the only message that leaves the queue here) before listing it.
    s.wait_log(": removed");
    s.wait_log("to=<far@remote.test>");
    assert!(s.log().contains("status=deferred"), "{}", s.log());

    let list = String::from_utf8_lossy(&tinymta(&["queue", "--state-dir", st, "list"]).stdout)
        .into_owned();
    assert!(
        list.contains("far@remote.test") && !list.contains("near@example.test"),
        "{list}"
    );
    let id = list
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let show = String::from_utf8_lossy(&tinymta(&["queue", "--state-dir", st, "show", &id]).stdout)
        .into_owned();
    assert!(
        show.contains("recipient: <far@remote.test> pending") && show.contains("Subject: far"),
        "{show}"
    );
    assert!(show.contains("attempts: 1"), "{show}");

    let out = tinymta(&["queue", "--state-dir", st, "flush"]);
    assert!(out.status.success(), "{out:?}");
    s.wait_log("queue flush requested");
    let start = Instant::now();
    while s.log().matches("to=<far@remote.test>").count() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "flush did not retry"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = tinymta(&["queue", "--state-dir", st, "delete", &id]);
    assert!(out.status.success(), "{out:?}");
    let list = String::from_utf8_lossy(&tinymta(&["queue", "--state-dir", st, "list"]).stdout)
        .into_owned();
    assert!(list.contains("Mail queue is empty"), "{list}");
    let out = tinymta(&["queue", "--state-dir", st, "show", "NOSUCHID"]);
    assert_eq!(out.status.code(), Some(65));
}

#[test]
fn a_closed_output_pipe_ends_commands_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    // `tinymta tls-info | true`: the reader is gone before the first write.
    let mut child = tinymta_command()
        .arg("tls-info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    // Ended by SIGPIPE (no exit code), like any Unix filter.
    assert_eq!(status.code(), None, "{status:?} {err}");
}
