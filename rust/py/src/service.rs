//! Services of an AE, built in Python and served in Rust (`node::Services`):
//! - a handler service calls a Python function once per request, with a live `Request` to
//!   answer it through (pending responses, cancel checks, sending on the same association);
//! - the storage service streams C-STORE data sets to disk in Rust and asks a Python handler
//!   where each goes (`prepare`, `stored`, `abandoned`).
//!
//! Python is entered once per DIMSE message, never per PDU; the link is unlocked while Python
//! runs, so a handler may send on the association itself.
use crate::association::PyAssociation;
use crate::command::PyCommand;
use crate::errors::{assoc_err, AssociationError, DicomError};
use crate::finisher::Finisher;
use crate::placement::PyPlacer;
use crate::types::{PyPresentationContext, PyReceived};
use node::{
    FieldValue, Level, Link, Placement, PlacementKeys, Placer, Prepared, Received, Reply, Request,
    Service, Services, StorageConfig, StorageService, StoreHandler, StoreRequest, StoreState,
};
use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use ul::{AssocError, Command};

// ---------------------------------------------------------------------------------------------
// Replies from Python
// ---------------------------------------------------------------------------------------------

/// A reply given by Python: an int status, or (status, data set bytes | None, {element: value} |
/// None).
pub fn extract_reply(obj: &Bound<'_, PyAny>) -> PyResult<Reply> {
    if let Ok(status) = obj.extract::<u16>() {
        return Ok(Reply::status(status));
    }
    let t: &Bound<'_, PyTuple> = obj.cast()?;
    let status: u16 = t.get_item(0)?.extract()?;
    let data: Option<Vec<u8>> = if t.len() > 1 {
        t.get_item(1)?.extract()?
    } else {
        None
    };
    let fields = if t.len() > 2 && !t.get_item(2)?.is_none() {
        extract_fields(&t.get_item(2)?)?
    } else {
        Vec::new()
    };
    Ok(Reply {
        status,
        data,
        fields,
    })
}

/// {element: int | str | list[int]} as response command fields.
fn extract_fields(d: &Bound<'_, PyAny>) -> PyResult<Vec<(u16, FieldValue)>> {
    let d: &Bound<'_, PyDict> = d.cast()?;
    let mut fields = Vec::new();
    for (k, v) in d.iter() {
        let el: u16 = k.extract()?;
        let val = if let Ok(i) = v.extract::<u32>() {
            FieldValue::Int(i)
        } else if let Ok(s) = v.extract::<String>() {
            FieldValue::Str(s)
        } else {
            FieldValue::Tags(v.extract::<Vec<u32>>()?)
        };
        fields.push((el, val));
    }
    Ok(fields)
}

// ---------------------------------------------------------------------------------------------
// Request: one of the peer's requests, live while its handler runs
// ---------------------------------------------------------------------------------------------

/// State shared between the Rust service and the Python `Request` of one request.
#[derive(Default)]
struct Progress {
    answered: AtomicBool,
    over: AtomicBool,
    /// When the socket was last looked at for a C-CANCEL-RQ that had not arrived (see
    /// [`CANCEL_RECHECK`]).
    last_not_cancelled: parking_lot::Mutex<Option<std::time::Instant>>,
}

/// How long a "not cancelled" answer stands: a handler asking `is_cancelled` between matches at tens of
/// thousands per second need not look at the socket each time; a cancel is seen within this delay.
const CANCEL_RECHECK: std::time::Duration = std::time::Duration::from_micros(500);

/// A request of the peer, handed to a handler: read its command and data set, answer it with
/// `respond` (any number of pending responses, then a final one), ask `is_cancelled` between
/// responses. Usable only while the handler runs.
#[pyclass(name = "Request", module = "ferrodicom._core", frozen)]
pub struct PyRequest {
    link: Arc<Link>,
    command: Py<PyCommand>,
    context: Py<PyPresentationContext>,
    data: Option<Py<PyBytes>>,
    progress: Arc<Progress>,
}

impl PyRequest {
    fn note_cancel_check(&self, cancelled: bool) {
        *self.progress.last_not_cancelled.lock() = (!cancelled).then(std::time::Instant::now);
    }
    fn check_live(&self) -> PyResult<()> {
        if self.progress.over.load(Ordering::SeqCst) {
            return Err(DicomError::new_err(
                "this request is over: its handler has returned",
            ));
        }
        Ok(())
    }
}

