//! Aliases, virtual tables, the recipient table and SRS in the real binary: what the
//! SMTP client is told at RCPT, what lands in Maildirs and at a remote (a capture
//! server as the relay host), what `sendmail` and the queue's own bounces become, the
//! start-up check, the SIGHUP reload and `newaliases`.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::capture::{Capture, TlsMode};
use common::{
    command_for, free_port, output_text, run_with_timeout, tinymta, tinymta_command, Client,
    Server, TempDir, DOMAIN,
};

/// Writes a table file into `dir`; returns its path as a flag value.
fn table(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// `echo msg | tinymta sendmail --state-dir STATE --hostname example.test ARGS`.
fn sendmail(state: &Path, args: &[&str], msg: &str) -> Output {
    let mut cmd = tinymta_command();
    cmd.arg("sendmail")
        .arg("--state-dir")
        .arg(state)
        .args(["--hostname", DOMAIN])
        .args(args);
    run_with_timeout(&mut cmd, Some(msg.as_bytes()), Duration::from_secs(30))
}

/// An SMTP session from 127.0.0.1 (a relay network), after EHLO and MAIL.
fn transaction(s: &Server, from: &str) -> Client {
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    let r = c.cmd(&format!("MAIL FROM:<{from}>"));
    assert_eq!(r.code, 250, "{r:?}");
    c
}

/// Sends DATA with a small body; returns the final reply code.
fn data(c: &mut Client) -> u16 {
    assert_eq!(c.cmd("DATA").code, 354);
    c.raw(b"Subject: t\r\n\r\nbody\r\n.\r\n");
    c.reply().code
}

#[test]
fn unknown_users_loops_and_virtual_domains_are_decided_at_rcpt() {
    let dir = TempDir::new("tables");
    let aliases = table(&dir, "aliases", "root: alice\nloop: loop2\nloop2: loop\n");
    let virtual_map = table(
        &dir,
        "virtual",
        "@catch.test  catchall@example.test\ninfo@virt.test  alice@example.test\n",
    );
    let users = table(&dir, "recipients", "alice\ncatchall\n");
    let s = Server::start(&[
        "--aliases",
        &aliases,
        "--virtual",
        &virtual_map,
        "--local-recipients",
        &users,
    ]);

    let mut c = transaction(&s, "carol@remote.test");
    let r = c.cmd("RCPT TO:<mallory@example.test>");
    assert_eq!(r.code, 550, "{r:?}");
    assert_eq!(
        r.text(),
        "5.1.1 <mallory@example.test>: Recipient address rejected: User unknown in local recipient table"
    );
    let r = c.cmd("RCPT TO:<loop@example.test>");
    assert_eq!(r.code, 550, "{r:?}");
    assert!(
        r.text()
            .starts_with("5.4.6 <loop@example.test>: Recipient address rejected: alias loop: "),
        "{r:?}"
    );
    let r = c.cmd("RCPT TO:<nobody@virt.test>");
    assert_eq!(
        (
            r.code,
            r.text().contains("User unknown in virtual alias table")
        ),
        (550, true),
        "{r:?}"
    );
    // Nothing accepted: DATA is refused and nothing was queued to bounce later.
    assert_eq!(c.cmd("DATA").code, 554);
    c.cmd("QUIT");
    s.wait_log("NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <mallory@example.test>");
    assert_eq!(s.queued(), 0);
    // A real client (swaks) is told the same, and nothing is queued either.
    let (code, out) = common::swaks(&[
        "--server",
        &s.smtp,
        "--from",
        "carol@remote.test",
        "--to",
        "nobody@example.test",
    ]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("<** 550 5.1.1 <nobody@example.test>: Recipient address rejected"),
        "{out}"
    );
    assert_eq!(s.queued(), 0);
    let list = tinymta(&["queue", "--state-dir", s.state.to_str().unwrap(), "list"]);
    assert!(
        output_text(&list).contains("Mail queue is empty"),
        "{list:?}"
    );

    // The alias, the virtual entry and the catch-all deliver to the Maildirs.
    let mut c = transaction(&s, "carol@remote.test");
    for rcpt in ["Root@example.test", "info@virt.test", "whoever@catch.test"] {
        assert_eq!(c.cmd(&format!("RCPT TO:<{rcpt}>")).code, 250, "{rcpt}");
    }
    assert_eq!(data(&mut c), 250);
    let m = &s.wait_delivered("alice", 1)[0];
    assert!(m.contains("Delivered-To: alice@example.test"), "{m}");
    assert_eq!(
        s.delivered("alice").len(),
        1,
        "root and info are one recipient"
    );
    s.wait_delivered("catchall", 1);
    assert!(s.delivered("root").is_empty() && s.delivered("whoever").is_empty());
}

#[test]
fn forwarding_uses_srs_and_bounces_to_it_reach_the_original_sender() {
    let port = free_port("127.0.0.1");
    let cap = Capture::start(&format!("127.0.0.1:{port}"), TlsMode::Plain);
    let dir = TempDir::new("srs");
    let aliases = table(
        &dir,
        "aliases",
        "root: admin@remote.test\nfwd: me@remote.test\n",
    );
    let relay = format!("[127.0.0.1]:{port}");
    let s = Server::start(&["--aliases", &aliases, "--relayhost", &relay]);

    // `sendmail root` on the router: the alias target gets it, the sender (local) as is.
    let out = sendmail(
        &s.state,
        &["-oi", "-f", "cron@example.test", "root"],
        "Subject: cron\n\ndisk full\n",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    s.wait_until("the alias target", || cap.messages().len() == 1);
    let cmds = cap.commands();
    assert!(
        cmds.iter().any(|c| c == "RCPT TO:<admin@remote.test>"),
        "{cmds:?}"
    );
    assert!(
        cmds.iter()
            .any(|c| c.starts_with("MAIL FROM:<cron@example.test>")),
        "{cmds:?}"
    );
    assert!(cap.messages()[0].contains("disk full"));

    // Forwarding mail of a foreign sender: the remote sees an SRS0 sender of ours.
    let mut c = transaction(&s, "carol@foreign.test");
    assert_eq!(c.cmd("RCPT TO:<fwd@example.test>").code, 250);
    assert_eq!(data(&mut c), 250);
    s.wait_until("the forwarded message", || cap.messages().len() == 2);
    let cmds = cap.commands();
    let mail = cmds
        .iter()
        .rfind(|c| c.starts_with("MAIL FROM:<SRS0="))
        .unwrap_or_else(|| panic!("no SRS0 sender: {cmds:?}"));
    let srs0 = mail["MAIL FROM:<".len()..mail.find('>').unwrap()].to_string();
    assert!(srs0.ends_with("=foreign.test=carol@example.test"), "{srs0}");
    assert!(
        cmds.iter().any(|c| c == "RCPT TO:<me@remote.test>"),
        "{cmds:?}"
    );

    // The remote's bounce to that address comes back and goes to carol.
    let mut c = transaction(&s, "");
    assert_eq!(c.cmd(&format!("RCPT TO:<{srs0}>")).code, 250);
    // A forged one (wrong hash) is refused, not forwarded.
    let forged = srs0.replacen("SRS0=", "SRS0=AAAA", 1);
    let r = c.cmd(&format!("RCPT TO:<{forged}>"));
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text().starts_with("5.1.1 "), "{r:?}");
    assert_eq!(data(&mut c), 250);
    s.wait_until("the returned bounce", || cap.messages().len() == 3);
    let cmds = cap.commands();
    assert!(
        cmds.iter().any(|c| c == "RCPT TO:<carol@foreign.test>"),
        "{cmds:?}"
    );
    assert!(!cmds.iter().any(|c| c.contains("AAAA")), "{cmds:?}");
}

#[test]
fn an_alias_loop_from_sendmail_bounces_to_the_sender() {
    let dir = TempDir::new("loop");
    let aliases = table(&dir, "aliases", "loop: loop2\nloop2: loop\ncron: cron\n");
    let s = Server::start(&["--aliases", &aliases]);
    let out = sendmail(
        &s.state,
        &["-oi", "-f", "cron@example.test", "loop", "cron"],
        "Subject: looping\n\nx\n",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    // cron gets its copy and the bounce for loop; nothing keeps going round.
    let mail = s.wait_delivered("cron", 2);
    let bounce = mail
        .iter()
        .find(|m| m.contains("Undelivered Mail Returned to Sender"))
        .unwrap_or_else(|| panic!("no bounce: {mail:?}"));
    assert!(
        bounce.contains(
            "Final-Recipient: rfc822; loop@example.test\r\nAction: failed\r\nStatus: 5.4.6"
        ),
        "{bounce}"
    );
    assert!(bounce.contains("Subject: looping"), "{bounce}");
    s.wait_queue_drained();
    assert!(s.delivered("loop").is_empty() && s.delivered("loop2").is_empty());
}

#[test]
fn bad_tables_stop_the_start_and_newaliases_names_file_and_line() {
    let dir = TempDir::new("bad");
    let bad = table(
        &dir,
        "aliases",
        "root: admin\nops: |/usr/bin/procmail\na: b\nb: a\n",
    );
    let port = free_port("127.0.0.1");
    let state = dir.path().join("state");
    let mut cmd = tinymta_command();
    cmd.args([
        "serve",
        "--smtp",
        &format!("127.0.0.1:{port}"),
        "--domain",
        DOMAIN,
    ])
    .arg("--state-dir")
    .arg(&state)
    .args(["--aliases", &bad]);
    let out = run_with_timeout(&mut cmd, None, Duration::from_secs(30));
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(64), "{text}");
    assert!(
        text.contains(&format!(
            "tinymta: --aliases: {bad}:2: '|/usr/bin/procmail': delivery to a command is refused"
        )),
        "{text}"
    );

    // newaliases: every problem, loops included, exit 65.
    let out = tinymta(&["newaliases", "--aliases", &bad, "--domain", DOMAIN]);
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(65), "{text}");
    assert!(
        text.contains(&format!("{bad}:2: '|/usr/bin/procmail'")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{bad}:3: alias loop: a@example.test -> b@example.test -> a@example.test"
        )),
        "{text}"
    );
    let missing = dir.path().join("missing").to_str().unwrap().to_string();
    let out = tinymta(&["newaliases", "--virtual", &missing]);
    assert_eq!(out.status.code(), Some(78), "{}", output_text(&out));

    // Through a `newaliases` symlink, a good file: exit 0.
    let good = table(&dir, "good", "root: admin\nadmin: me@remote.test\n");
    let link = dir.path().join("newaliases");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tinymta"), &link).unwrap();
    let out = run_with_timeout(
        command_for(&link).args(["--aliases", &good]),
        None,
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains(&format!("{good}: ok")));
}

