//! The SCP: accept loop, one thread per association (threads are kept for reuse a few seconds
//! after their association ends), negotiation against a fixed configuration plus the
//! application's [`Hooks`] once per association, then the association served as a [`Link`]
//! whose requests go to the node's [`Services`] (PS3.7 §9–10).
use crate::link::{Dispatch, Link, LinkLimits, Outcome};
use crate::metrics::Metrics;
use crate::services::Services;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use ul::negotiate::{reject, AcceptorConfig, Decision};
use ul::pdu::{AssociateRj, AssociateRq};
use ul::{AssocError, Association, Timeouts};

/// What the application does around associations (the Python bindings implement it; every
/// method has a default that does nothing).
pub trait Hooks: Send + Sync + 'static {
    /// Asked once per association request, before it is answered: reject it (access control,
    /// user identity), or decide what this association's answer carries beyond the fixed
    /// configuration (user identity server response, extended negotiation replies).
    fn negotiate(
        &self,
        _rq: &AssociateRq,
        _peer: Option<SocketAddr>,
    ) -> Result<Decision, AssociateRj> {
        Ok(Decision::default())
    }
    /// An association was established; `link` serves it from now on.
    fn established(&self, _link: &Arc<Link>) {}
    /// An association request was rejected (`why` says by what).
    fn rejected(&self, _rq: &AssociateRq, _peer: Option<SocketAddr>, _rj: AssociateRj, _why: &str) {
    }
    /// A connection ended before an association request could be answered (nothing arrived,
    /// a malformed PDU, another PDU than A-ASSOCIATE-RQ).
    fn refused(&self, _peer: Option<SocketAddr>, _error: &AssocError) {}
    /// The association ended.
    fn closed(&self, _link: &Arc<Link>, _outcome: Outcome) {}
    /// Runs one association's whole life on its thread; a binding may set up per-thread state
    /// around it (the Python bindings keep one interpreter thread state per association).
    fn run_association(&self, serve: &mut (dyn FnMut() + Send)) {
        serve()
    }
}

/// [`Hooks`] that do nothing.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// Server settings handed down once.
#[derive(Clone)]
pub struct ServerConfig {
    pub acceptor: AcceptorConfig,
    pub timeouts: Timeouts,
    pub max_associations: usize,
    /// Limits of each association (DIMSE timeout, data sets read into memory, queued requests).
    pub limits: LinkLimits,
}

struct Shared {
    config: ServerConfig,
    services: Arc<Services>,
    hooks: Arc<dyn Hooks>,
    /// Connections accepted and not yet finished with (their thread not yet free again).
    active: AtomicUsize,
    /// Associations counted against `max_associations`: from the A-ASSOCIATE-RQ until the
    /// association ends (for a release, before the A-RELEASE-RP goes out).
    associations: AtomicUsize,
    total: AtomicU64,
    stop: AtomicBool,
    metrics: Arc<Metrics>,
    /// The established associations, aborted at shutdown.
    links: Mutex<HashMap<u64, Arc<Link>>>,
    workers: Workers,
}

/// How long an association thread waits for the next connection before it ends.
const WORKER_IDLE: Duration = Duration::from_secs(10);

/// Association threads: each serves one association at a time, then waits up to [`WORKER_IDLE`]
/// for another one (creating and ending a thread per association is a large share of a short
/// association's cost).
#[derive(Default)]
struct Workers {
    state: Mutex<WorkQueue>,
    cv: Condvar,
}

#[derive(Default)]
struct WorkQueue {
    /// Accepted connections not yet taken by a thread.
    waiting: VecDeque<(TcpStream, u64)>,
    /// Threads waiting for a connection.
    idle: usize,
    stop: bool,
}

