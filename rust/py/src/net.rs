//! Bindings for associations (rust/ul/src/assoc.rs): the SCU `Association`, the SCP `Server`
//! and DIMSE `Command` objects. All socket work runs with the GIL released; Python is entered
//! once per DIMSE request (the server's handler), never per PDU.
use crate::errors::{AssociationError, DicomError, DicomTimeout, DimseError, PduError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use ul::dimse::{self, command_field, command_vr, tag, CommandVr};
use ul::negotiate::{reject, AcceptorConfig, ProposedContext, RequestorConfig, SupportedContext};
use ul::{AssocError, Association, Incoming, Negotiated, Timeouts};

/// Converts an association error into the matching Python exception.
pub fn assoc_err(e: AssocError) -> PyErr {
    match e {
        AssocError::Timeout(_) => DicomTimeout::new_err(e.to_string()),
        AssocError::Pdu(_) => PduError::new_err(e.to_string()),
        AssocError::Dimse(_) => DimseError::new_err(e.to_string()),
        _ => AssociationError::new_err(e.to_string()),
    }
}

fn secs(t: Option<f64>) -> Option<Duration> {
    t.filter(|s| *s > 0.0).map(Duration::from_secs_f64)
}

// ---------------------------------------------------------------------------------------------
// Command
// ---------------------------------------------------------------------------------------------

/// A DIMSE command set (PS3.7 §9.3, §10.3). Values decode by the element's VR: US → int,
/// UI/AE/LO → str, AT → list[int], others → bytes.
#[pyclass(name = "Command", module = "ferrodicom._core", frozen)]
#[derive(Clone)]
pub struct PyCommand {
    pub inner: dimse::Command,
}

fn value_to_py<'py>(
    py: Python<'py>,
    element: u16,
    raw: &[u8],
    cmd: &dimse::Command,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(match command_vr(element) {
        CommandVr::US => cmd.get_us(element).into_pyobject(py)?.into_any(),
        CommandVr::UL => cmd.get_ul(element).into_pyobject(py)?.into_any(),
        CommandVr::UI | CommandVr::AE | CommandVr::LO => {
            cmd.get_str(element).into_pyobject(py)?.into_any()
        }
        CommandVr::AT => cmd.get_tags(element).into_pyobject(py)?.into_any(),
        CommandVr::Other => PyBytes::new(py, raw).into_any(),
    })
}

/// Sets a command element from a Python value according to its VR.
fn set_from_py(cmd: &mut dimse::Command, element: u16, value: &Bound<'_, PyAny>) -> PyResult<()> {
    match command_vr(element) {
        CommandVr::US => cmd.set_us(element, value.extract::<u16>()?),
        CommandVr::UL => cmd.set_raw(element, value.extract::<u32>()?.to_le_bytes().to_vec()),
        CommandVr::UI | CommandVr::AE | CommandVr::LO => {
            let s: String = value.extract()?;
            if command_vr(element) == CommandVr::UI {
                ul::negotiate::check_uid(&s).map_err(DimseError::new_err)?;
            }
            cmd.set_str(element, &s)
        }
        CommandVr::AT => cmd.set_tags(element, &value.extract::<Vec<u32>>()?),
        CommandVr::Other => cmd.set_raw(element, value.extract::<Vec<u8>>()?),
    }
    Ok(())
}

