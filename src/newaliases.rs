//! `tinymta newaliases` (and the `newaliases` symlink): checks the address tables
//! `serve` would read and says what is wrong, each problem with its `FILE:LINE`.
//!
//! Postfix's `newaliases` rebuilds the indexed database the daemon reads; tinymta reads
//! the text files themselves (at start and on SIGHUP), so there is nothing to build and
//! the command only checks — what an administrator runs after editing `/etc/aliases`,
//! before `kill -HUP`. The checking is `address::check`'s; this is the command around it.

use std::path::PathBuf;

use crate::address::{self, TablePaths};
use crate::cli::NewaliasesArgs;
use crate::exit;
use crate::host::system_hostname;

/// The file checked when no table is named, as `newaliases` always has.
const DEFAULT_ALIASES: &str = "/etc/aliases";

pub fn run(args: &NewaliasesArgs) -> i32 {
    let path = |p: &Option<String>| p.as_ref().map(PathBuf::from);
    let mut paths = TablePaths {
        aliases: path(&args.aliases),
        virtual_map: path(&args.virtual_map),
        local_recipients: path(&args.local_recipients),
        ..TablePaths::default()
    };
    if paths == TablePaths::default() {
        paths.aliases = Some(PathBuf::from(DEFAULT_ALIASES));
    }
    let mut domains: Vec<String> = args.domain.iter().map(|d| d.to_ascii_lowercase()).collect();
    if domains.is_empty() {
        domains.push(system_hostname().to_ascii_lowercase());
    }
    let files: Vec<&PathBuf> = [&paths.aliases, &paths.virtual_map, &paths.local_recipients]
        .into_iter()
        .flatten()
        .collect();
    // A file that cannot be read is a configuration error (78), not bad content (65).
    let unreadable = files.iter().any(|f| std::fs::File::open(f).is_err());
    let problems = address::check(&paths, &domains);
    for p in &problems {
        eprintln!("newaliases: {p}");
    }
    if problems.is_empty() {
        for f in files {
            println!("newaliases: {}: ok", f.display());
        }
        0
    } else if unreadable {
        exit::CONFIG
    } else {
        exit::DATAERR
    }
}
