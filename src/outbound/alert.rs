//! TLS failure alerts (Cisco ESA): when a destination whose policy requires TLS could
//! not get it, a short mail goes to `--alert-rcpt`, at most once per destination per
//! hour (the rate limit lives in `Remote`).

use super::remote::Remote;
use crate::queue::bounce;
use crate::tls::policy::Policy;

/// Queues the alert mail (on the blocking pool) and wakes the queue manager.
pub fn queue_alert(remote: &Remote, destination: &str, policy: &Policy, reason: &str) {
    let (Some(to), Some(spool)) = (remote.alert_rcpt.clone(), remote.spool.clone()) else {
        return;
    };
    let (env, content) = bounce::notice(
        &remote.hostname,
        &to,
        &format!("TLS failure for destination {destination}"),
        &format!(
            "tinymta on {} could not deliver mail to {destination}:\n\nTLS policy: {} (from {})\nReason: {reason}\n\nMessages stay queued and are retried. This alert is sent at most once per hour for this destination.\n",
            remote.hostname,
            policy.level.name(),
            policy.source
        ),
    );
    let id = env.id.clone();
    smol::spawn(smol::unblock(move || match spool.store(&env, &content) {
        Ok(()) => {
            log::info!("{id}: TLS failure alert queued for <{to}>");
            crate::queue::wakeup::poke(&spool, crate::queue::wakeup::Wakeup::New);
        }
        Err(e) => log::error!("cannot queue TLS failure alert: {e}"),
    }))
    .detach();
}
