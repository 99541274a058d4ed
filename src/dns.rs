//! DNS lookups for delivery and mail authentication: MX, A/AAAA, TLSA, TXT and PTR,
//! asked of one configured recursive resolver.
//!
//! This module owns the wire conversation with that resolver and nothing more. It is a
//! stub resolver: every query goes to the one server given by `--resolver` (or the
//! first `nameserver` of `/etc/resolv.conf`) with RD=1, AD=1 and EDNS0 with the DO
//! bit, and the answer's AD bit is passed up as [`Lookup::authenticated`]. That is
//! Postfix's model for DANE (`smtp_dns_support_level = dnssec`): the resolver does the
//! DNSSEC validation and is trusted to do it, so it must be local (on the router, or
//! reached over a trusted link). A validation failure (bogus data) reaches us as
//! SERVFAIL from a validating resolver and is reported as [`DnsError::ServFail`].
//!
//! What it must not do: validate signatures itself (no DNSSEC crypto here), iterate
//! from the root, search domains, cache anything beyond the one query in flight, or
//! follow CNAMEs itself (the recursive resolver already did; the chain in the answer
//! section is only used to pick the records that belong to the question).
//!
//! The wire format is hickory-proto's types (header, question, names with
//! compression, A/AAAA/MX data) driven by a small record walk of our own that keeps
//! only the records asked for (see `build_query` for why not `Message`). The
//! transport is ours, over smol sockets: UDP from an OS-chosen source port with a
//! random 16-bit ID (from OpenSSL), retried over TCP when the answer is truncated. The UDP socket is connected
//! to the server, so datagrams from other addresses never reach us; replies with the
//! wrong ID or question are ignored and the wait goes on until the timeout.
//!
//! Names are checked before anything is sent: host and service names for delivery, or
//! any printable name for mail authentication, whose records build names by macro
//! expansion ([`Names`]); the same choice decides how MX and PTR targets come back.
//!
//! The lookups are `async fn`s meant for the single-threaded smol executor of the
//! daemon; they hold only sockets and buffers, so the futures are also `Send`, but
//! nothing relies on that.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX};
use hickory_proto::rr::{DNSClass, Label, Name, RecordType};
use hickory_proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder, DecodeError,
};
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, Timer};

use crate::domain::{check_name, NameRules};

/// Port of the resolver when none is given.
const DNS_PORT: u16 = 53;
/// Default wait for one answer (per attempt, and again for the TCP retry).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of UDP attempts (each with a fresh ID and source port).
const DEFAULT_ATTEMPTS: u32 = 2;
/// EDNS0 UDP payload size we advertise (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;
/// Receive buffer for UDP answers; an answer that fills it is treated as truncated.
const UDP_BUFFER: usize = 4096;
/// Longest CNAME chain followed inside one answer section.
const MAX_CNAME_CHAIN: usize = 16;

/// A stub resolver bound to one recursive server.
#[derive(Debug, Clone)]
pub struct Resolver {
    server: SocketAddr,
    timeout: Duration,
    attempts: u32,
    names: Names,
    /// When set, no query goes on past it (`DnsError::Timeout`): the bound of all
    /// the lookups of one task, such as a message's checks.
    deadline: Option<Instant>,
}

/// Which names a resolver takes from its caller and reads from MX and PTR data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Host and service names (`NameRules::DNS`: letters, digits, `-`, `_`), what
    /// delivery asks for; anything else is `Malformed`. The default.
    Hosts,
    /// Any name DNS can carry: labels of 1 to 63 octets, any printable ASCII but the
    /// dot (RFC 2181 §11 allows every octet; control and non-ASCII bytes are refused so
    /// that no name we log or return can hold them). SPF asks for names that macro
    /// expansion builds from record data and the peer's words (RFC 7208 §7.3), so
    /// `a:foo:bar/baz.example.com` names something to look up, not an error.
    Any,
}

impl Names {
    /// Whether a query for `name` (with or without its trailing dot) can be sent.
    pub fn accepts(self, name: &str) -> bool {
        match self {
            Names::Hosts => parse_name(name).is_ok(),
            Names::Any => parse_any_name(name).is_ok(),
        }
    }
}

/// The records of one lookup, with the DNSSEC status the resolver reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup<T> {
    /// Records of the requested type found in the answer section (empty for NODATA
    /// and NXDOMAIN).
    pub records: Vec<T>,
    /// The AD bit of the answer: the resolver validated it with DNSSEC. For NODATA
    /// and NXDOMAIN this says whether the denial of existence was validated.
    pub authenticated: bool,
    /// The name does not exist (RCODE NXDOMAIN).
    pub nxdomain: bool,
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    /// The exchange host in lower case, without trailing dot. The empty string stands
    /// for the root name "." of a null MX (RFC 7505: the domain accepts no mail).
    pub exchange: String,
}

/// One TLSA record (RFC 6698), as the numbers and bytes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

/// Why a lookup gave no answer. All of these are temporary for delivery purposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// RCODE SERVFAIL. From a validating resolver this includes DNSSEC "bogus"
    /// answers (a signature that does not verify), which must defer DANE deliveries.
    ServFail,
    /// RCODE REFUSED: the resolver does not serve us (access control).
    Refused,
    /// No answer within the timeout on any attempt.
    Timeout,
    /// An invalid name was asked for, or the answer could not be understood.
    Malformed(String),
    /// A socket error (unreachable resolver, connection refused, ...).
    Io(String),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::ServFail => f.write_str("SERVFAIL (server failure or DNSSEC bogus)"),
            DnsError::Refused => f.write_str("REFUSED by the resolver"),
            DnsError::Timeout => f.write_str("timed out"),
            DnsError::Malformed(m) => write!(f, "malformed: {m}"),
            DnsError::Io(m) => write!(f, "I/O error: {m}"),
        }
    }
}

impl std::error::Error for DnsError {}

fn io_err(e: std::io::Error) -> DnsError {
    DnsError::Io(e.to_string())
}

impl Resolver {
    /// A resolver asking `server`, with a 5 s timeout and 2 attempts.
    pub fn new(server: SocketAddr) -> Resolver {
        Resolver {
            server,
            timeout: DEFAULT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
            names: Names::Hosts,
            deadline: None,
        }
    }

    /// The same resolver, every query ended at `deadline` (`DnsError::Timeout`),
    /// none asked after it.
    pub fn with_deadline(mut self, deadline: Instant) -> Resolver {
        self.deadline = Some(deadline);
        self
    }

