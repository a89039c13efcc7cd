//! `associate`: requests an association (PS3.8 §7.1) and returns its `Association` handle, served
//! in the background when the AE has services for the peer's requests.
use crate::association::{secs, PyAssociation};
use crate::errors::{assoc_err, AssociationError};
use crate::service::PyServices;
use node::{Link, LinkLimits, Services};
use pyo3::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use ul::negotiate::{ProposedContext, RequestorConfig};
use ul::{AssocError, Association, Timeouts};

/// (abstract syntax, transfer syntaxes, optional role selection (scu, scp)) as passed from Python.
type RequestedContext = (String, Vec<String>, Option<(bool, bool)>);

/// Requests an association (PS3.8 §7.1). `contexts`: (abstract syntax, [transfer syntaxes],
/// roles) where roles is None or (scu, scp). `services` serve the requests the peer may send on
/// it (started on a background thread when there are any). Raises AssociationRejected,
/// AssociationAborted, DimseTimeout or AssociationError.
#[pyfunction]
#[pyo3(signature = (host, port, calling_ae, called_ae, contexts, *, services = None, max_pdu = 262_144,
    implementation_class_uid = None, implementation_version_name = None, user_identity = None,
    extended_negotiation = None, common_extended = None, async_window = None, acse_timeout = Some(30.0),
    dimse_timeout = Some(60.0), connect_timeout = Some(30.0), max_data_set = 1usize << 30))]
#[allow(clippy::too_many_arguments)]
fn associate(
    py: Python<'_>,
    host: String,
    port: u16,
    calling_ae: String,
    called_ae: String,
    contexts: Vec<RequestedContext>,
    services: Option<Bound<'_, PyServices>>,
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
    max_data_set: usize,
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
    let services: Arc<Services> = match &services {
        Some(s) => s.get().build(),
        None => Arc::new(Services::new()),
    };
    let serve = !services.is_empty();
    let limits = LinkLimits {
        dimse_timeout: timeouts.dimse,
        response_timeout: timeouts.dimse,
        max_data_set,
        ..LinkLimits::default()
    };
    let link = py
        .detach(|| -> Result<Arc<Link>, AssocError> {
            let assoc = Association::request((host.as_str(), port), &cfg, timeouts)?;
            Ok(Link::new(assoc, services, limits)?)
        })
        .map_err(|e| match e {
            // No association was ever made: not an abort.
            io @ AssocError::Io(_) => AssociationError::new_err(io.to_string()),
            other => assoc_err(other),
        })?;
    let handle = PyAssociation::new(py, link, true)?;
    if serve {
        handle.serve_in_background()?;
    }
    Ok(handle)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(associate, m)?)?;
    Ok(())
}
