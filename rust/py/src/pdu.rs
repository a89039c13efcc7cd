//! Bindings for the PDU codec (rust/ul/src/pdu.rs): `decode_pdu(bytes) -> Pdu`, `Pdu.encode()`.
use crate::errors::PduError as PyPduError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use ul::pdu::{Pdu, UserItem};

/// A decoded PDU (PS3.8 §9.3). Fields that do not apply to this PDU type are `None`.
#[pyclass(name = "Pdu", module = "ferrodicom._core", frozen)]
pub struct PyPdu {
    pub inner: Pdu,
}

fn pdu_name(p: &Pdu) -> &'static str {
    match p {
        Pdu::AssociateRq(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociateAc(_) => "A-ASSOCIATE-AC",
        Pdu::AssociateRj(_) => "A-ASSOCIATE-RJ",
        Pdu::PDataTf(_) => "P-DATA-TF",
        Pdu::ReleaseRq(_) => "A-RELEASE-RQ",
        Pdu::ReleaseRp(_) => "A-RELEASE-RP",
        Pdu::Abort(_) => "A-ABORT",
    }
}

fn user_item<'py>(py: Python<'py>, item: &UserItem) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match item {
        UserItem::MaximumLength(v) => {
            d.set_item("type", "maximum_length")?;
            d.set_item("value", v)?;
        }
        UserItem::ImplementationClassUid(v) => {
            d.set_item("type", "implementation_class_uid")?;
            d.set_item("value", v)?;
        }
        UserItem::AsyncOperationsWindow { invoked, performed } => {
            d.set_item("type", "async_operations_window")?;
            d.set_item("invoked", invoked)?;
            d.set_item("performed", performed)?;
        }
        UserItem::RoleSelection {
            sop_class_uid,
            scu_role,
            scp_role,
        } => {
            d.set_item("type", "role_selection")?;
            d.set_item("sop_class_uid", sop_class_uid)?;
            d.set_item("scu_role", scu_role)?;
            d.set_item("scp_role", scp_role)?;
        }
        UserItem::ImplementationVersionName(v) => {
            d.set_item("type", "implementation_version_name")?;
            d.set_item("value", v)?;
        }
        UserItem::SopClassExtended {
            sop_class_uid,
            info,
        } => {
            d.set_item("type", "sop_class_extended")?;
            d.set_item("sop_class_uid", sop_class_uid)?;
            d.set_item("info", PyBytes::new(py, info))?;
        }
        UserItem::SopClassCommonExtended {
            version,
            sop_class_uid,
            service_class_uid,
            related_general_sop_classes,
        } => {
            d.set_item("type", "sop_class_common_extended")?;
            d.set_item("version", version)?;
            d.set_item("sop_class_uid", sop_class_uid)?;
            d.set_item("service_class_uid", service_class_uid)?;
            d.set_item(
                "related_general_sop_classes",
                related_general_sop_classes.clone(),
            )?;
        }
        UserItem::UserIdentityRq {
            identity_type,
            positive_response_requested,
            primary,
            secondary,
        } => {
            d.set_item("type", "user_identity_rq")?;
            d.set_item("identity_type", identity_type)?;
            d.set_item("positive_response_requested", positive_response_requested)?;
            d.set_item("primary", PyBytes::new(py, primary))?;
            d.set_item("secondary", PyBytes::new(py, secondary))?;
        }
        UserItem::UserIdentityAc { server_response } => {
            d.set_item("type", "user_identity_ac")?;
            d.set_item("server_response", PyBytes::new(py, server_response))?;
        }
        UserItem::Unknown { item_type, data } => {
            d.set_item("type", "unknown")?;
            d.set_item("item_type", item_type)?;
            d.set_item("data", PyBytes::new(py, data))?;
        }
    }
    Ok(d)
}

