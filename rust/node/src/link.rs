//! An established association as the node uses it (PS3.7 §7–§10): shared by the thread that
//! serves it and by any thread that sends on it (an SCU call from Python, a handler sending an
//! N-EVENT-REPORT, a C-GET's sub-operations).
//!
//! Whoever holds the lock reads from the socket ("pumps"), and routes what it reads:
//! - a response goes to the request it answers, kept until that request's sender takes it; a
//!   response nobody asked for ends the association (A-ABORT);
//! - a C-CANCEL-RQ marks the request it cancels (PS3.7 §9.3.2.3), for [`Request::is_cancelled`];
//! - a request is served at once through the link's [`Dispatch`] when no other request of the
//!   peer is being served, else queued until it is (we negotiate no asynchronous operations
//!   window, so the peer is allowed one outstanding operation, PS3.7 D.3.3.3).
//!
//! Waiting for input happens without the lock, so another thread can send while the serving
//! thread waits; a message is read and handled with the lock held.
use parking_lot::{Mutex, MutexGuard};
use std::any::Any;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use ul::dimse::{self, command_field, command_vr, tag, CommandVr};
use ul::{
    AbortHandle, AssocError, Association, Command, Incoming, Negotiated, NegotiatedContext, Ready,
};

/// How an association ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Released,
    Aborted,
}

/// A value for an extra response command field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Int(u32),
    Str(String),
    Tags(Vec<u32>),
}

/// One DIMSE response: status, optional data set (encoded in the context's transfer syntax) and
/// extra command fields (Error Comment, sub-operation counts, ...).
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
    /// A status with an Error Comment (0000,0902), cut to the 64 characters of its LO value.
    pub fn with_comment(status: u16, comment: &str) -> Reply {
        let comment: String = comment.chars().take(64).collect();
        Reply {
            status,
            data: None,
            fields: vec![(tag::ERROR_COMMENT, FieldValue::Str(comment))],
        }
    }
}

/// True for the statuses after which more responses follow (PS3.7 C.1.2: Pending).
pub fn is_pending(status: u16) -> bool {
    status == 0xFF00 || status == 0xFF01
}

/// A DIMSE message as received: command, and its data set read into memory.
#[derive(Debug, Clone)]
pub struct Message {
    pub context_id: u8,
    pub command: Command,
    pub data: Option<Vec<u8>>,
}

/// How loud a [`Dispatch::notice`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
}

/// What serves the peer's requests on a link.
pub trait Dispatch: Send + Sync {
    /// Serves one request: answers it through `rq` (a request left unanswered gets 0110
    /// Processing failure). An error ends the association.
    fn dispatch(&self, rq: &mut Request<'_, '_>) -> Result<(), AssocError>;
    /// Something worth a log line happened on `link` (a message that was refused or ignored).
    fn notice(&self, _link: &Link, _level: Level, _message: &str) {}
}

/// Limits of one link.
#[derive(Debug, Clone, Copy)]
pub struct LinkLimits {
    /// Waiting for the next fragment of a message that has begun (`None`: forever).
    pub dimse_timeout: Option<Duration>,
    /// Waiting for the response to a request we sent (`None`: forever). A server's link reads
    /// with the network timeout but answers a handler's request within the DIMSE timeout.
    pub response_timeout: Option<Duration>,
    /// Largest data set of a response, or of a queued request, read into memory.
    pub max_data_set: usize,
    /// Requests queued while another is served, and their bytes, beyond which the peer (which
    /// may have one operation outstanding) is aborted.
    pub max_queued: usize,
    pub max_queued_bytes: usize,
}

impl Default for LinkLimits {
    fn default() -> Self {
        LinkLimits {
            dimse_timeout: Some(Duration::from_secs(60)),
            response_timeout: Some(Duration::from_secs(60)),
            max_data_set: 1 << 30,
            max_queued: 16,
            max_queued_bytes: 64 << 20,
        }
    }
}