    /// The time one wait for the server may take: the timeout, or less when the
    /// deadline is nearer; `Timeout` once the deadline has passed.
    fn wait_limit(&self) -> Result<Duration, DnsError> {
        match self.deadline {
            None => Ok(self.timeout),
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Ok(left.min(self.timeout)),
                _ => Err(DnsError::Timeout),
            },
        }
    }

    /// The same resolver taking and returning other names (see [`Names`]).
    pub fn with_names(mut self, names: Names) -> Resolver {
        self.names = names;
        self
    }

    /// The same resolver with another per-attempt timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Resolver {
        self.timeout = timeout;
        self
    }

    /// The same resolver with another number of UDP attempts (at least 1).
    #[allow(dead_code)] // for callers that need more patience (not yet)
    pub fn with_attempts(mut self, attempts: u32) -> Resolver {
        self.attempts = attempts.max(1);
        self
    }

    /// The server asked, for log lines.
    #[cfg(test)]
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The resolver from `--resolver ADDR[:PORT]` (port 53 by default; IPv6 as
    /// `[::1]:53`, `[::1]` or bare `::1`), or else the first usable `nameserver` in
    /// `/etc/resolv.conf`. Host names are not accepted: there is nobody to ask yet.
    pub fn from_flag_or_system(flag: Option<&str>) -> Result<Resolver, String> {
        if let Some(flag) = flag {
            return parse_server(flag).map(Resolver::new).ok_or_else(|| {
                format!("invalid --resolver {flag:?}: expected an IP address with optional port, like 127.0.0.1:53 or [::1]:53")
            });
        }
        let path = "/etc/resolv.conf";
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {path}: {e}; give --resolver ADDR[:PORT]"))?;
        parse_resolv_conf(&text)
            .map(Resolver::new)
            .ok_or_else(|| format!("no usable nameserver in {path}; give --resolver ADDR[:PORT]"))
    }

    /// MX records of `domain`. A null MX comes back as one record with preference 0
    /// and an empty exchange. An exchange that is not a host name (bytes other than
    /// letters, digits, `-`, `_`) makes the whole lookup `Malformed`, as Postfix
    /// treats "malformed domain name in resource data": a temporary failure.
    pub async fn mx(&self, domain: &str) -> Result<Lookup<Mx>, DnsError> {
        self.lookup(domain, RecordType::MX, |data| match data {
            Data::Mx(preference, exchange) => Some(self.data_name(&exchange).map(|exchange| Mx {
                preference,
                exchange,
            })),
            _ => None,
        })
        .await
    }

    /// IPv4 and IPv6 addresses of `host`, A first then AAAA. The two queries run
    /// concurrently. A failed A query fails the lookup; a failed AAAA query with a
    /// successful A query does not (the A records are returned), but then the result
    /// is not authenticated. `authenticated` needs the AD bit on both answers.
    pub async fn ips(&self, host: &str) -> Result<Lookup<IpAddr>, DnsError> {
        let v4 = self.lookup(host, RecordType::A, address);
        let v6 = self.lookup(host, RecordType::AAAA, address);
        let (v4, v6) = smol::future::zip(v4, v6).await;
        let mut out = v4?;
        match v6 {
            Ok(v6) => {
                out.authenticated &= v6.authenticated;
                out.nxdomain &= v6.nxdomain;
                out.records.extend(v6.records);
            }
            Err(e) => {
                log::debug!("DNS AAAA {host}: {e}; using the A records only");
                out.authenticated = false;
            }
        }
        out.nxdomain &= out.records.is_empty();
        Ok(out)
    }

    /// TLSA records at `name`, e.g. `_25._tcp.mx.example.com`.
    pub async fn tlsa(&self, name: &str) -> Result<Lookup<Tlsa>, DnsError> {
        self.lookup(name, RecordType::TLSA, |data| match data {
            Data::Tlsa(t) => Some(Ok(t)),
            _ => None,
        })
        .await
    }

    /// IPv4 addresses of `name`: one A query (SPF asks for one family at a time,
    /// RFC 7208 §5.3).
    pub async fn a(&self, name: &str) -> Result<Lookup<Ipv4Addr>, DnsError> {
        let found = self.lookup(name, RecordType::A, address).await?;
        Ok(found.keep(|ip| match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }))
    }

    /// IPv6 addresses of `name`: one AAAA query.
    pub async fn aaaa(&self, name: &str) -> Result<Lookup<Ipv6Addr>, DnsError> {
        let found = self.lookup(name, RecordType::AAAA, address).await?;
        Ok(found.keep(|ip| match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }))
    }

    /// The names of `ip` in its reverse zone (`in-addr.arpa`, `ip6.arpa`), lower case
    /// without trailing dot, in the order of the answer. A name that this resolver's
    /// [`Names`] cannot return makes the lookup `Malformed`, as for MX.
    pub async fn ptr(&self, ip: IpAddr) -> Result<Lookup<String>, DnsError> {
        self.lookup(&reverse_name(ip), RecordType::PTR, |data| match data {
            Data::Ptr(name) => Some(self.data_name(&name)),
            _ => None,
        })
        .await
    }

    /// TXT records at `name`, each one the concatenation of its character-strings
    /// (RFC 7208 §3.3, RFC 6376 §3.6.2.2); bytes that are not UTF-8 become U+FFFD.
    pub async fn txt(&self, name: &str) -> Result<Lookup<String>, DnsError> {
        self.lookup(name, RecordType::TXT, |data| match data {
            Data::Txt(bytes) => Some(Ok(String::from_utf8_lossy(&bytes).into_owned())),
            _ => None,
        })
        .await
    }

    /// One query for `name`/`rtype`, its answer turned into a `Lookup` by `convert`
    /// (which returns `None` for data of another type). Only the conversion is
    /// generic: the query and its answer are one piece of code for every type.
    async fn lookup<T>(
        &self,
        name: &str,
        rtype: RecordType,
        convert: impl Fn(Data) -> Option<Result<T, DnsError>>,
    ) -> Result<Lookup<T>, DnsError> {
        let found = self.query(name, rtype).await?;
        let mut records = Vec::new();
        for data in found.records {
            if let Some(value) = convert(data) {
                records.push(value?);
            }
        }
        Ok(Lookup {
            records,
            authenticated: found.authenticated,
            nxdomain: found.nxdomain,
        })
    }

    /// One query for `name`/`rtype`: the data of the answer's records that belong
    /// to `name` or to the names its CNAME chain leads to.
    async fn query(&self, name: &str, rtype: RecordType) -> Result<Lookup<Data>, DnsError> {
        let qname = match self.names {
            Names::Hosts => parse_name(name)?,
            Names::Any => parse_any_name(name)?,
        };
        let answer = self.exchange(name, &qname, rtype).await?;
        Ok(in_chain(answer, &qname))
    }

    /// Ask the server: UDP attempts until one gets an answer, TCP if it is truncated.
    /// Only timeouts and socket errors are retried; SERVFAIL is the resolver's verdict
    /// (asking again would only repeat its cached failure).
    async fn exchange(
        &self,
        name: &str,
        qname: &Name,
        rtype: RecordType,
    ) -> Result<Answer, DnsError> {
        let mut last = DnsError::Timeout;
        for attempt in 1..=self.attempts.max(1) {
            // Past the deadline there is nothing to retry: no query is built or sent.
            self.wait_limit()?;
            match self.attempt(qname, rtype).await {
                Err(e @ (DnsError::Timeout | DnsError::Io(_))) => {
                    log::debug!(
                        "DNS {rtype} {name} via {}: attempt {attempt}: {e}",
                        self.server
                    );
                    last = e;
                }
                other => return other,
            }
        }
        Err(last)
    }

    async fn attempt(&self, qname: &Name, rtype: RecordType) -> Result<Answer, DnsError> {
        let id = random_id()?;
        let query = build_query(id, qname, rtype)?;
        let udp = within(self.wait_limit()?, self.udp(&query, id, qname, rtype)).await?;
        match udp {
            Some(answer) => Ok(answer),
            None => within(self.wait_limit()?, self.tcp(&query, id, qname, rtype)).await,
        }
    }

    /// Send `query` over UDP and wait for its answer; `None` means truncated (go TCP).
    async fn udp(
        &self,
        query: &[u8],
        id: u16,
        qname: &Name,
        rtype: RecordType,
    ) -> Result<Option<Answer>, DnsError> {
        let local: SocketAddr = match self.server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = Async::<UdpSocket>::bind(local).map_err(io_err)?;
        socket.get_ref().connect(self.server).map_err(io_err)?;
        socket.send(query).await.map_err(io_err)?;
        let mut buf = vec![0u8; UDP_BUFFER];
        loop {
            let n = socket.recv(&mut buf).await.map_err(io_err)?;
            match classify(&buf[..n], id, qname, rtype) {
                Reply::Ignore(why) => log::debug!("DNS {rtype}: ignored a datagram: {why}"),
                Reply::Truncated => return Ok(None),
                // A datagram that filled the buffer may have been cut by the kernel.
                Reply::Answer(_) if n == buf.len() => return Ok(None),
                Reply::Answer(answer) => return answer_rcode(answer).map(Some),
                Reply::Bad(e) => return Err(e),
            }
        }
    }

    /// Send `query` over TCP (RFC 1035 §4.2.2 two-byte length prefix) and read the
    /// answer. On TCP nobody can inject datagrams, so a mismatch is an error.
    async fn tcp(
        &self,
        query: &[u8],
        id: u16,
        qname: &Name,
        rtype: RecordType,
    ) -> Result<Answer, DnsError> {
        let mut stream = Async::<TcpStream>::connect(self.server)
            .await
            .map_err(io_err)?;
        let len = u16::try_from(query.len())
            .map_err(|_| DnsError::Malformed("query too long".to_string()))?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await.map_err(io_err)?;
        stream.flush().await.map_err(io_err)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(io_err)?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.map_err(io_err)?;
        match classify(&buf, id, qname, rtype) {
            Reply::Answer(answer) => answer_rcode(answer),
            Reply::Truncated => Err(DnsError::Malformed("truncated answer over TCP".into())),
            Reply::Ignore(why) => Err(DnsError::Malformed(format!("TCP answer: {why}"))),
            Reply::Bad(e) => Err(e),
        }
    }
}

