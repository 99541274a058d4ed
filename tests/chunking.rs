//! CHUNKING (RFC 3030) end to end: a raw client sends BDAT chunks (one, several,
//! pipelined, with `<CRLF>.<CRLF>` inside) and the Maildir file holds exactly those
//! bytes behind the fields tinymta adds; DATA and BDAT do not mix; the size limit
//! counts the running total; the SMTP smuggling set of tests/inbound.rs over BDAT.
//! Outbound: a private Postfix 3.7 (a CHUNKING server) gets tinymta's mail in BDAT
//! chunks — its verbose smtpd log shows the commands — and relays it to a second
//! tinymta, whose Maildir shows the content intact; a Postfix that does not offer
//! CHUNKING gets DATA.

mod common;

use std::time::Duration;

use common::postfix::{unique_listen_addr, Postfix, PostfixOptions};
use common::{free_port, Client, Server};

/// A session that has sent MAIL and RCPT for `user@example.test`.
fn transaction(s: &Server, user: &str) -> Client {
    let mut c = Client::greeted(&s.smtp);
    let ehlo = c.ehlo(false);
    assert!(ehlo.has_keyword("CHUNKING"), "{ehlo:?}");
    assert!(!ehlo.has_keyword("BINARYMIME"), "{ehlo:?}");
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{user}@example.test>")).code, 250);
    c
}

/// `BDAT n[ LAST]` and the chunk, in one write.
fn chunk(c: &mut Client, bytes: &[u8], last: bool) {
    let cmd = format!(
        "BDAT {}{}\r\n",
        bytes.len(),
        if last { " LAST" } else { "" }
    );
    c.raw(&[cmd.as_bytes(), bytes].concat());
}

/// The one message `user` got, split into what tinymta put in front of the client's
/// bytes and those bytes, which must be `sent`.
fn stored_as_sent(s: &Server, user: &str, sent: &[u8]) {
    let msgs = s.wait_delivered(user, 1);
    assert_eq!(msgs.len(), 1, "{user}");
    let msg = msgs[0].as_bytes();
    assert!(msg.len() > sent.len(), "{user}: {:?}", msgs[0]);
    let (added, rest) = msg.split_at(msg.len() - sent.len());
    assert_eq!(
        String::from_utf8_lossy(rest),
        String::from_utf8_lossy(sent),
        "{user}: content changed"
    );
    let added = String::from_utf8_lossy(added);
    assert!(
        added.contains("Received: from client.test (unknown [127.0.0.1])\r\n"),
        "{added}"
    );
    assert!(added.contains(" with ESMTP id "), "{added}");
    assert!(
        !added.contains("\r\n\r\n"),
        "only header fields in front: {added}"
    );
}

/// A message whose lines would end or be unstuffed by DATA.
const DOTTY: &[u8] = b"Subject: dots\r\n\r\nfirst\r\n.\r\n..two dots\r\n.leading\r\n.\r\nlast\r\n";

#[test]
fn bdat_single_several_and_pipelined_chunks_are_stored_as_sent() {
    let s = Server::start(&[]);

    // One chunk, `<CRLF>.<CRLF>` and dot-leading lines inside.
    let mut c = transaction(&s, "single");
    chunk(&mut c, DOTTY, true);
    let r = c.reply();
    assert_eq!(r.code, 250, "{r:?}");
    assert!(r.text().starts_with("2.0.0 Ok: queued as "), "{r:?}");
    assert_eq!(c.cmd("NOOP").code, 250, "exactly one reply");
    stored_as_sent(&s, "single", DOTTY);

    // Several chunks, each answered, split inside a line, inside a CRLF and right
    // after a line-start dot; then `BDAT 0 LAST`.
    let mut c = transaction(&s, "several");
    for part in [&DOTTY[..20], &DOTTY[20..25], &DOTTY[25..42], &DOTTY[42..]] {
        chunk(&mut c, part, false);
        let r = c.reply();
        assert_eq!(
            (r.code, r.text()),
            (250, format!("2.0.0 Ok: {} octets received", part.len()))
        );
    }
    chunk(&mut c, b"", true);
    let r = c.reply();
    assert!(r.text().starts_with("2.0.0 Ok: queued as "), "{r:?}");
    stored_as_sent(&s, "several", DOTTY);

    // Everything pipelined in one write: MAIL, RCPT, three chunks, QUIT.
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    let mut batch = b"MAIL FROM:<a@client.test>\r\nRCPT TO:<pipelined@example.test>\r\n".to_vec();
    let (a, b) = DOTTY.split_at(30);
    batch.extend_from_slice(format!("BDAT {}\r\n", a.len()).as_bytes());
    batch.extend_from_slice(a);
    batch.extend_from_slice(format!("BDAT {}\r\n", b.len() - 3).as_bytes());
    batch.extend_from_slice(&b[..b.len() - 3]);
    batch.extend_from_slice(b"BDAT 3 LAST\r\n");
    batch.extend_from_slice(&b[b.len() - 3..]);
    batch.extend_from_slice(b"QUIT\r\n");
    c.raw(&batch);
    let codes: Vec<u16> = (0..6).map(|_| c.reply().code).collect();
    assert_eq!(codes, [250, 250, 250, 250, 250, 221]);
    stored_as_sent(&s, "pipelined", DOTTY);

    // A chunk larger than one queue-file write (64 KB) and than one read.
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    while big.len() < 200_000 {
        big.extend_from_slice(b".\r\n0123456789 .. abcdefghijklmnopqrstuvwxyz\r\n");
    }
    let mut c = transaction(&s, "big");
    chunk(&mut c, &big[..150_000], false);
    assert_eq!(c.reply().code, 250);
    chunk(&mut c, &big[150_000..], true);
    assert_eq!(c.reply().code, 250);
    stored_as_sent(&s, "big", &big);
}

