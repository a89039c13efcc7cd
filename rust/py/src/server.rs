//! The SCP: `ServerConfig` (one typed object handed down once), `Server` (node::Server with the
//! AE's services) and the Python hooks called once per association.
use crate::association::{secs, PyAssociation};
use crate::errors::{AssociationError, DicomError};
use crate::service::PyServices;
use crate::types::PyAssociationRequest;
use node::{Hooks, Link, LinkLimits, Outcome, ServerConfig};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use ul::negotiate::{AcceptorConfig, Decision, SupportedContext};
use ul::pdu::{AssociateRj, AssociateRq};
use ul::{AssocError, Timeouts};

/// What an SCP negotiates and how long it waits (PS3.8 §7.1, §9.1.5), checked once.
#[pyclass(name = "ServerConfig", module = "ferrodicom._core", frozen)]
pub struct PyServerConfig {
    host: String,
    port: u16,
    inner: ServerConfig,
}

#[pymethods]
impl PyServerConfig {
    /// `contexts`: (abstract syntax, [transfer syntaxes], scp_role, scu_role): scp_role, we
    /// answer requests on it (the default roles); scu_role, we accept a requestor that proposes
    /// to be SCP for it (role selection, PS3.7 D.3.3.4). `network_timeout`: an association
    /// silent this long (between messages or inside one) is aborted (None: never).
    /// `dimse_timeout`: how long a handler waits for the response to a request it sends on its
    /// association (an N-EVENT-REPORT, a C-STORE of a C-GET) before aborting it (None: forever).
    #[new]
    #[pyo3(signature = (host, port, ae_title, contexts, *, max_pdu = 262_144, require_called_aet = false,
        allowed_calling_aets = None, max_associations = 64, implementation_class_uid = None,
        implementation_version_name = None, extended_negotiation = None, artim_timeout = 30.0,
        acse_timeout = Some(30.0), network_timeout = None, dimse_timeout = Some(60.0),
        max_data_set = 1usize << 30))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        host: String,
        port: u16,
        ae_title: String,
        contexts: Vec<(String, Vec<String>, bool, bool)>,
        max_pdu: u32,
        require_called_aet: bool,
        allowed_calling_aets: Option<Vec<String>>,
        max_associations: usize,
        implementation_class_uid: Option<String>,
        implementation_version_name: Option<String>,
        extended_negotiation: Option<HashMap<String, Vec<u8>>>,
        artim_timeout: f64,
        acse_timeout: Option<f64>,
        network_timeout: Option<f64>,
        dimse_timeout: Option<f64>,
        max_data_set: usize,
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
        let timeouts = Timeouts {
            artim: Duration::from_secs_f64(artim_timeout.max(0.001)),
            acse: secs(acse_timeout),
            dimse: secs(network_timeout),
            connect: None,
        };
        Ok(PyServerConfig {
            host,
            port,
            inner: ServerConfig {
                acceptor,
                timeouts,
                max_associations: max_associations.max(1),
                limits: LinkLimits {
                    dimse_timeout: timeouts.dimse,
                    response_timeout: secs(dimse_timeout),
                    max_data_set,
                    ..LinkLimits::default()
                },
            },
        })
    }
    #[getter]
    fn ae_title(&self) -> &str {
        &self.inner.acceptor.ae_title
    }
    #[getter]
    fn max_associations(&self) -> usize {
        self.inner.max_associations
    }
}

/// The Python hooks of a server, looked up once: each is optional.
struct PyHooks {
    /// negotiate(request: AssociationRequest) -> None | (reject, identity_response, extended)
    negotiate: Option<Py<PyAny>>,
    /// established(association: Association)
    established: Option<Py<PyAny>>,
    /// rejected(request: AssociationRequest, result, source, reason, why)
    rejected: Option<Py<PyAny>>,
    /// refused(peer_address, kind, message): a connection that never became an association request
    refused: Option<Py<PyAny>>,
    /// closed(association: Association, outcome: str)
    closed: Option<Py<PyAny>>,
}

