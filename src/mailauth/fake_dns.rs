//! A DNS for the evaluators' unit tests: TXT answers by name, NXDOMAIN for anything
//! else, every name asked recorded (tests assert what was looked up and how often).

use std::cell::RefCell;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::dns::{DnsError, Lookup, Mx};
use crate::mailauth::Dns;

/// TXT answers by name; anything else is NXDOMAIN. Records the names asked.
pub struct FakeDns {
    answers: Vec<(String, Result<Lookup<String>, DnsError>)>,
    asked: RefCell<Vec<String>>,
}

impl FakeDns {
    pub fn new() -> FakeDns {
        FakeDns {
            answers: Vec::new(),
            asked: RefCell::new(Vec::new()),
        }
    }
    pub fn txt(mut self, name: &str, records: &[&str]) -> FakeDns {
        let lookup = Lookup {
            records: records.iter().map(|r| r.to_string()).collect(),
            authenticated: false,
            nxdomain: false,
        };
        self.answers.push((name.to_string(), Ok(lookup)));
        self
    }
    pub fn failing(mut self, name: &str, e: DnsError) -> FakeDns {
        self.answers.push((name.to_string(), Err(e)));
        self
    }
    /// The names asked so far, in order.
    pub fn asked(&self) -> Vec<String> {
        self.asked.borrow().clone()
    }
}

impl Dns for FakeDns {
    fn txt(&self, name: &str) -> impl Future<Output = Result<Lookup<String>, DnsError>> {
        self.asked.borrow_mut().push(name.to_string());
        let answer = self
            .answers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
            .unwrap_or(Ok(Lookup {
                records: Vec::new(),
                authenticated: false,
                nxdomain: true,
            }));
        async move { answer }
    }
    async fn mx(&self, _: &str) -> Result<Lookup<Mx>, DnsError> {
        Err(DnsError::Refused)
    }
    async fn a(&self, _: &str) -> Result<Lookup<Ipv4Addr>, DnsError> {
        Err(DnsError::Refused)
    }
    async fn aaaa(&self, _: &str) -> Result<Lookup<Ipv6Addr>, DnsError> {
        Err(DnsError::Refused)
    }
    async fn ptr(&self, _: IpAddr) -> Result<Lookup<String>, DnsError> {
        Err(DnsError::Refused)
    }
}