impl Workers {
    fn lock(&self) -> MutexGuard<'_, WorkQueue> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A listening SCP.
pub struct Server {
    shared: Arc<Shared>,
    listener: Mutex<Option<TcpListener>>,
    local: SocketAddr,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port).
    pub fn bind(
        addr: (&str, u16),
        config: ServerConfig,
        services: Arc<Services>,
        hooks: Arc<dyn Hooks>,
    ) -> std::io::Result<Server> {
        // Checked once here; each association re-checks only the sizes (cheap).
        config
            .acceptor
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            services,
            hooks,
            active: AtomicUsize::new(0),
            associations: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            links: Mutex::new(HashMap::new()),
            metrics: Arc::new(Metrics::default()),
            workers: Workers::default(),
        });
        Ok(Server {
            shared,
            listener: Mutex::new(Some(listener)),
            local,
            thread: Mutex::new(None),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
    /// The server's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }
    pub fn active(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }
    pub fn total(&self) -> u64 {
        self.shared.total.load(Ordering::Relaxed)
    }
    pub fn is_stopped(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }
    pub fn is_started(&self) -> bool {
        self.listener.lock().map(|l| l.is_none()).unwrap_or(true)
    }

    /// Starts the accept loop on its own thread.
    pub fn start(&self) -> std::io::Result<()> {
        let listener = self
            .listener
            .lock()
            .map_err(|_| std::io::Error::other("lock poisoned"))?
            .take()
            .ok_or_else(|| std::io::Error::other("server already started"))?;
        let shared = self.shared.clone();
        let h = std::thread::Builder::new()
            .name("ferrodicom-accept".into())
            .spawn(move || accept_loop(shared, listener))?;
        if let Ok(mut t) = self.thread.lock() {
            *t = Some(h);
        }
        Ok(())
    }

    /// Stops accepting, aborts open associations and waits (up to ~5 s) for their threads.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let wake = if self.local.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], self.local.port()))
        } else {
            self.local
        };
        // Wake the blocking accept() with a connection of our own.
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(h) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = h.join();
        }
        let mut q = self.shared.workers.lock();
        q.stop = true;
        // Connections accepted but not yet taken by a thread are closed unanswered.
        for _ in q.waiting.drain(..) {
            self.shared.active.fetch_sub(1, Ordering::SeqCst);
        }
        drop(q);
        self.shared.workers.cv.notify_all();
        let links: Vec<Arc<Link>> = match self.shared.links.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        for link in links {
            link.abort();
        }
        for _ in 0..500 {
            if self.shared.active.load(Ordering::SeqCst) == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Ok(mut l) = self.listener.lock() {
            l.take();
        }
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut conn_id = 0u64;
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else { continue };
        conn_id += 1;
        shared.total.fetch_add(1, Ordering::Relaxed);
        shared.active.fetch_add(1, Ordering::SeqCst);
        let mut q = shared.workers.lock();
        q.waiting.push_back((stream, conn_id));
        let short = q.waiting.len() > q.idle;
        drop(q);
        if !short {
            shared.workers.cv.notify_one();
            continue;
        }
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("ferrodicom-assoc".into())
            .spawn(move || association_thread(sh));
        if spawned.is_err() {
            // No thread for it: drop the newest connection still waiting (the peer sees it close).
            let mut q = shared.workers.lock();
            if q.waiting.len() > q.idle && q.waiting.pop_back().is_some() {
                shared.active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// Serves waiting connections one after another; ends after [`WORKER_IDLE`] without one, or at
/// shutdown.
fn association_thread(shared: Arc<Shared>) {
    let mut served = false;
    loop {
        let mut q = shared.workers.lock();
        if served {
            // Counted out only once waiting again, so `active() == 0` means every thread is free.
            shared.active.fetch_sub(1, Ordering::SeqCst);
        }
        q.idle += 1;
        let mut q = shared
            .workers
            .cv
            .wait_timeout_while(q, WORKER_IDLE, |q| q.waiting.is_empty() && !q.stop)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        let next = q.waiting.pop_front();
        q.idle -= 1;
        drop(q);
        let Some((stream, conn_id)) = next else {
            return;
        };
        let hooks = Arc::clone(&shared.hooks);
        let mut job = Some((shared.clone(), stream));
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            hooks.run_association(&mut || {
                if let Some((sh, stream)) = job.take() {
                    serve_association(sh, stream, conn_id)
                }
            })
        }));
        if let Ok(mut m) = shared.links.lock() {
            m.remove(&conn_id);
        }
        served = true;
    }
}

