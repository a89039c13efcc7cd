//! Frozen value types crossing into Python: what was negotiated, what a requestor asked for,
//! what the C-STORE data path received. Built once per association (or per instance).
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::net::SocketAddr;
use std::sync::Arc;
use ul::pdu::{AssociateRq, UserItem};
use ul::{Negotiated, NegotiatedContext};

fn address(peer: Option<SocketAddr>) -> Option<(String, u16)> {
    peer.map(|a| (a.ip().to_string(), a.port()))
}

/// A presentation context as negotiated, from our side (PS3.8 §9.3.2.2, §9.3.3.2).
#[pyclass(
    name = "PresentationContext",
    module = "ferrodicom._core",
    frozen,
    get_all
)]
#[derive(Clone)]
pub struct PyPresentationContext {
    pub context_id: u8,
    pub abstract_syntax: String,
    /// The accepted transfer syntax ("" when rejected).
    pub transfer_syntax: String,
    /// 0 acceptance, 1 user rejection, 2 no reason, 3 abstract syntax not supported, 4 transfer
    /// syntaxes not supported (PS3.8 Table 9-18).
    pub result: u8,
    /// We may send requests on it / answer requests on it.
    pub as_scu: bool,
    pub as_scp: bool,
}

#[pymethods]
impl PyPresentationContext {
    fn __repr__(&self) -> String {
        format!(
            "PresentationContext(id={}, abstract_syntax='{}', transfer_syntax='{}', result={})",
            self.context_id, self.abstract_syntax, self.transfer_syntax, self.result
        )
    }
}

impl From<&NegotiatedContext> for PyPresentationContext {
    fn from(c: &NegotiatedContext) -> Self {
        PyPresentationContext {
            context_id: c.id,
            abstract_syntax: c.abstract_syntax.clone(),
            transfer_syntax: c.transfer_syntax.clone(),
            result: c.result,
            as_scu: c.local_scu,
            as_scp: c.local_scp,
        }
    }
}

/// What both sides of an association agreed (PS3.8 §7.1, PS3.7 Annex D.3).
#[pyclass(name = "AssociationInfo", module = "ferrodicom._core", frozen)]
pub struct PyAssociationInfo {
    negotiated: Arc<Negotiated>,
    peer: Option<SocketAddr>,
    requestor: bool,
}

impl PyAssociationInfo {
    pub fn new(negotiated: &Arc<Negotiated>, peer: Option<SocketAddr>, requestor: bool) -> Self {
        PyAssociationInfo {
            negotiated: Arc::clone(negotiated),
            peer,
            requestor,
        }
    }
}

#[pymethods]
impl PyAssociationInfo {
    #[getter]
    fn calling_ae(&self) -> &str {
        &self.negotiated.calling_ae
    }
    #[getter]
    fn called_ae(&self) -> &str {
        &self.negotiated.called_ae
    }
    /// The peer's (host, port).
    #[getter]
    fn peer_address(&self) -> Option<(String, u16)> {
        address(self.peer)
    }
    /// True when we requested the association (we are the SCU by default).
    #[getter]
    fn is_requestor(&self) -> bool {
        self.requestor
    }
    #[getter]
    fn contexts(&self) -> Vec<PyPresentationContext> {
        self.negotiated.contexts.iter().map(Into::into).collect()
    }
    #[getter]
    fn peer_max_pdu(&self) -> u32 {
        self.negotiated.peer_max_pdu
    }
    #[getter]
    fn local_max_pdu(&self) -> u32 {
        self.negotiated.local_max_pdu
    }
    #[getter]
    fn peer_implementation_class_uid(&self) -> &str {
        &self.negotiated.peer_implementation_class_uid
    }
    #[getter]
    fn peer_implementation_version_name(&self) -> Option<&str> {
        self.negotiated.peer_implementation_version_name.as_deref()
    }
    /// The requestor's User Identity item: (type, primary field, secondary field).
    #[getter]
    fn user_identity<'py>(
        &self,
        py: Python<'py>,
    ) -> Option<(u8, Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        self.negotiated
            .user_identity
            .as_ref()
            .map(|(t, p, s)| (*t, PyBytes::new(py, p), PyBytes::new(py, s)))
    }
    /// SOP Class Extended Negotiation agreed: (SOP class UID, the acceptor's reply).
    #[getter]
    fn extended_negotiation<'py>(&self, py: Python<'py>) -> Vec<(String, Bound<'py, PyBytes>)> {
        self.negotiated
            .extended_negotiation
            .iter()
            .map(|(u, i)| (u.clone(), PyBytes::new(py, i)))
            .collect()
    }
    /// SOP Class Common Extended Negotiation items the requestor sent: (SOP class, service
    /// class, related general SOP classes).
    #[getter]
    fn common_extended(&self) -> Vec<(String, String, Vec<String>)> {
        self.negotiated.common_extended.clone()
    }
    fn __repr__(&self) -> String {
        format!(
            "AssociationInfo(calling_ae='{}', called_ae='{}', peer_address={:?})",
            self.negotiated.calling_ae,
            self.negotiated.called_ae,
            address(self.peer)
        )
    }
}

