//! The daemon (`tinymta serve`): opens the queue and recovers it, loads TLS, binds the
//! listeners, wires delivery into the queue manager, starts it and the wakeup socket,
//! and handles signals (SIGHUP reloads the certificate, the `--auth-file` users, the
//! address tables, the smarthost logins and the DKIM keys; SIGTERM/SIGINT shut down
//! gracefully).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_signal::{Signal, Signals};
use smol::stream::StreamExt;
use smol::Async;

use crate::address::{srs, Rewriter, Srs, Tables};
use crate::auth::AuthFile;
use crate::config::Config;
use crate::exit;
use crate::inbound::{listener, InboundTls, Listener, Reloadable, Role, Shared};
use crate::mailauth::signing::{DkimKeys, SharedKeys};
use crate::outbound::remote::Remote;
use crate::outbound::DeliveryContext;
use crate::queue::scheduler::{self, Event, Scheduler};
use crate::queue::spool::GroupCommit;
use crate::queue::wakeup;
use crate::queue::{QueueKey, Spool};
use crate::tls;

/// How long sessions get to finish after SIGTERM before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Resolves the certificates to use: the configured ones, or the demonstration pair
/// (RSA and ECDSA, generated on first start, with a warning every start).
fn load_tls(cfg: &Config) -> Result<openssl::ssl::SslContext, String> {
    if !cfg.tls_cert.is_empty() {
        return tls::server_context(&cfg.tls_cert);
    }
    let pairs = tls::cert::ensure_demo(&cfg.state_dir, &cfg.hostname)?;
    let certs: Vec<String> = pairs.iter().map(|(c, _)| c.display().to_string()).collect();
    log::warn!(
        "using the generated demonstration certificates {} (RSA and ECDSA): they are self-signed and not for production; give --tls-cert and --tls-key",
        certs.join(" and ")
    );
    tls::server_context(&pairs)
}

/// Reads `--auth-file`, if given.
fn load_auth(cfg: &Config) -> Result<Option<AuthFile>, String> {
    cfg.auth_file.as_deref().map(AuthFile::load).transpose()
}

/// The address tables (checked by `Config` at start, read again on SIGHUP) with SRS,
/// whose secret is read — made on first use — from the state directory.
fn load_rewriter(cfg: &Config, tables: Tables) -> Result<Rewriter, String> {
    let srs = match &cfg.srs_domain {
        Some(domain) => Some(Srs {
            domain: domain.clone(),
            secrets: srs::load_or_create_secret(&cfg.state_dir)?,
        }),
        None => None,
    };
    Ok(Rewriter { tables, srs })
}

/// Each session is a socket: raise the soft limit on open files to the hard limit so
/// `--max-sessions` (1000 by default) is not cut short at 1024 descriptors.
fn raise_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            log::warn!("cannot raise the open-file limit: {e}");
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT. Returns the process exit code.
pub fn serve(cfg: Config) -> i32 {
    let spool = match Spool::open(&cfg.state_dir) {
        Ok(s) => s,
        Err(e) => {
            log::error!(
                "cannot open queue in --state-dir {}: {e}",
                cfg.state_dir.display()
            );
            return exit::CONFIG;
        }
    };
    let recovered = match spool.recover() {
        Ok(ids) => ids,
        Err(e) => {
            log::error!("cannot read queue: {e}");
            return exit::CONFIG;
        }
    };
    let tls_ctx = match load_tls(&cfg) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            return exit::CONFIG;
        }
    };
    let auth = match load_auth(&cfg) {
        Ok(a) => a,
        Err(e) => {
            log::error!("--auth-file {e}");
            return exit::CONFIG;
        }
    };
    let rewriter = match load_rewriter(&cfg, cfg.tables.clone()) {
        Ok(r) => r,
        Err(e) => {
            log::error!("SRS secret: {e}");
            return exit::CONFIG;
        }
    };
    raise_file_limit();
    let unavailable = tls::profile::availability().unavailable;
    if !unavailable.is_empty() {
        let names: Vec<String> = unavailable
            .iter()
            .map(|(p, s)| format!("{s} ({p})"))
            .collect();
        log::warn!(
            "cipher profile {}: the linked OpenSSL cannot offer {}",
            tls::profile::active().name,
            names.join(", ")
        );
    }

    let mut sockets = Vec::new();
    for l in &cfg.listeners {
        match listener::bind(l.addr) {
            Ok(s) => sockets.push((l.clone(), s)),
            Err(e) => {
                log::error!("cannot listen on {} (--{}): {e}", l.addr, l.role.name());
                return exit::CONFIG;
            }
        }
        if l.role == Role::Smtp && l.tls == InboundTls::Encrypt && l.addr.port() == 25 {
            log::warn!(
                "--tls-level encrypt on port 25: RFC 3207 says a publicly referenced server must not require TLS; mail from servers without TLS will be refused"
            );
        }
    }

    let ex = Rc::new(smol::LocalExecutor::new());
    let ex2 = ex.clone();
    let loaded = Reloadable {
        tls: tls_ctx,
        auth,
        rewriter: Rc::new(RefCell::new(Rc::new(rewriter))),
        dkim: Rc::new(RefCell::new(cfg.dkim_keys.clone())),
    };
    smol::block_on(ex.run(async move { run(ex2, cfg, spool, recovered, loaded, sockets).await }))
}