#[pymethods]
impl PyCommand {
    /// Builds a command from a mapping of group-0000 element numbers to values.
    #[new]
    fn new(fields: &Bound<'_, PyDict>) -> PyResult<Self> {
        let mut inner = dimse::Command::new();
        for (k, v) in fields.iter() {
            set_from_py(&mut inner, k.extract::<u16>()?, &v)?;
        }
        Ok(PyCommand { inner })
    }
    /// Decodes an encoded command set (group 0000, Implicit VR Little Endian).
    #[staticmethod]
    fn decode(data: &[u8]) -> PyResult<Self> {
        dimse::Command::decode(data)
            .map(|inner| PyCommand { inner })
            .map_err(|e| DimseError::new_err(e.to_string()))
    }
    fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.encode())
    }
    /// The value of element (0000,`element`), or `default`.
    #[pyo3(signature = (element, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        element: u16,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.inner.get_raw(element) {
            Some(raw) => value_to_py(py, element, raw, &self.inner),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }
    fn __contains__(&self, element: u16) -> bool {
        self.inner.contains(element)
    }
    /// All elements (group length excluded) as a dict element → value.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (el, raw) in self.inner.elements() {
            d.set_item(el, value_to_py(py, el, raw, &self.inner)?)?;
        }
        Ok(d)
    }
    #[getter]
    fn command_field(&self) -> Option<u16> {
        self.inner.command_field()
    }
    /// The message name, e.g. "C-ECHO-RQ".
    #[getter]
    fn name(&self) -> Option<&'static str> {
        self.inner.command_field().and_then(command_field::name)
    }
    #[getter]
    fn message_id(&self) -> Option<u16> {
        self.inner.message_id()
    }
    #[getter]
    fn message_id_being_responded_to(&self) -> Option<u16> {
        self.inner.get_us(tag::MESSAGE_ID_BEING_RESPONDED_TO)
    }
    #[getter]
    fn status(&self) -> Option<u16> {
        self.inner.status()
    }
    #[getter]
    fn affected_sop_class_uid(&self) -> Option<String> {
        self.inner.get_str(tag::AFFECTED_SOP_CLASS_UID)
    }
    #[getter]
    fn affected_sop_instance_uid(&self) -> Option<String> {
        self.inner.get_str(tag::AFFECTED_SOP_INSTANCE_UID)
    }
    #[getter]
    fn has_data_set(&self) -> bool {
        self.inner.has_data_set()
    }
    fn __repr__(&self) -> String {
        format!(
            "<Command {} id={:?} status={:?}>",
            self.inner
                .command_field()
                .and_then(command_field::name)
                .unwrap_or("?"),
            self.inner
                .message_id()
                .or(self.inner.get_us(tag::MESSAGE_ID_BEING_RESPONDED_TO)),
            self.inner.status()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Negotiated contexts as Python values
// ---------------------------------------------------------------------------------------------

fn contexts_to_py<'py>(py: Python<'py>, n: &Negotiated) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for c in &n.contexts {
        let d = PyDict::new(py);
        d.set_item("id", c.id)?;
        d.set_item("abstract_syntax", &c.abstract_syntax)?;
        d.set_item("transfer_syntax", &c.transfer_syntax)?;
        d.set_item("result", c.result)?;
        d.set_item("scu", c.local_scu)?;
        d.set_item("scp", c.local_scp)?;
        list.append(d)?;
    }
    Ok(list)
}

fn negotiated_to_py<'py>(
    py: Python<'py>,
    n: &Negotiated,
    peer: Option<SocketAddr>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("calling_ae", &n.calling_ae)?;
    d.set_item("called_ae", &n.called_ae)?;
    d.set_item("contexts", contexts_to_py(py, n)?)?;
    d.set_item("peer_max_pdu", n.peer_max_pdu)?;
    d.set_item("local_max_pdu", n.local_max_pdu)?;
    d.set_item(
        "peer_implementation_class_uid",
        &n.peer_implementation_class_uid,
    )?;
    d.set_item(
        "peer_implementation_version_name",
        &n.peer_implementation_version_name,
    )?;
    if let Some((ty, p, s)) = &n.user_identity {
        d.set_item(
            "user_identity",
            (ty, PyBytes::new(py, p), PyBytes::new(py, s)),
        )?;
    } else {
        d.set_item("user_identity", py.None())?;
    }
    let ext = PyList::empty(py);
    for (uid, info) in &n.extended_negotiation {
        ext.append((uid, PyBytes::new(py, info)))?;
    }
    d.set_item("extended_negotiation", ext)?;
    d.set_item("common_extended", n.common_extended.clone())?;
    match peer {
        Some(a) => d.set_item("peer_address", (a.ip().to_string(), a.port()))?,
        None => d.set_item("peer_address", py.None())?,
    }
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// SCU association
// ---------------------------------------------------------------------------------------------

