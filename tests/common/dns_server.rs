//! A small DNS server for the mail-authentication tests: it answers from a zone held
//! in memory, on 127.0.0.1 over UDP and TCP (one port), as a recursive resolver would
//! (RA set, CNAME chains followed into the answer), so that tinymta's real resolver
//! (`tinymta::dns::Resolver`) and evaluators can be tested against published test
//! data. Built on hickory-proto's message types; two threads, stopped when dropped.
//!
//! What a name answers, for a query of type T (the RFC 7208 test suite's rules):
//! - its records of type T, in the order they were added;
//! - a [`Rr::Timeout`] before any record of type T: no answer at all (the client
//!   times out); after one, the answer stops there;
//! - a CNAME, for any other T: the CNAME and what its target answers (loops cut);
//! - NXDOMAIN if no name in the zone is it or ends in `.it` (names above others are
//!   empty non-terminals, NODATA).
//!
//! UDP answers longer than the client's EDNS payload (512 without EDNS) go out
//! truncated (TC=1, no records), so the client retries over TCP.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};

/// One record of the zone, or the marker of a name that does not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rr {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// Preference and exchange ("" for the root: a null MX).
    Mx(u16, String),
    /// The character-strings of one TXT record (none at all is allowed on the wire).
    Txt(Vec<Vec<u8>>),
    Ptr(String),
    Cname(String),
    Timeout,
}

/// Names (any case; labels may hold any octet but the dot) and their records.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    names: HashMap<String, Vec<Rr>>,
}

/// What a query gets.
enum Reply {
    Silence,
    Answer(ResponseCode, Vec<Record>),
}

impl Zone {
    pub fn add(&mut self, name: &str, rr: Rr) {
        self.names.entry(key(name)).or_default().push(rr);
    }

    /// Makes `name` exist without records of its own.
    pub fn touch(&mut self, name: &str) {
        self.names.entry(key(name)).or_default();
    }

    fn exists(&self, name: &str) -> bool {
        let below = format!(".{name}");
        self.names.contains_key(name) || self.names.keys().any(|k| k.ends_with(&below))
    }

    fn reply(&self, qname: &Name, qtype: RecordType) -> Reply {
        let mut records = Vec::new();
        let mut owner = qname.clone();
        let mut seen = Vec::new();
        loop {
            let name = text(&owner);
            if seen.contains(&name) || seen.len() > 8 {
                break; // a CNAME loop: answer what we have, as a resolver might
            }
            seen.push(name.clone());
            let Some(entries) = self.names.get(&name) else {
                if records.is_empty() && !self.exists(&name) {
                    return Reply::Answer(ResponseCode::NXDomain, records);
                }
                break;
            };
            let mut next = None;
            let mut found = false;
            for rr in entries {
                if *rr == Rr::Timeout {
                    if found {
                        break;
                    }
                    return Reply::Silence;
                }
                if let (Rr::Cname(target), false) = (rr, qtype == RecordType::CNAME) {
                    records.push(Record::from_rdata(
                        owner.clone(),
                        300,
                        RData::CNAME(rdata::CNAME(name_of(target))),
                    ));
                    next = Some(name_of(target));
                    break;
                }
                if let Some(data) = rdata_of(rr, qtype) {
                    found = true;
                    records.push(Record::from_rdata(owner.clone(), 300, data));
                }
            }
            match next {
                Some(target) => owner = target,
                None => break,
            }
        }
        Reply::Answer(ResponseCode::NoError, records)
    }
}

/// The zone's key for a name: lower case, no trailing dot.
fn key(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// A name from its text, each dot-separated piece one raw label ("" is the root).
fn name_of(s: &str) -> Name {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return Name::root();
    }
    Name::from_labels(s.split('.').map(str::as_bytes)).expect("a name of labels of 1 to 63 octets")
}

/// The zone key of a name from the wire.
fn text(name: &Name) -> String {
    let labels: Vec<String> = name
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    labels.join(".")
}

