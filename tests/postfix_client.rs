//! Postfix as the client: a private Postfix instance relays to tinymta with mandatory
//! STARTTLS (`smtp_tls_security_level = encrypt`); both logs show the TLS session and
//! the message lands in the Maildir.

mod common;

use std::time::Duration;

use common::postfix::{Postfix, PostfixOptions};
use common::{require_tool, Server};

#[test]
fn postfix_delivers_to_tinymta_over_starttls() {
    require_tool("postfix", "postfix");
    let s = Server::start(&[]);
    let relay = format!("[{}", s.smtp.replace(':', "]:"));
    let pf = Postfix::start(
        PostfixOptions::client(&relay)
            .set("smtp_tls_security_level", "encrypt")
            .set("smtp_tls_loglevel", "1"),
    )
    .unwrap_or_else(|e| panic!("postfix: {e}"));
    pf.sendmail(
        "sender@pf.test",
        "postfix@example.test",
        b"Subject: from postfix\r\n\r\nhello from postfix\r\n",
    )
    .unwrap();
    let sent = pf
        .wait_log("status=sent", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\ntinymta log:\n{}", s.log()));
    assert!(sent.contains("250 2.0.0 Ok: queued as"), "{sent}");
    let pf_tls = pf
        .wait_log("TLS connection established to", Duration::from_secs(5))
        .unwrap();
    assert!(
        pf_tls.contains("TLSv1.3 with cipher TLS_AES_256_GCM_SHA384"),
        "{pf_tls}"
    );
    let ours = s.wait_log("TLS connection established from");
    assert!(
        ours.contains(
            "Anonymous TLS connection established from unknown[127.0.0.1]: TLSv1.3 with cipher"
        ),
        "{ours}"
    );
    let m = &s.wait_delivered("postfix", 1)[0];
    assert!(
        m.contains("Subject: from postfix") && m.contains("with ESMTPS id"),
        "{m}"
    );
}