/// `fut`, or `DnsError::Timeout` after `limit`.
async fn within<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, DnsError>>,
) -> Result<T, DnsError> {
    fut.or(async {
        Timer::after(limit).await;
        Err(DnsError::Timeout)
    })
    .await
}

fn random_id() -> Result<u16, DnsError> {
    let mut bytes = [0u8; 2];
    openssl::rand::rand_bytes(&mut bytes)
        .map_err(|_| DnsError::Io("random number generator failed".to_string()))?;
    Ok(u16::from_be_bytes(bytes))
}

/// The wire form of a recursive query with RD, AD and EDNS0 DO set.
///
/// Written with hickory's header, question and name encoders rather than
/// `Message::to_vec`, and read back by [`decode`] rather than `Message::from_vec`:
/// those two go through `RData`'s encoder and decoder for every record type (SVCB,
/// CAA with URL and IDNA parsing, ...), which costs about 200 KB of binary.
fn build_query(id: u16, qname: &Name, rtype: RecordType) -> Result<Vec<u8>, DnsError> {
    let mut metadata = Metadata::new(id, MessageType::Query, OpCode::Query);
    metadata.recursion_desired = true;
    // RFC 6840 §5.7: AD=1 in a query asks for the AD bit in the answer, even without DO.
    metadata.authentic_data = true;
    let header = Header {
        metadata,
        counts: HeaderCounts {
            queries: 1,
            answers: 0,
            authorities: 0,
            additionals: 1,
        },
    };
    let mut question = Query::query(qname.clone(), rtype);
    question.set_query_class(DNSClass::IN);
    let mut buf = Vec::with_capacity(64);
    let mut enc = BinEncoder::new(&mut buf);
    let written = header.emit(&mut enc).and_then(|()| question.emit(&mut enc));
    if written.is_err() {
        return Err(DnsError::Malformed("cannot encode the query".to_string()));
    }
    // RFC 6891 OPT pseudo-record: root owner, type 41, CLASS = UDP payload size,
    // TTL = extended RCODE 0, version 0, flags DO; no options.
    buf.push(0);
    buf.extend_from_slice(&u16::from(RecordType::OPT).to_be_bytes());
    buf.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&EDNS_DO.to_be_bytes());
    buf.extend_from_slice(&0u16.to_be_bytes());
    Ok(buf)
}

/// The DO bit in the EDNS0 flags.
const EDNS_DO: u16 = 0x8000;

/// Record data this module understands, decoded from an answer section.
///
/// No `Debug` here or on [`Answer`]: hickory formats a `Name` through IDNA, and one
/// `{:?}` of a name would link the Unicode tables (about 100 KB).
enum Data {
    Cname(Name),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx(u16, Name),
    Ptr(Name),
    Tlsa(Tlsa),
    /// The character-strings of one TXT record, concatenated.
    Txt(Vec<u8>),
}

/// What this module needs of a response.
struct Answer {
    header: Header,
    /// Including the extended bits from the OPT record.
    rcode: ResponseCode,
    questions: Vec<Query>,
    /// Class-IN answer records of the asked type or CNAME; other types (RRSIG, ...)
    /// are skipped.
    records: Vec<(Name, Data)>,
}

/// Decode a response, keeping answer records of type `rtype` and CNAMEs.
fn decode(buf: &[u8], rtype: RecordType) -> Result<Answer, Undecodable> {
    let mut d = BinDecoder::new(buf);
    let header = Header::read(&mut d)?;
    let mut questions = Vec::new();
    for _ in 0..header.counts.queries {
        questions.push(Query::read(&mut d)?);
    }
    let mut records = Vec::new();
    for _ in 0..header.counts.answers {
        let owner = Name::read(&mut d)?;
        let (rr_type, class, _ttl, len) = read_rr_fixed(&mut d)?;
        let end = d.index() + usize::from(len);
        let data = if class != u16::from(DNSClass::IN) {
            None
        } else if rr_type == RecordType::CNAME {
            Some(Data::Cname(Name::read(&mut d)?))
        } else if rr_type != rtype {
            None
        } else {
            match rr_type {
                RecordType::A => Some(Data::A(A::read(&mut d)?.0)),
                RecordType::AAAA => Some(Data::Aaaa(AAAA::read(&mut d)?.0)),
                RecordType::MX => {
                    let mx = MX::read(&mut d)?;
                    Some(Data::Mx(mx.preference, mx.exchange))
                }
                RecordType::PTR => Some(Data::Ptr(Name::read(&mut d)?)),
                RecordType::TLSA => {
                    let fields = d.read_slice(3)?.unverified();
                    let rest = usize::from(len)
                        .checked_sub(3)
                        .ok_or(Undecodable("TLSA record shorter than 3 octets"))?;
                    Some(Data::Tlsa(Tlsa {
                        usage: fields[0],
                        selector: fields[1],
                        matching: fields[2],
                        data: d.read_vec(rest)?.unverified(),
                    }))
                }
                RecordType::TXT => {
                    let mut text = Vec::new();
                    while d.index() < end {
                        text.extend_from_slice(d.read_character_data()?.unverified());
                    }
                    Some(Data::Txt(text))
                }
                _ => None,
            }
        };
        match data {
            Some(data) => records.push((owner, data)),
            None => skip_to(&mut d, end)?,
        }
        if d.index() != end {
            return Err(Undecodable("record data length mismatch"));
        }
    }
    for _ in 0..header.counts.authorities {
        Name::read(&mut d)?;
        let (_, _, _, len) = read_rr_fixed(&mut d)?;
        d.read_slice(usize::from(len))?;
    }
    // RFC 6891 §6.1.3: the upper 8 bits of the 12-bit RCODE are in the OPT TTL.
    let mut rcode_high = 0;
    for _ in 0..header.counts.additionals {
        Name::read(&mut d)?;
        let (rr_type, _, ttl, len) = read_rr_fixed(&mut d)?;
        if rr_type == RecordType::OPT {
            rcode_high = ttl.to_be_bytes()[0];
        }
        d.read_slice(usize::from(len))?;
    }
    let rcode = ResponseCode::from(rcode_high, header.metadata.response_code.low());
    Ok(Answer {
        header,
        rcode,
        questions,
        records,
    })
}

