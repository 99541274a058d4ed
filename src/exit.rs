//! Process exit codes, from sysexits.h, for every command: scripts and init systems
//! tell a usage error from a temporary failure by them.

/// The command line was wrong (bad flag, missing argument).
pub const USAGE: i32 = 64;
/// The input data was wrong (a malformed message, a bad file).
pub const DATAERR: i32 = 65;
/// An input file does not exist or cannot be read.
pub const NOINPUT: i32 = 66;
/// A service the command needs is unavailable (a remote host, a daemon).
pub const UNAVAILABLE: i32 = 69;
/// An internal error (OpenSSL refused to build something).
pub const SOFTWARE: i32 = 70;
/// An output file cannot be created.
pub const CANTCREAT: i32 = 73;
/// A temporary failure: try again later.
pub const TEMPFAIL: i32 = 75;
/// The configuration is wrong (a certificate, a state directory).
pub const CONFIG: i32 = 78;
