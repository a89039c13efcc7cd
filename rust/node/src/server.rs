//! The SCP: accept loop, one thread per association (threads are kept for reuse a few seconds
//! after their association ends), negotiation against a fixed configuration,
//! and dispatch of DIMSE requests to a [`Handler`] (PS3.7 §9–10). C-ECHO is answered here unless
//! the handler routes it; C-STORE data sets stream to disk through [`crate::storage`].
use crate::storage::{receive_to_file, Prepared, Received, StorageConfig};
use codec::Tag;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use ul::dimse::{self, command_field, command_vr, CommandVr};
use ul::negotiate::{reject, AcceptorConfig};
use ul::pdu::{AssociateRj, AssociateRq};
use ul::{AssocError, Association, Command, Incoming, Negotiated, NegotiatedContext, Timeouts};

/// A value for an extra response command field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Int(u32),
    Str(String),
    Tags(Vec<u32>),
}

/// One DIMSE response: status, optional data set, extra command fields (e.g. Error Comment).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub status: u16,
    pub data: Option<Vec<u8>>,
    pub fields: Vec<(u16, FieldValue)>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Default::default()
        }
    }
    pub fn with_comment(status: u16, comment: &str) -> Reply {
        // Error Comment is LO: at most 64 characters (PS3.7 C.4.2.1.1? general; PS3.5 §6.2).
        let comment: String = comment.chars().take(64).collect();
        Reply {
            status,
            data: None,
            fields: vec![(dimse::tag::ERROR_COMMENT, FieldValue::Str(comment))],
        }
    }
}

/// What the server does with requests; implemented by the Python bindings.
pub trait Handler: Send + Sync + 'static {
    /// Called when an association is established; the session lives as long as it does.
    fn open(&self, negotiated: &Negotiated, peer: Option<SocketAddr>) -> Box<dyn Session>;
    /// Called when an association request was rejected.
    fn rejected(&self, _rq: &AssociateRq, _rj: AssociateRj) {}
    /// True if requests with this Command Field go to [`Session::request`].
    fn routes(&self, field: u16) -> bool;
    /// Where C-STORE data sets go, if this node stores.
    fn storage(&self) -> Option<&StorageConfig>;
    /// Runs one association's whole life on its thread; a binding may set up per-thread state
    /// around it (the Python bindings keep one interpreter thread state per association).
    fn run_association(&self, serve: &mut (dyn FnMut() + Send)) {
        serve()
    }
}

/// Per-association callbacks.
pub trait Session: Send {
    /// A request with its (small, in-memory) data set; returns one or more responses.
    fn request(
        &mut self,
        ctx: &NegotiatedContext,
        command: Command,
        data: Option<Vec<u8>>,
    ) -> Vec<Reply>;
    /// Mid-stream, once a C-STORE's index keys are known: where its file goes (see
    /// [`Prepared`]). The default decides nothing until [`Session::stored`].
    fn prepare_store(
        &mut self,
        _ctx: &NegotiatedContext,
        _command: &Command,
        _keys: &[(Tag, String)],
    ) -> Prepared {
        Prepared::Later
    }
    /// The association ended in the middle of a C-STORE's data set (nothing was kept): lets a
    /// session release what [`Session::prepare_store`] reserved.
    fn store_aborted(&mut self, _ctx: &NegotiatedContext, _command: &Command) {}
    /// A C-STORE whose data set was streamed to disk (or failed); returns the response. After an
    /// early reply (`received.early`, already sent) the returned reply is not sent.
    fn stored(&mut self, ctx: &NegotiatedContext, command: &Command, received: Received) -> Reply;
    /// The association ended: "released" or "aborted".
    fn close(&mut self, outcome: &'static str);
}

/// Server settings handed down once.
#[derive(Clone)]
pub struct ServerConfig {
    pub acceptor: AcceptorConfig,
    pub timeouts: Timeouts,
    pub max_associations: usize,
    /// Largest data set (other than C-STORE's, which streams) read into memory for a handler.
    pub max_data_set: usize,
}

struct Shared {
    config: ServerConfig,
    handler: Arc<dyn Handler>,
    /// Connections accepted and not yet finished with (their thread not yet free again).
    active: AtomicUsize,
    /// Associations counted against `max_associations`: from the A-ASSOCIATE-RQ until the
    /// association ends (for a release, before the A-RELEASE-RP goes out).
    associations: AtomicUsize,
    total: AtomicU64,
    stop: AtomicBool,
    aborts: Mutex<HashMap<u64, ul::AbortHandle>>,
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
        handler: Arc<dyn Handler>,
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
            handler,
            active: AtomicUsize::new(0),
            associations: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            aborts: Mutex::new(HashMap::new()),
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
        if let Ok(m) = self.shared.aborts.lock() {
            for h in m.values() {
                h.abort();
            }
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
        let handler = Arc::clone(&shared.handler);
        let mut job = Some((shared.clone(), stream));
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler.run_association(&mut || {
                if let Some((sh, stream)) = job.take() {
                    serve_association(sh, stream, conn_id)
                }
            })
        }));
        if let Ok(mut m) = shared.aborts.lock() {
            m.remove(&conn_id);
        }
        served = true;
    }
}

