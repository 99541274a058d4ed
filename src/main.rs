//! tinymta: a small mail transfer agent for routers. This file only dispatches: it
//! parses the command line and runs the subcommand.

use tinymta::{
    auth, certtool, cli, config, dkimtool, exit, logline, newaliases, outbound, queue, sendmail,
    server, tls,
};

use argh::FromArgs;

use cli::{Subcommand, TopLevel};

/// For the short-lived commands (`queue list | head`, `--help | less`): a reader that
/// goes away ends the process quietly, as for any Unix filter, instead of a failed
/// write turning into a panic. The daemon keeps Rust's default (SIGPIPE ignored, EPIPE
/// returned), since a client hanging up must never stop it.
fn default_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; it only restores
    // the default disposition of one signal and installs no Rust handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("serve") {
        default_sigpipe();
    }
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Through a `sendmail` symlink, or as `tinymta sendmail`, the traditional sendmail
    // options (-oi, -ffrom, ...) are understood.
    let rest: Vec<String> = if invoked_as == "sendmail" {
        cli::sendmail_command_line(&args[1..])
    } else if invoked_as == "newaliases" {
        // `newaliases` as a symlink: `tinymta newaliases`, checking the tables.
        let mut v = vec!["newaliases".to_string()];
        v.extend(args[1..].iter().cloned());
        v
    } else if invoked_as == "mailq" {
        // `mailq` as a symlink, like Postfix's: `queue list` (and its --state-dir).
        let mut v = vec!["queue".to_string()];
        v.extend(cli::hoist_options(&args[1..], &["--state-dir"]));
        v.push("list".to_string());
        v
    } else {
        match args.get(1).map(String::as_str) {
            Some("sendmail") => cli::sendmail_command_line(&args[2..]),
            // `queue list --state-dir DIR` as people type it: argh wants the flag of
            // `queue` before the action.
            Some("queue") => {
                let mut v = vec!["queue".to_string()];
                v.extend(cli::hoist_options(&args[2..], &["--state-dir"]));
                v
            }
            _ => args[1..].to_vec(),
        }
    };
    let rest_refs: Vec<&str> = rest.iter().map(String::as_str).collect();
    let top = match TopLevel::from_args(&["tinymta"], &rest_refs) {
        Ok(t) => t,
        Err(early) => {
            // argh's help output (exit 0) or usage error (exit 64).
            if early.status.is_ok() {
                println!("{}", early.output);
                std::process::exit(0);
            }
            eprintln!("{}", early.output);
            std::process::exit(exit::USAGE);
        }
    };
    if top.version {
        let p = tls::profile::active();
        println!(
            "tinymta {} (cipher profile: {}, {})",
            env!("CARGO_PKG_VERSION"),
            p.name,
            openssl::version::version()
        );
        return;
    }
    let code = match top.command {
        None => {
            eprintln!("tinymta: a subcommand is required; try `tinymta --help`");
            exit::USAGE
        }
        Some(Subcommand::Serve(a)) => {
            logline::init();
            match config::Config::from_args(&a) {
                Ok(cfg) => server::serve(cfg),
                Err(e) => {
                    eprintln!("tinymta: {e}");
                    exit::USAGE
                }
            }
        }
        Some(Subcommand::Sendmail(a)) => sendmail::run(a),
        Some(Subcommand::Newaliases(a)) => newaliases::run(&a),
        Some(Subcommand::Queue(a)) => queue::admin::run(a),
        Some(Subcommand::CheckTls(a)) => {
            logline::init();
            match config::outbound_settings(config::OutboundFlags::from(&a), Vec::new()) {
                Ok(out) => outbound::check::run(out, a),
                Err(e) => {
                    eprintln!("tinymta: {e}");
                    exit::USAGE
                }
            }
        }
        Some(Subcommand::Passwd(a)) => {
            auth::passwd_command(&a.user, a.iterations.unwrap_or(auth::DEFAULT_ITERATIONS))
        }
        Some(Subcommand::Cert(a)) => certtool::run(a),
        Some(Subcommand::Dkim(a)) => dkimtool::run(a),
        Some(Subcommand::TlsInfo(_)) => {
            print!("{}", tls::profile::report());
            0
        }
    };
    std::process::exit(code);
}