/// The state behind the link's lock.
pub struct LinkState {
    pub assoc: Association,
    /// Responses that arrived, by the Message ID of the request they answer.
    responses: HashMap<u16, VecDeque<Message>>,
    /// Our requests still waiting for their final response.
    awaiting: HashSet<u16>,
    /// The peer's requests being served, and those it cancelled.
    in_progress: Vec<(u16, std::thread::ThreadId)>,
    cancelled: HashSet<u16>,
    /// The peer's requests that arrived while another was served.
    queued: VecDeque<Message>,
    queued_bytes: usize,
    /// The A-ABORT the peer sent, for whoever waited on the association.
    peer_abort: Option<ul::pdu::Abort>,
    /// The wake descriptors of the threads waiting for input without the lock: whoever changes
    /// what they wait for (a response routed, a request queued or done) wakes them.
    waiters: Vec<RawFd>,
}

/// A thread's own wake-up pair: others write a byte to `writer` to end its wait (see
/// [`LinkState::waiters`]); both ends non-blocking, `reader` drained after each wait.
struct Wake {
    reader: UnixStream,
    writer: UnixStream,
}

impl Wake {
    fn new() -> io::Result<Wake> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Wake { reader, writer })
    }
    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.reader).read(&mut buf), Ok(n) if n > 0) {}
    }
}

thread_local! {
    static WAKE: Option<Wake> = Wake::new().ok();
}

/// Writes one byte to each waiter's wake descriptor (a full pipe already holds a wake-up).
fn wake_all(waiters: &[RawFd]) {
    for fd in waiters {
        // SAFETY: a one-byte write from a live buffer to a descriptor its owner keeps open while
        // registered (it deregisters, under the same lock, before its thread can end).
        unsafe {
            libc::write(*fd, [1u8].as_ptr().cast(), 1);
        }
    }
}

pub type LinkGuard<'l> = MutexGuard<'l, LinkState>;

const NOT_ENDED: u8 = 0;
const RELEASED: u8 = 1;
const ABORTED: u8 = 2;

/// An established association with its routing state (see the module documentation).
pub struct Link {
    state: Mutex<LinkState>,
    watcher: ul::Watcher,
    abort: AbortHandle,
    /// Shared (an `Arc`) so that the Python objects describing the association need no copy.
    negotiated: Arc<Negotiated>,
    peer: Option<SocketAddr>,
    requestor: bool,
    dispatch: Arc<dyn Dispatch>,
    limits: LinkLimits,
    next_id: AtomicU32,
    ended: AtomicU8,
    /// Unique in this process, for the binding layer's bookkeeping.
    id: u64,
    /// This link's own `Arc` (for handing out handles from a `&Link`).
    this: Weak<Link>,
    /// Set once by the binding layer: its per-association object.
    attachment: OnceLock<Box<dyn Any + Send + Sync>>,
    /// The server's counters, when it keeps them.
    metrics: OnceLock<Arc<Metrics>>,
}

static NEXT_LINK_ID: AtomicU64 = AtomicU64::new(1);

/// What one step of pumping did.
enum Step {
    /// Read and handled a message, or found the input gone to another thread: look again.
    Progress,
    /// Nothing arrived before the deadline.
    Idle,
    /// The peer released or aborted.
    Ended(Outcome),
}

/// Where a request's data set is.
enum RequestData {
    None,
    /// Still on the wire: it must be read (or skipped) before anything else is.
    Wire,
    /// Read into memory while the request waited in the queue.
    Memory(Vec<u8>),
}

fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

fn is_known_response(field: u16) -> bool {
    field & 0x8000 != 0
        && field != 0xFFFF
        && command_field::name(field).is_some_and(|n| n.ends_with("-RSP"))
}

fn field_name(field: u16) -> String {
    command_field::name(field)
        .map(str::to_string)
        .unwrap_or_else(|| format!("command field 0x{field:04X}"))
}

impl Link {
    /// Wraps an established association. `dispatch` serves the peer's requests.
    pub fn new(
        assoc: Association,
        dispatch: Arc<dyn Dispatch>,
        limits: LinkLimits,
    ) -> io::Result<Arc<Link>> {
        let watcher = assoc.watcher()?;
        let abort = assoc.abort_handle()?;
        let negotiated = Arc::new(assoc.negotiated().clone());
        let peer = assoc.peer_addr();
        let requestor = assoc.role() == ul::Role::Requestor;
        Ok(Arc::new_cyclic(|this| Link {
            state: Mutex::new(LinkState {
                assoc,
                responses: HashMap::new(),
                awaiting: HashSet::new(),
                in_progress: Vec::new(),
                cancelled: HashSet::new(),
                queued: VecDeque::new(),
                queued_bytes: 0,
                peer_abort: None,
                waiters: Vec::new(),
            }),
            watcher,
            abort,
            negotiated,
            peer,
            requestor,
            dispatch,
            limits,
            next_id: AtomicU32::new(0),
            ended: AtomicU8::new(NOT_ENDED),
            id: NEXT_LINK_ID.fetch_add(1, Ordering::Relaxed),
            this: this.clone(),
            attachment: OnceLock::new(),
            metrics: OnceLock::new(),
        }))
    }