#[test]
fn bdat_without_a_transaction_is_discarded_and_data_does_not_mix() {
    let s = Server::start(&[]);
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    // The chunk looks like commands: discarded, not executed.
    chunk(&mut c, b"NOOP\r\nQUIT\r\n", false);
    let r = c.reply();
    assert_eq!(
        (r.code, r.text()),
        (503, "5.5.1 Error: need MAIL command".into())
    );
    let r = c.cmd("RSET");
    assert_eq!(
        (r.code, r.text()),
        (250, "2.0.0 Ok".into()),
        "chunk was executed"
    );

    let mut c = transaction(&s, "mixed");
    chunk(&mut c, b"Subject: x\r\n\r\n", false);
    assert_eq!(c.reply().code, 250);
    let r = c.cmd("DATA");
    assert_eq!(
        (r.code, r.text()),
        (503, "5.5.1 Error: DATA after BDAT".into())
    );
    chunk(&mut c, b"body\r\n", true);
    assert_eq!(c.reply().code, 250);
    stored_as_sent(&s, "mixed", b"Subject: x\r\n\r\nbody\r\n");

    // RSET drops the chunks so far; nothing is stored.
    let mut c = transaction(&s, "reset");
    chunk(&mut c, b"Subject: x\r\n\r\n", false);
    assert_eq!(c.reply().code, 250);
    assert_eq!(c.cmd("RSET").code, 250);
    chunk(&mut c, b"body\r\n", true);
    assert_eq!(c.reply().code, 503);
    assert_eq!(c.cmd("QUIT").code, 221);
    // Once "mixed" has left the queue, a stored "reset" would have been delivered.
    s.wait_queue_drained();
    assert!(s.delivered("reset").is_empty());

    // A BDAT whose size cannot be read ends the session: its chunk has no end.
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    let r = c.cmd("BDAT 12x");
    assert_eq!(r.code, 501, "{r:?}");
    assert_eq!(c.reply().code, 421);
    assert!(c.try_reply().is_none(), "connection closed");
}

#[test]
fn the_size_limit_counts_every_chunk() {
    let s = Server::start(&["--max-message-size", "1000"]);
    let mut c = transaction(&s, "large");
    // 600 + 600 octets: each under the limit, together over it. The rest of the
    // crossing chunk is read and discarded, the next (pipelined) chunk refused alike.
    let part = [b'x'; 598]
        .iter()
        .chain(b"\r\n")
        .copied()
        .collect::<Vec<u8>>();
    chunk(&mut c, &part, false);
    assert_eq!(c.reply().code, 250);
    let mut two = format!("BDAT {}\r\n", part.len()).into_bytes();
    two.extend_from_slice(&part);
    two.extend_from_slice(format!("BDAT {} LAST\r\n", part.len()).as_bytes());
    two.extend_from_slice(&part);
    c.raw(&two);
    for _ in 0..2 {
        let r = c.reply();
        assert_eq!(
            (r.code, r.text()),
            (552, "5.3.4 Error: message file too big".into())
        );
    }
    // In step: the next transaction works, and nothing was kept.
    assert_eq!(c.cmd("MAIL FROM:<a@client.test>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<small@example.test>").code, 250);
    chunk(&mut c, b"Subject: s\r\n\r\nsmall\r\n", true);
    assert_eq!(c.reply().code, 250);
    stored_as_sent(&s, "small", b"Subject: s\r\n\r\nsmall\r\n");
    assert!(s.delivered("large").is_empty());
}

/// The smuggling set of tests/inbound.rs, inside BDAT chunks: a fake end of data and
/// a second transaction behind it are content, and the bare line ends become CRLF in
/// the queue file (so nothing relayed on can end a DATA early either).
#[test]
fn smuggling_variants_are_content_over_bdat() {
    let s = Server::start(&[]);
    for (i, sep) in [
        "\n.\n",
        "\r\n.\n",
        "\n.\r\n",
        "\r.\r\n",
        "\r\n.\r",
        "\r\n.\r\n",
    ]
    .iter()
    .enumerate()
    {
        let mut c = transaction(&s, &format!("smuggle{i}"));
        let content = format!(
            "Subject: one\r\n\r\nfirst{sep}MAIL FROM:<x@evil.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n"
        );
        chunk(&mut c, content.as_bytes(), true);
        let r = c.reply();
        assert_eq!(r.code, 250, "{sep:?}: {r:?}");
        assert_eq!(
            c.cmd("NOOP").code,
            250,
            "{sep:?}: extra replies on the wire"
        );
        let canonical = content
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .replace('\n', "\r\n");
        stored_as_sent(&s, &format!("smuggle{i}"), canonical.as_bytes());
    }
    assert!(
        s.delivered("victim").is_empty(),
        "a smuggled message was delivered"
    );
}

