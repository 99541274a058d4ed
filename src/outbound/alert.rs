//! TLS failure alerts (Cisco ESA): when a destination whose policy requires TLS could
//! not get it, a short mail goes to `--alert-rcpt`, at most once per destination per
//! hour (the rate limit lives in `Remote`). Delivery only words the alert and reports
//! it; the queue writes and sends it, as it does bounces.

use super::policy::Policy;
use crate::queue::outcome::Notice;

/// The alert to `to` about `destination`, from the MTA on `hostname`.
pub fn notice(
    to: &str,
    hostname: &str,
    destination: &str,
    policy: &Policy,
    reason: &str,
) -> Notice {
    Notice {
        kind: "TLS failure alert",
        to: to.to_string(),
        subject: format!("TLS failure for destination {destination}"),
        body: format!(
            "tinymta on {hostname} could not deliver mail to {destination}:\n\nTLS policy: {} (from {})\nReason: {reason}\n\nMessages stay queued and are retried. This alert is sent at most once per hour for this destination.\n",
            policy.level.name(),
            policy.source
        ),
    }
}