    pub fn lock(&self) -> LinkGuard<'_> {
        self.state.lock()
    }
    /// Counts this association's events in `metrics` from now on (set once).
    pub fn set_metrics(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }
    /// The counters this association's events go to, if any.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.get()
    }
    /// A new handle on this link.
    pub fn handle(&self) -> Arc<Link> {
        self.this.upgrade().expect("a link is alive while borrowed")
    }
    /// Unique in this process.
    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn negotiated(&self) -> &Arc<Negotiated> {
        &self.negotiated
    }
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
    /// True when we requested the association.
    pub fn is_requestor(&self) -> bool {
        self.requestor
    }
    pub fn limits(&self) -> &LinkLimits {
        &self.limits
    }
    pub fn dispatcher(&self) -> &Arc<dyn Dispatch> {
        &self.dispatch
    }
    /// The binding layer's per-association object (set once).
    pub fn attachment(&self) -> &OnceLock<Box<dyn Any + Send + Sync>> {
        &self.attachment
    }
    /// How the association ended, if it has.
    pub fn outcome(&self) -> Option<Outcome> {
        match self.ended.load(Ordering::SeqCst) {
            RELEASED => Some(Outcome::Released),
            ABORTED => Some(Outcome::Aborted),
            _ => None,
        }
    }
    pub fn is_established(&self) -> bool {
        self.outcome().is_none()
    }

    fn end(&self, outcome: Outcome) {
        let v = match outcome {
            Outcome::Released => RELEASED,
            Outcome::Aborted => ABORTED,
        };
        let _ = self
            .ended
            .compare_exchange(NOT_ENDED, v, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Records that the association is over if the state machine says so (an error on it).
    fn note_state(&self, g: &LinkGuard<'_>) {
        if !g.assoc.is_established() {
            self.end(Outcome::Aborted);
        }
    }

    /// A fresh Message ID (1..=65535, PS3.7 E.1).
    pub fn next_message_id(&self) -> u16 {
        (self.next_id.fetch_add(1, Ordering::Relaxed) % 65535 + 1) as u16
    }

    /// Aborts the association from any thread (A-ABORT, then the socket is closed, which wakes
    /// whoever waits on it).
    pub fn abort(&self) {
        self.abort.abort();
        self.end(Outcome::Aborted);
    }

    /// Aborts as service user, from the lock holder, with a notice saying why; returns the error
    /// to report.
    pub fn abort_locked(&self, g: &mut LinkGuard<'_>, why: String) -> AssocError {
        self.dispatch.notice(self, Level::Warning, &why);
        let _ = g.assoc.abort(0);
        self.end(Outcome::Aborted);
        AssocError::Protocol(why)
    }

    /// Releases the association (A-RELEASE, PS3.8 §7.2). Returns (PDVs, bytes) of data the peer
    /// sent after our A-RELEASE-RQ (the association is released all the same).
    pub fn release(&self) -> Result<Option<(u64, u64)>, AssocError> {
        let mut g = self.lock();
        if !g.assoc.is_established() {
            return Ok(None);
        }
        // A request of the peer being served (or queued) is answered first: once our
        // A-RELEASE-RQ is out, its response could no longer be sent (PS3.8 §7.2).
        let patience = g
            .assoc
            .timeouts_mut()
            .acse
            .unwrap_or(Duration::from_secs(30));
        let deadline = Instant::now() + patience;
        // (Not a request this very thread serves: a handler releasing its own association.)
        let me = std::thread::current().id();
        let others_serving = |g: &LinkGuard<'_>| g.in_progress.iter().any(|(_, t)| *t != me);
        while (others_serving(&g) || (g.in_progress.is_empty() && !g.queued.is_empty()))
            && Instant::now() < deadline
        {
            let step = Instant::now() + Duration::from_millis(20);
            if g.in_progress.is_empty() {
                // Queued requests are served by whoever pumps: do it here.
                self.step(&mut g, Some(step))?;
            } else if self.wait_input(&mut g, Some(step))? == Ready::Socket {
                self.step(&mut g, Some(step))?;
            }
            if !g.assoc.is_established() {
                return Ok(None);
            }
        }
        let r = match g.assoc.release() {
            Ok(()) => Ok(None),
            Err(AssocError::DataDuringRelease { pdvs, bytes }) => Ok(Some((pdvs, bytes))),
            Err(e) => Err(e),
        };
        self.end(if r.is_ok() {
            Outcome::Released
        } else {
            Outcome::Aborted
        });
        r
    }

    // -----------------------------------------------------------------------------------------
    // Requests we send
    // -----------------------------------------------------------------------------------------

    /// Sends a request (its Message ID filled in when absent) and registers it as awaiting a
    /// response. Returns the Message ID.
    pub fn send_request(
        &self,
        g: &mut LinkGuard<'_>,
        context_id: u8,
        command: &mut Command,
        data: Option<&[u8]>,
    ) -> Result<u16, AssocError> {
        let id = match command.message_id() {
            Some(id) => id,
            None => {
                let id = self.next_message_id();
                command.set_us(tag::MESSAGE_ID, id);
                id
            }
        };
        command.set_us(
            tag::COMMAND_DATA_SET_TYPE,
            if data.is_some() {
                dimse::DATA_SET_PRESENT
            } else {
                dimse::NO_DATA_SET
            },
        );
        self.expect_response(g, id);
        let r = g.assoc.send_message(context_id, command, data);
        if r.is_err() {
            g.awaiting.remove(&id);
            self.note_state(g);
        }
        r.map(|()| id)
    }

    /// Registers `message_id` as a request of ours whose responses are to be kept (for requests
    /// sent directly on the association, e.g. a streamed C-STORE).
    pub fn expect_response(&self, g: &mut LinkGuard<'_>, message_id: u16) {
        g.awaiting.insert(message_id);
        g.responses.remove(&message_id);
    }

    /// Sends C-CANCEL-RQ for our request `message_id` (PS3.7 §9.3.2.3; no response).
    pub fn send_cancel(
        &self,
        g: &mut LinkGuard<'_>,
        context_id: u8,
        message_id: u16,
    ) -> Result<(), AssocError> {
        let mut c = Command::new();
        c.set_us(tag::COMMAND_FIELD, command_field::C_CANCEL_RQ);
        c.set_us(tag::MESSAGE_ID_BEING_RESPONDED_TO, message_id);
        c.set_us(tag::COMMAND_DATA_SET_TYPE, dimse::NO_DATA_SET);
        let r = g.assoc.send_message(context_id, &c, None);
        self.note_state(g);
        r
    }

    /// Waits for the next response to our request `message_id` (pending or final), serving the
    /// peer's requests that arrive meanwhile. `timeout` applies to the wait for this response.
    pub fn await_response<'l>(
        &'l self,
        g: &mut LinkGuard<'l>,
        message_id: u16,
        timeout: Option<Duration>,
    ) -> Result<Message, AssocError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(m) = g.responses.get_mut(&message_id).and_then(|q| q.pop_front()) {
                return Ok(m);
            }
            if !g.awaiting.contains(&message_id) {
                return Err(AssocError::Protocol(format!(
                    "no response is awaited for message {message_id}"
                )));
            }
            if let Some(o) = self.outcome() {
                return Err(Self::ended_error(g, o));
            }
            match self.step(g, deadline)? {
                Step::Progress => {}
                Step::Idle => {
                    g.awaiting.remove(&message_id);
                    let _ = g.assoc.abort(0);
                    self.end(Outcome::Aborted);
                    return Err(AssocError::Timeout("DIMSE response"));
                }
                Step::Ended(o) => return Err(Self::ended_error(g, o)),
            }
        }
    }

    /// What a waiter is told when the association ended under it.
    fn ended_error(g: &LinkGuard<'_>, outcome: Outcome) -> AssocError {
        match (outcome, g.peer_abort) {
            (Outcome::Released, _) => AssocError::Released,
            (Outcome::Aborted, Some(abort)) => AssocError::Aborted(abort),
            (Outcome::Aborted, None) => AssocError::Closed,
        }
    }

    /// Sends a request and waits for its first response: for the services with one response.
    pub fn request(
        &self,
        context_id: u8,
        command: &mut Command,
        data: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<Message, AssocError> {
        let mut g = self.lock();
        let id = self.send_request(&mut g, context_id, command, data)?;
        self.await_response(&mut g, id, timeout)
    }

    // -----------------------------------------------------------------------------------------
    // Serving the peer
    // -----------------------------------------------------------------------------------------

    /// Sends a response to the peer's request `request` on `context_id`.
    pub fn send_response(
        &self,
        g: &mut LinkGuard<'_>,
        context_id: u8,
        request: &Command,
        reply: &Reply,
    ) -> Result<(), AssocError> {
        let mut rsp = dimse::response_to(request, reply.status, reply.data.is_some());
        apply_fields(&mut rsp, &reply.fields);
        let r = g
            .assoc
            .send_message(context_id, &rsp, reply.data.as_deref());
        if r.is_err() {
            self.note_state(g);
        } else if let Some(m) = self.metrics.get() {
            m.status_sent(rsp.command_field().unwrap_or(0), reply.status);
        }
        r
    }

    /// True when the peer sent a C-CANCEL-RQ for its request `message_id`; reads what has
    /// arrived first, without waiting.
    pub fn poll_cancel<'l>(
        &'l self,
        g: &mut LinkGuard<'l>,
        message_id: u16,
    ) -> Result<bool, AssocError> {
        while !g.cancelled.contains(&message_id)
            && (g.assoc.has_buffered_input() || self.watcher.wait(Some(Duration::ZERO))?)
        {
            match self.step(g, Some(Instant::now()))? {
                Step::Progress => {}
                Step::Idle => break,
                Step::Ended(_) => return Err(AssocError::Closed),
            }
        }
        Ok(g.cancelled.contains(&message_id))
    }

    /// Serves the peer's requests until the association ends, `stop` is set, or nothing arrives
    /// for `idle` (then it is aborted). The server's thread per association runs this; so does
    /// a requestor that accepts requests from its peer.
    pub fn serve(&self, stop: &AtomicBool, idle: Option<Duration>) -> Outcome {
        let mut g = self.lock();
        loop {
            if stop.load(Ordering::Relaxed) {
                drop(g);
                self.abort();
                return Outcome::Aborted;
            }
            if let Some(o) = self.outcome() {
                return o;
            }
            let deadline = idle.map(|t| Instant::now() + t);
            match self.step(&mut g, deadline) {
                Ok(Step::Progress) => {}
                Ok(Step::Ended(o)) => return o,
                Ok(Step::Idle) => {
                    self.dispatch.notice(
                        self,
                        Level::Warning,
                        &format!(
                            "nothing received for {:.0} s: association aborted",
                            idle.unwrap_or_default().as_secs_f64()
                        ),
                    );
                    let _ = g.assoc.abort(0);
                    self.end(Outcome::Aborted);
                    return Outcome::Aborted;
                }
                Err(_) => {
                    self.end(Outcome::Aborted);
                    return Outcome::Aborted;
                }
            }
        }
    }

    /// Handles what is there to handle: a queued request, or the next message from the peer
    /// (waiting for it, without the lock, until `deadline`).
    fn step<'l>(
        &'l self,
        g: &mut LinkGuard<'l>,
        deadline: Option<Instant>,
    ) -> Result<Step, AssocError> {
        if g.in_progress.is_empty() {
            if let Some(m) = g.queued.pop_front() {
                g.queued_bytes -= m.data.as_ref().map_or(0, Vec::len);
                let data = match m.data {
                    Some(d) => RequestData::Memory(d),
                    None => RequestData::None,
                };
                let served = self.serve_request(g, m.context_id, m.command, data);
                wake_all(&g.waiters);
                return served.map(|()| Step::Progress);
            }
        }
        if let Some(o) = self.outcome() {
            return Ok(Step::Ended(o));
        }
        if !g.assoc.has_buffered_input() {
            match self.wait_input(g, deadline)? {
                Ready::Timeout => return Ok(Step::Idle),
                Ready::Woken => return Ok(Step::Progress),
                Ready::Socket => {}
            }
            // While the lock was free, another thread may have read what arrived.
            if let Some(o) = self.outcome() {
                return Ok(Step::Ended(o));
            }
            if !g.assoc.has_buffered_input() && !self.watcher.wait(Some(Duration::ZERO))? {
                return Ok(Step::Progress);
            }
        }
        let dimse_timeout = self.limits.dimse_timeout;
        let incoming = match g.assoc.receive(dimse_timeout) {
            Ok(i) => i,
            Err(e) => {
                self.note_state(g);
                return Err(e);
            }
        };
        let (context_id, command) = match incoming {
            Incoming::Command {
                context_id,
                command,
            } => (context_id, command),
            Incoming::Released => {
                self.end(Outcome::Released);
                return Ok(Step::Ended(Outcome::Released));
            }
            Incoming::Aborted(abort) => {
                g.peer_abort = Some(abort);
                self.end(Outcome::Aborted);
                return Ok(Step::Ended(Outcome::Aborted));
            }
        };
        let routed = self.route(g, context_id, command);
        // What the others wait for may have changed: a response for them, a request to serve.
        wake_all(&g.waiters);
        routed.map(|()| Step::Progress)
    }

    /// Waits for input without the lock, until `deadline`, or until another thread wakes this
    /// one (see [`LinkState::waiters`]).
    fn wait_input(&self, g: &mut LinkGuard<'_>, deadline: Option<Instant>) -> io::Result<Ready> {
        WAKE.with(|wake| {
            let Some(wake) = wake else {
                // No wake-up pair for this thread: wait in short slices instead.
                let slice = Some(Duration::from_millis(50));
                let t = remaining(deadline).map_or(slice, |r| slice.min(Some(r)));
                let r = MutexGuard::unlocked(g, || self.watcher.wait(t))?;
                return Ok(if r {
                    Ready::Socket
                } else if deadline.is_some_and(|d| Instant::now() >= d) {
                    Ready::Timeout
                } else {
                    Ready::Woken
                });
            };
            let fd = wake.writer.as_raw_fd();
            g.waiters.push(fd);
            let r = MutexGuard::unlocked(g, || {
                self.watcher
                    .wait_or(Some(wake.reader.as_raw_fd()), remaining(deadline))
            });
            g.waiters.retain(|w| *w != fd);
            if matches!(r, Ok(Ready::Woken)) {
                // (A wake-up that raced a readable socket is drained at the next wait, which it
                // ends at once: a spurious look, not a lost one.)
                wake.drain();
            }
            r
        })
    }

    /// Routes one received command (see the module documentation).
    fn route<'l>(
        &'l self,
        g: &mut LinkGuard<'l>,
        context_id: u8,
        command: Command,
    ) -> Result<(), AssocError> {
        let Some(field) = command.command_field() else {
            return Err(self.abort_locked(g, "a command set without a Command Field".into()));
        };
        if field & 0x8000 != 0 {
            if !is_known_response(field) {
                return Err(self.abort_locked(
                    g,
                    format!("unknown command field 0x{field:04X}: association aborted"),
                ));
            }
            let id = command
                .get_us(tag::MESSAGE_ID_BEING_RESPONDED_TO)
                .unwrap_or(0);
            if !g.awaiting.contains(&id) {
                return Err(self.abort_locked(
                    g,
                    format!(
                        "{} to message {id}, which we did not send: association aborted",
                        field_name(field)
                    ),
                ));
            }
            let data = if command.has_data_set() {
                let limit = self.limits.max_data_set;
                match g.assoc.read_data_set_to_vec(limit) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        self.note_state(g);
                        return Err(e);
                    }
                }
            } else {
                None
            };
            if !command.status().is_some_and(is_pending) {
                g.awaiting.remove(&id);
            }
            g.responses.entry(id).or_default().push_back(Message {
                context_id,
                command,
                data,
            });
            return Ok(());
        }
        if field == command_field::C_CANCEL_RQ {
            if command.has_data_set() {
                g.assoc.read_data_set(|_| Ok(()))?;
            }
            let id = command
                .get_us(tag::MESSAGE_ID_BEING_RESPONDED_TO)
                .unwrap_or(0);
            if g.in_progress.iter().any(|(m, _)| *m == id) {
                g.cancelled.insert(id);
            } else {
                // C-CANCEL-RQ has no response (PS3.7 §9.3.2.3): nothing to cancel, nothing to say.
                self.dispatch.notice(
                    self,
                    Level::Info,
                    &format!("C-CANCEL-RQ for message {id}, which is not in progress: ignored"),
                );
            }
            return Ok(());
        }
        if g.in_progress.is_empty() {
            let data = if command.has_data_set() {
                RequestData::Wire
            } else {
                RequestData::None
            };
            return self.serve_request(g, context_id, command, data);
        }
        // The peer has an operation outstanding already: keep this one until that one is done.
        let data = if command.has_data_set() {
            let room = self
                .limits
                .max_queued_bytes
                .saturating_sub(g.queued_bytes)
                .min(self.limits.max_data_set);
            match g.assoc.read_data_set_to_vec(room) {
                Ok(d) => Some(d),
                Err(AssocError::Io(_)) if g.assoc.is_established() => {
                    return Err(self.abort_locked(
                        g,
                        format!(
                            "{} while another request was in progress, with more data than \
                             can be held: association aborted",
                            field_name(field)
                        ),
                    ));
                }
                Err(e) => {
                    self.note_state(g);
                    return Err(e);
                }
            }
        } else {
            None
        };
        if g.queued.len() >= self.limits.max_queued {
            return Err(self.abort_locked(
                g,
                format!(
                    "more than {} requests outstanding (no asynchronous operations were \
                     negotiated): association aborted",
                    self.limits.max_queued
                ),
            ));
        }
        g.queued_bytes += data.as_ref().map_or(0, Vec::len);
        g.queued.push_back(Message {
            context_id,
            command,
            data,
        });
        Ok(())
    }

    fn serve_request<'l>(
        &'l self,
        g: &mut LinkGuard<'l>,
        context_id: u8,
        command: Command,
        data: RequestData,
    ) -> Result<(), AssocError> {
        let Some(context) = self.negotiated.context(context_id).cloned() else {
            return Err(self.abort_locked(
                g,
                format!("request on presentation context {context_id}, which was not accepted"),
            ));
        };
        let id = command.message_id().unwrap_or(0);
        g.in_progress.push((id, std::thread::current().id()));
        let mut rq = Request {
            link: self,
            guard: g,
            context,
            command,
            data,
            answered: false,
            started: Instant::now(),
        };
        let served = self.dispatch.dispatch(&mut rq);
        let finished = served.and_then(|()| rq.finish());
        let g = rq.guard;
        if let Some(pos) = g.in_progress.iter().rposition(|(m, _)| *m == id) {
            g.in_progress.remove(pos);
        }
        g.cancelled.remove(&id);
        if finished.is_err() {
            self.note_state(g);
        }
        finished
    }
}