#[pymethods]
impl PyRequest {
    #[getter]
    fn command(&self, py: Python<'_>) -> Py<PyCommand> {
        self.command.clone_ref(py)
    }
    #[getter]
    fn context(&self, py: Python<'_>) -> Py<PyPresentationContext> {
        self.context.clone_ref(py)
    }
    /// The data set, encoded in the context's transfer syntax, or None.
    #[getter]
    fn data(&self, py: Python<'_>) -> Option<Py<PyBytes>> {
        self.data.as_ref().map(|d| d.clone_ref(py))
    }
    #[getter]
    fn message_id(&self) -> u16 {
        self.command.get().inner.message_id().unwrap_or(0)
    }
    /// The association the request came on (a new handle on it; compare `.id`).
    #[getter]
    fn association(&self, py: Python<'_>) -> PyResult<PyAssociation> {
        PyAssociation::new(py, Arc::clone(&self.link), false)
    }
    /// True once the final response went out.
    #[getter]
    fn answered(&self) -> bool {
        self.progress.answered.load(Ordering::SeqCst)
    }
    /// True when the peer sent a C-CANCEL-RQ for this request (PS3.7 §9.3.2.3); reads what has
    /// arrived, without waiting.
    #[getter]
    fn is_cancelled(&self, py: Python<'_>) -> PyResult<bool> {
        self.check_live()?;
        let recent = self
            .progress
            .last_not_cancelled
            .lock()
            .is_some_and(|t| t.elapsed() < CANCEL_RECHECK);
        if recent {
            return Ok(false);
        }
        let id = self.command.get().inner.message_id().unwrap_or(0);
        let link = &self.link;
        let cancelled = py
            .detach(|| {
                let mut g = link.lock();
                link.poll_cancel(&mut g, id)
            })
            .map_err(assoc_err)?;
        self.note_cancel_check(cancelled);
        Ok(cancelled)
    }
    /// Sends a response: `status`, optional extra command fields {element: value}, optional
    /// data set already encoded in the context's transfer syntax. Pending statuses (FF00,
    /// FF01) may be sent any number of times before the final one. Returns, after a pending
    /// response, whether the peer has cancelled the request (what `is_cancelled` says, checked
    /// in the same call); False after a final one.
    #[pyo3(signature = (status, fields = None, data = None))]
    fn respond(
        &self,
        py: Python<'_>,
        status: u16,
        fields: Option<Bound<'_, PyAny>>,
        data: Option<Vec<u8>>,
    ) -> PyResult<bool> {
        self.check_live()?;
        if self.progress.answered.load(Ordering::SeqCst) {
            return Err(AssociationError::new_err(
                "this request was answered already (a final response went out)",
            ));
        }
        let fields = match fields {
            Some(f) if !f.is_none() => extract_fields(&f)?,
            _ => Vec::new(),
        };
        let reply = Reply {
            status,
            data,
            fields,
        };
        let request: &Command = &self.command.get().inner;
        let context_id = self.context.get().context_id;
        let pending = node::link::is_pending(status);
        let link = &self.link;
        let cancelled = py
            .detach(|| {
                let mut g = link.lock();
                link.send_response(&mut g, context_id, request, &reply)?;
                if !pending {
                    return Ok(false);
                }
                link.poll_cancel(&mut g, request.message_id().unwrap_or(0))
            })
            .map_err(assoc_err)?;
        if !pending {
            self.progress.answered.store(true, Ordering::SeqCst);
        } else {
            self.note_cancel_check(cancelled);
        }
        Ok(cancelled)
    }
    fn __repr__(&self) -> String {
        let c = &self.command.get().inner;
        format!(
            "<Request {} id={:?} on context {}>",
            c.command_field()
                .and_then(ul::dimse::command_field::name)
                .unwrap_or("?"),
            c.message_id(),
            self.context.get().context_id
        )
    }
}

/// Calls a Python function once per request (see the module documentation).
struct HandlerService {
    handler: Py<PyAny>,
    max_data_set: usize,
}

