//! Facts about the machine tinymta runs on: its host name, whether we run as root, and
//! the default state directory that follows from that. A building block: it knows
//! nothing of flags files or the daemon, so every layer may ask it.

use std::path::PathBuf;

pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The state directory of the system's daemon.
pub const SYSTEM_STATE_DIR: &str = "/var/spool/tinymta";

/// `/var/spool/tinymta` as root, `./tinymta-state` otherwise.
pub fn default_state_dir(flag: &Option<String>) -> PathBuf {
    match flag {
        Some(dir) => PathBuf::from(dir),
        None if running_as_root() => PathBuf::from(SYSTEM_STATE_DIR),
        None => PathBuf::from("tinymta-state"),
    }
}

/// The system host name (the banner name unless `--hostname` is given).
pub fn system_hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}
