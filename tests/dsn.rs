//! Delivery status notifications (RFC 3461-3464) end to end, with real peers:
//!
//! - Postfix as the sending client: `sendmail -N success,delay,failure -V envid`
//!   through a private Postfix that relays to tinymta; the reports tinymta writes
//!   (`delivered` for a local recipient, `failed` for one the next hop refuses) land in
//!   the sender's Maildir with the envelope ID and the original recipients Postfix
//!   passed on.
//! - Postfix as the next hop (it offers DSN): tinymta passes NOTIFY/ORCPT/RET/ENVID on
//!   (its `debug_peer_list` log shows the commands as received) and sends no success
//!   report of its own for what Postfix took.
//! - A capture server without DSN as the next hop: a `relayed` report.
//! - The inbound parser with a raw client (swaks 20201014 has no DSN options): good
//!   and bad xtext, NOTIFY=NEVER with other keywords, repeated parameters.
//! - Never a report to `<>`, NOTIFY=NEVER honoured, and the delay warning sent once
//!   after `--delay-warning-time`.
//!
//! Peer-heavy tests are named `dsn_postfix_*`.

mod common;

use std::time::Duration;

use common::capture::{Capture, TlsMode};
use common::postfix::{unique_listen_addr, Postfix, PostfixOptions};
use common::{require_tool, wait_for, Client, Server, TempDir};

/// How long the waits for reports and log lines may take.
const WAIT: Duration = Duration::from_secs(40);

/// `ip:port` as a bracketed next hop, `[ip]:port`.
fn bracketed(addr: &str) -> String {
    let (ip, port) = addr.rsplit_once(':').unwrap();
    format!("[{ip}]:{port}")
}

/// A Postfix sink as the next hop for `far.test`: it offers DSN (Postfix's default),
/// refuses `reject@far.test` (550 5.1.1), defers `later@far.test` (450), and logs
/// every command it receives from loopback (`debug_peer_list`).
fn postfix_next_hop() -> Postfix {
    Postfix::start(
        PostfixOptions::sink(&unique_listen_addr())
            .set("debug_peer_list", "127.0.0.0/8")
            .set(
                "smtpd_recipient_restrictions",
                "check_recipient_access inline:{ { reject@far.test = 550 5.1.1 no such user here }, \
                 { later@far.test = 450 4.2.0 try again later } }, permit_mynetworks, reject",
            ),
    )
    .unwrap_or_else(|e| panic!("postfix next hop: {e}"))
}

/// The transport table tinymta routes with: `far.test` to Postfix, `plain.test` to a
/// server without DSN.
fn transport(dir: &TempDir, far: &str, plain: Option<&str>) -> String {
    let mut table = format!("far.test  {}\n", bracketed(far));
    if let Some(p) = plain {
        table.push_str(&format!("plain.test  {}\n", bracketed(p)));
    }
    let path = dir.path().join("transport");
    std::fs::write(&path, table).unwrap();
    path.display().to_string()
}

/// The reports in `user@example.test`'s Maildir whose delivery-status part has
/// `Action: action`.
fn reports(s: &Server, user: &str, action: &str) -> Vec<String> {
    s.delivered(user)
        .into_iter()
        .filter(|m| m.contains("report-type=delivery-status"))
        .filter(|m| m.contains(&format!("\r\nAction: {action}\r\n")))
        .collect()
}

fn wait_reports(s: &Server, user: &str, action: &str, n: usize) -> Vec<String> {
    wait_for(
        &format!("{n} '{action}' report(s) for {user}"),
        WAIT,
        || {
            let r = reports(s, user, action);
            (r.len() >= n).then_some(r)
        },
    )
}