fn serve_association(shared: Arc<Shared>, stream: TcpStream, conn_id: u64) {
    let cfg = &shared.config;
    let peer = stream.peer_addr().ok();
    let (mut assoc, rq) = match Association::accept_transport(stream, cfg.timeouts) {
        Ok(x) => x,
        Err(e) => {
            shared.hooks.refused(peer, &e);
            return;
        }
    };
    let Some(slot) = LimitSlot::take(&shared) else {
        if assoc.reject(reject::LOCAL_LIMIT_EXCEEDED).is_ok() {
            let rj = reject::LOCAL_LIMIT_EXCEEDED;
            shared.metrics.rejected(rj.result, rj.source, rj.reason);
            let why = format!("{} associations open already", cfg.max_associations);
            shared
                .hooks
                .rejected(&rq, peer, reject::LOCAL_LIMIT_EXCEEDED, &why);
        }
        return;
    };
    let on_release = Arc::clone(&slot);
    assoc.before_release_response(move || on_release.give_back());
    let decision = match shared.hooks.negotiate(&rq, peer) {
        Ok(d) => d,
        Err(rj) => {
            if assoc.reject(rj).is_ok() {
                shared.metrics.rejected(rj.result, rj.source, rj.reason);
                shared
                    .hooks
                    .rejected(&rq, peer, rj, "refused by the node's access control");
            }
            return;
        }
    };
    match assoc.respond_with(&cfg.acceptor, &rq, &decision) {
        Ok(()) => {}
        Err(AssocError::Rejected(rj)) => {
            shared.metrics.rejected(rj.result, rj.source, rj.reason);
            shared
                .hooks
                .rejected(&rq, peer, rj, ul::assoc::reject_meaning(&rj));
            return;
        }
        Err(e) => {
            shared.hooks.refused(peer, &e);
            return;
        }
    }
    if !assoc.is_established() {
        return;
    }
    let services: Arc<dyn Dispatch> = shared.services.clone();
    let link = match Link::new(assoc, services, cfg.limits) {
        Ok(l) => l,
        Err(e) => {
            shared.hooks.refused(peer, &AssocError::Io(e));
            return;
        }
    };
    if let Ok(mut m) = shared.links.lock() {
        m.insert(conn_id, Arc::clone(&link));
    }
    link.set_metrics(Arc::clone(&shared.metrics));
    shared.metrics.association_opened();
    shared.hooks.established(&link);
    let outcome = link.serve(&shared.stop, cfg.timeouts.dimse);
    shared.metrics.association_ended();
    slot.give_back();
    shared.hooks.closed(&link, outcome);
}

/// One place under `max_associations`, given back once: before the A-RELEASE-RP of a release
/// (so a peer that opens its next association right after releasing is not refused), else when
/// the association ends, or when the last holder is dropped.
struct LimitSlot {
    shared: Arc<Shared>,
    held: AtomicBool,
}

impl LimitSlot {
    fn take(shared: &Arc<Shared>) -> Option<Arc<LimitSlot>> {
        let before = shared.associations.fetch_add(1, Ordering::SeqCst);
        if before >= shared.config.max_associations {
            shared.associations.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Arc::new(LimitSlot {
            shared: Arc::clone(shared),
            held: AtomicBool::new(true),
        }))
    }

    fn give_back(&self) {
        if self.held.swap(false, Ordering::SeqCst) {
            self.shared.associations.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for LimitSlot {
    fn drop(&mut self) {
        self.give_back();
    }
}
