//! The client half of SMTP AUTH (RFC 4954) as pure code: the mechanisms tinymta speaks
//! to a smarthost (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER), which one to use from the
//! server's EHLO list, and the exchange as a small state machine that turns each `334`
//! challenge into the next line to send. No I/O: `ClientSession::authenticate` drives it
//! over the wire, `credentials` decides who logs in with what.
//!
//! Secrets (passwords, bearer tokens) live in `Login` only; its `Debug` never prints
//! them, and nothing here logs.

use std::fmt;

use openssl::base64;

use crate::smtp::reply::Reply;

/// A SASL mechanism tinymta can use as a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616: `\0user\0password` in the initial response.
    Plain,
    /// The pre-standard LOGIN: user and password as answers to two challenges.
    Login,
    /// Google's and Microsoft's OAuth 2.0 mechanism.
    XOAuth2,
    /// RFC 7628: the standard OAuth 2.0 bearer-token mechanism.
    OAuthBearer,
}

/// For a password: PLAIN first (one round trip, RFC 4616), LOGIN for servers that
/// offer nothing else (old Exchange).
pub const PASSWORD_MECHANISMS: &[Mechanism] = &[Mechanism::Plain, Mechanism::Login];
/// For a bearer token, standard first: OAUTHBEARER, then XOAUTH2 (Microsoft 365 offers
/// only XOAUTH2).
pub const BEARER_MECHANISMS: &[Mechanism] = &[Mechanism::OAuthBearer, Mechanism::XOAuth2];
/// For a bearer token whose credentials ask for XOAUTH2: the same two, XOAUTH2 first.
pub const XOAUTH2_FIRST: &[Mechanism] = &[Mechanism::XOAuth2, Mechanism::OAuthBearer];

impl Mechanism {
    /// The name in EHLO and in the AUTH command.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The first of `wanted` (in preference order) that the server offers; `offered` is
/// the EHLO AUTH list, compared case-insensitively (RFC 4422 names are upper case, but
/// servers are lenient and so are we).
pub fn choose(offered: &[String], wanted: &[Mechanism]) -> Option<Mechanism> {
    wanted
        .iter()
        .copied()
        .find(|m| offered.iter().any(|o| o.eq_ignore_ascii_case(m.name())))
}

/// What the client proves itself with.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Password(String),
    /// An OAuth 2.0 access token, fetched for this connection.
    Bearer(String),
}

/// A user name and the secret to send, ready for one exchange.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub secret: Secret,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Secret::Password(_) => "Password(hidden)",
            Secret::Bearer(_) => "Bearer(hidden)",
        })
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Login({}, {:?})", self.user, self.secret)
    }
}

/// `AUTH PLAIN` initial response (RFC 4616 §2): empty authzid, so the server derives
/// it from the user (no proxy authorisation).
pub fn plain_response(user: &str, password: &str) -> String {
    base64::encode_block(format!("\0{user}\0{password}").as_bytes())
}

/// `AUTH XOAUTH2` initial response, as Google documents it:
/// `base64("user=" user "\x01auth=Bearer " token "\x01\x01")`.
pub fn xoauth2_response(user: &str, token: &str) -> String {
    base64::encode_block(format!("user={user}\x01auth=Bearer {token}\x01\x01").as_bytes())
}

/// `AUTH OAUTHBEARER` initial response (RFC 7628 §3.1): the GS2 header with the user
/// as authzid (`n,a=user,`), then `host=` and `port=` of the server when known, then
/// `auth=Bearer token`, each pair ended by `\x01`, and a final `\x01`.
pub fn oauthbearer_response(user: &str, token: &str, server: Option<(&str, u16)>) -> String {
    let mut msg = format!("n,a={},\x01", gs2_saslname(user));
    if let Some((host, port)) = server {
        msg.push_str(&format!("host={host}\x01port={port}\x01"));
    }
    msg.push_str(&format!("auth=Bearer {token}\x01\x01"));
    base64::encode_block(msg.as_bytes())
}

