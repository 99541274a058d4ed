//! The command line as people type it: a command's flags after its subcommand or its
//! recipients reach the command, instead of an argh usage error or a recipient named
//! `--state-dir`.

mod common;

use std::time::Duration;

use common::{run_with_timeout, tinymta, tinymta_command, TempDir};

fn queue_files(state: &std::path::Path) -> usize {
    std::fs::read_dir(state.join("queue/messages"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn state_dir_after_the_subcommand_and_the_recipients() {
    let dir = TempDir::new("cli");
    let state = dir.path().to_str().unwrap().to_string();
    // sendmail with the flags after the recipient, as `echo | sendmail root --state-dir D`.
    let mut cmd = tinymta_command();
    cmd.current_dir(dir.path()).args([
        "sendmail",
        "root@example.test",
        "--state-dir",
        &state,
        "--hostname",
        "router.test",
    ]);
    let out = run_with_timeout(
        &mut cmd,
        Some(b"Subject: t\n\nhello\n"),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        queue_files(dir.path()),
        1,
        "message queued under --state-dir"
    );
    assert!(
        !dir.path().join("tinymta-state").exists(),
        "nothing may go to the default state directory"
    );

    // queue list with --state-dir after the action, in both spellings.
    for args in [
        vec!["queue", "list", "--state-dir", &state],
        vec!["queue", "list", &format!("--state-dir={state}")],
        vec!["queue", "--state-dir", &state, "list"],
    ] {
        let out = tinymta(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(stdout.contains("root@example.test"), "{args:?}: {stdout}");
        assert!(stdout.contains("in 1 Request"), "{args:?}: {stdout}");
    }

    // `mailq` as a symlink to the binary lists the queue like `queue list`.
    let link = dir.path().join("mailq");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tinymta"), &link).unwrap();
    let out = run_with_timeout(
        common::command_for(&link).args(["--state-dir", &state]),
        None,
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("root@example.test") && stdout.contains("in 1 Request"),
        "{stdout}"
    );
}
