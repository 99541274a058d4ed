//! Faults injected for real into a running `tinymta serve`: a full file system (a small
//! tmpfs as the state directory, filled to the brim), `EIO` from fsync (an LD_PRELOAD
//! shim of these tests, `tests/faults/eio_shim.c`), a read-only queue (the tmpfs
//! remounted read-only), corrupt queue files, and SIGKILL at random points of a
//! delivery run. Each checks the replies the client saw, the log line, and that every
//! acknowledged message is delivered once the fault is gone.
//!
//! Mounting needs root (CI runs the tests as root); without it these tests fail and
//! say so rather than pass without testing anything.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run_bounded, tinymta, tinymta_bin, Client, Server, TempDir, DOMAIN};

/// Fails the test, with the reason, when not root: mounts need it.
fn require_root(what: &str) {
    assert!(
        rustix::process::geteuid().is_root(),
        "{what} needs root (mount); CI runs the tests as root: run `sudo -E cargo test --test faults`"
    );
}

fn run(cmd: &mut Command) {
    let out = run_bounded(cmd, None, Duration::from_secs(30)).expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        common::output_text(&out)
    );
}

/// A tmpfs of `size` bytes mounted on `at`; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: u64) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0700"))
            .arg("tmpfs")
            .arg(at));
        Tmpfs(at.to_path_buf())
    }

    fn remount(&self, opt: &str) {
        run(Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.0));
    }

    fn free(&self) -> u64 {
        let st = rustix::fs::statvfs(&self.0).unwrap();
        st.f_bavail * st.f_frsize
    }

    /// Fills the file system with `filler` until `leave` bytes (rounded to pages) are free.
    fn fill_leaving(&self, leave: u64) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let page = vec![b'f'; 4096];
        while self.free() > leave {
            if f.write_all(&page).is_err() {
                break;
            }
        }
        f.sync_all().unwrap();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = run_bounded(
            Command::new("umount").arg("-l").arg(&self.0),
            None,
            Duration::from_secs(30),
        );
    }
}

/// Restarts `s` with its state directory on a fresh tmpfs of `size` bytes.
fn on_tmpfs(s: &mut Server, size: u64) -> Tmpfs {
    s.stop();
    let fs = Tmpfs::mount(&s.state, size);
    s.spawn();
    fs
}

/// What a client saw for one message: the MAIL reply, and the end-of-DATA reply when
/// MAIL was accepted.
#[derive(Debug)]
struct Sent {
    mail: u16,
    mail_text: String,
    data: Option<common::Reply>,
}

impl Sent {
    fn queued_id(&self) -> Option<String> {
        let r = self.data.as_ref().filter(|r| r.code == 250)?;
        Some(r.lines[0].rsplit(' ').next().unwrap().to_string())
    }
}

