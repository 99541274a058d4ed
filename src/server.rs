//! The daemon (`tinymta serve`): opens the queue and recovers it, loads TLS, binds the
//! listeners, gives up root (`--user`, see `privileges`), wires delivery into the
//! queue manager, starts it, the wakeup socket, the maildrop pick-up and the daily TLS
//! report timer, and handles signals (SIGHUP reloads the certificate, the
//! `--auth-file` users, the address tables, the smarthost logins and the DKIM keys;
//! SIGTERM/SIGINT shut down gracefully).

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
use crate::outbound::tlsrpt::{self, Recorder, Reporter};
use crate::outbound::DeliveryContext;
use crate::privileges::{self, Account};
use crate::queue::scheduler::{self, Event, Scheduler};
use crate::queue::spool::GroupCommit;
use crate::queue::{maildrop, wakeup};
use crate::queue::{QueueKey, Spool};
use crate::text::Joined;
use crate::tls;

/// How long sessions get to finish after SIGTERM before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How often the maildrop is looked at without a datagram on the pickup socket.
const PICKUP_RESCAN: Duration = Duration::from_secs(60);

/// Resolves the certificates to use: the configured ones, or the demonstration pair
/// (RSA and ECDSA, generated on first start, with a warning every start).
fn load_tls(cfg: &Config) -> Result<openssl::ssl::SslContext, String> {
    if !cfg.tls_cert.is_empty() {
        return tls::server_context(&cfg.tls_cert, &cfg.client_cert_request());
    }
    let pairs = tls::cert::ensure_demo(&cfg.state_dir, &cfg.hostname)?;
    let certs: Vec<String> = pairs.iter().map(|(c, _)| c.display().to_string()).collect();
    log::warn!(
        "using the generated demonstration certificates {} (RSA and ECDSA): they are self-signed and not for production; give --tls-cert and --tls-key",
        certs.joined(" and ")
    );
    tls::server_context(&pairs, &cfg.client_cert_request())
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

/// Before the switch, as root: the maildrop made, the state directory kept traversable
/// for `sendmail` (mode o+x: the files in it have their own modes), and the state
/// directory and the Maildirs (made now if missing) handed to `account`, so the
/// daemon owns all it writes: queue files, Maildirs, the SRS secret, generated
/// certificates.
fn prepare_state(cfg: &Config, account: Option<&Account>) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let shown = cfg.state_dir.display();
    // Without them only `sendmail` of other users fails: no reason not to start.
    let traversable = maildrop::create(&cfg.state_dir).and_then(|()| {
        let mode = std::fs::metadata(&cfg.state_dir)?.permissions().mode() & 0o7777;
        if mode & 0o011 == 0o011 {
            return Ok(());
        }
        std::fs::set_permissions(
            &cfg.state_dir,
            std::fs::Permissions::from_mode(mode | 0o011),
        )
    });
    if let Err(e) = traversable {
        log::warn!(
            "cannot make the maildrop in {shown} ({e}): sendmail run by users who do not own the queue will fail"
        );
    }
    let Some(a) = account else {
        return Ok(());
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.mail_dir)
        .map_err(|e| format!("--mail-dir {}: {e}", cfg.mail_dir.display()))?;
    for dir in [&cfg.state_dir, &cfg.mail_dir] {
        let n = privileges::hand_over(dir, a.uid, a.gid)
            .map_err(|e| format!("cannot give {} to user {}: {e}", dir.display(), a.name))?;
        if n > 0 {
            log::info!("{}: {n} file(s) given to user {}", dir.display(), a.name);
        }
    }
    Ok(())
}