/// A requested association (SCU side).
#[pyclass(name = "Association", module = "ferrodicom._core")]
pub struct PyAssociation {
    inner: Mutex<Option<Association>>,
    abort: Option<ul::AbortHandle>,
    negotiated: Negotiated,
    peer: Option<SocketAddr>,
    next_id: AtomicU64,
}

impl PyAssociation {
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Association) -> Result<T, AssocError> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut guard = self
                .inner
                .lock()
                .map_err(|_| AssociationError::new_err("association lock poisoned"))?;
            let assoc = guard
                .as_mut()
                .ok_or_else(|| AssociationError::new_err("association is closed"))?;
            let r = f(assoc);
            if !assoc.is_established() {
                *guard = None;
            }
            r.map_err(assoc_err)
        })
    }
    fn message_id(&self) -> u16 {
        (self.next_id.fetch_add(1, Ordering::Relaxed) % 65535 + 1) as u16
    }
}

#[pymethods]
impl PyAssociation {
    /// True while the association is established.
    #[getter]
    fn is_established(&self) -> bool {
        self.inner
            .lock()
            .map(|g| g.as_ref().is_some_and(|a| a.is_established()))
            .unwrap_or(false)
    }
    /// What was negotiated: contexts (with results and roles), max PDUs, peer implementation, ...
    #[getter]
    fn negotiated<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        negotiated_to_py(py, &self.negotiated, self.peer)
    }
    /// Sends C-ECHO-RQ on the first accepted Verification context and returns the response status.
    #[pyo3(signature = (message_id = None))]
    fn send_c_echo(&self, py: Python<'_>, message_id: Option<u16>) -> PyResult<u16> {
        let ctx = self
            .negotiated
            .find_context(VERIFICATION, None)
            .ok_or_else(|| {
                AssociationError::new_err("no accepted presentation context for Verification")
            })?
            .id;
        let id = message_id.unwrap_or_else(|| self.message_id());
        self.with(py, move |a| {
            let rq = dimse::request(command_field::C_ECHO_RQ, id, VERIFICATION, false);
            a.send_message(ctx, &rq, None)?;
            let timeout = a.timeouts_mut().dimse;
            match a.receive(timeout)? {
                Incoming::Command { command, .. } => {
                    if command.command_field() != Some(command_field::C_ECHO_RSP)
                        || command.get_us(tag::MESSAGE_ID_BEING_RESPONDED_TO) != Some(id)
                    {
                        return Err(AssocError::Protocol(format!(
                            "expected C-ECHO-RSP to message {id}, received {:?}",
                            command.command_field().and_then(command_field::name)
                        )));
                    }
                    command
                        .status()
                        .ok_or(AssocError::Dimse(ul::DimseError::Missing {
                            element: tag::STATUS,
                            name: "Status",
                        }))
                }
                Incoming::Released => {
                    Err(AssocError::Protocol("peer released the association".into()))
                }
                Incoming::Aborted(ab) => Err(AssocError::Aborted(ab)),
            }
        })
    }
    /// Sends a DIMSE message: `fields` maps group-0000 elements to values; Message ID (if absent)
    /// and Command Data Set Type are filled in. Returns the message ID.
    #[pyo3(signature = (context_id, fields, data_set = None))]
    fn send(
        &self,
        py: Python<'_>,
        context_id: u8,
        fields: &Bound<'_, PyDict>,
        data_set: Option<Vec<u8>>,
    ) -> PyResult<u16> {
        let mut cmd = PyCommand::new(fields)?.inner;
        let id = match cmd.message_id() {
            Some(id) => id,
            None if cmd.is_request() => {
                let id = self.message_id();
                cmd.set_us(tag::MESSAGE_ID, id);
                id
            }
            None => 0,
        };
        cmd.set_us(
            tag::COMMAND_DATA_SET_TYPE,
            if data_set.is_some() {
                dimse::DATA_SET_PRESENT
            } else {
                dimse::NO_DATA_SET
            },
        );
        self.with(py, move |a| {
            a.send_message(context_id, &cmd, data_set.as_deref())
        })?;
        Ok(id)
    }
    /// Receives the next DIMSE message: (context_id, Command, data set bytes or None).
    /// Returns None if the peer released the association. Raises on abort or timeout.
    #[pyo3(signature = (timeout = None, max_data_set = 1usize << 30))]
    fn receive<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        max_data_set: usize,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let r = self.with(py, move |a| {
            let t = secs(timeout).or(a.timeouts_mut().dimse);
            match a.receive(t)? {
                Incoming::Command {
                    context_id,
                    command,
                } => {
                    let data = if command.has_data_set() {
                        Some(a.read_data_set_to_vec(max_data_set)?)
                    } else {
                        None
                    };
                    Ok(Some((context_id, command, data)))
                }
                Incoming::Released => Ok(None),
                Incoming::Aborted(ab) => Err(AssocError::Aborted(ab)),
            }
        })?;
        match r {
            None => Ok(None),
            Some((ctx, command, data)) => {
                let cmd = Bound::new(py, PyCommand { inner: command })?;
                let data = data.map(|d| PyBytes::new(py, &d));
                Ok(Some(PyTuple::new(
                    py,
                    [
                        ctx.into_pyobject(py)?.into_any(),
                        cmd.into_any(),
                        data.into_pyobject(py)?.into_any(),
                    ],
                )?))
            }
        }
    }
    /// Releases the association (A-RELEASE, PS3.8 §7.2).
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let mut guard = self
                .inner
                .lock()
                .map_err(|_| AssociationError::new_err("lock poisoned"))?;
            match guard.take() {
                Some(mut a) if a.is_established() => a.release().map_err(assoc_err),
                _ => Ok(()),
            }
        })
    }
    /// Aborts the association (A-ABORT, PS3.8 §7.3). Safe to call from another thread.
    fn abort(&self, py: Python<'_>) {
        if let Some(h) = &self.abort {
            h.abort();
        }
        py.detach(|| {
            if let Ok(mut g) = self.inner.lock() {
                if let Some(mut a) = g.take() {
                    let _ = a.abort(0);
                }
            }
        });
    }
}

