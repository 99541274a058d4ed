//! Durability: SIGKILL the server while many sessions are sending, restart it, and
//! check that every message that got `250` is delivered (none lost).

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Client, Server};

/// One sender thread: messages over fresh connections until the server dies.
fn sender(addr: String, thread: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = std::net::TcpStream::connect(&addr) else {
            return;
        };
        drop(stream);
        let result = std::panic::catch_unwind(|| {
            let mut c = Client::greeted(&addr);
            c.cmd("EHLO load.test");
            c.send_mail(
                "load@client.test",
                &["crash@example.test"],
                &format!("Subject: crash {thread}-{n}\r\n\r\nbody {thread}-{n}"),
            )
        });
        match result {
            Ok(r) if r.code == 250 => {
                let id = r.lines[0].rsplit(' ').next().unwrap().to_string();
                acked.lock().unwrap().push(id);
            }
            _ => return, // the server is gone
        }
        n += 1;
    }
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_message() {
    let mut s = Server::start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (addr, stop, acked) = (s.smtp.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || sender(addr, t, stop, acked))
        })
        .collect();
    // Let the load build up, then crash the server mid-flight.
    let start = Instant::now();
    while acked.lock().unwrap().len() < 100 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    s.kill();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 50,
        "too little load before the crash: {}",
        acked.len()
    );

    s.spawn();
    s.wait_log("message(s) recovered");
    // Wait until the queue is drained and every acknowledged ID arrived.
    let start = Instant::now();
    let missing = loop {
        let delivered: HashSet<String> = s
            .delivered("crash")
            .iter()
            .filter_map(|m| {
                m.split(" id ").nth(1).map(|rest| {
                    rest.split(|c: char| c.is_whitespace())
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
            })
            .collect();
        let missing: Vec<&String> = acked.iter().filter(|id| !delivered.contains(*id)).collect();
        if missing.is_empty() || start.elapsed() > Duration::from_secs(30) {
            break missing.into_iter().cloned().collect::<Vec<_>>();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "acknowledged before SIGKILL: {}; missing after restart: {}",
        acked.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "lost {} acknowledged messages: {missing:?}",
        missing.len()
    );
    // Nothing half-received is left behind for delivery.
    assert_eq!(
        std::fs::read_dir(s.state.join("queue/tmp"))
            .unwrap()
            .count(),
        0
    );
}
