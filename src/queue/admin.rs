//! `tinymta queue list|show|delete|flush`: read the spool directly (safe while the
//! daemon runs: files are only ever renamed into place) and poke the daemon.

use std::io::Write;

use crate::cli::{QueueAction, QueueArgs};
use crate::clock::rfc5322_date;
use crate::exit;
use crate::host::default_state_dir;

use super::wakeup::{self, Wakeup};
use super::{QueueId, QueueKey, Spool};

pub fn run(args: QueueArgs) -> i32 {
    let dir = default_state_dir(&args.state_dir);
    let spool = match Spool::open(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "tinymta queue: cannot open queue in --state-dir {}: {e}",
                dir.display()
            );
            return exit::TEMPFAIL;
        }
    };
    let id_arg = |s: &str| QueueId::parse(s).ok_or_else(|| format!("'{s}' is not a queue ID"));
    let res = match args.action {
        QueueAction::List(_) => list(&spool),
        QueueAction::Show(s) => id_arg(&s.id).and_then(|id| show(&spool, &id)),
        QueueAction::Delete(d) => id_arg(&d.id).and_then(|id| {
            spool.remove(&id).map_err(|e| format!("{id}: {e}"))?;
            wakeup::poke(&spool, Wakeup::Forget(id.clone()));
            println!("{id}: deleted");
            Ok(())
        }),
        QueueAction::Flush(_) => {
            if wakeup::poke(&spool, Wakeup::Flush) {
                println!("flush requested");
                Ok(())
            } else {
                eprintln!(
                    "tinymta queue flush: no daemon is listening on {}",
                    spool.wakeup_socket().display()
                );
                return exit::TEMPFAIL;
            }
        }
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tinymta queue: {e}");
            exit::DATAERR
        }
    }
}

/// `queue list` on standard output, through a buffer (one write per 8 KB, not per line).
fn list(spool: &Spool) -> Result<(), String> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    list_to(spool, &mut out)
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing the list: {e}"))
}

/// Writes the queue like `mailq`, oldest first, one message at a time as it is read:
/// only the names are collected first (1.6 MB for 100,000 messages); per message
/// the envelope and the status record are read, the content never (its size is the
/// file's). A message removed meanwhile (delivered) is left out of the list and the
/// totals.
fn list_to(spool: &Spool, out: &mut impl Write) -> std::io::Result<()> {
    let keys = spool.list()?;
    let corrupt = spool.corrupt_count();
    let corrupt_line = |out: &mut dyn Write| match corrupt {
        0 => Ok(()),
        n => writeln!(
            out,
            "-- {n} corrupt queue file{} set aside in {}",
            if n == 1 { "" } else { "s" },
            spool.corrupt_dir().display()
        ),
    };
    if keys.is_empty() {
        writeln!(out, "Mail queue is empty")?;
        return corrupt_line(out);
    }
    writeln!(
        out,
        "{:<16} {:>9} {:<31} Sender/Recipient",
        "Queue ID", "Size", "Arrival"
    )?;
    let (mut total, mut listed) = (0u64, 0usize);
    for id in keys.iter().map(QueueKey::id) {
        let (env, content) = match spool.open_message(&id) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // delivered meanwhile
            Err(e) => {
                // The daemon sets it aside at its next attempt (or retries a read error).
                writeln!(out, "{:<16} unreadable: {e}", id.0)?;
                continue;
            }
        };
        let st = spool.status(&id);
        total += content.size();
        listed += 1;
        let sender = if env.sender.is_empty() {
            "<>"
        } else {
            &env.sender
        };
        writeln!(
            out,
            "{:<16} {:>9} {:<31} {}",
            id.0,
            content.size(),
            rfc5322_date(env.arrival),
            sender
        )?;
        if !st.last_reason.is_empty() {
            writeln!(out, "{:58}({})", "", st.last_reason)?;
        }
        for r in env.recipients.iter().filter(|r| !st.finished.contains(r)) {
            writeln!(out, "{:58}{}", "", r)?;
        }
    }
    writeln!(
        out,
        "-- {} Kbytes in {} Request{}.",
        total.div_ceil(1024),
        listed,
        if listed == 1 { "" } else { "s" }
    )?;
    corrupt_line(out)
}