/// The bytes of one data set, read once as a stream.
pub trait DataSetSource {
    /// Hands the data set to `sink` chunk by chunk; returns its length.
    fn read_data_set(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64, AssocError>;
}

impl DataSetSource for Association {
    fn read_data_set(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64, AssocError> {
        Association::read_data_set(self, sink)
    }
}

impl DataSetSource for Request<'_, '_> {
    fn read_data_set(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64, AssocError> {
        Request::read_data_set(self, sink)
    }
}

/// One request of the peer being served: its command, its data set (read once, as a stream or
/// into memory), and the means to answer it, see whether it was cancelled, and send on the same
/// association meanwhile ([`Request::guard`]).
pub struct Request<'a, 'l> {
    link: &'l Link,
    guard: &'a mut LinkGuard<'l>,
    context: NegotiatedContext,
    command: Command,
    data: RequestData,
    answered: bool,
    /// When its command was read.
    started: Instant,
}

impl<'l> Request<'_, 'l> {
    /// When the request's command was read.
    pub fn started(&self) -> Instant {
        self.started
    }
    pub fn link(&self) -> &'l Link {
        self.link
    }
    pub fn context(&self) -> &NegotiatedContext {
        &self.context
    }
    pub fn command(&self) -> &Command {
        &self.command
    }
    pub fn field(&self) -> u16 {
        self.command.command_field().unwrap_or(0)
    }
    pub fn message_id(&self) -> u16 {
        self.command.message_id().unwrap_or(0)
    }
    /// True while the request's data set has not been read.
    pub fn has_data_set(&self) -> bool {
        !matches!(self.data, RequestData::None)
    }
    /// The lock on the link, for sending on the association while serving (sub-operations).
    pub fn guard(&mut self) -> &mut LinkGuard<'l> {
        self.guard
    }
    pub fn association(&mut self) -> &mut Association {
        &mut self.guard.assoc
    }

