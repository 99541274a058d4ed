//! The SMTP wire protocol without any I/O ("sans-IO"): command lines in, typed commands
//! out; replies built as bytes (`reply`) and, on the client side, parsed (`reply_parser`); RFC 5321 address syntax; the DATA reader.
//!
//! Everything a peer sends passes through here first, with explicit limits. Nothing in
//! this module knows about sockets, TLS or the queue, so every parser can be unit-tested
//! and fuzzed on plain byte slices.

pub mod address;
pub mod command;
pub mod data;
pub mod dsn;
pub mod line;
pub mod reply;
pub mod reply_parser;

pub use address::Mailbox;

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF.
pub const MAX_COMMAND_LINE: usize = 512;
/// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF.
pub const MAX_TEXT_LINE: usize = 1000;