/// RFC 5801 §4 `saslname`: `,` and `=` are GS2 syntax, so they are escaped.
fn gs2_saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// RFC 7628 §3.2.3: after an error challenge the client sends a lone `\x01` so the
/// server can finish with its failure reply.
const OAUTHBEARER_ERROR_ACK: &str = "AQ==";

/// Why the client gives up on an exchange (it then cancels with `*`, RFC 4954 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// The mechanism needs the other kind of secret (a token for a password or back).
    WrongSecret,
    /// A challenge after the mechanism had nothing more to say.
    UnexpectedChallenge,
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExchangeError::WrongSecret => "the mechanism does not fit the kind of secret",
            ExchangeError::UnexpectedChallenge => "the server sent an unexpected challenge",
        })
    }
}

impl std::error::Error for ExchangeError {}

/// One AUTH exchange in progress.
pub struct Exchange<'a> {
    mechanism: Mechanism,
    login: &'a Login,
    /// Challenges answered so far.
    answered: u8,
    oauth_error: Option<String>,
}

impl<'a> Exchange<'a> {
    /// Starts `mechanism` for `login`; returns the exchange and the AUTH command to send
    /// (with the initial response for every mechanism but LOGIN). `server` is the host
    /// name and port connected to, for OAUTHBEARER's `host=` and `port=`.
    pub fn start(
        mechanism: Mechanism,
        login: &'a Login,
        server: Option<(&str, u16)>,
    ) -> Result<(Exchange<'a>, String), ExchangeError> {
        let user = login.user.as_str();
        let command = match (mechanism, &login.secret) {
            (Mechanism::Plain, Secret::Password(p)) => {
                format!("AUTH PLAIN {}", plain_response(user, p))
            }
            (Mechanism::Login, Secret::Password(_)) => "AUTH LOGIN".to_string(),
            (Mechanism::XOAuth2, Secret::Bearer(t)) => {
                format!("AUTH XOAUTH2 {}", xoauth2_response(user, t))
            }
            (Mechanism::OAuthBearer, Secret::Bearer(t)) => {
                format!("AUTH OAUTHBEARER {}", oauthbearer_response(user, t, server))
            }
            _ => return Err(ExchangeError::WrongSecret),
        };
        let exchange = Exchange {
            mechanism,
            login,
            answered: 0,
            oauth_error: None,
        };
        Ok((exchange, command))
    }

    /// The line answering a `334` challenge (`challenge` is the text after `334 `).
    pub fn respond(&mut self, challenge: &str) -> Result<String, ExchangeError> {
        self.answered += 1;
        match (self.mechanism, self.answered, &self.login.secret) {
            // LOGIN servers word their prompts differently (and some in other
            // languages); the order, user then password, is what all of them share.
            (Mechanism::Login, 1, _) => Ok(base64::encode_block(self.login.user.as_bytes())),
            (Mechanism::Login, 2, Secret::Password(p)) => Ok(base64::encode_block(p.as_bytes())),
            // The OAuth mechanisms send everything up front, so a challenge is the
            // server's error report (base64 JSON); the answer lets it send the 5xx.
            (Mechanism::XOAuth2 | Mechanism::OAuthBearer, 1, _) => {
                self.oauth_error = Some(decode_error(challenge));
                Ok(match self.mechanism {
                    // Google: "The client should send an empty response".
                    Mechanism::XOAuth2 => String::new(),
                    _ => OAUTHBEARER_ERROR_ACK.to_string(),
                })
            }
            _ => Err(ExchangeError::UnexpectedChallenge),
        }
    }

    /// The error the server reported in an OAuth error challenge, decoded (its JSON,
    /// e.g. `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`).
    pub fn oauth_error(&self) -> Option<&str> {
        self.oauth_error.as_deref()
    }
}

/// Longest OAuth error text kept for the log.
const MAX_ERROR_TEXT: usize = 300;

/// The decoded JSON of an OAuth error challenge, control characters replaced, cut to
/// a log-friendly length; the raw text when it is not base64.
fn decode_error(challenge: &str) -> String {
    let challenge = challenge.trim();
    let text = match base64::decode_block(challenge) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => challenge.to_string(),
    };
    text.trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_TEXT)
        .collect()
}