fn rdata_of(rr: &Rr, qtype: RecordType) -> Option<RData> {
    Some(match (rr, qtype) {
        (Rr::A(a), RecordType::A) => RData::A(rdata::A(*a)),
        (Rr::Aaaa(a), RecordType::AAAA) => RData::AAAA(rdata::AAAA(*a)),
        (Rr::Mx(p, x), RecordType::MX) => RData::MX(rdata::MX::new(*p, name_of(x))),
        (Rr::Txt(strings), RecordType::TXT) => RData::TXT(rdata::TXT::from_bytes(
            strings.iter().map(Vec::as_slice).collect(),
        )),
        (Rr::Ptr(p), RecordType::PTR) => RData::PTR(rdata::PTR(name_of(p))),
        (Rr::Cname(c), RecordType::CNAME) => RData::CNAME(rdata::CNAME(name_of(c))),
        _ => return None,
    })
}

/// The wire reply to a query, or nothing; `limit` is the UDP payload (None: TCP).
fn respond(zone: &Zone, query: &[u8], limit: Option<usize>) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries.first()?.clone();
    let (rcode, answers) = match zone.reply(&question.name, question.query_type) {
        Reply::Silence => return None,
        Reply::Answer(rcode, answers) => (rcode, answers),
    };
    let build = |answers: Vec<Record>, truncated: bool| {
        let mut m = Message::response(q.metadata.id, OpCode::Query);
        m.metadata.recursion_desired = q.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.metadata.response_code = rcode;
        m.metadata.truncation = truncated;
        m.add_queries(q.queries.clone());
        m.add_answers(answers);
        if q.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            m.set_edns(edns);
        }
        m.to_vec().expect("an encodable reply")
    };
    let full = build(answers, false);
    match limit {
        Some(limit) if full.len() > limit => Some(build(Vec::new(), true)),
        _ => Some(full),
    }
}

/// The server; stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl DnsServer {
    pub fn start(zone: Zone) -> DnsServer {
        let zone = Arc::new(zone);
        let (udp, tcp) = (0..20)
            .find_map(|_| {
                let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
                let port = udp.local_addr().ok()?.port();
                let tcp = TcpListener::bind(("127.0.0.1", port)).ok()?;
                Some((udp, tcp))
            })
            .expect("a free UDP+TCP port pair on 127.0.0.1");
        let addr = udp.local_addr().unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        {
            let (stop, count, zone) = (stop.clone(), udp_queries.clone(), zone.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    count.fetch_add(1, Ordering::Relaxed);
                    let limit =
                        Message::from_vec(&buf[..n]).map_or(512, |m| usize::from(m.max_payload()));
                    if let Some(out) = respond(&zone, &buf[..n], Some(limit)) {
                        let _ = udp.send_to(&out, peer);
                    }
                }
            }));
        }
        {
            let (stop, count) = (stop.clone(), tcp_queries.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((stream, _)) => {
                            count.fetch_add(1, Ordering::Relaxed);
                            serve_tcp(stream, &zone);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => {}
                    }
                }
            }));
        }
        DnsServer {
            addr,
            stop,
            udp_queries,
            tcp_queries,
            threads,
        }
    }

    /// tinymta's resolver pointed at this server: one attempt, `timeout` per answer
    /// (a [`Rr::Timeout`] costs that long).
    pub fn resolver(&self, timeout: Duration) -> tinymta::dns::Resolver {
        tinymta::dns::Resolver::new(self.addr)
            .with_timeout(timeout)
            .with_attempts(1)
    }
}

/// One query per connection, as tinymta's resolver sends them.
fn serve_tcp(mut stream: TcpStream, zone: &Zone) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut len = [0u8; 2];
    if stream.read_exact(&mut len).is_err() {
        return;
    }
    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
    if stream.read_exact(&mut query).is_err() {
        return;
    }
    if let Some(out) = respond(zone, &query, None) {
        let mut framed = (out.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&out);
        let _ = stream.write_all(&framed);
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