fn apply_fields(rsp: &mut Command, fields: &[(u16, FieldValue)]) {
    for (el, v) in fields {
        match v {
            FieldValue::Int(i) if command_vr(*el) == CommandVr::US => rsp.set_us(*el, *i as u16),
            FieldValue::Int(i) => rsp.set_raw(*el, i.to_le_bytes().to_vec()),
            FieldValue::Str(s) => rsp.set_str(*el, s),
            FieldValue::Tags(t) => rsp.set_tags(*el, t),
        }
    }
}

fn serve_association(shared: Arc<Shared>, stream: TcpStream, conn_id: u64) {
    let cfg = &shared.config;
    let (mut assoc, rq) = match Association::accept_transport(stream, cfg.timeouts) {
        Ok(x) => x,
        Err(_) => return,
    };
    let Some(slot) = LimitSlot::take(&shared) else {
        if assoc.reject(reject::LOCAL_LIMIT_EXCEEDED).is_ok() {
            shared.handler.rejected(&rq, reject::LOCAL_LIMIT_EXCEEDED);
        }
        return;
    };
    let on_release = Arc::clone(&slot);
    assoc.before_release_response(move || on_release.give_back());
    if let Err(AssocError::Rejected(rj)) = assoc.respond(&cfg.acceptor, &rq) {
        shared.handler.rejected(&rq, rj);
        return;
    }
    if !assoc.is_established() {
        return;
    }
    if let Ok(h) = assoc.abort_handle() {
        if let Ok(mut m) = shared.aborts.lock() {
            m.insert(conn_id, h);
        }
    }
    let calling_ae = assoc.negotiated().calling_ae.clone();
    let mut session = shared.handler.open(assoc.negotiated(), assoc.peer_addr());
    let storage = shared.handler.storage();
    let outcome = loop {
        if shared.stop.load(Ordering::Relaxed) {
            let _ = assoc.abort(0);
            break "aborted";
        }
        let (ctx_id, command) = match assoc.receive(cfg.timeouts.dimse) {
            Ok(Incoming::Command {
                context_id,
                command,
            }) => (context_id, command),
            Ok(Incoming::Released) => break "released",
            Ok(Incoming::Aborted(_)) | Err(_) => break "aborted",
        };
        let Some(field) = command.command_field() else {
            break "aborted";
        };
        let Some(ctx) = assoc.negotiated().context(ctx_id).cloned() else {
            break "aborted";
        };
        if !command.is_request() || field == command_field::C_CANCEL_RQ {
            // A response we never asked for, or a cancel with nothing to cancel: ignore it.
            continue;
        }
        let store_here = if field == command_field::C_STORE_RQ && command.has_data_set() {
            storage
        } else {
            None
        };
        let replies = if let Some(store) = store_here {
            let received = receive_to_file(
                &mut assoc,
                &command,
                &ctx,
                &calling_ae,
                store,
                &mut |keys| session.prepare_store(&ctx, &command, keys),
            );
            match received {
                Ok(mut received) => match received.early.take() {
                    Some(early) => {
                        // The file is in place and the service answered early: respond now, then
                        // let the session finish (index) while the peer reads the response.
                        let sent = send_reply(&mut assoc, ctx_id, &command, &early);
                        session.stored(&ctx, &command, received);
                        if sent.is_err() {
                            break "aborted";
                        }
                        Vec::new()
                    }
                    None => vec![session.stored(&ctx, &command, received)],
                },
                Err(_) => {
                    session.store_aborted(&ctx, &command);
                    break "aborted";
                }
            }
        } else if shared.handler.routes(field) {
            let data = if command.has_data_set() {
                match assoc.read_data_set_to_vec(cfg.max_data_set) {
                    Ok(d) => Some(d),
                    Err(_) => break "aborted",
                }
            } else {
                None
            };
            session.request(&ctx, command.clone(), data)
        } else if field == command_field::C_ECHO_RQ {
            vec![Reply::status(0x0000)]
        } else if field == command_field::C_STORE_RQ {
            // No storage configured for an accepted storage context: refused, out of resources.
            vec![Reply::with_comment(
                0xA700,
                "this node does not store instances",
            )]
        } else {
            // Unrecognized operation (PS3.7 C.4.1.1.3, general status 0211).
            vec![Reply::status(0x0211)]
        };
        if replies
            .iter()
            .any(|reply| send_reply(&mut assoc, ctx_id, &command, reply).is_err())
        {
            break "aborted";
        }
    };
    slot.give_back();
    session.close(outcome);
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

fn send_reply(
    assoc: &mut Association,
    ctx_id: u8,
    command: &Command,
    reply: &Reply,
) -> Result<(), AssocError> {
    let mut rsp = dimse::response_to(command, reply.status, reply.data.is_some());
    apply_fields(&mut rsp, &reply.fields);
    assoc.send_message(ctx_id, &rsp, reply.data.as_deref())
}