impl Service for HandlerService {
    fn serve(&self, rq: &mut Request<'_, '_>) -> Result<(), AssocError> {
        let data = if rq.has_data_set() {
            match rq.read_data_set_to_vec(self.max_data_set) {
                Ok(d) => Some(d),
                Err(AssocError::Io(e)) if rq.link().is_established() => {
                    return rq.respond(&Reply::with_comment(0xA700, &e.to_string()));
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let progress = Arc::new(Progress::default());
        let link = rq.link().handle();
        let command = rq.command().clone();
        let context = PyPresentationContext::from(rq.context());
        let called = {
            let progress = Arc::clone(&progress);
            rq.unlocked(move || {
                // None: the interpreter is shutting down, and the request is answered 0110 below.
                Python::try_attach(|py| -> PyResult<()> {
                    let request = Py::new(
                        py,
                        PyRequest {
                            link,
                            command: Py::new(py, PyCommand { inner: command })?,
                            context: Py::new(py, context)?,
                            data: data.map(|d| PyBytes::new(py, &d).unbind()),
                            progress: Arc::clone(&progress),
                        },
                    )?;
                    let r = self.handler.call1(py, (request,));
                    progress.over.store(true, Ordering::SeqCst);
                    if let Err(e) = &r {
                        e.print(py);
                    }
                    r.map(|_| ())
                })
                .unwrap_or(Ok(()))
            })
        };
        if progress.answered.load(Ordering::SeqCst) {
            rq.mark_answered();
            return Ok(());
        }
        if !rq.link().is_established() {
            return Err(AssocError::Closed);
        }
        // The handler raised, or returned without a final response.
        let why = if called.is_err() {
            "the handler raised an exception"
        } else {
            "the handler gave no final response"
        };
        rq.respond(&Reply::with_comment(0x0110, why))
    }
}

// ---------------------------------------------------------------------------------------------
// Storage: the Rust data path, decided by a Python handler
// ---------------------------------------------------------------------------------------------

/// How the storage data path writes received instances (see `node::StorageConfig`).
#[pyclass(name = "StorageConfig", module = "ferrodicom._core", frozen)]
pub struct PyStorageConfig {
    inner: StorageConfig,
    parts: Option<Arc<node::PartPool>>,
    /// Runs `stored` for instances answered early (see [`crate::finisher`]).
    finisher: Finisher,
    /// Extracted tag -> keyword.
    key_names: HashMap<u32, String>,
    /// The archive's placer: the common case decided without entering Python.
    placer: Option<Arc<Placer>>,
}

#[pymethods]
impl PyStorageConfig {
    /// `incoming_dir`: where `.part` files stream (on the archive's filesystem). `extract`:
    /// (tag, keyword) of the attributes to index while streaming. With `fsync` (and a
    /// `journal`), an instance is made durable before it is reported. With the archive's
    /// `placer`, an instance it can place (see `Placer`) is not shown to the handler's
    /// `prepare`: its `placed` indexes it instead.
    #[new]
    #[pyo3(signature = (incoming_dir, *, extract = None, store_transfer_syntax = None, fsync = true,
        writeback = false, part_pool = 8, journal = None, private_dictionary = None,
        implementation_class_uid = None, implementation_version_name = None, placer = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        incoming_dir: std::path::PathBuf,
        extract: Option<Vec<(u32, String)>>,
        store_transfer_syntax: Option<String>,
        fsync: bool,
        writeback: bool,
        part_pool: usize,
        journal: Option<Bound<'_, crate::journal::PyJournal>>,
        private_dictionary: Option<Bound<'_, crate::codec::PyPrivateDictionary>>,
        implementation_class_uid: Option<String>,
        implementation_version_name: Option<String>,
        placer: Option<Bound<'_, PyPlacer>>,
    ) -> PyResult<Self> {
        let extract = extract.unwrap_or_default();
        let parts = if part_pool > 0 {
            Some(Arc::new(
                node::PartPool::new(incoming_dir.clone(), part_pool)
                    .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?,
            ))
        } else {
            None
        };
        let inner = StorageConfig {
            incoming_dir,
            store_transfer_syntax,
            fsync,
            writeback,
            parts: parts.clone(),
            journal: journal.map(|j| Arc::clone(&j.get().inner)),
            implementation_class_uid: implementation_class_uid
                .unwrap_or_else(|| ul::negotiate::IMPLEMENTATION_CLASS_UID.to_string()),
            implementation_version_name: implementation_version_name
                .unwrap_or_else(|| ul::negotiate::IMPLEMENTATION_VERSION_NAME.to_string()),
            dictionary: crate::codec::dictionary(py, private_dictionary.as_ref()),
            extract: extract.iter().map(|(t, _)| codec::Tag(*t)).collect(),
        };
        Ok(PyStorageConfig {
            inner,
            parts,
            finisher: Finisher::default(),
            key_names: extract.into_iter().collect(),
            placer: placer.map(|p| Arc::clone(&p.get().inner)),
        })
    }
    /// Waits until the handler's `stored` has run for every instance answered early so far (it
    /// runs on a thread of its own, in batches; see `Services.add_storage`).
    fn flush(&self, py: Python<'_>) {
        py.detach(|| self.finisher.flush());
    }
    /// Runs the `stored` calls still queued and empties the pool of ready `.part` files (at
    /// shutdown).
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            self.finisher.close();
            if let Some(p) = &self.parts {
                p.close();
            }
        });
    }
}