/// Why authentication to a server did not succeed. Nothing here holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// The session has no TLS: nothing was sent (credentials never travel in
    /// plaintext).
    NotEncrypted,
    /// A 5xx (535 bad credentials, 534 "web login required", 530 ...): retrying the
    /// same credentials will not help.
    Rejected {
        reply: Reply,
        oauth_error: Option<String>,
    },
    /// A 4xx (454 temporary authentication failure): try again later.
    Temporary {
        reply: Reply,
        oauth_error: Option<String>,
    },
    /// The exchange went wrong (an unexpected challenge or reply code, a mechanism
    /// that does not fit the secret); the text says how.
    Protocol(String),
    /// The connection broke or timed out; the text says where.
    Connection(String),
}

impl AuthFailure {
    /// A failure built from the server's final non-2xx reply.
    pub fn from_reply(reply: Reply, oauth_error: Option<String>) -> AuthFailure {
        match reply.code / 100 {
            4 => AuthFailure::Temporary { reply, oauth_error },
            5 => AuthFailure::Rejected { reply, oauth_error },
            _ => AuthFailure::Protocol(format!("unexpected reply to AUTH: {}", reply.summary())),
        }
    }
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthFailure::NotEncrypted => {
                f.write_str("not sending credentials over a connection without TLS")
            }
            AuthFailure::Rejected { reply, oauth_error }
            | AuthFailure::Temporary { reply, oauth_error } => {
                write!(
                    f,
                    "SASL authentication failed; server said: {}",
                    reply.summary()
                )?;
                if let Some(e) = oauth_error {
                    write!(f, " (OAuth error: {e})")?;
                }
                Ok(())
            }
            AuthFailure::Protocol(t) | AuthFailure::Connection(t) => f.write_str(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(user: &str, secret: Secret) -> Login {
        Login {
            user: user.to_string(),
            secret,
        }
    }

    fn decoded(b64: &str) -> Vec<u8> {
        base64::decode_block(b64).unwrap()
    }

    #[test]
    fn plain_is_rfc4616() {
        // RFC 4616 §4: "<NUL>tim<NUL>tanstaaftanstaaf" (sent base64 in SMTP).
        let r = plain_response("tim", "tanstaaftanstaaf");
        assert_eq!(decoded(&r), b"\0tim\0tanstaaftanstaaf");
        assert_eq!(r, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
        let l = login("tim", Secret::Password("tanstaaftanstaaf".into()));
        let (mut ex, cmd) = Exchange::start(Mechanism::Plain, &l, None).unwrap();
        assert_eq!(cmd, "AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
        // Everything went in the initial response: a challenge is a protocol error.
        assert_eq!(ex.respond(""), Err(ExchangeError::UnexpectedChallenge));
    }

    #[test]
    fn login_answers_user_then_password() {
        let l = login("alice", Secret::Password("pa:ss".into()));
        let (mut ex, cmd) = Exchange::start(Mechanism::Login, &l, None).unwrap();
        assert_eq!(cmd, "AUTH LOGIN");
        // base64 "Username:" and "Password:", the usual prompts.
        assert_eq!(ex.respond("VXNlcm5hbWU6").unwrap(), "YWxpY2U=");
        assert_eq!(ex.respond("UGFzc3dvcmQ6").unwrap(), "cGE6c3M=");
        assert_eq!(ex.respond("x"), Err(ExchangeError::UnexpectedChallenge));
    }

    #[test]
    fn xoauth2_is_googles_example() {
        // developers.google.com/gmail/imap/xoauth2-protocol, "Initial client response".
        let token = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg";
        let r = xoauth2_response("someuser@example.com", token);
        assert_eq!(
            decoded(&r),
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
        assert_eq!(
            r,
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52\
             YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn xoauth2_error_dance() {
        let l = login("someuser@example.com", Secret::Bearer("t".into()));
        let (mut ex, cmd) = Exchange::start(Mechanism::XOAuth2, &l, None).unwrap();
        assert!(cmd.starts_with("AUTH XOAUTH2 "));
        // Google's documented error challenge; the client answers with an empty line.
        let challenge =
            "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIG1hYyIsInNjb3BlIjoiaHR0cHM6Ly9t\
                         YWlsLmdvb2dsZS5jb20vIn0K";
        assert_eq!(ex.respond(challenge).unwrap(), "");
        assert_eq!(
            ex.oauth_error(),
            Some(r#"{"status":"401","schemes":"bearer mac","scope":"https://mail.google.com/"}"#)
        );
        assert_eq!(
            ex.respond(challenge),
            Err(ExchangeError::UnexpectedChallenge)
        );
    }

    #[test]
    fn oauthbearer_is_rfc7628() {
        let token = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";
        // RFC 7628 §4.1 (IMAP, port 143).
        assert_eq!(
            oauthbearer_response("user@example.com", token, Some(("server.example.com", 143))),
            "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyI\
             HZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
        );
        // The SMTP failure example of RFC 7628 §4 (port 587).
        assert_eq!(
            oauthbearer_response("user@example.com", token, Some(("server.example.com", 587))),
            "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9NTg3AWF1dGg9QmVhcmVyI\
             HZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
        );
        assert_eq!(
            decoded(&oauthbearer_response("a,b=c", "t", None)),
            b"n,a=a=2Cb=3Dc,\x01auth=Bearer t\x01\x01"
        );
        let l = login("user@example.com", Secret::Bearer(token.into()));
        let (mut ex, _) = Exchange::start(Mechanism::OAuthBearer, &l, None).unwrap();
        // After the error challenge the client sends a lone ^A (RFC 7628 §3.2.3).
        assert_eq!(
            ex.respond("eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=").unwrap(),
            "AQ=="
        );
        assert_eq!(ex.oauth_error(), Some(r#"{"status":"invalid_token"}"#));
    }

    #[test]
    fn secret_must_fit_the_mechanism() {
        let pw = login("u", Secret::Password("p".into()));
        let tok = login("u", Secret::Bearer("t".into()));
        for (m, l) in [
            (Mechanism::XOAuth2, &pw),
            (Mechanism::OAuthBearer, &pw),
            (Mechanism::Plain, &tok),
            (Mechanism::Login, &tok),
        ] {
            assert_eq!(
                Exchange::start(m, l, None).err(),
                Some(ExchangeError::WrongSecret),
                "{m}"
            );
        }
    }

    #[test]
    fn choice_follows_preference_and_offer() {
        let offered: Vec<String> = ["login", "PLAIN", "XOAUTH2"].map(String::from).to_vec();
        assert_eq!(
            choose(&offered, PASSWORD_MECHANISMS),
            Some(Mechanism::Plain)
        );
        assert_eq!(
            choose(&offered, BEARER_MECHANISMS),
            Some(Mechanism::XOAuth2)
        );
        let only_login = vec!["LOGIN".to_string()];
        assert_eq!(
            choose(&only_login, PASSWORD_MECHANISMS),
            Some(Mechanism::Login)
        );
        assert_eq!(choose(&only_login, BEARER_MECHANISMS), None);
        let both: Vec<String> = ["XOAUTH2", "OAUTHBEARER"].map(String::from).to_vec();
        assert_eq!(
            choose(&both, BEARER_MECHANISMS),
            Some(Mechanism::OAuthBearer)
        );
        assert_eq!(choose(&both, XOAUTH2_FIRST), Some(Mechanism::XOAuth2));
        assert_eq!(choose(&[], PASSWORD_MECHANISMS), None);
    }

    #[test]
    fn debug_hides_secrets() {
        let l = login("alice", Secret::Password("hunter2".into()));
        let shown = format!("{l:?}");
        assert!(
            shown.contains("alice") && !shown.contains("hunter2"),
            "{shown}"
        );
        let failure = AuthFailure::from_reply(Reply::new(535, "5.7.8", "bad"), None);
        assert!(matches!(failure, AuthFailure::Rejected { .. }));
        assert_eq!(
            failure.to_string(),
            "SASL authentication failed; server said: 535 5.7.8 bad"
        );
        assert!(matches!(
            AuthFailure::from_reply(Reply::new(454, "4.7.0", "later"), None),
            AuthFailure::Temporary { .. }
        ));
    }
}
