//! Inbound session resumption with stateless tickets (RFC 5077 for TLS 1.2, PSK
//! tickets for TLS 1.3): the server keeps nothing per client, the client keeps an
//! encrypted ticket and brings it back. The keys that seal tickets live only in this
//! process's memory: made at start, rotated every [`ROTATION`], the previous key kept
//! one more period to open tickets it sealed (then they get a ticket under the new key).
//! Nothing is written to disk, so a restart invalidates every ticket, and one key ring
//! serves every server context, so a SIGHUP that rebuilds the context for a new
//! certificate keeps tickets working.
//!
//! The `openssl` crate has no binding for the ticket key callback, and `openssl-sys`
//! none for `SSL_CTX_set_tlsext_ticket_key_evp_cb` (OpenSSL 3's replacement for the
//! deprecated HMAC_CTX callback): this module declares that function and one
//! `OSSL_PARAM` constructor, and keeps every raw pointer inside [`ticket_key_cb`].

use std::ffi::{c_char, c_int, c_uchar, c_void};
use std::ptr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use openssl::error::ErrorStack;
use openssl::ssl::{SslContextBuilder, SslSessionCacheMode};
use openssl_sys as ffi;

/// How long a key seals new tickets; it opens them for one more period. Longer than
/// any ticket lives (OpenSSL's session timeout, two hours by default), so a ticket is
/// never refused for its key's age while it is valid.
pub const ROTATION: Duration = Duration::from_secs(12 * 3600);

/// The fields of one ticket key, sized as OpenSSL's own (`tick_key_name`,
/// `tick_hmac_key`, `tick_aes_key`).
struct TicketKey {
    /// Sent in clear in the ticket, to find the key again.
    name: [u8; 16],
    /// AES-256-CBC encryption of the ticket.
    aes: [u8; 32],
    /// HMAC-SHA256 over the encrypted ticket.
    hmac: [u8; 32],
    made: Instant,
}

impl TicketKey {
    fn new(now: Instant) -> Result<TicketKey, ErrorStack> {
        let mut k = TicketKey {
            name: [0; 16],
            aes: [0; 32],
            hmac: [0; 32],
            made: now,
        };
        openssl::rand::rand_bytes(&mut k.name)?;
        openssl::rand::rand_bytes(&mut k.aes)?;
        openssl::rand::rand_bytes(&mut k.hmac)?;
        Ok(k)
    }
}

impl Drop for TicketKey {
    fn drop(&mut self) {
        // Volatile writes, so a retired key does not stay readable in freed memory.
        for b in self.aes.iter_mut().chain(self.hmac.iter_mut()) {
            // SAFETY: `b` is a valid, aligned, exclusive reference.
            unsafe { ptr::write_volatile(b, 0) };
        }
    }
}

/// What a ticket key callback does with a ticket brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Sealed with the key that seals new tickets: resume.
    Current,
    /// Sealed with an older key still within its period: resume and issue a new ticket.
    Renew,
}

/// The current key and the one before it, with time passed in (the unit tests bring
/// their own clock).
pub struct KeyRing {
    current: TicketKey,
    previous: Option<TicketKey>,
    period: Duration,
}

impl KeyRing {
    pub fn new(now: Instant, period: Duration) -> Result<KeyRing, ErrorStack> {
        Ok(KeyRing {
            current: TicketKey::new(now)?,
            previous: None,
            period,
        })
    }

    /// The key to seal a new ticket with, rotating first when the current one has
    /// served its period. Rotation is lazy: a server that issues no ticket needs no
    /// timer.
    fn sealing(&mut self, now: Instant) -> Result<&TicketKey, ErrorStack> {
        if now.saturating_duration_since(self.current.made) >= self.period {
            let next = TicketKey::new(now)?;
            self.previous = Some(std::mem::replace(&mut self.current, next));
        }
        Ok(&self.current)
    }

    /// The key named `name`, if it may still open tickets: it sealed them for at most
    /// one period, so after two periods nothing it sealed can be valid.
    fn opening(&self, name: &[u8], now: Instant) -> Option<(&TicketKey, Opened)> {
        [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.name == name)
            .and_then(|k| {
                let age = now.saturating_duration_since(k.made);
                if age >= 2 * self.period {
                    None
                } else if age >= self.period || !ptr::eq(k, &self.current) {
                    Some((k, Opened::Renew))
                } else {
                    Some((k, Opened::Current))
                }
            })
    }