/// The C-STORE being received, as the storage handler sees it.
#[pyclass(name = "StoreRequest", module = "ferrodicom._core", frozen, get_all)]
pub struct PyStoreRequest {
    pub association: Py<PyAssociation>,
    pub context: Py<PyPresentationContext>,
    pub command: Py<PyCommand>,
}

/// A Python storage handler behind `node::StoreHandler`.
struct PyStoreHandler {
    handler: Arc<Py<PyAny>>,
    key_names: Arc<HashMap<u32, String>>,
    finisher: Finisher,
    placer: Option<Arc<Placer>>,
}

/// What `prepare` leaves for `stored` (or `abandoned`): the Python state it returned, and the
/// request object it was given (made once per C-STORE).
struct PyState {
    state: Option<Py<PyAny>>,
    request: Py<PyStoreRequest>,
}

/// What `prepare` leaves when the placer placed the instance without Python: its UID is
/// reserved until the handler's `placed` indexes it (or it is released here).
struct Placed(Placement);

/// A C-STORE's state as `prepare` left it, taken back from the data path.
enum Carried {
    /// Python's `prepare` ran: its request and state.
    Python(PyState),
    /// The placer placed the instance.
    Placed(Placement),
    /// Nothing was decided mid-stream.
    Nothing,
}

impl Carried {
    fn of(state: Option<StoreState>) -> Carried {
        match state.map(|s| s.downcast::<Placed>()) {
            Some(Ok(placed)) => Carried::Placed(placed.0),
            Some(Err(other)) => other
                .downcast::<PyState>()
                .map_or(Carried::Nothing, |s| Carried::Python(*s)),
            None => Carried::Nothing,
        }
    }
}

/// What a Python `StoreRequest` is made of, taken from the association's thread for later.
struct RequestParts {
    link: Arc<Link>,
    context: ul::NegotiatedContext,
    command: Command,
}

impl RequestParts {
    fn of(rq: &StoreRequest<'_>) -> Self {
        RequestParts {
            link: rq.link.handle(),
            context: rq.context.clone(),
            command: rq.command.clone(),
        }
    }
    fn request(self, py: Python<'_>) -> PyResult<Py<PyStoreRequest>> {
        Py::new(
            py,
            PyStoreRequest {
                association: Py::new(py, PyAssociation::new(py, self.link, false)?)?,
                context: Py::new(py, PyPresentationContext::from(&self.context))?,
                command: Py::new(
                    py,
                    PyCommand {
                        inner: self.command,
                    },
                )?,
            },
        )
    }
}

/// The placer's keys among the extracted ones.
fn placement_keys(keys: &[(codec::Tag, String)]) -> PlacementKeys<'_> {
    let mut k = PlacementKeys::default();
    for (tag, value) in keys {
        let slot = match tag.0 {
            0x0008_0018 => &mut k.sop_instance_uid,
            0x0008_0016 => &mut k.sop_class_uid,
            0x0020_000D => &mut k.study_instance_uid,
            0x0020_000E => &mut k.series_instance_uid,
            _ => continue,
        };
        *slot = Some(value.as_str());
    }
    k
}

/// Calls `handler.placed(request, received)` for an instance the placer placed: the reply, or
/// 0110 when it raised.
fn call_placed(
    py: Python<'_>,
    handler: &Py<PyAny>,
    names: &HashMap<u32, String>,
    parts: RequestParts,
    received: Received,
) -> Reply {
    let r = (|| -> PyResult<Reply> {
        let request = parts.request(py)?;
        let received = received_object(py, names, received)?;
        let out = handler.call_method1(py, pyo3::intern!(py, "placed"), (request, received))?;
        extract_reply(out.bind(py))
    })();
    r.unwrap_or_else(|e| handler_raised(py, e))
}