/// After the switch: every file SIGHUP reads again is read by path as the daemon's
/// user. One it cannot open now would make the reload keep the old contents; say so
/// at start, naming the flag and the fix.
fn check_reloadable(cfg: &Config, account: &Account) {
    let mut files: Vec<(&str, &std::path::Path)> = Vec::new();
    for (cert, key) in &cfg.tls_cert {
        files.push(("--tls-cert", cert));
        files.push(("--tls-key", key));
    }
    if let Some(f) = &cfg.auth_file {
        files.push(("--auth-file", f));
    }
    let t = &cfg.table_paths;
    for (flag, path) in [
        ("--aliases", &t.aliases),
        ("--virtual", &t.virtual_map),
        ("--local-recipients", &t.local_recipients),
        ("--sender-rewrite", &t.sender_rewrite),
        ("--relay-credentials", &cfg.outbound.credentials_file),
    ] {
        if let Some(p) = path {
            files.push((flag, p));
        }
    }
    for spec in &cfg.dkim_specs {
        files.push(("--dkim-key", &spec.path));
    }
    for (flag, path) in files {
        if let Err(e) = std::fs::File::open(path) {
            log::warn!(
                "{flag} {}: user {} cannot read it ({e}): it was read as root at start, but SIGHUP will keep the old contents; make it readable by {} (e.g. chgrp {} and chmod g+r, or chown {} for files that must be mode 0600)",
                path.display(),
                account.name,
                account.name,
                account.name,
                account.name
            );
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT. Returns the process exit code.
pub fn serve(cfg: Config) -> i32 {
    // First, before any thread exists: it holds per thread (see `privileges`).
    if rustix::process::geteuid().is_root() {
        // A second line of defence (the switch of user is the first): an emulator or
        // an old kernel without it is not a reason to refuse to start.
        if let Err(e) = privileges::forbid_new_privileges() {
            log::warn!("cannot set no_new_privs: {e}");
        }
    }
    let account = cfg.account.clone();
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
            names.joined(", ")
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

    // Everything that needs root is open: the listeners, the queue, the files read.
    if let Err(e) = prepare_state(&cfg, account.as_ref()) {
        log::error!("{e}");
        return exit::CONFIG;
    }
    if let Some(a) = &account {
        if let Err(e) = privileges::switch_to(a) {
            log::error!("{e}");
            return exit::CONFIG;
        }
        log::info!("running as user {} (uid {}, gid {})", a.name, a.uid, a.gid);
        check_reloadable(&cfg, a);
    }

    let ex = Rc::new(smol::LocalExecutor::new());
    let ex2 = ex.clone();
    let loaded = Reloadable {
        tls: tls_ctx,
        auth,
        rewriter: Rc::new(RefCell::new(Rc::new(rewriter))),
        dkim: Rc::new(RefCell::new(cfg.dkim_keys.clone())),
    };
    crate::runtime::block_on(
        ex.run(async move { run(ex2, cfg, spool, recovered, loaded, sockets).await }),
    )
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

    let mut remote = remote_delivery(&cfg);
    if let Some(settings) = &cfg.tls_rpt {
        let recorder = Rc::new(Recorder::new(&cfg.state_dir, settings.interval));
        remote.tls_rpt = recorder.clone();
        crate::runtime::spawn_detached(
            &ex,
            tlsrpt::run(Reporter {
                recorder,
                settings: settings.clone(),
                hostname: cfg.hostname.clone(),
                spool: spool.clone(),
                events: events_tx.clone(),
                resolver: crate::dns::Resolver::from_flag_or_system(
                    cfg.outbound.resolver.as_deref(),
                ),
            }),
        );
    }
    let delivery = Rc::new(DeliveryContext {
        hostname: cfg.hostname.clone(),
        router: cfg.outbound.router.clone(),
        mail_dir: cfg.mail_dir.clone(),
        remote,
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
    crate::runtime::spawn_detached(
        &ex,
        scheduler::run(ex.clone(), queue, delivery.clone(), events_rx, recovered),
    );

    match wakeup::bind(&spool) {
        Ok(sock) => crate::runtime::spawn_detached(&ex, wakeup::listen(sock, events_tx.clone())),
        Err(e) => log::warn!(
            "cannot open wakeup socket {}: {e}; sendmail drops are found by the periodic rescan",
            spool.wakeup_socket().display()
        ),
    }

    match bind_pickup(&cfg) {
        Ok(sock) => {
            let (state_dir, spool) = (cfg.state_dir.clone(), spool.clone());
            let (hostname, max_size) = (cfg.hostname.clone(), cfg.limits.max_message_size);
            crate::runtime::spawn_detached(
                &ex,
                pick_up_loop(
                    sock,
                    state_dir,
                    spool,
                    hostname,
                    max_size,
                    events_tx.clone(),
                ),
            );
        }
        Err(e) => log::error!(
            "cannot open pickup socket {}: {e}; sendmail from other users is not picked up",
            maildrop::pickup_socket(&cfg.state_dir).display()
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
        crate::runtime::spawn_detached(&ex, listener::run(ex.clone(), shared.clone(), l, sock));
    }
    log::info!(
        "tinymta {} started: hostname {}, domains {}, profile {}",
        env!("CARGO_PKG_VERSION"),
        cfg.hostname,
        cfg.outbound.router.local_domains.joined(" "),
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
    let _ = std::fs::remove_file(maildrop::pickup_socket(&cfg.state_dir));
    log::info!("stopped");
    0
}

/// The pickup socket, writable by everyone: a datagram only makes the daemon look in
/// the maildrop, which it also does once a minute and at start.
fn bind_pickup(cfg: &Config) -> std::io::Result<Async<std::os::unix::net::UnixDatagram>> {
    use std::os::unix::fs::PermissionsExt;
    let path = maildrop::pickup_socket(&cfg.state_dir);
    let _ = std::fs::remove_file(&path);
    let sock = std::os::unix::net::UnixDatagram::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    Async::new(sock)
}

/// Moves what `sendmail` dropped into the queue: at start, on each datagram (all
/// waiting datagrams answered by one pass) and once a minute; each message queued is
/// handed to the scheduler.
async fn pick_up_loop(
    sock: Async<std::os::unix::net::UnixDatagram>,
    state_dir: std::path::PathBuf,
    spool: Spool,
    hostname: String,
    max_size: u64,
    events: smol::channel::Sender<Event>,
) {
    use smol::future::FutureExt;
    let mut buf = [0u8; 64];
    loop {
        let (d, s, h) = (state_dir.clone(), spool.clone(), hostname.clone());
        for picked in crate::runtime::unblock(move || maildrop::pick_up(&d, &s, &h, max_size)).await
        {
            if events.send(Event::New(picked.id)).await.is_err() {
                return;
            }
        }
        let poked = async { sock.recv(&mut buf).await.is_ok() }
            .or(async {
                smol::Timer::after(PICKUP_RESCAN).await;
                true
            })
            .await;
        if !poked {
            return;
        }
        while sock.get_ref().recv(&mut buf).is_ok() {}
    }
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