    /// The name of the key that would seal a ticket now (for the unit tests).
    #[cfg(test)]
    fn sealing_name(&mut self, now: Instant) -> [u8; 16] {
        self.sealing(now).unwrap().name
    }
}

/// The process's key ring, made on first use (the first server context).
fn ring() -> Result<&'static Mutex<KeyRing>, ErrorStack> {
    static RING: OnceLock<Mutex<KeyRing>> = OnceLock::new();
    if let Some(r) = RING.get() {
        return Ok(r);
    }
    let made = KeyRing::new(Instant::now(), ROTATION)?;
    Ok(RING.get_or_init(|| Mutex::new(made)))
}

extern "C" {
    // Both since OpenSSL 3.0, not declared by openssl-sys 0.9.
    fn SSL_CTX_set_tlsext_ticket_key_evp_cb(
        ctx: *mut ffi::SSL_CTX,
        fp: Option<TicketKeyCb>,
    ) -> c_int;
    fn OSSL_PARAM_construct_utf8_string(
        key: *const c_char,
        buf: *mut c_char,
        bsize: usize,
    ) -> ffi::OSSL_PARAM;
}

type TicketKeyCb = unsafe extern "C" fn(
    ssl: *mut ffi::SSL,
    key_name: *mut c_uchar,
    iv: *mut c_uchar,
    cipher: *mut ffi::EVP_CIPHER_CTX,
    mac: *mut ffi::EVP_MAC_CTX,
    enc: c_int,
) -> c_int;

/// Length of the key name OpenSSL hands the callback (`TLSEXT_KEYNAME_LENGTH`).
const KEY_NAME_LEN: usize = 16;
/// Length of the IV buffer OpenSSL hands the callback (`EVP_MAX_IV_LENGTH`); AES-CBC
/// uses all of it.
const IV_LEN: usize = 16;

/// Makes every connection of `b` issue and accept tickets under the process's key
/// ring, and keeps no server-side session cache (nothing stored per client; clients
/// without ticket support get full handshakes).
pub fn install(b: &mut SslContextBuilder) -> Result<(), ErrorStack> {
    ring()?;
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    // SAFETY: the context pointer is valid for the builder's life; the callback is a
    // plain function that only touches the buffers OpenSSL passes it.
    let r = unsafe { SSL_CTX_set_tlsext_ticket_key_evp_cb(b.as_ptr(), Some(ticket_key_cb)) };
    if r != 1 {
        return Err(ErrorStack::get());
    }
    Ok(())
}

/// OpenSSL's ticket key callback (see `SSL_CTX_set_tlsext_ticket_key_evp_cb(3)`).
/// Sealing (`enc` = 1): fills in the key name and a random IV and sets up AES-256-CBC
/// and HMAC-SHA256 with the current key; returns 1, or -1 on error. Opening: finds the
/// key by name; 0 when there is none (a full handshake follows, with a new ticket),
/// 2 when the key is the previous one or the protocol TLS 1.3 (resume and issue a new
/// ticket), 1 otherwise.
unsafe extern "C" fn ticket_key_cb(
    ssl: *mut ffi::SSL,
    key_name: *mut c_uchar,
    iv: *mut c_uchar,
    cipher: *mut ffi::EVP_CIPHER_CTX,
    mac: *mut ffi::EVP_MAC_CTX,
    enc: c_int,
) -> c_int {
    let Ok(ring) = ring() else { return -1 };
    // A panic elsewhere while holding the lock leaves the keys intact.
    let mut ring = ring.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    // SAFETY: OpenSSL passes buffers of these fixed sizes (ssl/t1_lib.c,
    // ssl/statem/statem_srvr.c), valid for the duration of the call.
    let name = std::slice::from_raw_parts_mut(key_name, KEY_NAME_LEN);
    let iv = std::slice::from_raw_parts_mut(iv, IV_LEN);
    if enc == 1 {
        let Ok(key) = ring.sealing(now) else {
            return -1;
        };
        if openssl::rand::rand_bytes(iv).is_err() {
            return -1;
        }
        name.copy_from_slice(&key.name);
        let cipher_ok = ffi::EVP_EncryptInit_ex(
            cipher,
            ffi::EVP_aes_256_cbc(),
            ptr::null_mut(),
            key.aes.as_ptr(),
            iv.as_ptr(),
        ) == 1;
        if cipher_ok && set_hmac_key(mac, &key.hmac) {
            1
        } else {
            -1
        }
    } else {
        let Some((key, opened)) = ring.opening(name, now) else {
            return 0;
        };
        if !set_hmac_key(mac, &key.hmac) {
            return -1;
        }
        let cipher_ok = ffi::EVP_DecryptInit_ex(
            cipher,
            ffi::EVP_aes_256_cbc(),
            ptr::null_mut(),
            key.aes.as_ptr(),
            iv.as_ptr(),
        ) == 1;
        // TLS 1.3 tickets are for one connection (RFC 8446 section C.4): OpenSSL
        // sends a resumed client a new one only when asked to renew.
        let tls13 = ffi::SSL_version(ssl) == ffi::TLS1_3_VERSION;
        match (cipher_ok, opened) {
            (false, _) => -1,
            (true, Opened::Current) if !tls13 => 1,
            (true, _) => 2,
        }
    }
}