    /// Streams the data set to `sink` (each chunk as it arrives); returns its length.
    pub fn read_data_set(
        &mut self,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64, AssocError> {
        match std::mem::replace(&mut self.data, RequestData::None) {
            RequestData::None => Err(AssocError::Protocol("the request has no data set".into())),
            RequestData::Memory(d) => {
                sink(&d)?;
                Ok(d.len() as u64)
            }
            RequestData::Wire => {
                let r = self.guard.assoc.read_data_set(sink);
                if r.is_err() {
                    self.link.note_state(self.guard);
                }
                r
            }
        }
    }

    /// Reads the data set into memory, refusing more than `limit` bytes (the rest is then
    /// drained and an error returned).
    pub fn read_data_set_to_vec(&mut self, limit: usize) -> Result<Vec<u8>, AssocError> {
        let mut v = Vec::new();
        let mut over = false;
        self.read_data_set(&mut |chunk| {
            if v.len() + chunk.len() > limit {
                over = true;
                v = Vec::new();
            } else if !over {
                v.extend_from_slice(chunk);
            }
            Ok(())
        })?;
        if over {
            return Err(AssocError::Io(io::Error::other(format!(
                "data set larger than {limit} bytes"
            ))));
        }
        Ok(v)
    }

    /// Reads and drops the data set, if any.
    pub fn skip_data_set(&mut self) -> Result<(), AssocError> {
        if self.has_data_set() {
            self.read_data_set(&mut |_| Ok(()))?;
        }
        Ok(())
    }

    /// Sends a response: any number of pending ones (FF00, FF01), then one final one.
    pub fn respond(&mut self, reply: &Reply) -> Result<(), AssocError> {
        if self.answered {
            return Err(AssocError::Protocol(format!(
                "message {} was answered already",
                self.message_id()
            )));
        }
        if self.has_data_set() {
            self.skip_data_set()?;
        }
        self.link
            .send_response(self.guard, self.context.id, &self.command, reply)?;
        if !is_pending(reply.status) {
            self.answered = true;
        }
        Ok(())
    }

    /// True once the final response went out.
    pub fn is_answered(&self) -> bool {
        self.answered
    }

    /// True when the peer sent a C-CANCEL-RQ for this request; reads what has arrived first,
    /// without waiting.
    pub fn is_cancelled(&mut self) -> Result<bool, AssocError> {
        let id = self.message_id();
        self.link.poll_cancel(self.guard, id)
    }

    /// Runs `f` with the link unlocked (slow work that does not touch the association, such as
    /// a Python handler, which may itself send on the link). The data set must have been read.
    pub fn unlocked<T>(&mut self, f: impl FnOnce() -> T) -> T {
        debug_assert!(!matches!(self.data, RequestData::Wire));
        MutexGuard::unlocked(self.guard, f)
    }

    /// Marks the request answered by someone holding the link's lock outside this object (a
    /// handler that responded through another handle on the link).
    pub fn mark_answered(&mut self) {
        self.answered = true;
    }

    /// Ends the request: an unread data set is drained, an unanswered request answered 0110.
    fn finish(&mut self) -> Result<(), AssocError> {
        self.skip_data_set()?;
        if !self.answered && self.guard.assoc.is_established() {
            let field = self.field();
            self.link.dispatch.notice(
                self.link,
                Level::Warning,
                &format!(
                    "{} (message {}) was not answered by its service: 0110 sent",
                    field_name(field),
                    self.message_id()
                ),
            );
            self.respond(&Reply::with_comment(
                0x0110,
                "the service did not answer the request",
            ))?;
        }
        Ok(())
    }
}

/// Sets extra command fields on a response, each by its element's VR.
pub fn apply_fields(rsp: &mut Command, fields: &[(u16, FieldValue)]) {
    for (el, v) in fields {
        match v {
            FieldValue::Int(i) if command_vr(*el) == CommandVr::US => rsp.set_us(*el, *i as u16),
            FieldValue::Int(i) => rsp.set_raw(*el, i.to_le_bytes().to_vec()),
            FieldValue::Str(s) => rsp.set_str(*el, s),
            FieldValue::Tags(t) => rsp.set_tags(*el, t),
        }
    }
}