#[pymethods]
impl PyPdu {
    /// The PDU type code (0x01–0x07).
    #[getter]
    fn pdu_type(&self) -> u8 {
        self.inner.pdu_type()
    }
    /// The PDU's name, e.g. "A-ASSOCIATE-RQ".
    #[getter]
    fn name(&self) -> &'static str {
        pdu_name(&self.inner)
    }
    #[getter]
    fn protocol_version(&self) -> Option<u16> {
        match &self.inner {
            Pdu::AssociateRq(r) => Some(r.protocol_version),
            Pdu::AssociateAc(a) => Some(a.protocol_version),
            _ => None,
        }
    }
    /// Called AE title with padding removed.
    #[getter]
    fn called_ae(&self) -> Option<String> {
        match &self.inner {
            Pdu::AssociateRq(r) => Some(r.called_ae.trimmed()),
            Pdu::AssociateAc(a) => Some(a.called_ae.trimmed()),
            _ => None,
        }
    }
    /// Calling AE title with padding removed.
    #[getter]
    fn calling_ae(&self) -> Option<String> {
        match &self.inner {
            Pdu::AssociateRq(r) => Some(r.calling_ae.trimmed()),
            Pdu::AssociateAc(a) => Some(a.calling_ae.trimmed()),
            _ => None,
        }
    }
    #[getter]
    fn application_context(&self) -> Option<String> {
        match &self.inner {
            Pdu::AssociateRq(r) => Some(r.application_context.clone()),
            Pdu::AssociateAc(a) => Some(a.application_context.clone()),
            _ => None,
        }
    }
    /// Presentation contexts as dicts: id, abstract_syntax and transfer_syntaxes (request), or
    /// id, result and transfer_syntax (acceptance).
    #[getter]
    fn presentation_contexts<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let list = PyList::empty(py);
        match &self.inner {
            Pdu::AssociateRq(r) => {
                for pc in &r.presentation_contexts {
                    let d = PyDict::new(py);
                    d.set_item("id", pc.id)?;
                    d.set_item("abstract_syntax", &pc.abstract_syntax)?;
                    d.set_item("transfer_syntaxes", pc.transfer_syntaxes.clone())?;
                    list.append(d)?;
                }
            }
            Pdu::AssociateAc(a) => {
                for pc in &a.presentation_contexts {
                    let d = PyDict::new(py);
                    d.set_item("id", pc.id)?;
                    d.set_item("result", pc.result)?;
                    d.set_item("transfer_syntax", pc.transfer_syntax.clone())?;
                    list.append(d)?;
                }
            }
            _ => return Ok(None),
        }
        Ok(Some(list))
    }
    /// User Information sub-items as dicts with a "type" key, in the order received; `None` when
    /// the PDU has no User Information item.
    #[getter]
    fn user_information<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let ui = match &self.inner {
            Pdu::AssociateRq(r) => r.user_info.as_ref(),
            Pdu::AssociateAc(a) => a.user_info.as_ref(),
            _ => None,
        };
        let Some(ui) = ui else { return Ok(None) };
        let list = PyList::empty(py);
        for item in &ui.items {
            list.append(user_item(py, item)?)?;
        }
        Ok(Some(list))
    }
    /// Maximum length received from the User Information item (0 = unlimited).
    #[getter]
    fn max_length(&self) -> Option<u32> {
        match &self.inner {
            Pdu::AssociateRq(r) => r.user_info.as_ref().and_then(|u| u.max_length()),
            Pdu::AssociateAc(a) => a.user_info.as_ref().and_then(|u| u.max_length()),
            _ => None,
        }
    }
    /// A-ASSOCIATE-RJ result (1 permanent, 2 transient).
    #[getter]
    fn result(&self) -> Option<u8> {
        match &self.inner {
            Pdu::AssociateRj(r) => Some(r.result),
            _ => None,
        }
    }
    /// A-ASSOCIATE-RJ or A-ABORT source.
    #[getter]
    fn source(&self) -> Option<u8> {
        match &self.inner {
            Pdu::AssociateRj(r) => Some(r.source),
            Pdu::Abort(a) => Some(a.source),
            _ => None,
        }
    }
    /// A-ASSOCIATE-RJ or A-ABORT reason/diagnostic.
    #[getter]
    fn reason(&self) -> Option<u8> {
        match &self.inner {
            Pdu::AssociateRj(r) => Some(r.reason),
            Pdu::Abort(a) => Some(a.reason),
            _ => None,
        }
    }
    /// P-DATA-TF items as (context_id, is_command, is_last, data) tuples.
    #[getter]
    fn pdvs<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let Pdu::PDataTf(p) = &self.inner else {
            return Ok(None);
        };
        let list = PyList::empty(py);
        for pdv in &p.pdvs {
            list.append((
                pdv.context_id,
                pdv.is_command(),
                pdv.is_last(),
                PyBytes::new(py, &pdv.data),
            ))?;
        }
        Ok(Some(list))
    }
    /// Encodes the PDU back to bytes.
    fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.encode())
    }
    fn __repr__(&self) -> String {
        format!(
            "<Pdu {} ({} bytes)>",
            pdu_name(&self.inner),
            self.inner.encode().len()
        )
    }
    fn __eq__(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

/// Decodes exactly one PDU. `max_length` bounds the PDU length field (default 1 MiB + header).
#[pyfunction]
#[pyo3(signature = (data, max_length = None))]
fn decode_pdu(py: Python<'_>, data: &[u8], max_length: Option<usize>) -> PyResult<PyPdu> {
    let limit = max_length.unwrap_or(ul::pdu::ASSOCIATION_PDU_LIMIT);
    let r = py.detach(|| Pdu::decode(data, limit));
    match r {
        Ok(inner) => Ok(PyPdu { inner }),
        Err(e) => Err(pdu_error(py, &e)),
    }
}

/// Builds a `PduError` carrying the byte offset as the `offset` attribute.
pub fn pdu_error(py: Python<'_>, e: &ul::PduError) -> PyErr {
    let err = PyPduError::new_err(e.to_string());
    let _ = err.value(py).setattr("offset", e.offset());
    err
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPdu>()?;
    m.add_function(wrap_pyfunction!(decode_pdu, m)?)?;
    Ok(())
}