/// A message over two BDAT chunks with lines DATA would treat specially.
fn outbound_message() -> Vec<u8> {
    let mut msg = b"Subject: chunked\r\n\r\nfirst\r\n.\r\n..two\r\n.leading\r\n".to_vec();
    while msg.len() < 100_000 {
        msg.extend_from_slice(b"0123456789 abcdefghijklmnopqrstuvwxyz\r\n.\r\n");
    }
    msg.extend_from_slice(b"the end\r\n");
    msg
}

/// Sends `msg` to tinymta `s` for `to` in BDAT chunks (the only way a lone `.` line
/// gets in), asserting it is queued.
fn submit_chunked(s: &Server, to: &str, msg: &[u8]) {
    let mut c = Client::greeted(&s.smtp);
    c.ehlo(false);
    assert_eq!(c.cmd("MAIL FROM:<root@example.test>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{to}>")).code, 250);
    chunk(&mut c, msg, true);
    let r = c.reply();
    assert_eq!(r.code, 250, "{r:?}");
}

/// The body of the one message `user@domain` got at `s` (after the header section).
fn body_of(s: &Server, domain: &str, user: &str) -> String {
    let msgs = s.wait_delivered_in(domain, user, 1);
    let (_, body) = msgs[0].split_once("\r\n\r\n").unwrap();
    body.to_string()
}

#[test]
fn postfix_gets_bdat_chunks_and_a_server_without_chunking_gets_data() {
    assert!(
        std::path::Path::new("/usr/sbin/postfix").exists(),
        "postfix is not installed: `bash tests/run` installs it"
    );
    // The final destination: a second tinymta for far.test.
    let final_addr = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let last = Server::start_at(&final_addr, &["--domain", "far.test"]);
    let msg = outbound_message();
    let want_body = {
        let text = String::from_utf8(msg.clone()).unwrap();
        text.split_once("\r\n\r\n").unwrap().1.to_string()
    };

    for chunking in [true, false] {
        let mut opts = PostfixOptions {
            listen: Some(unique_listen_addr()),
            relayhost: Some(format!(
                "[127.0.0.1]:{}",
                final_addr.rsplit(':').next().unwrap()
            )),
            ..PostfixOptions::default()
        }
        .set("debug_peer_list", "127.0.0.0/8")
        .set("relay_domains", "far.test");
        if !chunking {
            opts = opts.set("smtpd_discard_ehlo_keywords", "chunking");
        }
        let pf = Postfix::start(opts).unwrap_or_else(|e| panic!("{e}"));
        let pf_port = pf.listen.rsplit(':').next().unwrap().to_string();
        let transport_dir = common::TempDir::new("chunking-transport");
        let transport = transport_dir.path().join("transport");
        let pf_ip = pf.listen.rsplit_once(':').unwrap().0;
        std::fs::write(&transport, format!("far.test  [{pf_ip}]:{pf_port}\n")).unwrap();
        let router = Server::start(&["--transport", transport.to_str().unwrap()]);
        let user = if chunking { "bdat" } else { "data" };
        submit_chunked(&router, &format!("{user}@far.test"), &msg);
        router.wait_log("status=sent");

        // What Postfix's smtpd was told, command by command (debug_peer_list).
        let log = pf
            .wait_log(": < ", Duration::from_secs(20))
            .map(|_| pf.log())
            .unwrap_or_else(|e| panic!("{e}"));
        let commands: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split_once(": < ").map(|(_, c)| c))
            .filter_map(|c| c.split_once(": ").map(|(_, c)| c))
            .filter(|c| c.starts_with("BDAT") || c.starts_with("DATA"))
            .collect();
        if chunking {
            // 64 KB chunks, then the rest (our Received: field adds to the message).
            let (last, full) = commands.split_last().unwrap();
            assert_eq!(full, vec!["BDAT 65536"; msg.len() / 65536], "{log}");
            let rest: usize = last
                .strip_prefix("BDAT ")
                .and_then(|c| c.strip_suffix(" LAST"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{last}"));
            assert!(rest > msg.len() % 65536 && rest < 65536, "{last}");
        } else {
            assert_eq!(commands, ["DATA"], "{log}");
        }
        // Postfix relayed it (by DATA, dot-stuffed) to the last tinymta: intact.
        assert_eq!(body_of(&last, "far.test", user), want_body, "{user}");
    }
}
