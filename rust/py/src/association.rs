//! `Association`: a handle on an established association (`node::Link`), ours as requestor or a
//! peer's we serve. Every socket operation runs with the GIL released; requests the peer sends
//! while we wait for a response are served by the association's services (which may call
//! Python). `associate` requests a new association.
use crate::command::PyCommand;
use crate::errors::{assoc_err, send_err, AssociationError};
use crate::types::PyAssociationInfo;
use node::{Link, Outcome, Outgoing};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use ul::dimse::{self, command_field};

pub fn secs(t: Option<f64>) -> Option<Duration> {
    t.filter(|s| *s > 0.0).map(Duration::from_secs_f64)
}

/// The Verification SOP Class (PS3.4 Annex A).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

/// An established association (or one that was, see `outcome`).
#[pyclass(name = "Association", module = "ferrodicom._core", frozen)]
pub struct PyAssociation {
    pub link: Arc<Link>,
    info: Py<PyAssociationInfo>,
    /// The handle `associate()` returned: dropping it aborts an association still open.
    owner: bool,
}

impl PyAssociation {
    /// A handle on `link`; the `owner` handle aborts the association when dropped while open.
    pub fn new(py: Python<'_>, link: Arc<Link>, owner: bool) -> PyResult<Self> {
        let info = Py::new(
            py,
            PyAssociationInfo::new(link.negotiated(), link.peer(), link.is_requestor()),
        )?;
        Ok(PyAssociation { link, info, owner })
    }

    /// Runs a C-STORE sender on the link with the GIL released: (status, response, data-set bytes sent,
    /// transfer syntax used).
    fn store(
        &self,
        py: Python<'_>,
        send: impl for<'l> FnOnce(
                &'l Link,
                &mut node::LinkGuard<'l>,
                Option<Duration>,
            ) -> Result<node::StoreResponse, node::SendError>
            + Send,
    ) -> PyResult<(u16, PyCommand, u64, String)> {
        let link = &self.link;
        let t = link.limits().response_timeout;
        let r = py
            .detach(|| send(link, &mut link.lock(), t))
            .map_err(send_err)?;
        Ok((
            r.status,
            PyCommand { inner: r.response },
            r.bytes,
            r.transfer_syntax,
        ))
    }

    fn context_for(&self, abstract_syntax: &str) -> PyResult<u8> {
        self.link
            .negotiated()
            .find_context(abstract_syntax, None)
            .map(|c| c.id)
            .ok_or_else(|| {
                AssociationError::new_err(format!(
                    "no accepted presentation context for {abstract_syntax}"
                ))
            })
    }
}

impl Drop for PyAssociation {
    fn drop(&mut self) {
        if self.owner && self.link.is_established() {
            self.link.abort();
        }
    }
}

fn message<'py>(
    py: Python<'py>,
    m: node::Message,
) -> PyResult<(PyCommand, Option<Bound<'py, PyBytes>>)> {
    Ok((
        PyCommand { inner: m.command },
        m.data.map(|d| PyBytes::new(py, &d)),
    ))
}