/// Why a response could not be decoded. (hickory's `DecodeError` is not formatted:
/// its `Display` can print a `Name`, which pulls in the IDNA tables.)
#[derive(Debug)]
struct Undecodable(&'static str);

impl From<DecodeError> for Undecodable {
    fn from(e: DecodeError) -> Self {
        Undecodable(match e {
            DecodeError::InsufficientBytes => "answer cut short",
            _ => "undecodable answer",
        })
    }
}

/// TYPE, CLASS, TTL and RDLENGTH of a resource record.
fn read_rr_fixed(d: &mut BinDecoder<'_>) -> Result<(RecordType, u16, u32, u16), DecodeError> {
    let rr_type = RecordType::from(d.read_u16()?.unverified());
    let class = d.read_u16()?.unverified();
    let ttl = d.read_u32()?.unverified();
    let len = d.read_u16()?.unverified();
    Ok((rr_type, class, ttl, len))
}

fn skip_to(d: &mut BinDecoder<'_>, end: usize) -> Result<(), DecodeError> {
    let n = end.saturating_sub(d.index());
    d.read_slice(n).map(|_| ())
}

/// What one received message means for the query in flight.
enum Reply {
    /// Not an answer to our query (wrong ID, not a response, other question).
    Ignore(String),
    /// Our answer, with TC=1.
    Truncated,
    /// Our answer, decoded.
    Answer(Answer),
    /// Our answer, but it cannot be decoded.
    Bad(DnsError),
}

fn classify(buf: &[u8], id: u16, qname: &Name, rtype: RecordType) -> Reply {
    if buf.len() < 12 {
        return Reply::Ignore(format!("{} bytes is shorter than a header", buf.len()));
    }
    let got = u16::from_be_bytes([buf[0], buf[1]]);
    if got != id {
        return Reply::Ignore(format!("ID {got} instead of {id}"));
    }
    if buf[2] & 0x80 == 0 {
        return Reply::Ignore("not a response".into());
    }
    // TC=1: the answer may be cut anywhere, so do not insist on decoding it; a forged
    // TC only costs one TCP connection to the real server.
    if buf[2] & 0x02 != 0 {
        return Reply::Truncated;
    }
    let answer = match decode(buf, rtype) {
        Ok(a) => a,
        Err(Undecodable(why)) => return Reply::Bad(DnsError::Malformed(why.to_string())),
    };
    match answer.questions.as_slice() {
        [q] if q.name == *qname && q.query_type == rtype && q.query_class == DNSClass::IN => {}
        _ => return Reply::Ignore("answer to another question".into()),
    }
    Reply::Answer(answer)
}

/// The answer if its RCODE carries data (NOERROR, NXDOMAIN), else the error.
fn answer_rcode(answer: Answer) -> Result<Answer, DnsError> {
    match answer.rcode {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(answer),
        ResponseCode::ServFail => Err(DnsError::ServFail),
        ResponseCode::Refused => Err(DnsError::Refused),
        other => Err(DnsError::Malformed(format!(
            "resolver answered {}",
            other.to_str()
        ))),
    }
}

/// Records owned by `qname` or by a name its CNAME chain (as given in the answer
/// section) leads to.
fn in_chain(answer: Answer, qname: &Name) -> Lookup<Data> {
    let mut owners = vec![qname.clone()];
    while owners.len() < MAX_CNAME_CHAIN {
        let last = &owners[owners.len() - 1];
        let next = answer.records.iter().find_map(|(owner, data)| match data {
            Data::Cname(target) if owner == last => Some(target.clone()),
            _ => None,
        });
        match next {
            Some(n) if !owners.contains(&n) => owners.push(n),
            _ => break,
        }
    }
    let records = answer
        .records
        .into_iter()
        .filter(|(owner, _)| owners.contains(owner))
        .map(|(_, data)| data)
        .collect();
    Lookup {
        records,
        authenticated: answer.header.metadata.authentic_data,
        nxdomain: answer.rcode == ResponseCode::NXDomain,
    }
}

/// The address in A or AAAA data.
fn address(data: Data) -> Option<Result<IpAddr, DnsError>> {
    match data {
        Data::A(a) => Some(Ok(IpAddr::V4(a))),
        Data::Aaaa(a) => Some(Ok(IpAddr::V6(a))),
        _ => None,
    }
}

impl<T> Lookup<T> {
    /// The same lookup with the records `keep` maps to something.
    fn keep<U>(self, keep: impl Fn(T) -> Option<U>) -> Lookup<U> {
        Lookup {
            records: self.records.into_iter().filter_map(keep).collect(),
            authenticated: self.authenticated,
            nxdomain: self.nxdomain,
        }
    }
}

/// A name from the caller (`NameRules::DNS`), with or without the trailing dot.
fn parse_name(name: &str) -> Result<Name, DnsError> {
    let bad = |why: &str| DnsError::Malformed(format!("invalid domain name {name:?}: {why}"));
    let text = name.strip_suffix('.').unwrap_or(name);
    check_name(text, NameRules::DNS).map_err(|e| bad(&e.to_string()))?;
    // Not `Name::from_labels`: its error path formats names with IDNA (binary size).
    let mut qname = Name::root();
    for label in text.split('.') {
        qname = Label::from_raw_bytes(label.as_bytes())
            .and_then(|l| qname.append_label(l))
            .map_err(|_| bad("not encodable"))?;
    }
    Ok(qname)
}

/// A name under [`Names::Any`]: only the lengths of RFC 1035 and printable ASCII.
fn parse_any_name(name: &str) -> Result<Name, DnsError> {
    let bad = |why: &str| DnsError::Malformed(format!("invalid domain name {name:?}: {why}"));
    let text = name.strip_suffix('.').unwrap_or(name);
    if text.is_empty() || text.len() > 253 {
        return Err(bad("empty or longer than 253 characters"));
    }
    if !text.bytes().all(is_any_name_byte) {
        return Err(bad("control or non-ASCII character"));
    }
    let mut qname = Name::root();
    for label in text.split('.') {
        // from_raw_bytes refuses empty labels and labels over 63 octets.
        qname = Label::from_raw_bytes(label.as_bytes())
            .and_then(|l| qname.append_label(l))
            .map_err(|_| bad("empty label or label longer than 63 characters"))?;
    }
    Ok(qname)
}

fn is_any_name_byte(b: u8) -> bool {
    (b' '..=b'~').contains(&b)
}

/// The owner name of `ip`'s PTR records (RFC 1035 §3.5, RFC 3596 §2.5).
fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0xf, byte >> 4] {
                    s.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    s.push('.');
                }
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