impl PyStoreHandler {
    fn request(&self, py: Python<'_>, rq: &StoreRequest<'_>) -> PyResult<Py<PyStoreRequest>> {
        RequestParts::of(rq).request(py)
    }
    /// The placer's placement did not happen (failed write, aborted association): its UID is
    /// free again and its directory is checked again next time (as `Archive.abandon` does).
    fn unplace(&self, p: &Placement) {
        if let Some(placer) = &self.placer {
            placer.forget_dir(&p.dir);
            placer.release(&p.sop_instance_uid);
        }
    }
    /// `stored` for an instance the placer placed (not answered early: the file was fsynced,
    /// not journaled; or it failed, or was not placed after all).
    fn stored_placed(&self, rq: &StoreRequest<'_>, received: Received, p: Placement) -> Reply {
        if received.placed.is_some() {
            let parts = RequestParts::of(rq);
            return Python::try_attach(|py| {
                call_placed(py, &self.handler, &self.key_names, parts, received)
            })
            .unwrap_or_else(shutting_down);
        }
        // Failed, or the keys changed after the decision (elements out of order): the handler's
        // `stored` without state reports the failure or ingests the file from the start.
        if received.failure.is_some() {
            self.unplace(&p);
        } else if let Some(placer) = &self.placer {
            placer.release(&p.sop_instance_uid);
        }
        self.stored(rq, received, None)
    }
    /// The request `prepare` was given (else a new one) and the state it returned (else None).
    fn carried(
        &self,
        py: Python<'_>,
        rq: &StoreRequest<'_>,
        state: Option<PyState>,
    ) -> PyResult<(Py<PyStoreRequest>, Py<PyAny>)> {
        match state {
            Some(s) => Ok((s.request, s.state.unwrap_or_else(|| py.None()))),
            None => Ok((self.request(py, rq)?, py.None())),
        }
    }
}

/// The extracted attributes by keyword.
fn key_dict<'py>(
    py: Python<'py>,
    names: &HashMap<u32, String>,
    keys: &[(codec::Tag, String)],
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (tag, value) in keys {
        if let Some(name) = names.get(&tag.0) {
            d.set_item(name, value)?;
        }
    }
    Ok(d)
}

/// The outcome as the handler sees it, its keys by keyword.
fn received_object(
    py: Python<'_>,
    names: &HashMap<u32, String>,
    received: Received,
) -> PyResult<Py<PyReceived>> {
    let keys = key_dict(py, names, &received.keys)?.unbind();
    Py::new(
        py,
        PyReceived {
            inner: received,
            keys,
        },
    )
}

/// The reply when the storage handler raised `e` (printed): 0110, processing failure (PS3.7
/// Annex C).
fn handler_raised(py: Python<'_>, e: PyErr) -> Reply {
    e.print(py);
    Reply::with_comment(0x0110, "the storage handler raised an exception")
}

/// The reply when Python cannot be entered any more (the interpreter is finalizing): 0110.
fn shutting_down() -> Reply {
    Reply::with_comment(0x0110, "the node is shutting down")
}

/// Calls `handler.stored(request, received, state)`: the reply, or 0110 when it raised.
fn call_stored(
    py: Python<'_>,
    handler: &Py<PyAny>,
    names: &HashMap<u32, String>,
    request: Py<PyStoreRequest>,
    received: Received,
    state: Py<PyAny>,
) -> Reply {
    let r = (|| -> PyResult<Reply> {
        let received = received_object(py, names, received)?;
        let out =
            handler.call_method1(py, pyo3::intern!(py, "stored"), (request, received, state))?;
        extract_reply(out.bind(py))
    })();
    r.unwrap_or_else(|e| handler_raised(py, e))
}

/// `prepare`'s answer: None decides later; else (path | None, early reply | None, state).
fn extract_prepared(out: &Bound<'_, PyAny>) -> PyResult<(Prepared, Option<Py<PyAny>>)> {
    if out.is_none() {
        return Ok((Prepared::Later, None));
    }
    let t: &Bound<'_, PyTuple> = out.cast()?;
    let (path, early, state) = (t.get_item(0)?, t.get_item(1)?, t.get_item(2)?);
    let early = if early.is_none() {
        None
    } else {
        Some(extract_reply(&early)?)
    };
    let prepared = if path.is_none() {
        Prepared::Discard
    } else {
        Prepared::Place {
            path: path.extract::<std::path::PathBuf>()?,
            early,
        }
    };
    Ok((prepared, Some(state.unbind())))
}