#[pymethods]
impl PyAssociation {
    /// Unique in this process (the same for every handle on one association).
    #[getter]
    fn id(&self) -> u64 {
        self.link.id()
    }
    /// What was negotiated.
    #[getter]
    fn info(&self, py: Python<'_>) -> Py<PyAssociationInfo> {
        self.info.clone_ref(py)
    }
    #[getter]
    fn is_established(&self) -> bool {
        self.link.is_established()
    }
    /// "released" or "aborted" once the association is over, else None.
    #[getter]
    fn outcome(&self) -> Option<&'static str> {
        self.link.outcome().map(|o| match o {
            Outcome::Released => "released",
            Outcome::Aborted => "aborted",
        })
    }

    /// Sends a request: `fields` maps group-0000 elements to values (Message ID filled in when
    /// absent), `data` is its data set in the context's transfer syntax. Returns the Message ID;
    /// its responses come from `next_response`.
    #[pyo3(signature = (context_id, fields, data = None))]
    fn send(
        &self,
        py: Python<'_>,
        context_id: u8,
        fields: &Bound<'_, PyDict>,
        data: Option<Vec<u8>>,
    ) -> PyResult<u16> {
        let mut cmd = PyCommand::from_fields(fields)?;
        if !cmd.is_request() {
            return Err(AssociationError::new_err(
                "send() sends requests; responses go through a Request's respond()",
            ));
        }
        let link = &self.link;
        py.detach(|| {
            let mut g = link.lock();
            link.send_request(&mut g, context_id, &mut cmd, data.as_deref())
        })
        .map_err(assoc_err)
    }

    /// The next response (pending or final) to our request `message_id`: (Command, data set or
    /// None). Requests the peer sends meanwhile are served. `timeout` (seconds) defaults to the
    /// association's DIMSE timeout; when it expires the association is aborted (DimseTimeout).
    #[pyo3(signature = (message_id, timeout = None))]
    fn next_response<'py>(
        &self,
        py: Python<'py>,
        message_id: u16,
        timeout: Option<f64>,
    ) -> PyResult<(PyCommand, Option<Bound<'py, PyBytes>>)> {
        let link = &self.link;
        let t = secs(timeout).or(link.limits().response_timeout);
        let m = py
            .detach(|| {
                let mut g = link.lock();
                link.await_response(&mut g, message_id, t)
            })
            .map_err(assoc_err)?;
        message(py, m)
    }

    /// `send` and the first response, for services with one response.
    #[pyo3(signature = (context_id, fields, data = None, timeout = None))]
    fn request<'py>(
        &self,
        py: Python<'py>,
        context_id: u8,
        fields: &Bound<'_, PyDict>,
        data: Option<Vec<u8>>,
        timeout: Option<f64>,
    ) -> PyResult<(PyCommand, Option<Bound<'py, PyBytes>>)> {
        let mut cmd = PyCommand::from_fields(fields)?;
        let link = &self.link;
        let t = secs(timeout).or(link.limits().response_timeout);
        let m = py
            .detach(|| link.request(context_id, &mut cmd, data.as_deref(), t))
            .map_err(assoc_err)?;
        message(py, m)
    }

    /// Sends C-CANCEL-RQ for our request `message_id` (PS3.7 §9.3.2.3).
    fn send_cancel(&self, py: Python<'_>, context_id: u8, message_id: u16) -> PyResult<()> {
        let link = &self.link;
        py.detach(|| {
            let mut g = link.lock();
            link.send_cancel(&mut g, context_id, message_id)
        })
        .map_err(assoc_err)
    }

    /// C-ECHO on the first accepted Verification context; returns the response's status.
    fn send_c_echo(&self, py: Python<'_>) -> PyResult<u16> {
        let ctx = self.context_for(VERIFICATION)?;
        let link = &self.link;
        let t = link.limits().response_timeout;
        let m = py
            .detach(|| {
                let mut rq = dimse::request(
                    command_field::C_ECHO_RQ,
                    link.next_message_id(),
                    VERIFICATION,
                    false,
                );
                link.request(ctx, &mut rq, None, t)
            })
            .map_err(assoc_err)?;
        if m.command.command_field() != Some(command_field::C_ECHO_RSP) {
            return Err(crate::errors::DimseError::new_err(format!(
                "expected C-ECHO-RSP, received {}",
                m.command
                    .command_field()
                    .and_then(command_field::name)
                    .unwrap_or("an unknown message")
            )));
        }
        m.command
            .status()
            .ok_or_else(|| crate::errors::DimseError::new_err("C-ECHO-RSP without Status"))
    }

    /// C-STORE of a Part 10 file (PS3.7 §9.1.1), streamed from disk and converted on the fly if
    /// the peer accepted another uncompressed transfer syntax. Returns (status, response
    /// Command, data-set bytes sent, transfer syntax used).
    #[pyo3(signature = (path, *, priority = 0, move_originator = None, private_dictionary = None))]
    fn send_c_store_file<'py>(
        &self,
        py: Python<'py>,
        path: std::path::PathBuf,
        priority: u16,
        move_originator: Option<(String, u16)>,
        private_dictionary: Option<Bound<'py, crate::codec::PyPrivateDictionary>>,
    ) -> PyResult<(u16, PyCommand, u64, String)> {
        let dict = crate::codec::dictionary(py, private_dictionary.as_ref());
        self.store(py, |link, g, t| {
            node::store_file(
                link,
                g,
                &path,
                priority,
                move_originator.as_ref().map(|(ae, m)| (ae.as_str(), *m)),
                &dict,
                t,
            )
        })
    }

    /// C-STORE of data-set bytes (no File Meta) encoded in `transfer_syntax`.
    #[pyo3(signature = (sop_class_uid, sop_instance_uid, transfer_syntax, data, *, priority = 0,
        move_originator = None, private_dictionary = None))]
    #[allow(clippy::too_many_arguments)]
    fn send_c_store_data<'py>(
        &self,
        py: Python<'py>,
        sop_class_uid: String,
        sop_instance_uid: String,
        transfer_syntax: String,
        data: &[u8],
        priority: u16,
        move_originator: Option<(String, u16)>,
        private_dictionary: Option<Bound<'py, crate::codec::PyPrivateDictionary>>,
    ) -> PyResult<(u16, PyCommand, u64, String)> {
        let dict = crate::codec::dictionary(py, private_dictionary.as_ref());
        let out = Outgoing {
            sop_class_uid: &sop_class_uid,
            sop_instance_uid: &sop_instance_uid,
            transfer_syntax_uid: &transfer_syntax,
            priority,
            move_originator: move_originator.as_ref().map(|(ae, m)| (ae.as_str(), *m)),
        };
        self.store(py, |link, g, t| {
            node::store_data_set(link, g, &out, &mut std::io::Cursor::new(data), &dict, t)
        })
    }

    /// Serves the peer's requests on a background thread until the association ends (a
    /// requestor whose peer may send requests: an N-EVENT-REPORT, C-STOREs of a C-GET).
    pub fn serve_in_background(&self) -> PyResult<()> {
        let link = Arc::clone(&self.link);
        std::thread::Builder::new()
            .name("ferrodicom-requestor".into())
            .spawn(move || {
                // Attached once so that handlers reuse this thread's state (see server.rs); the
                // interpreter may be shutting down already (a requestor that exits at once).
                let never = AtomicBool::new(false);
                if Python::try_attach(|py| py.detach(|| link.serve(&never, None))).is_none() {
                    link.serve(&never, None);
                }
            })
            .map(|_| ())
            .map_err(|e| AssociationError::new_err(format!("cannot start a thread: {e}")))
    }

    /// Releases the association (A-RELEASE, PS3.8 §7.2). Returns None, or (PDVs, bytes) of data
    /// the peer sent after our A-RELEASE-RQ (the association is released all the same).
    fn release(&self, py: Python<'_>) -> PyResult<Option<(u64, u64)>> {
        let link = &self.link;
        py.detach(|| link.release()).map_err(assoc_err)
    }

    /// Aborts the association (A-ABORT, PS3.8 §7.3); safe from any thread.
    fn abort(&self, py: Python<'_>) {
        let link = &self.link;
        py.detach(|| link.abort());
    }

    fn __repr__(&self) -> String {
        let n = self.link.negotiated();
        format!(
            "<Association {} {} -> {} {}>",
            self.link.id(),
            n.calling_ae,
            n.called_ae,
            match self.link.outcome() {
                None => "established",
                Some(Outcome::Released) => "released",
                Some(Outcome::Aborted) => "aborted",
            }
        )
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
            node::SendError::Io(io) => {
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
    m.add_class::<PyAssociation>()?;
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
