//! Giving up root: the account the daemon runs as (`--user`), handing it the files the
//! daemon made as root, and the switch itself (supplementary groups dropped, then
//! setgid, then setuid, after `PR_SET_NO_NEW_PRIVS`). A building block: it knows
//! accounts and system calls, not the daemon's flags or directories (`server` says
//! what is opened before and what is handed over).

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The user `serve` runs as when started as root and `--user` is not given.
pub const DEFAULT_USER: &str = "tinymta";

/// A user of the system's password database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// The user's primary group.
    pub gid: u32,
}

/// Looks `name` up in the password database (`getpwnam_r`): `Ok(None)` when there is
/// no such user.
pub fn lookup(name: &str) -> Result<Option<Account>, String> {
    let cname = CString::new(name).map_err(|_| "not a user name".to_string())?;
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: `pwd` and `buf` outlive the call; on success `result` points at
        // `pwd`, whose strings point into `buf`, read before either is dropped.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        match rc {
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            0 if result.is_null() => return Ok(None),
            0 => {
                let name = unsafe { CStr::from_ptr(pwd.pw_name) };
                return Ok(Some(Account {
                    name: name.to_string_lossy().into_owned(),
                    uid: pwd.pw_uid,
                    gid: pwd.pw_gid,
                }));
            }
            // glibc says ENOENT/ESRCH/... for "no such user" in some configurations.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => {
                return Err(format!(
                    "cannot look up the user: {}",
                    io::Error::from_raw_os_error(e)
                ))
            }
        }
    }
}

/// The uid the process is going to change to, once known.
static SWITCHING_TO: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Whom `serve` will run as. Started as root: the account `user` (`--user`) names
/// (an error if there is none), or [`DEFAULT_USER`] if it exists (`None`, with a
/// warning, if not). Not root: `None`, and `user` is an error unless it names this
/// process's own user. The account found is remembered ([`switching_to`]).
pub fn target_account(user: Option<&str>) -> Result<Option<Account>, String> {
    let euid = rustix::process::geteuid().as_raw();
    if euid != 0 && user.is_none() {
        return Ok(None);
    }
    let name = user.unwrap_or(DEFAULT_USER);
    let found = match lookup(name)? {
        Some(a) if euid == 0 => Some(a),
        Some(a) if a.uid == euid => None,
        Some(_) => {
            return Err(format!(
                "only root can change to another user (running as uid {euid})"
            ))
        }
        None if user.is_some() => return Err("no such user".into()),
        None => {
            log::warn!(
                "running as root: there is no user {name} to change to; create it (a system user without a login) or give --user"
            );
            None
        }
    };
    if let Some(a) = &found {
        let _ = SWITCHING_TO.set(a.uid);
    }
    Ok(found)
}

/// The uid found by [`target_account`]: a file that must belong to the daemon (the
/// 0600 credentials file) may belong to that user already while the process is root.
pub fn switching_to() -> Option<u32> {
    SWITCHING_TO.get().copied()
}

/// Sets `PR_SET_NO_NEW_PRIVS`: no program this process (or a child) runs can gain
/// privileges through set-user-ID bits or file capabilities. It holds per thread and
/// is inherited by threads and children made after it, so the daemon sets it first,
/// before any thread exists.
pub fn forbid_new_privileges() -> io::Result<()> {
    // SAFETY: a prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Hands `path` and everything under it to `uid:gid`, without following symbolic
/// links (a link is re-owned itself, never its target). Entries already owned so are
/// left alone, so a second start costs one `lstat` per entry. Returns how many were
/// changed.
pub fn hand_over(path: &Path, uid: u32, gid: u32) -> io::Result<usize> {
    let meta = std::fs::symlink_metadata(path)?;
    let mut changed = 0;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        changed += 1;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            changed += hand_over(&entry?.path(), uid, gid)?;
        }
    }
    Ok(changed)
}

/// Becomes `account` for good: no supplementary groups, then its group, then its
/// user (in that order: once the user is changed the group could not be). glibc and
/// musl apply each change to every thread of the process. Checks afterwards that
/// root cannot be regained.
pub fn switch_to(account: &Account) -> Result<(), String> {
    let fail = |what: &str| {
        format!(
            "cannot change to user {} ({what}): {}",
            account.name,
            io::Error::last_os_error()
        )
    };
    // SAFETY: plain system calls with integer arguments (and an empty group list).
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(fail("setgroups"));
        }
        if libc::setgid(account.gid) != 0 {
            return Err(fail("setgid"));
        }
        if libc::setuid(account.uid) != 0 {
            return Err(fail("setuid"));
        }
        if account.uid != 0 && (libc::setuid(0) == 0 || libc::setgid(0) == 0 && account.gid != 0) {
            return Err(format!(
                "changed to user {} but could become root again",
                account.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_and_a_made_up_user_is_not() {
        let root = lookup("root")
            .unwrap()
            .expect("root in the password database");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(lookup("no-such-user-tinymta-x").unwrap(), None);
        assert!(lookup("nul\0name").is_err());
    }

    #[test]
    fn hand_over_to_the_owner_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("tinymta-privs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("a/link")).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(hand_over(&dir, meta.uid(), meta.gid()).unwrap(), 0);
        // The link's target is never touched.
        let target = std::fs::metadata("/etc/passwd").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            std::fs::metadata("/etc/passwd").unwrap().uid(),
            target.uid()
        );
    }
}