impl PyHooks {
    fn from_object(py: Python<'_>, hooks: Option<&Bound<'_, PyAny>>) -> PyHooks {
        let get = |name: &str| -> Option<Py<PyAny>> {
            let h = hooks?;
            let f = h.getattr(name).ok()?;
            (!f.is_none()).then(|| f.unbind())
        };
        let _ = py;
        PyHooks {
            negotiate: get("negotiate"),
            established: get("established"),
            rejected: get("rejected"),
            refused: get("refused"),
            closed: get("closed"),
        }
    }

    fn call(f: &Option<Py<PyAny>>, args: impl FnOnce(Python<'_>) -> PyResult<Py<PyTuple>>) {
        if let Some(f) = f {
            let _ = Python::try_attach(|py| {
                if let Err(e) = args(py).and_then(|a| f.call1(py, a.bind(py).clone())) {
                    e.print(py);
                }
            });
        }
    }
}

fn address(peer: Option<SocketAddr>) -> Option<(String, u16)> {
    peer.map(|a| (a.ip().to_string(), a.port()))
}

/// The `negotiate` hook's answer: None accepts as configured; else (reject, identity response,
/// extended replies) where reject is None or (result, source, reason).
fn extract_decision(out: &Bound<'_, PyAny>) -> PyResult<Result<Decision, AssociateRj>> {
    if out.is_none() {
        return Ok(Ok(Decision::default()));
    }
    let t: &Bound<'_, PyTuple> = out.cast()?;
    let reject = t.get_item(0)?;
    if !reject.is_none() {
        let (result, source, reason): (u8, u8, u8) = reject.extract()?;
        return Ok(Err(AssociateRj::new(result, source, reason)));
    }
    let identity_response: Option<Vec<u8>> = t.get_item(1)?.extract()?;
    let extended: Option<HashMap<String, Vec<u8>>> = t.get_item(2)?.extract()?;
    Ok(Ok(Decision {
        identity_response,
        extended: extended.unwrap_or_default(),
    }))
}

impl Hooks for PyHooks {
    fn negotiate(
        &self,
        rq: &AssociateRq,
        peer: Option<SocketAddr>,
    ) -> Result<Decision, AssociateRj> {
        let Some(f) = &self.negotiate else {
            return Ok(Decision::default());
        };
        Python::try_attach(|py| {
            let r = Py::new(py, PyAssociationRequest::new(rq, peer))
                .and_then(|req| f.call1(py, (req,)))
                .and_then(|out| extract_decision(out.bind(py)));
            r.unwrap_or_else(|e| {
                // A hook that fails accepts nothing: rejected-permanent, service user, no reason.
                e.print(py);
                Err(ul::negotiate::reject::NO_REASON)
            })
        })
        // The interpreter is shutting down: nothing is accepted any more.
        .unwrap_or(Err(ul::negotiate::reject::NO_REASON))
    }
    fn established(&self, link: &Arc<Link>) {
        PyHooks::call(&self.established, |py| {
            let a = PyAssociation::new(py, Arc::clone(link), false)?;
            Ok(PyTuple::new(py, [Py::new(py, a)?])?.unbind())
        });
    }
    fn rejected(&self, rq: &AssociateRq, peer: Option<SocketAddr>, rj: AssociateRj, why: &str) {
        PyHooks::call(&self.rejected, |py| {
            let r = Py::new(py, PyAssociationRequest::new(rq, peer))?;
            Ok((r, rj.result, rj.source, rj.reason, why)
                .into_pyobject(py)?
                .unbind())
        });
    }
    fn refused(&self, peer: Option<SocketAddr>, error: &AssocError) {
        let kind = match error {
            AssocError::Closed => "closed",
            AssocError::Timeout(_) => "timeout",
            AssocError::Pdu(_) | AssocError::Protocol(_) => "malformed",
            _ => "other",
        };
        PyHooks::call(&self.refused, |py| {
            Ok((address(peer), kind, error.to_string())
                .into_pyobject(py)?
                .unbind())
        });
    }
    fn closed(&self, link: &Arc<Link>, outcome: Outcome) {
        PyHooks::call(&self.closed, |py| {
            let a = PyAssociation::new(py, Arc::clone(link), false)?;
            let outcome = match outcome {
                Outcome::Released => "released",
                Outcome::Aborted => "aborted",
            };
            Ok((Py::new(py, a)?, outcome).into_pyobject(py)?.unbind())
        });
    }
    fn run_association(&self, serve: &mut (dyn FnMut() + Send)) {
        // Attach once and detach for the association's life: every later call into Python on this
        // thread reuses this thread state instead of creating and destroying one per message.
        if Python::try_attach(|py| py.detach(&mut *serve)).is_none() {
            serve();
        }
    }
}

/// A listening SCP: negotiates each association in Rust, serves its requests through the
/// services (Python entered once per DIMSE message at most).
#[pyclass(name = "Server", module = "ferrodicom._core", frozen)]
pub struct PyServer {
    server: node::Server,
}

#[pymethods]
impl PyServer {
    /// Binds the configured address (port 0 picks a free one). `hooks`: an object whose
    /// optional methods `negotiate`, `established`, `rejected`, `refused`, `closed` are
    /// called once per association (see the stubs).
    #[new]
    #[pyo3(signature = (config, services, hooks = None))]
    fn new(
        py: Python<'_>,
        config: &Bound<'_, PyServerConfig>,
        services: &Bound<'_, PyServices>,
        hooks: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let cfg = config.get();
        let hooks = Arc::new(PyHooks::from_object(py, hooks.as_ref()));
        let server = node::Server::bind(
            (cfg.host.as_str(), cfg.port),
            cfg.inner.clone(),
            services.get().build(),
            hooks,
        )
        .map_err(|e| {
            let msg = format!("cannot listen on {}:{}: {e}", cfg.host, cfg.port);
            match e.kind() {
                std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied => {
                    pyo3::exceptions::PyOSError::new_err((e.raw_os_error().unwrap_or(0), msg))
                }
                _ => AssociationError::new_err(msg),
            }
        })?;
        Ok(PyServer { server })
    }