impl StoreHandler for PyStoreHandler {
    fn prepare(
        &self,
        rq: &StoreRequest<'_>,
        keys: &[(codec::Tag, String)],
    ) -> (Prepared, Option<StoreState>) {
        if let Some(placer) = &self.placer {
            let (class, uid) = (
                rq.command.get_str(ul::dimse::tag::AFFECTED_SOP_CLASS_UID),
                rq.command
                    .get_str(ul::dimse::tag::AFFECTED_SOP_INSTANCE_UID),
            );
            let placed = placer.try_place(
                class.as_deref().unwrap_or(""),
                uid.as_deref().unwrap_or(""),
                placement_keys(keys),
            );
            if let Some(p) = placed {
                let path = p.path.clone();
                let state: StoreState = Box::new(Placed(p));
                // The archive's early status for a new instance without warnings (PS3.4 B.2.3).
                return (
                    Prepared::Place {
                        path,
                        early: Some(Reply::status(0x0000)),
                    },
                    Some(state),
                );
            }
        }
        Python::try_attach(|py| {
            let request = match self.request(py, rq) {
                Ok(r) => r,
                Err(e) => {
                    e.print(py);
                    return (Prepared::Later, None);
                }
            };
            let r = (|| -> PyResult<(Prepared, Option<Py<PyAny>>)> {
                let out = self.handler.call_method1(
                    py,
                    pyo3::intern!(py, "prepare"),
                    (request.clone_ref(py), key_dict(py, &self.key_names, keys)?),
                )?;
                extract_prepared(out.bind(py))
            })();
            let (prepared, state) = r.unwrap_or_else(|e| {
                // `stored` still decides, as if no decision had been made mid-stream.
                e.print(py);
                (Prepared::Later, None)
            });
            let carried: StoreState = Box::new(PyState { state, request });
            (prepared, Some(carried))
        })
        .unwrap_or((Prepared::Later, None))
    }

    fn stored(
        &self,
        rq: &StoreRequest<'_>,
        received: Received,
        state: Option<StoreState>,
    ) -> Reply {
        let state = match Carried::of(state) {
            Carried::Placed(p) => return self.stored_placed(rq, received, p),
            Carried::Python(s) => Some(s),
            Carried::Nothing => None,
        };
        Python::try_attach(|py| match self.carried(py, rq, state) {
            Ok((request, state)) => {
                call_stored(py, &self.handler, &self.key_names, request, received, state)
            }
            Err(e) => handler_raised(py, e),
        })
        .unwrap_or_else(shutting_down)
    }

    fn answered(&self, rq: &StoreRequest<'_>, received: Received, state: Option<StoreState>) {
        // With the request `prepare` was given, `stored` needs nothing of the association's
        // thread: it runs later, on the finisher's (its reply is not sent: the early one was).
        let (handler, names) = (Arc::clone(&self.handler), Arc::clone(&self.key_names));
        let job: crate::finisher::Job = match Carried::of(state) {
            Carried::Python(PyState { state, request }) => Box::new(move |py| {
                let state = state.unwrap_or_else(|| py.None());
                call_stored(py, &handler, &names, request, received, state);
            }),
            Carried::Placed(_) => {
                let parts = RequestParts::of(rq);
                Box::new(move |py| {
                    call_placed(py, &handler, &names, parts, received);
                })
            }
            Carried::Nothing => {
                self.stored(rq, received, None);
                return;
            }
        };
        self.finisher.push(job);
    }