async fn run(
    ex: Rc<smol::LocalExecutor<'static>>,
    cfg: Config,
    spool: Spool,
    recovered: Vec<QueueKey>,
    loaded: Reloadable,
    sockets: Vec<(Listener, Async<std::net::TcpListener>)>,
) -> i32 {
    let signals = Signals::new([Signal::Term, Signal::Int, Signal::Hup]);
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            return exit::CONFIG;
        }
    };
    let (shutdown_tx, shutdown_rx) = smol::channel::bounded::<()>(1);
    let (events_tx, events_rx) = smol::channel::unbounded::<Event>();
    let commit = GroupCommit::start(&ex, spool.messages_dir());

    let delivery = Rc::new(DeliveryContext {
        hostname: cfg.hostname.clone(),
        router: cfg.outbound.router.clone(),
        mail_dir: cfg.mail_dir.clone(),
        remote: remote_delivery(&cfg),
        rewriter: loaded.rewriter.clone(),
    });
    delivery.remote.expire_parked(&ex);
    let queue = Scheduler {
        spool: spool.clone(),
        retry: cfg.retry.clone(),
        hostname: cfg.hostname.clone(),
        rewriter: loaded.rewriter.clone(),
        dkim: loaded.dkim.clone(),
    };
    log::info!("queue: {} message(s) recovered", recovered.len());
    ex.spawn(scheduler::run(
        ex.clone(),
        queue,
        delivery.clone(),
        events_rx,
        recovered,
    ))
    .detach();

    match wakeup::bind(&spool) {
        Ok(sock) => ex.spawn(wakeup::listen(sock, events_tx.clone())).detach(),
        Err(e) => log::warn!(
            "cannot open wakeup socket {}: {e}; sendmail drops are found by the periodic rescan",
            spool.wakeup_socket().display()
        ),
    }

    let shared = Rc::new(Shared::new(
        cfg.inbound_settings(),
        loaded,
        spool,
        commit,
        events_tx,
        shutdown_rx,
    ));
    for (l, sock) in sockets {
        log::info!(
            "listening on {} ({}, tls {})",
            l.addr,
            l.role.name(),
            l.tls.name()
        );
        ex.spawn(listener::run(ex.clone(), shared.clone(), l, sock))
            .detach();
    }
    log::info!(
        "tinymta {} started: hostname {}, domains {}, profile {}",
        env!("CARGO_PKG_VERSION"),
        cfg.hostname,
        cfg.outbound.router.local_domains.join(" "),
        tls::profile::active().name
    );

    while let Some(sig) = signals.next().await {
        match sig {
            Ok(Signal::Hup) => {
                match load_tls(&cfg) {
                    Ok(ctx) => {
                        *shared.tls.borrow_mut() = Rc::new(ctx);
                        log::info!("SIGHUP: certificate and key reloaded");
                    }
                    Err(e) => log::error!("SIGHUP: keeping the old certificate: {e}"),
                }
                if cfg.auth_file.is_some() {
                    match load_auth(&cfg) {
                        Ok(auth) => {
                            *shared.auth.borrow_mut() = auth.map(std::sync::Arc::new);
                            log::info!("SIGHUP: --auth-file reloaded");
                        }
                        Err(e) => log::error!("SIGHUP: keeping the old --auth-file: {e}"),
                    }
                }
                reload_tables(&cfg, &shared.rewriter);
                reload_dkim_keys(&cfg, &shared.dkim);
                match delivery.remote.reload_credentials() {
                    Some(Ok(n)) => log::info!("SIGHUP: --relay-credentials reloaded ({n} entries)"),
                    Some(Err(e)) => log::error!("SIGHUP: keeping the old --relay-credentials: {e}"),
                    None => {}
                }
            }
            Ok(_) => break,
            Err(e) => log::warn!("signal: {e}"),
        }
    }

    log::info!(
        "shutting down: {} session(s) active",
        shared.active_sessions()
    );
    drop(shutdown_tx);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while shared.active_sessions() > 0 && Instant::now() < deadline {
        smol::Timer::after(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_file(shared.spool.wakeup_socket());
    log::info!("stopped");
    0
}

/// SIGHUP: reads the address tables (and the SRS secret) again; on any error the old
/// ones stay, as the old certificate does.
fn reload_tables(cfg: &Config, current: &crate::address::SharedRewriter) {
    if cfg.table_paths == Default::default() && cfg.srs_domain.is_none() {
        return;
    }
    let domains = &cfg.outbound.router.local_domains;
    match Tables::load(&cfg.table_paths, domains).and_then(|t| load_rewriter(cfg, t)) {
        Ok(r) => {
            *current.borrow_mut() = Rc::new(r);
            log::info!("SIGHUP: address tables reloaded");
        }
        Err(e) => {
            for line in e.lines() {
                log::error!("SIGHUP: keeping the old address tables: {line}");
            }
        }
    }
}

/// SIGHUP: reads the `--dkim-key` files again (a key replaced under the same name, a
/// new selector published); on any error the old keys stay.
fn reload_dkim_keys(cfg: &Config, current: &SharedKeys) {
    if cfg.dkim_specs.is_empty() {
        return;
    }
    match DkimKeys::load(&cfg.dkim_specs) {
        Ok(keys) => {
            *current.borrow_mut() = std::sync::Arc::new(keys);
            log::info!("SIGHUP: --dkim-key keys reloaded");
        }
        Err(e) => log::error!("SIGHUP: keeping the old DKIM keys: --dkim-key {e}"),
    }
}

/// Remote delivery for the daemon; a missing resolver and a smarthost login that cannot
/// happen are logged once here.
fn remote_delivery(cfg: &Config) -> Remote {
    let remote = Remote::new(&cfg.outbound, &cfg.hostname, cfg.alert_rcpt.clone());
    if let Err(e) = &remote.resolver {
        log::warn!("no DNS resolver: {e}; mail to other domains stays queued");
    }
    if let Some(w) = remote.login_warning(cfg.outbound.router.relayhost.as_ref()) {
        log::warn!("{w}");
    }
    remote
}