/// Keys the ticket's HMAC-SHA256 (`EVP_MAC_CTX_set_params` with the key and digest).
///
/// # Safety
/// `mac` must be the `EVP_MAC_CTX` OpenSSL passed to the ticket key callback.
unsafe fn set_hmac_key(mac: *mut ffi::EVP_MAC_CTX, key: &[u8; 32]) -> bool {
    let mut digest = *b"SHA256\0";
    // OpenSSL copies the key out of the params; neither buffer is written to.
    let params = [
        ffi::OSSL_PARAM_construct_octet_string(
            c"key".as_ptr(),
            key.as_ptr() as *mut c_void,
            key.len(),
        ),
        OSSL_PARAM_construct_utf8_string(c"digest".as_ptr(), digest.as_mut_ptr() as *mut c_char, 0),
        ffi::OSSL_PARAM_construct_end(),
    ];
    ffi::EVP_MAC_CTX_set_params(mac, params.as_ptr()) == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn keys_rotate_and_the_previous_one_opens_for_one_more_period() {
        let t0 = Instant::now();
        let mut ring = KeyRing::new(t0, 12 * HOUR).unwrap();
        let first = ring.sealing_name(t0);
        assert_eq!(ring.sealing_name(t0 + 11 * HOUR), first);
        assert_eq!(
            ring.opening(&first, t0 + 11 * HOUR).map(|(_, o)| o),
            Some(Opened::Current)
        );
        // Past its period the key seals no more, but still opens (with a new ticket).
        assert_eq!(
            ring.opening(&first, t0 + 13 * HOUR).map(|(_, o)| o),
            Some(Opened::Renew)
        );
        let second = ring.sealing_name(t0 + 13 * HOUR);
        assert_ne!(second, first);
        assert_eq!(
            ring.opening(&first, t0 + 13 * HOUR).map(|(_, o)| o),
            Some(Opened::Renew)
        );
        assert_eq!(
            ring.opening(&second, t0 + 13 * HOUR).map(|(_, o)| o),
            Some(Opened::Current)
        );
        // Two periods after it was made, nothing the first key sealed is valid.
        assert!(ring.opening(&first, t0 + 24 * HOUR).is_none());
        // The next rotation drops it altogether; the second becomes the previous.
        let third = ring.sealing_name(t0 + 26 * HOUR);
        assert!(ring.opening(&first, t0 + 26 * HOUR).is_none());
        assert_eq!(
            ring.opening(&second, t0 + 26 * HOUR).map(|(_, o)| o),
            Some(Opened::Renew)
        );
        assert_eq!(
            ring.opening(&third, t0 + 26 * HOUR).map(|(_, o)| o),
            Some(Opened::Current)
        );
        assert!(ring.opening(&[0; 16], t0 + 26 * HOUR).is_none());
    }

    #[test]
    fn a_key_unused_for_a_long_time_is_replaced_not_revived() {
        let t0 = Instant::now();
        let mut ring = KeyRing::new(t0, Duration::from_secs(10)).unwrap();
        let first = ring.sealing_name(t0);
        let later = t0 + Duration::from_secs(100);
        assert!(ring.opening(&first, later).is_none());
        let next = ring.sealing_name(later);
        assert_ne!(next, first);
        assert!(ring.opening(&first, later).is_none());
        assert_eq!(
            ring.opening(&next, later).map(|(_, o)| o),
            Some(Opened::Current)
        );
    }
}