    fn abandoned(&self, rq: &StoreRequest<'_>, state: Option<StoreState>) {
        let state = match Carried::of(state) {
            Carried::Placed(p) => {
                self.unplace(&p);
                return;
            }
            Carried::Python(s) => Some(s),
            Carried::Nothing => None,
        };
        let _ = Python::try_attach(|py| {
            let r = self.carried(py, rq, state).and_then(|(request, state)| {
                self.handler.call_method1(py, "abandoned", (request, state))
            });
            if let Err(e) = r {
                e.print(py);
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Services: the builder Python fills
// ---------------------------------------------------------------------------------------------

/// The services of an AE (see the module documentation), filled before use by a server or an
/// association; after that it cannot change.
#[pyclass(name = "Services", module = "ferrodicom._core", frozen)]
pub struct PyServices {
    pending: Mutex<Option<Services>>,
    built: OnceLock<Arc<Services>>,
}

impl PyServices {
    /// The services, fixed from now on.
    pub fn build(&self) -> Arc<Services> {
        Arc::clone(
            self.built
                .get_or_init(|| Arc::new(self.pending.lock().take().unwrap_or_default())),
        )
    }
    fn with<T>(&self, f: impl FnOnce(&mut Services) -> T) -> PyResult<T> {
        match self.pending.lock().as_mut() {
            Some(s) if self.built.get().is_none() => Ok(f(s)),
            _ => Err(DicomError::new_err(
                "these services are in use by a server or an association and cannot change",
            )),
        }
    }
}

#[pymethods]
impl PyServices {
    #[new]
    fn new() -> Self {
        PyServices {
            pending: Mutex::new(Some(Services::new())),
            built: OnceLock::new(),
        }
    }

    /// Routes requests with these command fields (on contexts of these abstract syntaxes;
    /// None: any) to `handler(request: Request)`. A request's data set is read into memory
    /// first, refused (A700) beyond `max_data_set` bytes.
    #[pyo3(signature = (fields, handler, abstract_syntaxes = None, max_data_set = 1usize << 30))]
    fn add_handler(
        &self,
        fields: Vec<u16>,
        handler: Py<PyAny>,
        abstract_syntaxes: Option<Vec<String>>,
        max_data_set: usize,
    ) -> PyResult<()> {
        Python::attach(|py| {
            let service: Arc<dyn Service> = Arc::new(HandlerService {
                handler: handler.clone_ref(py),
                max_data_set,
            });
            self.with(|s| {
                for f in &fields {
                    match &abstract_syntaxes {
                        None => s.add(*f, None, Arc::clone(&service)),
                        Some(list) => {
                            for a in list {
                                s.add(*f, Some(a), Arc::clone(&service));
                            }
                        }
                    }
                }
            })
        })
    }

    /// C-STORE-RQs with a data set stream to disk as `config` says; `handler` decides about each
    /// instance: `prepare(request: StoreRequest, keys: dict)` mid-stream (None, or (final path |
    /// None to discard, early reply | None, state)), `stored(request, received: Received,
    /// state)` once on disk (returns the reply), `abandoned(request, state)` when the
    /// association ended inside the data set. After an early reply, `stored` runs later on a
    /// thread of the config's own, several instances per entry (`config.flush()` waits for it).
    /// With the config's `placer`, an instance it places skips `prepare`, and
    /// `placed(request, received)` (the reply) takes the place of `stored`.
    fn add_storage(&self, config: &Bound<'_, PyStorageConfig>, handler: Py<PyAny>) -> PyResult<()> {
        let cfg = config.get();
        let service: Arc<dyn Service> = Arc::new(StorageService::new(
            cfg.inner.clone(),
            Arc::new(PyStoreHandler {
                handler: Arc::new(handler),
                key_names: Arc::new(cfg.key_names.clone()),
                finisher: cfg.finisher.clone(),
                placer: cfg.placer.clone(),
            }),
        ));
        self.with(|s| s.add(ul::dimse::command_field::C_STORE_RQ, None, service))
    }

    /// `notices(association: Association, level: str, message: str)` hears of the messages
    /// refused or ignored on the associations these services serve ("info" or "warning").
    fn set_notices(&self, notices: Py<PyAny>) -> PyResult<()> {
        let callback = Arc::new(notices);
        self.with(|s| {
            s.set_notices(Arc::new(move |link: &Link, level: Level, message: &str| {
                let _ = Python::try_attach(|py| {
                    let level = match level {
                        Level::Info => "info",
                        Level::Warning => "warning",
                    };
                    let r = PyAssociation::new(py, link.handle(), false)
                        .and_then(|a| callback.call1(py, (a, level, message)));
                    if let Err(e) = r {
                        e.print(py);
                    }
                });
            }))
        })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyServices>()?;
    m.add_class::<PyRequest>()?;
    m.add_class::<PyStorageConfig>()?;
    m.add_class::<PyStoreRequest>()?;
    Ok(())
}
