//! `tinymta queue list|show|delete|flush`: read the spool directly (safe while the
//! daemon runs: files are only ever renamed into place) and poke the daemon.

use crate::cli::{QueueAction, QueueArgs};
use crate::clock::rfc5322_date;
use crate::exit;
use crate::host::default_state_dir;

use super::wakeup::{self, Wakeup};
use super::{QueueId, Spool};

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

fn list(spool: &Spool) -> Result<(), String> {
    let ids = spool.list().map_err(|e| e.to_string())?;
    if ids.is_empty() {
        println!("Mail queue is empty");
        return Ok(());
    }
    println!(
        "{:<16} {:>9} {:<31} Sender/Recipient",
        "Queue ID", "Size", "Arrival"
    );
    let mut total = 0u64;
    for id in &ids {
        let Ok((env, content)) = spool.read_content(id) else {
            continue; // delivered and removed meanwhile
        };
        let st = spool.status(id);
        total += content.len() as u64;
        let sender = if env.sender.is_empty() {
            "<>"
        } else {
            &env.sender
        };
        println!(
            "{:<16} {:>9} {:<31} {}",
            id.0,
            content.len(),
            rfc5322_date(env.arrival),
            sender
        );
        if !st.last_reason.is_empty() {
            println!("{:58}({})", "", st.last_reason);
        }
        for r in env.recipients.iter().filter(|r| !st.finished.contains(r)) {
            println!("{:58}{}", "", r);
        }
    }
    println!(
        "-- {} Kbytes in {} Request{}.",
        total.div_ceil(1024),
        ids.len(),
        if ids.len() == 1 { "" } else { "s" }
    );
    Ok(())
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