/// Lines of tinymta's log that contain every one of `needles`.
fn log_lines(s: &Server, needles: &[&str]) -> Vec<String> {
    s.log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

#[test]
fn dsn_postfix_client_gets_the_reports_it_asked_for_and_the_next_hop_the_parameters() {
    require_tool("postfix", "postfix");
    let next_hop = postfix_next_hop();
    let dir = TempDir::new("dsn");
    let table = transport(&dir, &next_hop.listen, None);
    let s = Server::start(&["--transport", &table]);
    let client = Postfix::start(PostfixOptions::client(&bracketed(&s.smtp)))
        .unwrap_or_else(|e| panic!("postfix client: {e}"));
    client
        .sendmail_with(
            &["-N", "success,delay,failure", "-V", "envid-42"],
            "sender@example.test",
            &["alice@example.test", "ok@far.test", "reject@far.test"],
            b"From: sender@example.test\r\nSubject: dsn please\r\n\r\nthe body\r\n",
        )
        .unwrap();

    // Local delivery: a success report, `delivered`, quoting what Postfix passed on.
    let delivered = &wait_reports(&s, "sender", "delivered", 1)[0];
    for want in [
        "Subject: Successful Mail Delivery Report\r\n",
        "Original-Envelope-Id: envid-42\r\n",
        "Final-Recipient: rfc822; alice@example.test\r\n\
         Original-Recipient: rfc822;alice@example.test\r\nAction: delivered\r\nStatus: 2.0.0\r\n",
        "Content-Type: text/rfc822-headers\r\n",
        "Subject: dsn please\r\n",
    ] {
        assert!(delivered.contains(want), "{want:?} not in:\n{delivered}");
    }
    assert!(
        !delivered.contains("the body"),
        "a success report returns headers only"
    );

    // Refused by the next hop: a failure report with the remote diagnostic.
    let failed = &wait_reports(&s, "sender", "failed", 1)[0];
    for want in [
        "Subject: Undelivered Mail Returned to Sender\r\n",
        "Original-Envelope-Id: envid-42\r\n",
        "Final-Recipient: rfc822; reject@far.test\r\n\
         Original-Recipient: rfc822;reject@far.test\r\nAction: failed\r\nStatus: 5.1.1\r\n",
        "Diagnostic-Code: smtp; 550 5.1.1 <reject@far.test>: Recipient address rejected: no such user here",
    ] {
        assert!(failed.contains(want), "{want:?} not in:\n{failed}");
    }

    // The next hop offers DSN: it got the parameters, and reports itself, so tinymta
    // sends nothing about ok@far.test.
    let rcpt = next_hop
        .wait_log("RCPT TO:<ok@far.test>", Duration::from_secs(30))
        .unwrap();
    assert!(
        rcpt.contains(
            "RCPT TO:<ok@far.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;ok@far.test"
        ),
        "{rcpt}"
    );
    let mail = next_hop
        .wait_log("MAIL FROM:<sender@example.test>", Duration::from_secs(5))
        .unwrap();
    assert!(mail.contains(" ENVID=envid-42"), "{mail}");
    let sent = next_hop
        .wait_log("to=<ok@far.test>", Duration::from_secs(30))
        .unwrap();
    assert!(sent.contains("status=sent"), "{sent}");
    assert!(s
        .delivered("sender")
        .iter()
        .all(|m| !m.contains("ok@far.test")));
    assert_eq!(
        s.delivered("sender").len(),
        2,
        "one success, one failure report"
    );
}

#[test]
fn dsn_postfix_relayed_never_null_sender_notify_never_and_one_delay_warning() {
    require_tool("postfix", "postfix");
    let next_hop = postfix_next_hop();
    let plain = Capture::start(&unique_listen_addr(), TlsMode::Plain);
    let dir = TempDir::new("dsn");
    let table = transport(&dir, &next_hop.listen, Some(&plain.addr));
    let s = Server::start(&[
        "--transport",
        &table,
        "--delay-warning-time",
        "1",
        "--retry-min",
        "1",
        "--retry-max",
        "1",
    ]);

    let mut c = Client::greeted(&s.smtp);
    assert!(c.ehlo(false).has_keyword("DSN"));
    // A message with every kind of request.
    assert_eq!(
        c.cmd("MAIL FROM:<sender@example.test> RET=FULL ENVID=QQ+2B7")
            .code,
        250
    );
    for rcpt in [
        "RCPT TO:<x@plain.test> NOTIFY=SUCCESS",
        "RCPT TO:<later@far.test> NOTIFY=DELAY ORCPT=rfc822;later+2Bx@far.test",
        "RCPT TO:<reject@far.test> NOTIFY=NEVER",
    ] {
        assert_eq!(c.cmd(rcpt).code, 250, "{rcpt}");
    }
    assert_eq!(c.cmd("DATA").code, 354);
    c.raw(b"Subject: mixed\r\n\r\nfull body\r\n.\r\n");
    assert_eq!(c.reply().code, 250);

    // The same requests from the null sender: nothing may be sent back.
    assert_eq!(c.cmd("MAIL FROM:<>").code, 250);
    for rcpt in [
        "RCPT TO:<alice@example.test> NOTIFY=SUCCESS",
        "RCPT TO:<reject@far.test> NOTIFY=FAILURE",
    ] {
        assert_eq!(c.cmd(rcpt).code, 250, "{rcpt}");
    }
    assert_eq!(c.cmd("DATA").code, 354);
    c.raw(b"Subject: from nobody\r\n\r\nx\r\n.\r\n");
    let r = c.reply();
    assert_eq!(r.code, 250);
    let null_id = r.lines[0].rsplit(' ').next().unwrap().to_string();

    // Relayed to a next hop without DSN: a `relayed` report, and no parameters there.
    let relayed = &wait_reports(&s, "sender", "relayed", 1)[0];
    assert!(
        relayed.contains(
            "Final-Recipient: rfc822; x@plain.test\r\nAction: relayed\r\nStatus: 2.0.0\r\n"
        ),
        "{relayed}"
    );
    assert!(
        relayed.contains("Original-Envelope-Id: QQ+7\r\n"),
        "{relayed}"
    );
    assert!(
        plain
            .commands()
            .iter()
            .any(|l| l == "RCPT TO:<x@plain.test>"),
        "{:?}",
        plain.commands()
    );
    assert!(plain
        .commands()
        .iter()
        .all(|l| !l.contains("NOTIFY") && !l.contains("ENVID")));

    // Deferred: one delay warning after --delay-warning-time, however many retries.
    let delayed = &wait_reports(&s, "sender", "delayed", 1)[0];
    for want in [
        "Subject: Delayed Mail (still being retried)\r\n",
        "Final-Recipient: rfc822; later@far.test\r\n\
         Original-Recipient: rfc822;later+x@far.test\r\nAction: delayed\r\nStatus: 4.2.0\r\n",
        "Will-Retry-Until: ",
        "Content-Type: text/rfc822-headers\r\n",
    ] {
        assert!(delayed.contains(want), "{want:?} not in:\n{delayed}");
    }
    assert!(
        !delayed.contains("full body"),
        "RET=FULL is for failures only"
    );
    wait_for("three deferred attempts for later@far.test", WAIT, || {
        (log_lines(&s, &["to=<later@far.test>", "status=deferred"]).len() >= 3).then_some(())
    });
    assert_eq!(reports(&s, "sender", "delayed").len(), 1, "warned once");

    // NOTIFY=NEVER: refused, and no failure report.
    assert!(!log_lines(&s, &["to=<reject@far.test>", "status=bounced"]).is_empty());
    assert!(reports(&s, "sender", "failed").is_empty());
    // The null sender's message: delivered and bounced, and no report of either.
    wait_for("the null sender's message to be done", WAIT, || {
        (!log_lines(&s, &[&null_id, "removed"]).is_empty()).then_some(())
    });
    assert!(!log_lines(&s, &[&null_id, "to=<alice@example.test>", "status=sent"]).is_empty());
    assert!(!log_lines(&s, &[&null_id, "to=<reject@far.test>", "status=bounced"]).is_empty());
    assert!(
        log_lines(&s, &[&null_id, "notification"]).is_empty(),
        "{}",
        s.log()
    );
}

#[test]
fn dsn_parameters_are_parsed_and_bad_ones_get_501() {
    let s = Server::start(&[]);
    let mut c = Client::greeted(&s.smtp);
    assert!(c.ehlo(false).has_keyword("DSN"));
    let good_mail = "MAIL FROM:<a@example.test> RET=HDRS ENVID=abc+2Bdef";
    assert_eq!(c.cmd(good_mail).code, 250, "{good_mail}");
    for good in [
        "RCPT TO:<alice@example.test> NOTIFY=NEVER",
        "RCPT TO:<bob@example.test> notify=success,failure,delay ORCPT=rfc822;Bob+2B1@example.test",
        "RCPT TO:<carol@example.test> ORCPT=utf-8;carol@example.test",
    ] {
        assert_eq!(c.cmd(good).code, 250, "{good}");
    }
    for bad in [
        "RCPT TO:<dave@example.test> NOTIFY=NEVER,SUCCESS",
        "RCPT TO:<dave@example.test> NOTIFY=SOMETIMES",
        "RCPT TO:<dave@example.test> NOTIFY=SUCCESS NOTIFY=FAILURE",
        "RCPT TO:<dave@example.test> ORCPT=dave@example.test",
        "RCPT TO:<dave@example.test> ORCPT=rfc822;dave=x@example.test",
        "RCPT TO:<dave@example.test> ORCPT=rfc822;dave+2g@example.test",
    ] {
        let r = c.cmd(bad);
        assert_eq!(r.code, 501, "{bad}: {r:?}");
        assert!(r.lines[0].starts_with("5.5.4 "), "{bad}: {r:?}");
    }
    assert_eq!(c.cmd("DATA").code, 354);
    c.raw(b"Subject: parsed\r\n\r\nx\r\n.\r\n");
    let r = c.reply();
    assert_eq!(r.code, 250);
    // The requests are in the queue envelope (or the message is already gone: then
    // the success report for bob shows the ORCPT kept).
    let report = &wait_reports(&s, "a", "delivered", 1)[0];
    assert!(
        report.contains("Final-Recipient: rfc822; bob@example.test\r\nOriginal-Recipient: rfc822;Bob+1@example.test\r\nAction: delivered\r\n"),
        "{report}"
    );
    assert!(
        report.contains("Original-Envelope-Id: abc+def\r\n"),
        "{report}"
    );
    assert!(
        !report.contains("alice@") && !report.contains("carol@"),
        "{report}"
    );

    for bad in [
        "MAIL FROM:<a@example.test> RET=ALL",
        "MAIL FROM:<a@example.test> RET=FULL RET=HDRS",
        "MAIL FROM:<a@example.test> ENVID=a=b",
        "MAIL FROM:<a@example.test> ENVID=a+zz",
    ] {
        let r = c.cmd(bad);
        assert_eq!(r.code, 501, "{bad}: {r:?}");
        assert!(r.lines[0].starts_with("5.5.4 "), "{bad}: {r:?}");
    }
}

#[test]
fn dsn_sendmail_options_are_checked_and_kept() {
    let s = Server::start(&[]);
    let state = s.state.display().to_string();
    let run = |args: &[&str]| {
        let mut cmd = common::tinymta_command();
        cmd.args([
            "sendmail",
            "--state-dir",
            &state,
            "--hostname",
            "mx.example.test",
        ])
        .args(args);
        common::run_with_timeout(
            &mut cmd,
            Some(b"Subject: via sendmail\n\nx\n"),
            Duration::from_secs(20),
        )
    };
    let bad = run(&["-N", "never,success", "alice@example.test"]);
    assert_eq!(bad.status.code(), Some(64), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("-N never,success"),
        "{bad:?}"
    );
    let bad = run(&["-R", "some", "alice@example.test"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("-R some"),
        "{bad:?}"
    );
    let ok = run(&[
        "-Nsuccess",
        "-V",
        "id 7",
        "-R",
        "full",
        "-f",
        "sender@example.test",
        "alice@example.test",
    ]);
    assert!(ok.status.success(), "{ok:?}");
    let report = &wait_reports(&s, "sender", "delivered", 1)[0];
    assert!(
        report.contains("Original-Envelope-Id: id 7\r\n"),
        "{report}"
    );
    assert!(
        report.contains("Final-Recipient: rfc822; alice@example.test\r\nAction: delivered\r\n"),
        "{report}"
    );
}