/// The envelope, the per-recipient state, then the message as stored (its bytes as
/// they are, copied in pieces).
fn show(spool: &Spool, id: &QueueId) -> Result<(), String> {
    let (env, mut content) = spool.open_message(id).map_err(|e| format!("{id}: {e}"))?;
    let st = spool.status(id);
    println!("id: {}", env.id);
    println!("arrival: {}", rfc5322_date(env.arrival));
    println!("sender: <{}>", env.sender);
    println!("client: {} ({})", env.client, env.protocol);
    for r in &env.recipients {
        let state = if st.finished.contains(r) {
            "done"
        } else {
            "pending"
        };
        println!("recipient: <{r}> {state}");
    }
    println!("attempts: {}", st.attempts);
    if !st.last_reason.is_empty() {
        println!("last reason: {}", st.last_reason);
    }
    println!();
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut content, &mut out)
        .and_then(|_| std::io::Write::flush(&mut out))
        .map(|_| ())
        .map_err(|e| format!("{id}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::spool::{Envelope, Status};

    /// Output that deletes a message from the spool as soon as the first message's
    /// line arrives: a list written as it reads leaves that message out, one that
    /// collected everything first would still show it.
    struct DeletingOutput<'a> {
        spool: &'a Spool,
        first: String,
        victim: QueueId,
        text: Vec<u8>,
    }

    impl Write for DeletingOutput<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.text.extend_from_slice(buf);
            if String::from_utf8_lossy(&self.text).contains(&self.first) {
                let _ = self.spool.remove(&self.victim);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_list_names_unreadable_files_and_counts_the_corrupt_ones() {
        let dir = std::env::temp_dir().join(format!("tinymta-list-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        let mut out = Vec::new();
        list_to(&spool, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "Mail queue is empty\n");
        let bad = QueueId("6566D1A2F3B9C1".into());
        std::fs::write(spool.message_path(&bad), "garbage\n").unwrap();
        let mut out = Vec::new();
        list_to(&spool, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("6566D1A2F3B9C1   unreadable: not a tinymta queue file\n"),
            "{text}"
        );
        spool.quarantine(&bad).unwrap();
        let mut out = Vec::new();
        list_to(&spool, &mut out).unwrap();
        let corrupt = dir.join("corrupt");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "Mail queue is empty\n-- 1 corrupt queue file set aside in {}\n",
                corrupt.display()
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_list_is_written_as_it_is_read_oldest_first() {
        let dir = std::env::temp_dir().join(format!("tinymta-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        // Stored newest first: the list sorts by ID, whose start is the arrival time.
        let ids: Vec<QueueId> = (0..50u64)
            .rev()
            .map(|n| {
                let env = Envelope {
                    id: QueueId(format!("{:08X}{n:06X}", 1_700_000_000 + n)),
                    arrival: 1_700_000_000 + n,
                    sender: if n == 1 {
                        String::new()
                    } else {
                        format!("s{n}@example.org")
                    },
                    recipients: vec![format!("r{n}@example.net"), format!("t{n}@example.net")],
                    client: "local".into(),
                    protocol: "local".into(),
                    unexpanded: false,
                    requiretls: false,
                    dsn: Default::default(),
                };
                spool.store(&env, &vec![b'x'; 1000 + n as usize]).unwrap();
                env.id
            })
            .collect();
        let status = Status {
            attempts: 1,
            next_attempt: 0,
            finished: vec!["r0@example.net".into()],
            last_reason: "4.4.1 no answer".into(),
            warned: Vec::new(),
        };
        spool.set_status(ids.last().unwrap(), &status).unwrap();
        let mut oldest_first = ids.clone();
        oldest_first.reverse();
        let victim = oldest_first[30].clone();
        let mut out = DeletingOutput {
            spool: &spool,
            first: format!("{} ", oldest_first[0]),
            victim: victim.clone(),
            text: Vec::new(),
        };
        list_to(&spool, &mut out).unwrap();
        let text = String::from_utf8(out.text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Queue ID "), "{text}");
        // The oldest message: its last reason, and only the recipient still pending.
        let pad = " ".repeat(58);
        assert_eq!(
            lines[1..4],
            [
                format!(
                    "{}        1000 Tue, 14 Nov 2023 22:13:20 +0000 s0@example.org",
                    ids[49]
                ),
                format!("{pad}(4.4.1 no answer)"),
                format!("{pad}t0@example.net"),
            ]
        );
        assert!(lines[4].ends_with(" <>"), "the null sender: {}", lines[4]);
        let listed: Vec<&str> = lines
            .iter()
            .filter(|l| !l.starts_with(' ') && !l.starts_with("Queue ID") && !l.starts_with("--"))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let want: Vec<&str> = oldest_first
            .iter()
            .filter(|id| **id != victim)
            .map(|id| id.0.as_str())
            .collect();
        assert_eq!(
            listed, want,
            "oldest first, without the message removed meanwhile"
        );
        // 49 messages of 1000 + n bytes, n = 0..49 without 30.
        let bytes: u64 = (0..50u64).filter(|&n| n != 30).map(|n| 1000 + n).sum();
        assert_eq!(
            *lines.last().unwrap(),
            format!("-- {} Kbytes in 49 Requests.", bytes.div_ceil(1024))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
