//! Bindings for associations (rust/ul/src/assoc.rs): the SCU `Association`, the SCP `Server`
//! and DIMSE `Command` objects. All socket work runs with the GIL released; Python is entered
//! once per DIMSE request (the server's handler), never per PDU.
use crate::errors::{AssociationError, DicomError, DicomTimeout, DimseError, PduError};
use node::storage::{
    send_data_set, send_file, Outgoing, Prepared, Received, SendError, StorageConfig,
};
use node::{FieldValue, Handler, Reply, ServerConfig, Session};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ul::dimse::{self, command_field, command_vr, tag, CommandVr};
use ul::negotiate::{AcceptorConfig, ProposedContext, RequestorConfig, SupportedContext};
use ul::pdu::{AssociateRj, AssociateRq};
use ul::{AssocError, Association, Incoming, Negotiated, NegotiatedContext, Timeouts};

/// Converts a storage-sender error into the matching Python exception.
fn send_err(e: SendError) -> PyErr {
    match e {
        SendError::Assoc(a) => assoc_err(a),
        SendError::Codec(c) => crate::errors::CodecError::new_err(c.to_string()),
        SendError::Io(io) => pyo3::exceptions::PyOSError::new_err(io.to_string()),
        SendError::NoContext { .. } => AssociationError::new_err(e.to_string()),
        SendError::Invalid(m) => DimseError::new_err(m),
    }
}

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
    /// Runs `f` on the association with the GIL released; forgets the association once it is no
    /// longer established. `map` turns `f`'s error into a Python exception.
    fn run<T: Send, E>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Association) -> Result<T, E> + Send,
        map: impl FnOnce(E) -> PyErr + Send,
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
            r.map_err(map)
        })
    }
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Association) -> Result<T, AssocError> + Send,
    ) -> PyResult<T> {
        self.run(py, f, assoc_err)
    }
    /// Like `with`, for the storage sender whose errors are not all association errors.
    fn with_send<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Association) -> Result<T, SendError> + Send,
    ) -> PyResult<T> {
        self.run(py, f, send_err)
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
    /// C-STORE of a Part 10 file (PS3.7 §9.1.1), streamed from disk and converted on the fly if the
    /// peer accepted another uncompressed transfer syntax. Returns (status, response Command,
    /// data-set bytes sent, transfer syntax used).
    #[pyo3(signature = (path, *, message_id = None, priority = 0, move_originator = None, private_dictionary = None))]
    fn send_c_store_file<'py>(
        &self,
        py: Python<'py>,
        path: std::path::PathBuf,
        message_id: Option<u16>,
        priority: u16,
        move_originator: Option<(String, u16)>,
        private_dictionary: Option<Bound<'py, crate::codec::PyPrivateDictionary>>,
    ) -> PyResult<(u16, PyCommand, u64, String)> {
        let dict = crate::codec::dictionary(py, private_dictionary.as_ref());
        let id = message_id.unwrap_or_else(|| self.message_id());
        let r = self.with_send(py, move |a| {
            let t = a.timeouts_mut().dimse;
            send_file(
                a,
                &path,
                id,
                priority,
                move_originator.as_ref().map(|(ae, m)| (ae.as_str(), *m)),
                &dict,
                t,
            )
        })?;
        Ok((
            r.status,
            PyCommand { inner: r.response },
            r.bytes,
            r.transfer_syntax,
        ))
    }
    /// C-STORE of data-set bytes (no File Meta) encoded in `transfer_syntax`.
    #[pyo3(signature = (sop_class_uid, sop_instance_uid, transfer_syntax, data, *, message_id = None, priority = 0,
        move_originator = None, private_dictionary = None))]
    #[allow(clippy::too_many_arguments)]
    fn send_c_store_data<'py>(
        &self,
        py: Python<'py>,
        sop_class_uid: String,
        sop_instance_uid: String,
        transfer_syntax: String,
        data: &[u8],
        message_id: Option<u16>,
        priority: u16,
        move_originator: Option<(String, u16)>,
        private_dictionary: Option<Bound<'py, crate::codec::PyPrivateDictionary>>,
    ) -> PyResult<(u16, PyCommand, u64, String)> {
        let dict = crate::codec::dictionary(py, private_dictionary.as_ref());
        let id = message_id.unwrap_or_else(|| self.message_id());
        let r = self.with_send(py, move |a| {
            let out = Outgoing {
                sop_class_uid: &sop_class_uid,
                sop_instance_uid: &sop_instance_uid,
                transfer_syntax_uid: &transfer_syntax,
                message_id: id,
                priority,
                move_originator: move_originator.as_ref().map(|(ae, m)| (ae.as_str(), *m)),
            };
            let t = a.timeouts_mut().dimse;
            send_data_set(a, &out, &mut std::io::Cursor::new(data), &dict, t)
        })?;
        Ok((
            r.status,
            PyCommand { inner: r.response },
            r.bytes,
            r.transfer_syntax,
        ))
    }
    /// Releases the association (A-RELEASE, PS3.8 §7.2).
    /// Returns None, or (PDVs, bytes) of P-DATA the peer sent after our A-RELEASE-RQ (PS3.8
    /// AR-6): the association is released all the same, and that data was not delivered.
    fn release(&self, py: Python<'_>) -> PyResult<Option<(u64, u64)>> {
        py.detach(|| {
            let mut guard = self
                .inner
                .lock()
                .map_err(|_| AssociationError::new_err("lock poisoned"))?;
            match guard.take() {
                Some(mut a) if a.is_established() => match a.release() {
                    Ok(()) => Ok(None),
                    Err(AssocError::DataDuringRelease { pdvs, bytes }) => Ok(Some((pdvs, bytes))),
                    Err(e) => Err(assoc_err(e)),
                },
                _ => Ok(None),
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
// SCP server: a node::Handler that calls Python once per DIMSE request
// ---------------------------------------------------------------------------------------------

struct HandlerInner {
    /// handler(info, (ctx id, abstract, transfer), Command, data|None) -> reply | [reply, ...]
    request: Option<Py<PyAny>>,
    /// store_handler(info, ctx, Command, received: dict) -> reply
    store: Option<Py<PyAny>>,
    /// store_prepare(info, ctx, Command, keys: dict) -> None | (path | None, early reply | None, state)
    prepare: Option<Py<PyAny>>,
    /// events(kind, info)
    events: Option<Py<PyAny>>,
    routed: Vec<u16>,
    storage: Option<StorageConfig>,
    /// Extracted tag -> keyword, for the `keys` dict handed to the store handler.
    key_names: HashMap<u32, String>,
}

/// The Python callbacks of one server, shared by its association threads.
struct PyHandler(Arc<HandlerInner>);

struct PySession {
    handler: Arc<HandlerInner>,
    info: Option<Py<PyAny>>,
    /// The state `store_prepare` returned for the C-STORE in progress, handed back to `stored`.
    prepared: Option<Py<PyAny>>,
}

fn path_text(p: &Option<std::path::PathBuf>) -> Option<String> {
    p.as_ref().map(|p| p.to_string_lossy().into_owned())
}

/// The extracted keys as {keyword: text}.
fn keys_dict<'py>(
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

/// `store_prepare`'s answer: None decides later; else (path | None, early reply | None, state).
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

fn call_events(events: &Option<Py<PyAny>>, kind: &str, info: &Option<Py<PyAny>>) {
    if let (Some(ev), Some(info)) = (events, info) {
        Python::attach(|py| {
            if let Err(e) = ev.call1(py, (kind, info.clone_ref(py))) {
                e.print(py);
            }
        });
    }
}

/// A handler's reply: an int status, or (status, data set bytes | None, {element: value} | None).
fn extract_reply(obj: &Bound<'_, PyAny>) -> PyResult<Reply> {
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
    let mut fields = Vec::new();
    if t.len() > 2 && !t.get_item(2)?.is_none() {
        let d = t.get_item(2)?;
        let d: &Bound<'_, PyDict> = d.cast()?;
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
    }
    Ok(Reply {
        status,
        data,
        fields,
    })
}

fn ctx_tuple(ctx: &NegotiatedContext) -> (u8, &str, &str) {
    (
        ctx.id,
        ctx.abstract_syntax.as_str(),
        ctx.transfer_syntax.as_str(),
    )
}

impl Handler for PyHandler {
    fn open(&self, negotiated: &Negotiated, peer: Option<SocketAddr>) -> Box<dyn Session> {
        let h = &self.0;
        let needs_info = h.request.is_some() || h.store.is_some() || h.events.is_some();
        let info = needs_info
            .then(|| {
                Python::attach(|py| {
                    negotiated_to_py(py, negotiated, peer)
                        .ok()
                        .map(|d| d.into_any().unbind())
                })
            })
            .flatten();
        call_events(&h.events, "established", &info);
        Box::new(PySession {
            handler: Arc::clone(h),
            info,
            prepared: None,
        })
    }
    fn rejected(&self, rq: &AssociateRq, rj: AssociateRj) {
        if self.0.events.is_none() {
            return;
        }
        let info = Python::attach(|py| -> Option<Py<PyAny>> {
            let d = PyDict::new(py);
            d.set_item("calling_ae", rq.calling_ae.trimmed()).ok()?;
            d.set_item("called_ae", rq.called_ae.trimmed()).ok()?;
            d.set_item("reject", (rj.result, rj.source, rj.reason))
                .ok()?;
            Some(d.into_any().unbind())
        });
        call_events(&self.0.events, "rejected", &info);
    }
    fn routes(&self, field: u16) -> bool {
        self.0.request.is_some() && self.0.routed.contains(&field)
    }
    fn storage(&self) -> Option<&StorageConfig> {
        self.0.storage.as_ref()
    }
    fn run_association(&self, serve: &mut (dyn FnMut() + Send)) {
        // Attach once and detach for the association's life: every later call into Python on this
        // thread reuses this thread state instead of creating and destroying one per message.
        Python::attach(|py| py.detach(serve));
    }
}

impl PySession {
    fn call(
        &self,
        f: &Option<Py<PyAny>>,
        args: impl FnOnce(Python<'_>, Py<PyAny>) -> PyResult<Py<PyAny>>,
    ) -> Vec<Reply> {
        let (Some(f), Some(info)) = (f, &self.info) else {
            return vec![Reply::status(0x0211)];
        };
        Python::attach(|py| {
            let r = (|| -> PyResult<Vec<Reply>> {
                let out = args(py, info.clone_ref(py))?;
                let out = f.call1(py, out.bind(py).cast::<PyTuple>()?.clone())?;
                let out = out.bind(py);
                if let Ok(list) = out.cast::<PyList>() {
                    list.iter().map(|o| extract_reply(&o)).collect()
                } else {
                    Ok(vec![extract_reply(out)?])
                }
            })();
            r.unwrap_or_else(|e| {
                e.print(py);
                // Processing failure (PS3.7 C.4.1.1.1, general status 0110).
                vec![Reply::with_comment(
                    0x0110,
                    "the handler raised an exception",
                )]
            })
        })
    }
}

impl Session for PySession {
    fn request(
        &mut self,
        ctx: &NegotiatedContext,
        command: ul::Command,
        data: Option<Vec<u8>>,
    ) -> Vec<Reply> {
        self.call(&self.handler.request, |py, info| {
            let cmd = Bound::new(py, PyCommand { inner: command })?;
            let data = data.map(|d| PyBytes::new(py, &d));
            Ok((info, ctx_tuple(ctx), cmd, data)
                .into_pyobject(py)?
                .into_any()
                .unbind())
        })
    }
    fn prepare_store(
        &mut self,
        ctx: &NegotiatedContext,
        command: &ul::Command,
        keys: &[(codec::Tag, String)],
    ) -> Prepared {
        let (Some(f), Some(info)) = (&self.handler.prepare, &self.info) else {
            return Prepared::Later;
        };
        Python::attach(|py| {
            let r = (|| -> PyResult<(Prepared, Option<Py<PyAny>>)> {
                let cmd = Bound::new(
                    py,
                    PyCommand {
                        inner: command.clone(),
                    },
                )?;
                let keys = keys_dict(py, &self.handler.key_names, keys)?;
                let out = f.call1(py, (info.clone_ref(py), ctx_tuple(ctx), cmd, keys))?;
                extract_prepared(out.bind(py))
            })();
            match r {
                Ok((prepared, state)) => {
                    self.prepared = state;
                    prepared
                }
                Err(e) => {
                    // The handler's store() still decides, as if no prepare were configured.
                    e.print(py);
                    Prepared::Later
                }
            }
        })
    }
    fn store_aborted(&mut self, ctx: &NegotiatedContext, command: &ul::Command) {
        if self.prepared.is_some() {
            // Hand the prepared state back with a failure, so the handler releases it.
            self.stored(
                ctx,
                command,
                Received {
                    part_path: None,
                    placed: None,
                    early: None,
                    discarded: false,
                    journal_seq: None,
                    size: 0,
                    transfer_syntax: ctx.transfer_syntax.clone(),
                    keys: Vec::new(),
                    failure: Some((0xA701, "association ended during the data set".into())),
                },
            );
        }
    }
    fn stored(
        &mut self,
        ctx: &NegotiatedContext,
        command: &ul::Command,
        received: Received,
    ) -> Reply {
        let prepared = self.prepared.take();
        if self.handler.store.is_none() {
            // Storage without a Python handler: report the data-path outcome as is.
            if let Some(p) = &received.part_path {
                let _ = std::fs::remove_file(p);
            }
            return match received.failure {
                Some((status, comment)) => Reply::with_comment(status, &comment),
                None => Reply::with_comment(0xA700, "no store handler configured"),
            };
        }
        let names = &self.handler.key_names;
        let part = received.part_path.clone();
        let mut replies = self.call(&self.handler.store, |py, info| {
            let cmd = Bound::new(
                py,
                PyCommand {
                    inner: command.clone(),
                },
            )?;
            let d = PyDict::new(py);
            d.set_item("path", path_text(&received.part_path))?;
            d.set_item("size", received.size)?;
            d.set_item("transfer_syntax", &received.transfer_syntax)?;
            d.set_item("keys", keys_dict(py, names, &received.keys)?)?;
            d.set_item("failure", received.failure.clone())?;
            d.set_item("prepared", prepared)?;
            d.set_item("placed", path_text(&received.placed))?;
            d.set_item("discarded", received.discarded)?;
            d.set_item("journal_seq", received.journal_seq)?;
            Ok((info, ctx_tuple(ctx), cmd, d)
                .into_pyobject(py)?
                .into_any()
                .unbind())
        });
        let reply = replies
            .drain(..)
            .next()
            .unwrap_or_else(|| Reply::status(0x0110));
        if reply.status != 0 && !(0xB000..=0xBFFF).contains(&reply.status) {
            // Failure: the handler did not take the file; make sure nothing is left behind.
            if let Some(p) = part {
                let _ = std::fs::remove_file(p);
            }
        }
        reply
    }
    fn close(&mut self, outcome: &'static str) {
        call_events(&self.handler.events, outcome, &self.info);
    }
}

/// An SCP: listens, negotiates each association in Rust against a fixed configuration, streams
/// C-STORE data sets to disk, and calls Python once per DIMSE request.
#[pyclass(name = "Server", module = "ferrodicom._core")]
pub struct PyServer {
    server: node::Server,
    /// The C-STORE part pool, emptied at shutdown.
    parts: Option<Arc<node::PartPool>>,
}

#[pymethods]
impl PyServer {
    /// Binds `host:port` (port 0 picks a free one). `contexts`: (abstract syntax, [transfer
    /// syntaxes], scp_role, scu_role). `routed`: command fields passed to `handler`. With
    /// `storage_dir`, C-STORE data sets stream into `.part` files there and `store_handler` is
    /// called with the result; `extract` lists (tag, keyword) pairs to index while streaming.
    /// `store_prepare`, if given, is called mid-stream once those keys are final and may choose
    /// the file's final path and an early reply (see `node::Prepared`); its state comes back to
    /// `store_handler` as `received["prepared"]`. With `fsync` and `journal`, an instance placed
    /// with an early reply is made durable by a journal record (`received["journal_seq"]`).
    #[new]
    #[pyo3(signature = (host, port, ae_title, contexts, *, handler = None, events = None, routed = None,
        store_handler = None, store_prepare = None, storage_dir = None, store_transfer_syntax = None, fsync = true, writeback = false, part_pool = 8, journal = None,
        extract = None, max_pdu = 262_144, require_called_aet = false, allowed_calling_aets = None, max_associations = 64,
        implementation_class_uid = None, implementation_version_name = None, extended_negotiation = None,
        artim_timeout = 30.0, acse_timeout = Some(30.0), dimse_timeout = None, max_data_set = 1usize << 30,
        private_dictionary = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        host: String,
        port: u16,
        ae_title: String,
        contexts: Vec<(String, Vec<String>, bool, bool)>,
        handler: Option<Py<PyAny>>,
        events: Option<Py<PyAny>>,
        routed: Option<Vec<u16>>,
        store_handler: Option<Py<PyAny>>,
        store_prepare: Option<Py<PyAny>>,
        storage_dir: Option<std::path::PathBuf>,
        store_transfer_syntax: Option<String>,
        fsync: bool,
        writeback: bool,
        part_pool: usize,
        journal: Option<Bound<'_, crate::journal::PyJournal>>,
        extract: Option<Vec<(u32, String)>>,
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
        private_dictionary: Option<Bound<'_, crate::codec::PyPrivateDictionary>>,
    ) -> PyResult<Self> {
        ul::pdu::AeTitle::new(&ae_title).map_err(DicomError::new_err)?;
        let mut acceptor = AcceptorConfig::new(&ae_title);
        acceptor.contexts = contexts
            .into_iter()
            .map(|(a, t, scp, scu)| SupportedContext {
                abstract_syntax: a,
                transfer_syntaxes: t,
                scp_role: scp,
                scu_role: scu,
            })
            .collect();
        acceptor.max_pdu = max_pdu;
        acceptor.require_called_aet = require_called_aet;
        acceptor.allowed_calling_aets = allowed_calling_aets;
        if let Some(u) = implementation_class_uid {
            acceptor.implementation_class_uid = u;
        }
        if implementation_version_name.is_some() {
            acceptor.implementation_version_name =
                implementation_version_name.filter(|s| !s.is_empty());
        }
        acceptor.extended_negotiation = extended_negotiation.unwrap_or_default();
        acceptor
            .validate()
            .map_err(|e| DicomError::new_err(format!("server configuration: {e}")))?;
        let extract = extract.unwrap_or_default();
        let parts = match &storage_dir {
            Some(dir) if part_pool > 0 => Some(Arc::new(
                node::PartPool::new(dir.clone(), part_pool)
                    .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?,
            )),
            _ => None,
        };
        let storage = storage_dir.map(|dir| StorageConfig {
            incoming_dir: dir,
            store_transfer_syntax,
            fsync,
            writeback,
            parts: parts.clone(),
            journal: journal.map(|j| std::sync::Arc::clone(&j.get().inner)),
            implementation_class_uid: acceptor.implementation_class_uid.clone(),
            implementation_version_name: acceptor
                .implementation_version_name
                .clone()
                .unwrap_or_default(),
            dictionary: crate::codec::dictionary(py, private_dictionary.as_ref()),
            extract: extract.iter().map(|(t, _)| codec::Tag(*t)).collect(),
        });
        let inner = HandlerInner {
            request: handler,
            store: store_handler,
            prepare: store_prepare,
            events,
            routed: routed.unwrap_or_default(),
            storage,
            key_names: extract.into_iter().collect(),
        };
        let config = ServerConfig {
            acceptor,
            timeouts: Timeouts {
                artim: Duration::from_secs_f64(artim_timeout.max(0.001)),
                acse: secs(acse_timeout),
                dimse: secs(dimse_timeout),
                connect: None,
            },
            max_associations: max_associations.max(1),
            max_data_set,
        };
        let server = node::Server::bind(
            (host.as_str(), port),
            config,
            Arc::new(PyHandler(Arc::new(inner))),
        )
        .map_err(|e| AssociationError::new_err(format!("cannot listen on {host}:{port}: {e}")))?;
        Ok(PyServer { server, parts })
    }

    /// The bound (host, port).
    #[getter]
    fn address(&self) -> (String, u16) {
        let a = self.server.local_addr();
        (a.ip().to_string(), a.port())
    }
    /// Associations being served now.
    #[getter]
    fn active_associations(&self) -> usize {
        self.server.active()
    }
    /// Connections accepted since start.
    #[getter]
    fn total_connections(&self) -> u64 {
        self.server.total()
    }
    /// Starts the accept loop on a background thread and returns at once.
    fn start(&self) -> PyResult<()> {
        self.server
            .start()
            .map_err(|e| AssociationError::new_err(e.to_string()))
    }
    /// Runs until `shutdown()` is called (GIL released; Ctrl-C is honoured).
    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
        if !self.server.is_started() {
            self.start()?;
        }
        loop {
            let done = py.detach(|| {
                std::thread::sleep(Duration::from_millis(100));
                self.server.is_stopped()
            });
            if done {
                return Ok(());
            }
            py.check_signals()?;
        }
    }
    /// Stops accepting, aborts open associations and waits for their threads.
    fn shutdown(&self, py: Python<'_>) {
        py.detach(|| {
            self.server.shutdown();
            if let Some(p) = &self.parts {
                p.close();
            }
        });
    }
}

/// (SOP Class UID, SOP Instance UID, Transfer Syntax UID) of a Part 10 file: UIDs from the data set
/// (falling back to the File Meta), read from the File Meta and the first 64 KiB only.
#[pyfunction]
fn peek_part10(py: Python<'_>, path: std::path::PathBuf) -> PyResult<(String, String, String)> {
    let dict = crate::codec::dictionary(py, None);
    let head = py
        .detach(|| node::peek_file(&path, &dict))
        .map_err(|e| match e {
            SendError::Io(io) => {
                pyo3::exceptions::PyOSError::new_err(format!("{}: {io}", path.display()))
            }
            other => crate::errors::CodecError::new_err(format!("{}: {other}", path.display())),
        })?;
    Ok((
        head.sop_class_uid,
        head.sop_instance_uid,
        head.transfer_syntax_uid,
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(peek_part10, m)?)?;
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