/// (abstract syntax, transfer syntaxes, optional role selection (scu, scp)) as passed from Python.
type RequestedContext = (String, Vec<String>, Option<(bool, bool)>);

pub const VERIFICATION: &str = "1.2.840.10008.1.1";

/// Requests an association. `contexts` is a list of (abstract syntax, [transfer syntaxes],
/// roles) where roles is None or (scu, scp). Raises AssociationError if rejected or aborted.
#[pyfunction]
#[pyo3(signature = (host, port, calling_ae, called_ae, contexts, *, max_pdu = 262_144, implementation_class_uid = None,
    implementation_version_name = None, user_identity = None, extended_negotiation = None, common_extended = None,
    async_window = None, acse_timeout = Some(30.0), dimse_timeout = Some(60.0), connect_timeout = Some(30.0)))]
#[allow(clippy::too_many_arguments)]
fn associate(
    py: Python<'_>,
    host: String,
    port: u16,
    calling_ae: String,
    called_ae: String,
    contexts: Vec<RequestedContext>,
    max_pdu: u32,
    implementation_class_uid: Option<String>,
    implementation_version_name: Option<String>,
    user_identity: Option<(u8, bool, Vec<u8>, Vec<u8>)>,
    extended_negotiation: Option<Vec<(String, Vec<u8>)>>,
    common_extended: Option<Vec<(String, String, Vec<String>)>>,
    async_window: Option<(u16, u16)>,
    acse_timeout: Option<f64>,
    dimse_timeout: Option<f64>,
    connect_timeout: Option<f64>,
) -> PyResult<PyAssociation> {
    let mut cfg = RequestorConfig::new(&calling_ae, &called_ae);
    cfg.contexts = contexts
        .into_iter()
        .map(|(a, t, roles)| ProposedContext {
            abstract_syntax: a,
            transfer_syntaxes: t,
            roles,
        })
        .collect();
    cfg.max_pdu = max_pdu;
    if let Some(u) = implementation_class_uid {
        cfg.implementation_class_uid = u;
    }
    if implementation_version_name.is_some() {
        cfg.implementation_version_name = implementation_version_name.filter(|s| !s.is_empty());
    }
    cfg.user_identity = user_identity;
    cfg.extended_negotiation = extended_negotiation.unwrap_or_default();
    cfg.common_extended = common_extended.unwrap_or_default();
    cfg.async_window = async_window;
    let timeouts = Timeouts {
        artim: Duration::from_secs(30),
        acse: secs(acse_timeout),
        dimse: secs(dimse_timeout),
        connect: secs(connect_timeout),
    };
    let assoc = py
        .detach(|| Association::request((host.as_str(), port), &cfg, timeouts))
        .map_err(assoc_err)?;
    let negotiated = assoc.negotiated().clone();
    let peer = assoc.peer_addr();
    let abort = assoc.abort_handle().ok();
    Ok(PyAssociation {
        inner: Mutex::new(Some(assoc)),
        abort,
        negotiated,
        peer,
        next_id: AtomicU64::new(0),
    })
}