impl Resolver {
    /// A name from MX or PTR data as this resolver's [`Names`] returns it.
    fn data_name(&self, name: &Name) -> Result<String, DnsError> {
        match self.names {
            Names::Hosts => host_of(name),
            Names::Any => text_of(name),
        }
    }
}

/// A name from record data under [`Names::Any`], lower case, without trailing dot.
fn text_of(name: &Name) -> Result<String, DnsError> {
    name_text(
        name,
        |b| is_any_name_byte(b) && b != b'.',
        "unprintable name in record data",
    )
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A host name from record data, lower case and without trailing dot; the root is "".
fn host_of(name: &Name) -> Result<String, DnsError> {
    name_text(name, is_name_byte, "invalid host name in record data")
}

/// `name` in text form, lower case, without trailing dot, if every byte of every
/// label passes `allowed`; else `Malformed` with `why`.
fn name_text(name: &Name, allowed: fn(u8) -> bool, why: &str) -> Result<String, DnsError> {
    let mut out = String::new();
    for label in name.iter() {
        if !label.iter().all(|&b| allowed(b)) {
            return Err(DnsError::Malformed(format!(
                "{why} (label {:?})",
                String::from_utf8_lossy(label)
            )));
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.extend(label.iter().map(|&b| char::from(b.to_ascii_lowercase())));
    }
    Ok(out)
}

/// `ADDR`, `ADDR:PORT`, `[V6]`, `[V6]:PORT`, or bare `V6`.
fn parse_server(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, DNS_PORT));
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<Ipv6Addr>()
        .ok()
        .map(|ip| SocketAddr::new(IpAddr::V6(ip), DNS_PORT))
}