#[test]
fn sighup_reloads_the_tables_and_keeps_them_when_the_new_file_is_bad() {
    let dir = TempDir::new("reload");
    let aliases = table(&dir, "aliases", "root: alice\n");
    let s = Server::start(&["--aliases", &aliases]);
    let mut c = transaction(&s, "carol@remote.test");
    assert_eq!(c.cmd("RCPT TO:<new@example.test>").code, 550);
    c.cmd("QUIT");

    std::fs::write(&aliases, "root: alice\nnew: bob\n").unwrap();
    s.signal("HUP");
    s.wait_log("SIGHUP: address tables reloaded");
    let mut c = transaction(&s, "carol@remote.test");
    assert_eq!(c.cmd("RCPT TO:<new@example.test>").code, 250);
    assert_eq!(data(&mut c), 250);
    s.wait_delivered("bob", 1);

    std::fs::write(&aliases, "root: alice\nnew: /tmp/file\n").unwrap();
    s.signal("HUP");
    s.wait_log(&format!(
        "SIGHUP: keeping the old address tables: {aliases}:2: "
    ));
    let mut c = transaction(&s, "carol@remote.test");
    assert_eq!(
        c.cmd("RCPT TO:<new@example.test>").code,
        250,
        "the old tables stay"
    );
}