/// An A-ASSOCIATE-RQ as the node's negotiation hook sees it (PS3.8 §9.3.2).
#[pyclass(name = "AssociationRequest", module = "ferrodicom._core", frozen)]
pub struct PyAssociationRequest {
    rq: AssociateRq,
    peer: Option<SocketAddr>,
}

impl PyAssociationRequest {
    pub fn new(rq: &AssociateRq, peer: Option<SocketAddr>) -> Self {
        PyAssociationRequest {
            rq: rq.clone(),
            peer,
        }
    }
    fn items(&self) -> &[UserItem] {
        self.rq
            .user_info
            .as_ref()
            .map_or(&[], |u| u.items.as_slice())
    }
}

#[pymethods]
impl PyAssociationRequest {
    #[getter]
    fn calling_ae(&self) -> String {
        self.rq.calling_ae.trimmed()
    }
    #[getter]
    fn called_ae(&self) -> String {
        self.rq.called_ae.trimmed()
    }
    #[getter]
    fn peer_address(&self) -> Option<(String, u16)> {
        address(self.peer)
    }
    /// The abstract syntaxes proposed, in order.
    #[getter]
    fn abstract_syntaxes(&self) -> Vec<String> {
        self.rq
            .presentation_contexts
            .iter()
            .map(|p| p.abstract_syntax.trim_end_matches(['\0', ' ']).to_string())
            .collect()
    }
    /// The User Identity item (PS3.7 D.3.3.7.1): (type, positive response requested, primary
    /// field, secondary field), or None.
    #[getter]
    fn user_identity<'py>(
        &self,
        py: Python<'py>,
    ) -> Option<(u8, bool, Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        self.items().iter().rev().find_map(|i| match i {
            UserItem::UserIdentityRq {
                identity_type,
                positive_response_requested,
                primary,
                secondary,
            } => Some((
                *identity_type,
                *positive_response_requested == 1,
                PyBytes::new(py, primary),
                PyBytes::new(py, secondary),
            )),
            _ => None,
        })
    }
    /// SOP Class Extended Negotiation items (PS3.7 D.3.3.5): (SOP class UID, service-class
    /// application information).
    #[getter]
    fn extended_negotiation<'py>(&self, py: Python<'py>) -> Vec<(String, Bound<'py, PyBytes>)> {
        self.items()
            .iter()
            .filter_map(|i| match i {
                UserItem::SopClassExtended {
                    sop_class_uid,
                    info,
                } => Some((
                    sop_class_uid.trim_end_matches(['\0', ' ']).to_string(),
                    PyBytes::new(py, info),
                )),
                _ => None,
            })
            .collect()
    }
    fn __repr__(&self) -> String {
        format!(
            "AssociationRequest(calling_ae='{}', called_ae='{}', peer_address={:?})",
            self.rq.calling_ae.trimmed(),
            self.rq.called_ae.trimmed(),
            address(self.peer)
        )
    }
}

/// What the C-STORE data path did with one data set (see `node::Received`).
#[pyclass(name = "Received", module = "ferrodicom._core", frozen)]
pub struct PyReceived {
    pub inner: node::Received,
    /// Extracted keys by keyword.
    pub keys: Py<PyDict>,
}

fn path_text(p: &Option<std::path::PathBuf>) -> Option<String> {
    p.as_ref().map(|p| p.to_string_lossy().into_owned())
}

#[pymethods]
impl PyReceived {
    /// The complete file, still in the incoming folder (None once placed, discarded or failed).
    #[getter]
    fn path(&self) -> Option<String> {
        path_text(&self.inner.part_path)
    }
    /// Where the file was placed, as `prepare` asked.
    #[getter]
    fn placed(&self) -> Option<String> {
        path_text(&self.inner.placed)
    }
    #[getter]
    fn size(&self) -> u64 {
        self.inner.size
    }
    #[getter]
    fn transfer_syntax(&self) -> &str {
        &self.inner.transfer_syntax
    }
    /// Index keys extracted while streaming, by keyword (text, padding removed).
    #[getter]
    fn keys(&self, py: Python<'_>) -> Py<PyDict> {
        self.keys.clone_ref(py)
    }
    /// (status, comment) when the data set could not be stored (e.g. 0xC000, 0xA700).
    #[getter]
    fn failure(&self) -> Option<(u16, String)> {
        self.inner.failure.clone()
    }
    /// The data set was dropped as `prepare` asked.
    #[getter]
    fn discarded(&self) -> bool {
        self.inner.discarded
    }
    /// The journal record that made the placed file durable (report it done once indexed).
    #[getter]
    fn journal_seq(&self) -> Option<u64> {
        self.inner.journal_seq
    }
    fn __repr__(&self) -> String {
        format!(
            "Received(path={:?}, placed={:?}, size={}, failure={:?})",
            self.inner.part_path, self.inner.placed, self.inner.size, self.inner.failure
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPresentationContext>()?;
    m.add_class::<PyAssociationInfo>()?;
    m.add_class::<PyAssociationRequest>()?;
    m.add_class::<PyReceived>()?;
    Ok(())
}