/// The first `nameserver` line with an address we can use. A link-local IPv6 address
/// needs a numeric zone (`fe80::1%2`); interface names are skipped.
fn parse_resolv_conf(text: &str) -> Option<SocketAddr> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            return None;
        }
        let addr = words.next()?;
        if let Some((ip, zone)) = addr.split_once('%') {
            let ip: Ipv6Addr = ip.parse().ok()?;
            let zone: u32 = zone.parse().ok()?;
            return Some(SocketAddr::V6(SocketAddrV6::new(ip, DNS_PORT, 0, zone)));
        }
        let ip: IpAddr = addr.parse().ok()?;
        Some(SocketAddr::new(ip, DNS_PORT))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message};
    use hickory_proto::rr::rdata::{self, tlsa};
    use hickory_proto::rr::{RData, Record};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    fn name(s: &str) -> Name {
        match parse_name(s) {
            Ok(n) => n,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn block<T>(f: impl Future<Output = T>) -> T {
        smol::block_on(f)
    }

    // ---- query building and parsing -------------------------------------------------

    #[test]
    fn query_has_rd_ad_edns_do_and_the_question() {
        let q = build_query(0xbeef, &name("Example.TEST."), RecordType::MX).unwrap();
        assert_eq!(&q[0..2], &[0xbe, 0xef]);
        assert_eq!(q[2], 0x01, "QR=0 opcode QUERY, RD=1");
        assert_eq!(q[3], 0x20, "AD=1, CD=0, RCODE 0");
        let msg = Message::from_vec(&q).unwrap();
        assert_eq!(msg.metadata.id, 0xbeef);
        assert_eq!(msg.metadata.message_type, MessageType::Query);
        assert!(msg.metadata.recursion_desired);
        assert!(msg.metadata.authentic_data);
        assert!(!msg.metadata.checking_disabled);
        assert_eq!(msg.queries.len(), 1);
        assert_eq!(msg.queries[0].name, name("example.test"));
        assert_eq!(msg.queries[0].query_type, RecordType::MX);
        assert_eq!(msg.queries[0].query_class, DNSClass::IN);
        let edns = msg.edns.as_ref().expect("EDNS present");
        assert!(edns.flags().dnssec_ok);
        assert_eq!(edns.max_payload(), 1232);
        assert_eq!(edns.version(), 0);
    }

    #[test]
    fn names_are_validated() {
        for ok in [
            "example.test",
            "example.test.",
            "_25._tcp.mx.example.test",
            "xn--bcher-kva.example",
            "a-b.c1",
            "localhost",
        ] {
            assert!(parse_name(ok).is_ok(), "{ok}");
        }
        let long_label = format!("{}.test", "a".repeat(64));
        let long_name = ["abcdefghi"; 26].join(".");
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a b.test",
            "bücher.example",
            "a/b",
            "a\\.b",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(
                matches!(parse_name(bad), Err(DnsError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(
            parse_name(&["abcdefghi"; 25].join(".")).is_ok(),
            "249 chars"
        );
        let fqdn = name("Mx.Example.Test");
        assert!(fqdn.is_fqdn());
        assert_eq!(fqdn, Name::from_ascii("mx.example.test.").unwrap());
    }

    #[test]
    fn invalid_name_is_malformed_without_network() {
        // The server address is never contacted for an invalid name.
        let r = Resolver::new("127.0.0.1:9".parse().unwrap());
        let e = block(r.mx("bad name.test")).unwrap_err();
        assert!(matches!(e, DnsError::Malformed(_)), "{e}");
    }

    #[test]
    fn host_names_from_data() {
        assert_eq!(host_of(&Name::root()).unwrap(), "");
        assert_eq!(
            host_of(&Name::from_ascii("MX1.Example.TEST.").unwrap()).unwrap(),
            "mx1.example.test"
        );
        let weird = Name::from_labels(vec![&b"a b"[..], &b"test"[..]]).unwrap();
        assert!(matches!(host_of(&weird), Err(DnsError::Malformed(_))));
    }

    #[test]
    fn server_flag_forms() {
        let p = |s: &str| parse_server(s).map(|a| a.to_string());
        assert_eq!(p("192.0.2.1").as_deref(), Some("192.0.2.1:53"));
        assert_eq!(p("192.0.2.1:5353").as_deref(), Some("192.0.2.1:5353"));
        assert_eq!(p("::1").as_deref(), Some("[::1]:53"));
        assert_eq!(p("[::1]").as_deref(), Some("[::1]:53"));
        assert_eq!(
            p("[2001:db8::1]:5353").as_deref(),
            Some("[2001:db8::1]:5353")
        );
        assert_eq!(p("dns.example"), None);
        assert_eq!(p("192.0.2.1:99999"), None);
        assert_eq!(p(""), None);
        assert!(Resolver::from_flag_or_system(Some("nonsense")).is_err());
        let r = Resolver::from_flag_or_system(Some("127.0.0.1:5300")).unwrap();
        assert_eq!(r.server().to_string(), "127.0.0.1:5300");
    }

    #[test]
    fn resolv_conf_first_usable_nameserver() {
        let text = "# generated\nsearch lan\noptions ndots:1\n\
                    nameserver fe80::1%eth0\nnameserver   192.0.2.53  \nnameserver ::1\n";
        assert_eq!(
            parse_resolv_conf(text).map(|a| a.to_string()).as_deref(),
            Some("192.0.2.53:53")
        );
        assert_eq!(
            parse_resolv_conf("nameserver fe80::1%2\n")
                .map(|a| a.to_string())
                .as_deref(),
            Some("[fe80::1%2]:53")
        );
        assert_eq!(parse_resolv_conf("; nameserver 1.2.3.4\nsearch x\n"), None);
    }

    #[test]
    fn lookups_are_send() {
        fn send<T: Send>(_: &T) {}
        let r = Resolver::new("127.0.0.1:53".parse().unwrap());
        send(&r.mx("a.test"));
        send(&r.ips("a.test"));
        send(&r.tlsa("a.test"));
        send(&r.txt("a.test"));
    }

    #[test]
    fn errors_display_short() {
        assert_eq!(DnsError::Timeout.to_string(), "timed out");
        assert!(DnsError::ServFail.to_string().starts_with("SERVFAIL"));
        assert_eq!(DnsError::Io("x".into()).to_string(), "I/O error: x");
    }

    #[test]
    fn classify_checks_id_qr_and_question() {
        let qn = name("example.test");
        let query = build_query(7, &qn, RecordType::MX).unwrap();
        let q = Message::from_vec(&query).unwrap();
        let ok = reply_to(&q, ResponseCode::NoError, true, vec![]);
        assert!(matches!(
            classify(&ok.to_vec().unwrap(), 7, &qn, RecordType::MX),
            Reply::Answer(_)
        ));
        assert!(matches!(
            classify(&ok.to_vec().unwrap(), 8, &qn, RecordType::MX),
            Reply::Ignore(_)
        ));
        assert!(matches!(
            classify(&ok.to_vec().unwrap(), 7, &qn, RecordType::A),
            Reply::Ignore(_)
        ));
        assert!(matches!(
            classify(
                &ok.to_vec().unwrap(),
                7,
                &name("other.test"),
                RecordType::MX
            ),
            Reply::Ignore(_)
        ));
        // Our own query echoed back is not a response.
        assert!(matches!(
            classify(&query, 7, &qn, RecordType::MX),
            Reply::Ignore(_)
        ));
        assert!(matches!(
            classify(&[0, 7, 0x80], 7, &qn, RecordType::MX),
            Reply::Ignore(_)
        ));
        let mut garbage = ok.to_vec().unwrap();
        garbage.truncate(20);
        assert!(matches!(
            classify(&garbage, 7, &qn, RecordType::MX),
            Reply::Bad(DnsError::Malformed(_))
        ));
    }

    #[test]
    fn cname_chain_selects_records() {
        let qn = name("www.example.test");
        let query = Message::from_vec(&build_query(1, &qn, RecordType::A).unwrap()).unwrap();
        let reply = reply_to(
            &query,
            ResponseCode::NoError,
            false,
            vec![
                rec(
                    "www.example.test",
                    RData::CNAME(rdata::CNAME(name("web.example.test"))),
                ),
                rec(
                    "web.example.test",
                    RData::A(rdata::A([192, 0, 2, 1].into())),
                ),
                rec(
                    "junk.example.test",
                    RData::A(rdata::A([192, 0, 2, 66].into())),
                ),
            ],
        );
        let answer = decode(&reply.to_vec().unwrap(), RecordType::A).unwrap();
        let l = in_chain(answer, &qn).keep(|d| match d {
            Data::A(a) => Some(a),
            _ => None,
        });
        assert_eq!(l.records, vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert!(!l.authenticated && !l.nxdomain);
    }

    // ---- fake DNS server ------------------------------------------------------------

    fn rec(owner: &str, data: RData) -> Record {
        Record::from_rdata(name(owner), 300, data)
    }

    /// The reply a resolver would give to `query`.
    fn reply_to(query: &Message, rcode: ResponseCode, ad: bool, answers: Vec<Record>) -> Message {
        let mut m = Message::response(query.metadata.id, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.metadata.recursion_available = true;
        m.metadata.authentic_data = ad;
        m.metadata.response_code = rcode;
        m.add_queries(query.queries.clone());
        m.add_answers(answers);
        let mut edns = Edns::new();
        edns.set_max_payload(1232).set_dnssec_ok(true);
        m.set_edns(edns);
        m
    }

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Via {
        Udp,
        Tcp,
    }

    /// Given a query and its transport, the messages to send back (none: stay silent).
    type Handler = dyn Fn(&Message, Via) -> Vec<Vec<u8>> + Send + Sync;

    /// A DNS server on 127.0.0.1 (UDP and TCP on the same port) in two threads, stopped
    /// when dropped. Counts the queries it received per transport.
    struct FakeServer {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        udp_queries: Arc<AtomicUsize>,
        tcp_queries: Arc<AtomicUsize>,
        threads: Vec<std::thread::JoinHandle<()>>,
    }

    impl FakeServer {
        fn start(handler: impl Fn(&Message, Via) -> Vec<Vec<u8>> + Send + Sync + 'static) -> Self {
            let handler: Arc<Handler> = Arc::new(handler);
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
                let (stop, count, handler) = (stop.clone(), udp_queries.clone(), handler.clone());
                threads.push(std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                            continue;
                        };
                        count.fetch_add(1, Ordering::Relaxed);
                        let query = Message::from_vec(&buf[..n]).unwrap();
                        for out in handler(&query, Via::Udp) {
                            udp.send_to(&out, peer).unwrap();
                        }
                    }
                }));
            }
            {
                let (stop, count) = (stop.clone(), tcp_queries.clone());
                threads.push(std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    while !stop.load(Ordering::Relaxed) {
                        let mut conn = match tcp.accept() {
                            Ok((c, _)) => c,
                            Err(_) => {
                                std::thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                        };
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut len = [0u8; 2];
                        if conn.read_exact(&mut len).is_err() {
                            continue;
                        }
                        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if conn.read_exact(&mut q).is_err() {
                            continue;
                        }
                        count.fetch_add(1, Ordering::Relaxed);
                        let query = Message::from_vec(&q).unwrap();
                        for out in handler(&query, Via::Tcp) {
                            let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                            framed.extend_from_slice(&out);
                            let _ = conn.write_all(&framed);
                        }
                    }
                }));
            }
            FakeServer {
                addr,
                stop,
                udp_queries,
                tcp_queries,
                threads,
            }
        }

        fn resolver(&self) -> Resolver {
            Resolver::new(self.addr).with_timeout(Duration::from_millis(500))
        }
    }

    impl Drop for FakeServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    /// A server that answers every query with `answers` (filtered to the asked type)
    /// and the given RCODE and AD bit.
    fn canned(rcode: ResponseCode, ad: bool, answers: Vec<Record>) -> FakeServer {
        FakeServer::start(move |q, _| {
            let qt = q.queries[0].query_type;
            let mine = answers
                .iter()
                .filter(|r| r.record_type() == qt || r.record_type() == RecordType::CNAME)
                .cloned()
                .collect();
            vec![reply_to(q, rcode, ad, mine).to_vec().unwrap()]
        })
    }

    fn mx_rec(owner: &str, pref: u16, exchange: &str) -> Record {
        let ex = if exchange == "." {
            Name::root()
        } else {
            Name::from_ascii(exchange).unwrap()
        };
        rec(owner, RData::MX(rdata::MX::new(pref, ex)))
    }

    #[test]
    fn ad_bit_true_is_passed_up() {
        let s = canned(
            ResponseCode::NoError,
            true,
            vec![
                mx_rec("example.test", 10, "MX1.Example.Test."),
                mx_rec("example.test", 20, "mx2.example.test."),
            ],
        );
        let l = block(s.resolver().mx("example.test.")).unwrap();
        assert!(l.authenticated);
        assert!(!l.nxdomain);
        assert_eq!(
            l.records,
            vec![
                Mx {
                    preference: 10,
                    exchange: "mx1.example.test".into()
                },
                Mx {
                    preference: 20,
                    exchange: "mx2.example.test".into()
                }
            ]
        );
        assert_eq!(s.udp_queries.load(Ordering::Relaxed), 1);
        assert_eq!(s.tcp_queries.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn ad_bit_false_is_passed_up() {
        let s = canned(
            ResponseCode::NoError,
            false,
            vec![mx_rec("example.test", 10, "mx.example.test.")],
        );
        let l = block(s.resolver().mx("example.test")).unwrap();
        assert!(!l.authenticated);
        assert_eq!(l.records.len(), 1);
    }

    #[test]
    fn nodata_is_empty_not_nxdomain() {
        let s = canned(ResponseCode::NoError, true, vec![]);
        let l = block(s.resolver().tlsa("_25._tcp.mx.example.test")).unwrap();
        assert!(l.records.is_empty() && !l.nxdomain && l.authenticated);
    }

    #[test]
    fn nxdomain() {
        let s = canned(ResponseCode::NXDomain, true, vec![]);
        let l = block(s.resolver().mx("nowhere.example.test")).unwrap();
        assert!(l.records.is_empty());
        assert!(l.nxdomain);
        assert!(l.authenticated);
        let l = block(s.resolver().ips("nowhere.example.test")).unwrap();
        assert!(l.records.is_empty() && l.nxdomain && l.authenticated);
    }

    #[test]
    fn servfail_and_refused() {
        let s = canned(ResponseCode::ServFail, false, vec![]);
        assert_eq!(
            block(s.resolver().mx("example.test")),
            Err(DnsError::ServFail)
        );
        // The resolver's verdict is not asked again.
        assert_eq!(s.udp_queries.load(Ordering::Relaxed), 1);
        let s = canned(ResponseCode::Refused, false, vec![]);
        assert_eq!(
            block(s.resolver().txt("example.test")),
            Err(DnsError::Refused)
        );
        let s = canned(ResponseCode::FormErr, false, vec![]);
        assert!(matches!(
            block(s.resolver().txt("example.test")),
            Err(DnsError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_udp_answer_is_retried_over_tcp() {
        let s = FakeServer::start(|q, via| {
            let mut m = reply_to(q, ResponseCode::NoError, true, vec![]);
            if via == Via::Udp {
                m.metadata.truncation = true;
            } else {
                for i in 0..100u8 {
                    m.add_answer(rec(
                        "example.test",
                        RData::TXT(rdata::TXT::new(vec![format!("record {i:03} "); 4])),
                    ));
                }
            }
            vec![m.to_vec().unwrap()]
        });
        let l = block(s.resolver().txt("example.test")).unwrap();
        assert_eq!(l.records.len(), 100);
        assert_eq!(l.records[5], "record 005 ".repeat(4));
        assert!(l.authenticated);
        assert_eq!(s.udp_queries.load(Ordering::Relaxed), 1);
        assert_eq!(s.tcp_queries.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn silent_server_times_out_after_all_attempts() {
        let s = FakeServer::start(|_, _| vec![]);
        let r = s.resolver().with_timeout(Duration::from_millis(150));
        let t0 = Instant::now();
        assert_eq!(block(r.mx("example.test")), Err(DnsError::Timeout));
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(290), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        // Give the server thread a moment to count the second datagram.
        let deadline = Instant::now() + Duration::from_secs(1);
        while s.udp_queries.load(Ordering::Relaxed) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(s.udp_queries.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn mismatched_id_and_question_are_ignored() {
        let s = FakeServer::start(|q, _| {
            let good = reply_to(
                q,
                ResponseCode::NoError,
                true,
                vec![rec(
                    "example.test",
                    RData::A(rdata::A([192, 0, 2, 1].into())),
                )],
            );
            let mut wrong_id = reply_to(
                q,
                ResponseCode::NoError,
                true,
                vec![rec("example.test", RData::A(rdata::A([6, 6, 6, 6].into())))],
            );
            wrong_id.metadata.id = q.metadata.id.wrapping_add(1);
            let mut wrong_q = wrong_id.clone();
            wrong_q.metadata.id = q.metadata.id;
            wrong_q.queries[0].name = name("evil.test");
            let servfail_wrong_id = {
                let mut m = reply_to(q, ResponseCode::ServFail, false, vec![]);
                m.metadata.id = q.metadata.id ^ 0x8000;
                m
            };
            [servfail_wrong_id, wrong_id, wrong_q, good]
                .iter()
                .map(|m| m.to_vec().unwrap())
                .collect()
        });
        let l = block(s.resolver().with_attempts(1).ips("example.test")).unwrap();
        assert!(l.records.contains(&IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
        assert!(!l.records.contains(&IpAddr::V4(Ipv4Addr::new(6, 6, 6, 6))));
    }

    #[test]
    fn only_a_wrong_id_is_a_timeout() {
        let s = FakeServer::start(|q, _| {
            let mut m = reply_to(q, ResponseCode::NoError, true, vec![]);
            m.metadata.id = q.metadata.id.wrapping_add(1);
            vec![m.to_vec().unwrap()]
        });
        let r = s
            .resolver()
            .with_timeout(Duration::from_millis(100))
            .with_attempts(1);
        assert_eq!(block(r.mx("example.test")), Err(DnsError::Timeout));
    }

    #[test]
    fn null_mx() {
        let s = canned(
            ResponseCode::NoError,
            true,
            vec![mx_rec("example.test", 0, ".")],
        );
        let l = block(s.resolver().mx("example.test")).unwrap();
        assert_eq!(
            l.records,
            vec![Mx {
                preference: 0,
                exchange: String::new()
            }]
        );
    }

    #[test]
    fn tlsa_records() {
        let digest: Vec<u8> = (0u8..32).collect();
        let s = canned(
            ResponseCode::NoError,
            true,
            vec![
                rec(
                    "_25._tcp.mx.example.test",
                    RData::TLSA(rdata::TLSA::new(
                        tlsa::CertUsage::DaneEe,
                        tlsa::Selector::Spki,
                        tlsa::Matching::Sha256,
                        digest.clone(),
                    )),
                ),
                rec(
                    "_25._tcp.mx.example.test",
                    RData::TLSA(rdata::TLSA::new(
                        tlsa::CertUsage::DaneTa,
                        tlsa::Selector::Full,
                        tlsa::Matching::Raw,
                        vec![0xde, 0xad],
                    )),
                ),
            ],
        );
        let l = block(s.resolver().tlsa("_25._tcp.mx.example.test")).unwrap();
        assert!(l.authenticated);
        assert_eq!(
            l.records,
            vec![
                Tlsa {
                    usage: 3,
                    selector: 1,
                    matching: 1,
                    data: digest
                },
                Tlsa {
                    usage: 2,
                    selector: 0,
                    matching: 0,
                    data: vec![0xde, 0xad]
                }
            ]
        );
    }

    #[test]
    fn txt_character_strings_are_joined() {
        let s = canned(
            ResponseCode::NoError,
            false,
            vec![
                rec(
                    "example.test",
                    RData::TXT(rdata::TXT::new(vec![
                        "v=spf1 ip4:192.0.2.0/24 ".into(),
                        "-all".into(),
                    ])),
                ),
                rec(
                    "example.test",
                    RData::TXT(rdata::TXT::from_bytes(vec![
                        &b"caf\xc3\xa9 "[..],
                        &b"\xff"[..],
                    ])),
                ),
            ],
        );
        let l = block(s.resolver().txt("example.test")).unwrap();
        assert_eq!(
            l.records,
            vec![
                "v=spf1 ip4:192.0.2.0/24 -all".to_string(),
                "café \u{fffd}".to_string()
            ]
        );
    }

    #[test]
    fn ips_merges_a_and_aaaa() {
        let answers = vec![
            rec("h.example.test", RData::A(rdata::A([192, 0, 2, 1].into()))),
            rec(
                "h.example.test",
                RData::AAAA(rdata::AAAA("2001:db8::1".parse().unwrap())),
            ),
        ];
        let s = canned(ResponseCode::NoError, true, answers.clone());
        let l = block(s.resolver().ips("h.example.test")).unwrap();
        assert_eq!(
            l.records,
            vec![
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        assert!(l.authenticated);

        // AD on A only: not authenticated.
        let s = FakeServer::start(move |q, _| {
            let qt = q.queries[0].query_type;
            let mine = answers
                .iter()
                .filter(|r| r.record_type() == qt)
                .cloned()
                .collect();
            vec![
                reply_to(q, ResponseCode::NoError, qt == RecordType::A, mine)
                    .to_vec()
                    .unwrap(),
            ]
        });
        let l = block(s.resolver().ips("h.example.test")).unwrap();
        assert_eq!(l.records.len(), 2);
        assert!(!l.authenticated);
    }

    #[test]
    fn ips_aaaa_failure_keeps_a() {
        let s = FakeServer::start(|q, _| {
            let m = if q.queries[0].query_type == RecordType::A {
                reply_to(
                    q,
                    ResponseCode::NoError,
                    true,
                    vec![rec(
                        "h.example.test",
                        RData::A(rdata::A([192, 0, 2, 9].into())),
                    )],
                )
            } else {
                reply_to(q, ResponseCode::ServFail, false, vec![])
            };
            vec![m.to_vec().unwrap()]
        });
        let l = block(s.resolver().ips("h.example.test")).unwrap();
        assert_eq!(l.records, vec!["192.0.2.9".parse::<IpAddr>().unwrap()]);
        assert!(!l.authenticated);

        // And the other way round: a failed A query fails the lookup.
        let s = FakeServer::start(|q, _| {
            let rcode = if q.queries[0].query_type == RecordType::A {
                ResponseCode::ServFail
            } else {
                ResponseCode::NoError
            };
            vec![reply_to(q, rcode, false, vec![]).to_vec().unwrap()]
        });
        assert_eq!(
            block(s.resolver().ips("h.example.test")),
            Err(DnsError::ServFail)
        );
    }

    #[test]
    fn connection_refused_is_io_error() {
        // A UDP port with nobody listening: the ICMP port-unreachable shows up as an
        // error on the connected socket (on Linux), else the short timeout.
        let port = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let r = Resolver::new(SocketAddr::from(([127, 0, 0, 1], port)))
            .with_timeout(Duration::from_millis(200));
        let e = block(r.mx("example.test")).unwrap_err();
        assert!(matches!(e, DnsError::Io(_) | DnsError::Timeout), "{e}");
    }

    // ---- names for mail authentication, A/AAAA/PTR -----------------------------------

    #[test]
    fn any_names_take_what_dns_can_carry() {
        let odd = [
            "foo:bar/baz.example.com",
            "macro%percent  space%20url-space.example.com",
            "JUMPIN%27%20JUPITER",
            "example.com.",
        ];
        for n in odd {
            assert!(Names::Any.accepts(n), "{n}");
        }
        for n in &odd[..3] {
            assert!(!Names::Hosts.accepts(n), "{n}");
        }
        let long_label = format!("{}.example.com", "a".repeat(64));
        let long_name = ["abcdefghi"; 26].join(".");
        for bad in [
            "",
            ".",
            "a..b",
            long_label.as_str(),
            long_name.as_str(),
            "tab\there.example",
            "caf\u{e9}.example",
        ] {
            assert!(!Names::Any.accepts(bad), "{bad:?}");
        }
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.1".parse().unwrap()),
            "1.2.0.192.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::cb01".parse().unwrap()),
            "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    /// A name with any octets in its labels (the test server side of `Names::Any`).
    fn raw_name(s: &str) -> Name {
        let s = s.strip_suffix('.').unwrap_or(s);
        Name::from_labels(s.split('.').map(str::as_bytes)).unwrap()
    }

    #[test]
    fn a_aaaa_ptr_and_odd_names() {
        let odd = "foo:bar/baz.example.test";
        let s = canned(
            ResponseCode::NoError,
            false,
            vec![
                Record::from_rdata(
                    raw_name(odd),
                    300,
                    RData::A(rdata::A([192, 0, 2, 7].into())),
                ),
                Record::from_rdata(
                    raw_name(odd),
                    300,
                    RData::AAAA(rdata::AAAA("2001:db8::7".parse().unwrap())),
                ),
                Record::from_rdata(
                    raw_name(odd),
                    300,
                    RData::MX(rdata::MX::new(0, raw_name("Odd:MX.example.test"))),
                ),
                rec(
                    "7.2.0.192.in-addr.arpa",
                    RData::PTR(rdata::PTR(raw_name("Mail.Example.Test."))),
                ),
            ],
        );
        let any = s.resolver().with_names(Names::Any);
        assert_eq!(
            block(any.a(odd)).unwrap().records,
            vec![Ipv4Addr::new(192, 0, 2, 7)]
        );
        assert_eq!(
            block(any.aaaa(odd)).unwrap().records,
            vec!["2001:db8::7".parse::<Ipv6Addr>().unwrap()]
        );
        assert_eq!(
            block(any.mx(odd)).unwrap().records,
            vec![Mx {
                preference: 0,
                exchange: "odd:mx.example.test".into()
            }]
        );
        assert_eq!(
            block(any.ptr("192.0.2.7".parse().unwrap()))
                .unwrap()
                .records,
            vec!["mail.example.test".to_string()]
        );
        // Delivery's resolver refuses the odd name without asking.
        let hosts = s.resolver();
        assert!(matches!(block(hosts.a(odd)), Err(DnsError::Malformed(_))));
    }
}