    /// The bound (host, port).
    #[getter]
    fn address(&self) -> (String, u16) {
        let a = self.server.local_addr();
        (a.ip().to_string(), a.port())
    }
    /// Connections being served now.
    #[getter]
    fn active_associations(&self) -> usize {
        self.server.active()
    }
    /// Connections accepted since start.
    #[getter]
    fn total_connections(&self) -> u64 {
        self.server.total()
    }
    /// The server's counters: associations (total, active), rejections by (result, source, reason),
    /// responses by (command field, status), C-STORE instances and bytes received, and the C-STORE
    /// latency histogram (cumulative (bound in seconds, count) pairs, count, sum in seconds).
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        use std::sync::atomic::Ordering;
        let m = self.server.metrics();
        let d = pyo3::types::PyDict::new(py);
        d.set_item(
            "associations_total",
            m.associations_total.load(Ordering::Relaxed),
        )?;
        d.set_item("associations_active", m.active())?;
        d.set_item(
            "rejected",
            m.rejections().into_iter().collect::<HashMap<_, _>>(),
        )?;
        d.set_item(
            "statuses",
            m.statuses().into_iter().collect::<HashMap<_, _>>(),
        )?;
        d.set_item(
            "instances_received",
            m.instances_received.load(Ordering::Relaxed),
        )?;
        d.set_item("bytes_received", m.bytes_received.load(Ordering::Relaxed))?;
        let (buckets, count, sum) = m.store_latency.snapshot();
        d.set_item("store_latency", (buckets, count, sum))?;
        Ok(d)
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
        py.detach(|| self.server.shutdown());
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyServerConfig>()?;
    m.add_class::<PyServer>()?;
    Ok(())
}