fn send(addr: &str, size: Option<usize>, to: &str, body: &str) -> Sent {
    let mut c = Client::greeted(addr);
    c.ehlo(false);
    let size = size.map(|n| format!(" SIZE={n}")).unwrap_or_default();
    let r = c.cmd(&format!("MAIL FROM:<faults@client.test>{size}"));
    if r.code != 250 {
        return Sent {
            mail: r.code,
            mail_text: format!("{} {}", r.code, r.text()),
            data: None,
        };
    }
    assert_eq!(c.cmd(&format!("RCPT TO:<{to}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.raw(body.as_bytes());
    c.raw(b"\r\n.\r\n");
    let data = c.reply();
    let _ = c.cmd("QUIT");
    Sent {
        mail: r.code,
        mail_text: format!("{} {}", r.code, r.text()),
        data: Some(data),
    }
}

fn body(tag: &str, bytes: usize) -> String {
    let line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n";
    format!(
        "Subject: {tag}\r\n\r\n{tag}\r\n{}",
        line.repeat(bytes / line.len() + 1)
    )
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// How many of the delivered messages of `user` carry `tag` on a line of their own.
fn delivered_with(s: &Server, user: &str, tag: &str) -> usize {
    s.delivered(user)
        .iter()
        .filter(|m| m.lines().any(|l| l.trim_end() == tag))
        .count()
}

#[test]
fn a_full_queue_file_system_refuses_at_mail_then_recovers_without_restart() {
    require_root("the full-disk test");
    let mut s = Server::start(&[
        "--max-message-size",
        "1000000",
        "--queue-min-free",
        "300000",
        "--retry-min",
        "1",
        "--retry-max",
        "1",
    ]);
    let fs = on_tmpfs(&mut s, 4 << 20);
    let before = send(&s.smtp, None, "full@example.test", &body("before", 1000));
    assert!(before.queued_id().is_some(), "{before:?}");
    s.wait_delivered("full", 1);

    // Below the reserve: 452 4.3.1 at MAIL, every time, logged once.
    let filler = fs.fill_leaving(200_000);
    for _ in 0..3 {
        let r = send(&s.smtp, None, "full@example.test", &body("refused", 1000));
        assert_eq!(
            (r.mail, r.mail_text.as_str()),
            (452, "452 4.3.1 Insufficient system storage"),
            "{r:?}"
        );
    }
    assert_eq!(
        s.log().matches("queue: low on space").count(),
        1,
        "{}",
        s.log()
    );
    let low = s.wait_log("queue: low on space");
    assert!(low.contains("below --queue-min-free 300000"), "{low}");

    // Above the reserve at MAIL, but the message does not fit: the write fails with
    // ENOSPC at DATA, 452 4.3.1, and nothing of it is left in the queue.
    fs::remove_file(&filler).unwrap();
    let filler = fs.fill_leaving(450_000);
    let r = send(
        &s.smtp,
        None,
        "full@example.test",
        &body("too-big", 900_000),
    );
    assert_eq!(r.mail, 250, "{r:?}");
    let data = r.data.as_ref().unwrap();
    assert_eq!(
        (data.code, data.text().as_str()),
        (452, "4.3.1 Insufficient system storage"),
        "{r:?}"
    );
    s.wait_log("cannot write queue file: No space left on device");
    assert_eq!(
        count(&s.state.join("queue/tmp")),
        0,
        "the partial file is removed"
    );
    assert_eq!(s.queued(), 0);

    // A message that fits the queue but not the Maildir beside it: deferred with
    // 4.3.1, never bounced.
    fs::remove_file(&filler).unwrap();
    let filler = fs.fill_leaving(300_000 + 380_000);
    let kept = send(&s.smtp, None, "full@example.test", &body("kept", 350_000));
    let kept_id = kept
        .queued_id()
        .unwrap_or_else(|| panic!("{kept:?}\n{}", s.log()));
    let deferred = s.wait_log(&format!("{kept_id}: to=<full@example.test>, relay=local"));
    assert!(
        deferred.contains("dsn=4.3.1, status=deferred"),
        "{deferred}"
    );
    assert!(deferred.contains("No space left on device"), "{deferred}");
    assert!(!s.log().contains("status=bounced"), "{}", s.log());
    assert_eq!(count(&s.maildir("full").parent().unwrap().join("tmp")), 0);

    // Space returns: the deferred message is delivered, MAIL is accepted again, the
    // change is logged once; no restart.
    fs::remove_file(&filler).unwrap();
    assert_eq!(delivered_with(&s, "full", "kept"), 0);
    s.wait_until("the deferred message delivered", || {
        delivered_with(&s, "full", "kept") == 1
    });
    let after = send(&s.smtp, None, "full@example.test", &body("after", 1000));
    assert!(after.queued_id().is_some(), "{after:?}");
    s.wait_delivered("full", 3);
    assert_eq!(
        s.log().matches("queue: space back").count(),
        1,
        "{}",
        s.log()
    );
    assert_eq!(delivered_with(&s, "full", "refused"), 0);
    assert_eq!(delivered_with(&s, "full", "too-big"), 0);
    assert!(s.running());
    s.stop();
    drop(fs);
}

#[test]
fn a_declared_size_above_the_free_space_is_refused_at_mail() {
    require_root("the SIZE test");
    let mut s = Server::start(&[
        "--max-message-size",
        "2000000",
        "--queue-min-free",
        "100000",
    ]);
    let fs = on_tmpfs(&mut s, 4 << 20);
    let _filler = fs.fill_leaving(1_000_000);
    let r = send(&s.smtp, Some(1_500_000), "size@example.test", "");
    assert_eq!(r.mail_text, "452 4.3.1 Insufficient system storage");
    let r = send(
        &s.smtp,
        Some(10_000),
        "size@example.test",
        &body("small", 5000),
    );
    assert!(r.queued_id().is_some(), "{r:?}");
    s.wait_delivered("size", 1);
    assert!(
        !s.log().contains("queue: low on space"),
        "not below the reserve itself"
    );
    s.stop();
}

/// Builds the EIO shim and a wrapper that starts tinymta with it preloaded (the
/// harness runs the "binary" it is given; `exec` keeps the PID).
fn eio_wrapper(dir: &Path, marker: &Path, read_marker: &Path) -> PathBuf {
    let shim = dir.join("eio_shim.so");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/eio_shim.c");
    run(Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&shim)
        .arg(&src)
        .arg("-ldl"));
    let wrapper = dir.join("tinymta-eio");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nLD_PRELOAD={} TINYMTA_EIO_MARKER={} TINYMTA_EIO_READ_MARKER={} exec {} \"$@\"\n",
            shim.display(),
            marker.display(),
            read_marker.display(),
            tinymta_bin().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

#[test]
fn eio_on_fsync_gets_451_and_the_message_is_taken_when_the_disk_recovers() {
    let dir = TempDir::new("eio");
    let marker = dir.path().join("fail-fsync");
    let wrapper = eio_wrapper(dir.path(), &marker, &dir.path().join("unused"));
    let mut s = Server::start_binary(&wrapper, &["--retry-min", "1", "--retry-max", "1"]);
    let first = send(&s.smtp, None, "eio@example.test", &body("first", 1000));
    assert!(first.queued_id().is_some(), "{first:?}");
    s.wait_delivered("eio", 1);

    fs::write(&marker, "").unwrap();
    let r = send(&s.smtp, None, "eio@example.test", &body("during", 1000));
    let data = r.data.as_ref().expect("MAIL accepted");
    assert_eq!(
        (data.code, data.text().as_str()),
        (451, "4.3.0 Error: queue file write error"),
        "{r:?}"
    );
    let line = s.wait_log("cannot write queue file: Input/output error");
    assert!(line.contains("not accepted from"), "{line}");
    assert_eq!(count(&s.state.join("queue/tmp")), 0);
    assert_eq!(s.queued(), 0, "no copy of the refused message is left");
    assert!(s.running(), "an I/O error does not stop the daemon");

    // Only the directory fsync after the rename fails: the file is in `messages/`
    // already, and is taken out again, since the client was not told 250.
    fs::write(&marker, "dirs").unwrap();
    let r = send(&s.smtp, None, "eio@example.test", &body("renamed", 1000));
    let data = r.data.as_ref().expect("MAIL accepted");
    assert_eq!(
        (data.code, data.text().as_str()),
        (451, "4.3.0 Error: queue file write error")
    );
    assert_eq!(s.queued(), 0, "the renamed copy is withdrawn");
    assert_eq!(
        s.log()
            .matches("cannot write queue file: Input/output error")
            .count(),
        2
    );

    fs::remove_file(&marker).unwrap();
    let retried = send(&s.smtp, None, "eio@example.test", &body("during", 1000));
    assert!(retried.queued_id().is_some(), "{retried:?}");
    let retried = send(&s.smtp, None, "eio@example.test", &body("renamed", 1000));
    assert!(retried.queued_id().is_some(), "{retried:?}");
    s.wait_delivered("eio", 3);
    assert_eq!(delivered_with(&s, "eio", "during"), 1, "delivered once");
    assert_eq!(delivered_with(&s, "eio", "renamed"), 1, "delivered once");
    s.stop();
}

#[test]
fn a_read_error_on_a_queue_file_defers_the_message_until_it_reads_again() {
    let dir = TempDir::new("eio-read");
    let marker = dir.path().join("fail-read");
    let wrapper = eio_wrapper(dir.path(), &dir.path().join("unused"), &marker);
    let mut s = Server::start_binary(&wrapper, &["--retry-min", "1", "--retry-max", "1"]);
    fs::write(&marker, "").unwrap();
    // Writing needs no read: the message is acknowledged, its delivery cannot read it.
    let r = send(&s.smtp, None, "rd@example.test", &body("unreadable", 1000));
    let id = r.queued_id().unwrap_or_else(|| panic!("{r:?}"));
    let line = s.wait_log(&format!("{id}: cannot read queue file"));
    assert!(
        line.contains("Input/output error (os error 5); deferred"),
        "{line}"
    );
    assert!(s.delivered("rd").is_empty());
    assert_eq!(s.queued(), 1, "kept in the queue");
    assert!(s.running());
    fs::remove_file(&marker).unwrap();
    s.wait_delivered("rd", 1);
    assert_eq!(delivered_with(&s, "rd", "unreadable"), 1);
    assert!(
        !s.log().contains("corrupt queue file"),
        "a read error is not corruption"
    );
    s.stop();
}

#[test]
fn a_read_only_queue_gets_451_and_everything_proceeds_once_writable() {
    require_root("the read-only test");
    // No free-space reserve: the fault here is the read-only mount alone.
    let mut s = Server::start(&[
        "--queue-min-free",
        "0",
        "--retry-min",
        "1",
        "--retry-max",
        "1",
    ]);
    let fs = on_tmpfs(&mut s, 8 << 20);
    let first = send(&s.smtp, None, "ro@example.test", &body("first", 1000));
    assert!(first.queued_id().is_some(), "{first:?}");
    s.wait_delivered("ro", 1);

    // As an overlay gone read-only after a bad upgrade (root ignores mode bits).
    fs.remount("ro");
    let r = send(&s.smtp, None, "ro@example.test", &body("refused", 1000));
    let data = r.data.as_ref().expect("MAIL accepted");
    assert_eq!(
        (data.code, data.text().as_str()),
        (451, "4.3.0 Error: queue file write error"),
        "{r:?}"
    );
    s.wait_log("cannot write queue file: Read-only file system");
    assert!(s.running());

    fs.remount("rw");
    let again = send(&s.smtp, None, "ro@example.test", &body("refused", 1000));
    assert!(again.queued_id().is_some(), "{again:?}");
    s.wait_delivered("ro", 2);
    assert_eq!(delivered_with(&s, "ro", "refused"), 1);
    s.stop();
    drop(fs);
}

/// A queue file written by this version's daemon (`tinymta-queue 2`, with an
/// `Authentication-Results:` field appended at commit), committed so that a later
/// version is tested against today's format.
const FIXTURE: &str = "tests/faults/queue-v2-6B0EF59033357D";
const FIXTURE_ID: &str = "6B0EF59033357D";

#[test]
fn corrupt_queue_files_are_set_aside_and_todays_format_is_delivered() {
    let mut s = Server::start(&["--queue-lifetime", "4000000000"]);
    s.stop();
    let messages = s.state.join("queue/messages");
    let fixture = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)).unwrap();
    fs::write(messages.join(FIXTURE_ID), &fixture).unwrap();
    let corrupt: [(&str, &[u8]); 4] = [
        ("6930A6F1000001", b"tinymta-queue 2\nheaders-at 00000000000000000000\nid 6930A6F1000001\narri"),
        ("6930A6F1000002", b"\x7fELF\x02\x01\x01\x00 garbage \xff\xfe\n\n\x00\x00"),
        ("6930A6F1000003", b"tinymta-queue 7\nid 6930A6F1000003\nrcpt x@example.test\n\nSubject: future\r\n\r\nx\r\n"),
        ("not-a-queue-id.tmp", b"tinymta-queue 2\n"),
    ];
    for (name, bytes) in corrupt {
        fs::write(messages.join(name), bytes).unwrap();
    }
    s.spawn();
    let got = s.wait_delivered("fixture", 1);
    assert!(
        got[0].contains("Subject: written by tinymta-queue 2\r\n"),
        "{}",
        got[0]
    );
    // The field appended at commit comes first, then the content as received.
    let ar = got[0]
        .find("Authentication-Results: mx.example.test;")
        .expect("A-R field");
    assert!(ar < got[0].find("Received: from").unwrap(), "{}", got[0]);
    for (name, bytes) in corrupt {
        let aside = s.state.join("corrupt").join(name);
        s.wait_until(&format!("{name} set aside"), || aside.exists());
        assert_eq!(fs::read(&aside).unwrap(), bytes, "kept as it was");
        // One line names the file and where it went.
        let line = s.wait_log(&format!("moved to {}", aside.display()));
        assert!(line.contains(name), "{line}");
    }
    assert!(s
        .log()
        .contains("6930A6F1000001: corrupt queue file (truncated envelope)"));
    assert!(s
        .log()
        .contains("6930A6F1000003: corrupt queue file (not a tinymta queue file)"));
    // The fixture's queue file goes after its Maildir file is in place (slower under
    // QEMU): wait for it rather than race it.
    s.wait_until("messages/ empty (the fixture's file removed)", || {
        count(&messages) == 0
    });
    assert!(s.running());
    let list = tinymta(&["queue", "list", "--state-dir", s.state.to_str().unwrap()]);
    let text = common::output_text(&list);
    assert!(
        text.contains(&format!(
            "-- 4 corrupt queue files set aside in {}",
            s.state.join("corrupt").display()
        )),
        "{text}"
    );
    // No crash loop: a restart finds nothing more to set aside.
    s.stop();
    let lines = s.log().matches("corrupt queue file").count();
    s.spawn();
    s.wait_log("message(s) scheduled");
    assert_eq!(s.log().matches("corrupt queue file").count(), lines);
    assert_eq!(s.delivered("fixture").len(), 1);
    s.stop();
}

/// Queues `n` messages with `sendmail` while no daemon runs: each exit status 0 is an
/// acknowledgement. Returns their tags.
fn sendmail_many(state: &Path, n: usize) -> Vec<String> {
    (0..n)
        .map(|k| {
            let tag = format!("killed-{k}");
            let mut cmd = common::tinymta_command();
            cmd.arg("sendmail")
                .arg("--state-dir")
                .arg(state)
                .arg("-f")
                .arg("root@example.test");
            cmd.arg(format!("kill@{DOMAIN}")).stdin(Stdio::piped());
            let out = run_bounded(
                &mut cmd,
                Some(format!("Subject: {tag}\n\n{tag}\n").as_bytes()),
                Duration::from_secs(30),
            )
            .unwrap();
            assert!(out.status.success(), "{}", common::output_text(&out));
            tag
        })
        .collect()
}

#[test]
fn sigkill_at_random_points_of_a_delivery_run_loses_nothing() {
    let mut s = Server::start(&[]);
    s.stop();
    let tags = sendmail_many(&s.state, 150);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut random = move |below: u64| {
        // xorshift: other kill points in each round and each run.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let maildir = s.maildir("kill");
    // Each round: start, let 1-25 more messages arrive (and up to 3 ms more), SIGKILL
    // wherever delivery is then: a Maildir write, a queue-file rewrite, a removal.
    let mut kills = Vec::new();
    for _round in 0..20 {
        if s.queued() == 0 {
            break;
        }
        let target = count(&maildir) + 1 + random(25) as usize;
        s.spawn();
        let start = Instant::now();
        while count(&maildir) < target
            && s.queued() > 0
            && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_micros(random(3000)));
        s.kill();
        kills.push((count(&maildir), s.queued()));
    }
    s.spawn();
    s.wait_queue_drained();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in s.delivered("kill") {
        if let Some(tag) = m.lines().find_map(|l| l.strip_prefix("Subject: ")) {
            *seen.entry(tag.trim_end().to_string()).or_default() += 1;
        }
    }
    let missing: Vec<&String> = tags.iter().filter(|t| !seen.contains_key(*t)).collect();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "SIGKILL at (delivered, still queued): {kills:?}; {} acknowledged, {} delivered, {} missing, {duplicates} duplicate(s)",
        tags.len(),
        seen.values().sum::<usize>(),
        missing.len()
    );
    let mid_run = kills.iter().filter(|(_, queued)| *queued > 0).count();
    assert!(
        mid_run >= 2,
        "fewer than two kills landed mid-run: {kills:?}"
    );
    assert!(
        missing.is_empty(),
        "lost acknowledged messages: {missing:?}; corrupt/: {}; log:\n{}",
        count(&s.state.join("corrupt")),
        s.log()
    );
    assert_eq!(count(&s.state.join("queue/tmp")), 0);
    assert_eq!(
        count(&s.state.join("corrupt")),
        0,
        "a crash leaves no corrupt file"
    );
    s.stop();
}