// ---------------------------------------------------------------------------------------------
// SCP server
// ---------------------------------------------------------------------------------------------

struct ServerShared {
    config: AcceptorConfig,
    timeouts: Timeouts,
    max_associations: usize,
    /// Python callable for DIMSE requests: handler(info, context, command, data) -> response(s).
    handler: Option<Py<PyAny>>,
    /// Python callable for association events: events(kind, info) (may be None).
    events: Option<Py<PyAny>>,
    /// Command fields routed to Python; C-ECHO not listed is answered in Rust.
    routed: Vec<u16>,
    max_data_set: usize,
    active: AtomicUsize,
    total: AtomicU64,
    stop: AtomicBool,
    aborts: Mutex<HashMap<u64, ul::AbortHandle>>,
}

/// An SCP: listens, negotiates each association in Rust against a fixed configuration, and
/// calls the Python handler once per DIMSE request.
#[pyclass(name = "Server", module = "ferrodicom._core")]
pub struct PyServer {
    shared: Arc<ServerShared>,
    listener: Mutex<Option<TcpListener>>,
    local: SocketAddr,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn call_events(shared: &ServerShared, kind: &str, info: &Option<Py<PyAny>>) {
    if let (Some(ev), Some(info)) = (&shared.events, info) {
        Python::attach(|py| {
            if let Err(e) = ev.call1(py, (kind, info.clone_ref(py))) {
                e.print(py);
            }
        });
    }
}

/// One handler response: (status, data set bytes or None, extra command fields or None).
type Reply = (u16, Option<Vec<u8>>, Option<Vec<(u16, ReplyValue)>>);

#[derive(Clone)]
enum ReplyValue {
    Int(u32),
    Str(String),
    Tags(Vec<u32>),
}

fn extract_reply(obj: &Bound<'_, PyAny>) -> PyResult<Reply> {
    if let Ok(status) = obj.extract::<u16>() {
        return Ok((status, None, None));
    }
    let t: &Bound<'_, PyTuple> = obj.cast()?;
    let status: u16 = t.get_item(0)?.extract()?;
    let data: Option<Vec<u8>> = if t.len() > 1 {
        t.get_item(1)?.extract()?
    } else {
        None
    };
    let fields = if t.len() > 2 && !t.get_item(2)?.is_none() {
        let d = t.get_item(2)?;
        let d: &Bound<'_, PyDict> = d.cast()?;
        let mut out = Vec::new();
        for (k, v) in d.iter() {
            let el: u16 = k.extract()?;
            let val = if let Ok(i) = v.extract::<u32>() {
                ReplyValue::Int(i)
            } else if let Ok(s) = v.extract::<String>() {
                ReplyValue::Str(s)
            } else {
                ReplyValue::Tags(v.extract::<Vec<u32>>()?)
            };
            out.push((el, val));
        }
        Some(out)
    } else {
        None
    };
    Ok((status, data, fields))
}

/// Calls the Python handler; returns the list of replies (several for pending C-FIND/C-MOVE).
fn call_handler(
    shared: &ServerShared,
    info: &Py<PyAny>,
    ctx: &ul::NegotiatedContext,
    command: dimse::Command,
    data: Option<Vec<u8>>,
) -> Vec<Reply> {
    let Some(handler) = &shared.handler else {
        return vec![(0x0211, None, None)];
    };
    Python::attach(|py| {
        let r = (|| -> PyResult<Vec<Reply>> {
            let cmd = Bound::new(py, PyCommand { inner: command })?;
            let data = data.map(|d| PyBytes::new(py, &d));
            let ctx_t = (
                ctx.id,
                ctx.abstract_syntax.as_str(),
                ctx.transfer_syntax.as_str(),
            );
            let out = handler.call1(py, (info.clone_ref(py), ctx_t, cmd, data))?;
            let out = out.bind(py);
            if let Ok(list) = out.cast::<PyList>() {
                list.iter().map(|o| extract_reply(&o)).collect()
            } else {
                Ok(vec![extract_reply(out)?])
            }
        })();
        r.unwrap_or_else(|e| {
            e.print(py);
            // Processing failure (PS3.7 C.4.1.1.1 general status 0110).
            vec![(0x0110, None, None)]
        })
    })
}

fn serve_association(shared: Arc<ServerShared>, stream: TcpStream, conn_id: u64) {
    let (mut assoc, rq) = match Association::accept_transport(stream, shared.timeouts) {
        Ok(x) => x,
        Err(_) => return,
    };
    if shared.active.load(Ordering::SeqCst) > shared.max_associations {
        let _ = assoc.reject(reject::LOCAL_LIMIT_EXCEEDED);
        return;
    }
    if let Err(e) = assoc.respond(&shared.config, &rq) {
        if let AssocError::Rejected(rj) = e {
            if shared.events.is_some() {
                let info = Python::attach(|py| -> Option<Py<PyAny>> {
                    let d = PyDict::new(py);
                    d.set_item("calling_ae", rq.calling_ae.trimmed()).ok()?;
                    d.set_item("called_ae", rq.called_ae.trimmed()).ok()?;
                    d.set_item("reject", (rj.result, rj.source, rj.reason))
                        .ok()?;
                    Some(d.into_any().unbind())
                });
                call_events(&shared, "rejected", &info);
            }
        }
        return;
    }
    if let Ok(h) = assoc.abort_handle() {
        if let Ok(mut m) = shared.aborts.lock() {
            m.insert(conn_id, h);
        }
    }
    let needs_info = shared.handler.is_some() || shared.events.is_some();
    let info: Option<Py<PyAny>> = if needs_info {
        Python::attach(|py| {
            negotiated_to_py(py, assoc.negotiated(), assoc.peer_addr())
                .ok()
                .map(|d| d.into_any().unbind())
        })
    } else {
        None
    };
    call_events(&shared, "established", &info);
    let outcome = loop {
        if shared.stop.load(Ordering::Relaxed) {
            let _ = assoc.abort(0);
            break "aborted";
        }
        let timeout = shared.timeouts.dimse;
        let (ctx_id, command) = match assoc.receive(timeout) {
            Ok(Incoming::Command {
                context_id,
                command,
            }) => (context_id, command),
            Ok(Incoming::Released) => break "released",
            Ok(Incoming::Aborted(_)) => break "aborted",
            Err(_) => break "aborted",
        };
        let Some(field) = command.command_field() else {
            break "aborted";
        };
        let ctx = assoc
            .negotiated()
            .context(ctx_id)
            .cloned()
            .expect("receive checks the context");
        if !command.is_request() {
            // A response we never asked for: ignore it (and its data set).
            continue;
        }
        if field == command_field::C_CANCEL_RQ {
            continue;
        }
        let replies = if field == command_field::C_ECHO_RQ && !shared.routed.contains(&field) {
            vec![(0x0000, None, None)]
        } else if shared.routed.contains(&field) {
            let data = if command.has_data_set() {
                match assoc.read_data_set_to_vec(shared.max_data_set) {
                    Ok(d) => Some(d),
                    Err(_) => break "aborted",
                }
            } else {
                None
            };
            call_handler(
                &shared,
                info.as_ref().expect("handler implies info"),
                &ctx,
                command.clone(),
                data,
            )
        } else {
            // Unrecognized operation (PS3.7 C.4.1.1.3 general status 0211).
            vec![(0x0211, None, None)]
        };
        let mut failed = false;
        for (status, data, fields) in replies {
            let mut rsp = dimse::response_to(&command, status, data.is_some());
            for (el, v) in fields.unwrap_or_default() {
                match v {
                    ReplyValue::Int(i) if command_vr(el) == CommandVr::US => {
                        rsp.set_us(el, i as u16)
                    }
                    ReplyValue::Int(i) => rsp.set_raw(el, i.to_le_bytes().to_vec()),
                    ReplyValue::Str(s) => rsp.set_str(el, &s),
                    ReplyValue::Tags(t) => rsp.set_tags(el, &t),
                }
            }
            if assoc.send_message(ctx_id, &rsp, data.as_deref()).is_err() {
                failed = true;
                break;
            }
        }
        if failed {
            break "aborted";
        }
    };
    if let Ok(mut m) = shared.aborts.lock() {
        m.remove(&conn_id);
    }
    call_events(&shared, outcome, &info);
}

fn accept_loop(shared: Arc<ServerShared>, listener: TcpListener) {
    let mut conn_id = 0u64;
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else { continue };
        conn_id += 1;
        shared.total.fetch_add(1, Ordering::Relaxed);
        shared.active.fetch_add(1, Ordering::SeqCst);
        let sh = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ferrodicom-assoc-{conn_id}"))
            .spawn(move || {
                let sh2 = sh.clone();
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve_association(sh, stream, conn_id)
                }));
                sh2.active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[pymethods]
impl PyServer {
    /// Binds `host:port` (port 0 picks a free one). `contexts` is a list of
    /// (abstract syntax, [transfer syntaxes], scp_role, scu_role). `routed` lists the command
    /// fields (e.g. 0x0001 for C-STORE-RQ) passed to `handler`.
    #[new]
    #[pyo3(signature = (host, port, ae_title, contexts, *, handler = None, events = None, routed = None,
        max_pdu = 262_144, require_called_aet = false, allowed_calling_aets = None, max_associations = 64,
        implementation_class_uid = None, implementation_version_name = None, extended_negotiation = None,
        artim_timeout = 30.0, acse_timeout = Some(30.0), dimse_timeout = None, max_data_set = 1usize << 30))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        host: String,
        port: u16,
        ae_title: String,
        contexts: Vec<(String, Vec<String>, bool, bool)>,
        handler: Option<Py<PyAny>>,
        events: Option<Py<PyAny>>,
        routed: Option<Vec<u16>>,
        max_pdu: u32,
        require_called_aet: bool,
        allowed_calling_aets: Option<Vec<String>>,
        max_associations: usize,
        implementation_class_uid: Option<String>,
        implementation_version_name: Option<String>,
        extended_negotiation: Option<HashMap<String, Vec<u8>>>,
        artim_timeout: f64,
        acse_timeout: Option<f64>,
        dimse_timeout: Option<f64>,
        max_data_set: usize,
    ) -> PyResult<Self> {
        ul::pdu::AeTitle::new(&ae_title).map_err(DicomError::new_err)?;
        let mut config = AcceptorConfig::new(&ae_title);
        config.contexts = contexts
            .into_iter()
            .map(|(a, t, scp, scu)| SupportedContext {
                abstract_syntax: a,
                transfer_syntaxes: t,
                scp_role: scp,
                scu_role: scu,
            })
            .collect();
        config.max_pdu = max_pdu;
        config.require_called_aet = require_called_aet;
        config.allowed_calling_aets = allowed_calling_aets;
        if let Some(u) = implementation_class_uid {
            config.implementation_class_uid = u;
        }
        if implementation_version_name.is_some() {
            config.implementation_version_name =
                implementation_version_name.filter(|s| !s.is_empty());
        }
        config.extended_negotiation = extended_negotiation.unwrap_or_default();
        let listener = TcpListener::bind((host.as_str(), port)).map_err(|e| {
            AssociationError::new_err(format!("cannot listen on {host}:{port}: {e}"))
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| AssociationError::new_err(e.to_string()))?;
        let shared = Arc::new(ServerShared {
            config,
            timeouts: Timeouts {
                artim: Duration::from_secs_f64(artim_timeout.max(0.001)),
                acse: secs(acse_timeout),
                dimse: secs(dimse_timeout),
                connect: None,
            },
            max_associations: max_associations.max(1),
            handler,
            events,
            routed: routed.unwrap_or_default(),
            max_data_set,
            active: AtomicUsize::new(0),
            total: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            aborts: Mutex::new(HashMap::new()),
        });
        Ok(PyServer {
            shared,
            listener: Mutex::new(Some(listener)),
            local,
            thread: Mutex::new(None),
        })
    }

    /// The bound (host, port).
    #[getter]
    fn address(&self) -> (String, u16) {
        (self.local.ip().to_string(), self.local.port())
    }
    /// Associations being served now.
    #[getter]
    fn active_associations(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }
    /// Connections accepted since start.
    #[getter]
    fn total_connections(&self) -> u64 {
        self.shared.total.load(Ordering::Relaxed)
    }
    /// Starts the accept loop on a background thread and returns at once.
    fn start(&self) -> PyResult<()> {
        let listener = self
            .listener
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| AssociationError::new_err("server already started"))?;
        let shared = self.shared.clone();
        let h = std::thread::Builder::new()
            .name("ferrodicom-accept".into())
            .spawn(move || accept_loop(shared, listener))
            .map_err(|e| AssociationError::new_err(e.to_string()))?;
        *self.thread.lock().unwrap() = Some(h);
        Ok(())
    }
    /// Runs the accept loop in this thread (GIL released) until `shutdown()` is called.
    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
        if self.listener.lock().unwrap().is_some() {
            self.start()?;
        }
        loop {
            let done = py.detach(|| {
                std::thread::sleep(Duration::from_millis(100));
                self.shared.stop.load(Ordering::SeqCst)
            });
            if done {
                return Ok(());
            }
            py.check_signals()?;
        }
    }
    /// Stops accepting, aborts open associations and waits for the accept loop to end.
    fn shutdown(&self, py: Python<'_>) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let addr = self.local;
        let shared = self.shared.clone();
        let thread = self.thread.lock().unwrap().take();
        py.detach(move || {
            // Wake the blocking accept() with a connection of our own.
            let wake = if addr.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], addr.port()))
            } else {
                addr
            };
            let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
            if let Some(h) = thread {
                let _ = h.join();
            }
            if let Ok(m) = shared.aborts.lock() {
                for h in m.values() {
                    h.abort();
                }
            }
            // Give association threads a moment to observe the abort and leave Python.
            for _ in 0..200 {
                if shared.active.load(Ordering::SeqCst) == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        self.listener.lock().unwrap().take();
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCommand>()?;
    m.add_class::<PyAssociation>()?;
    m.add_class::<PyServer>()?;
    m.add_function(wrap_pyfunction!(associate, m)?)?;
    m.add(
        "IMPLEMENTATION_CLASS_UID",
        ul::negotiate::IMPLEMENTATION_CLASS_UID,
    )?;
    m.add(
        "IMPLEMENTATION_VERSION_NAME",
        ul::negotiate::IMPLEMENTATION_VERSION_NAME,
    )?;
    Ok(())
}
