//! The exception hierarchy: every error raised by the extension is a `ferrodicom.DicomError`.
//! Typed Rust errors map to typed exceptions, with their fields as attributes (no message
//! parsing on the Python side).
use node::SendError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError};
use pyo3::prelude::*;
use ul::AssocError;

create_exception!(
    ferrodicom,
    DicomError,
    PyException,
    "Base class of every ferrodicom error."
);
create_exception!(
    ferrodicom,
    PduError,
    DicomError,
    "Malformed or unexpected PDU (PS3.8 §9.3)."
);
create_exception!(
    ferrodicom,
    AssociationError,
    DicomError,
    "Association rejected, aborted or in the wrong state (PS3.8 §9.2)."
);
create_exception!(
    ferrodicom,
    AssociationRejected,
    AssociationError,
    "The peer rejected the association (A-ASSOCIATE-RJ, PS3.8 §9.3.4): attributes `result` (1 \
     permanent, 2 transient), `source` (1 service user, 2 ACSE, 3 presentation) and `reason`."
);
create_exception!(
    ferrodicom,
    AssociationAborted,
    AssociationError,
    "The association was aborted (A-ABORT, PS3.8 §9.3.8): attributes `source` (0 service user, \
     2 service provider; None when the connection just closed) and `reason`."
);
create_exception!(
    ferrodicom,
    DimseError,
    DicomError,
    "Malformed or unexpected DIMSE message (PS3.7)."
);
create_exception!(
    ferrodicom,
    CodecError,
    DicomError,
    "Malformed data set or unsupported encoding (PS3.5)."
);
create_exception!(
    ferrodicom,
    NmError,
    DicomError,
    "Inconsistent NM multi-frame vectors (PS3.3 C.8.4.8)."
);
create_exception!(
    ferrodicom,
    DicomTimeout,
    DicomError,
    "A DICOM timer (ARTIM, DIMSE or network) expired."
);
create_exception!(
    ferrodicom,
    DimseTimeout,
    DicomTimeout,
    "No DIMSE message (a response, or the next fragment of one) arrived in time; the \
     association was aborted."
);

/// An exception of type `T` with `message` and the given attributes set on it.
fn with_attrs<T: pyo3::PyTypeInfo>(message: String, attrs: &[(&str, Option<u8>)]) -> PyErr {
    Python::attach(|py| {
        let err = PyErr::new::<T, _>(message);
        let value = err.value(py);
        for (name, v) in attrs {
            let _ = value.setattr(*name, *v);
        }
        err
    })
}

/// Converts an association error into the matching exception.
pub fn assoc_err(e: AssocError) -> PyErr {
    let message = e.to_string();
    match e {
        AssocError::Rejected(rj) => with_attrs::<AssociationRejected>(
            message,
            &[
                ("result", Some(rj.result)),
                ("source", Some(rj.source)),
                ("reason", Some(rj.reason)),
            ],
        ),
        AssocError::Aborted(ab) => with_attrs::<AssociationAborted>(
            message,
            &[("source", Some(ab.source)), ("reason", Some(ab.reason))],
        ),
        AssocError::Closed | AssocError::Io(_) => {
            with_attrs::<AssociationAborted>(message, &[("source", None), ("reason", None)])
        }
        AssocError::Timeout(_) => DimseTimeout::new_err(message),
        AssocError::Pdu(_) => PduError::new_err(message),
        AssocError::Dimse(_) => DimseError::new_err(message),
        _ => AssociationError::new_err(message),
    }
}

/// Converts a storage-sender error into the matching exception.
pub fn send_err(e: SendError) -> PyErr {
    match e {
        SendError::Assoc(a) => assoc_err(a),
        SendError::Codec(c) => CodecError::new_err(c.to_string()),
        SendError::Io(io) => PyOSError::new_err(io.to_string()),
        SendError::NoContext { .. } => AssociationError::new_err(e.to_string()),
        SendError::Invalid(m) => DimseError::new_err(m),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("DicomError", py.get_type::<DicomError>())?;
    m.add("PduError", py.get_type::<PduError>())?;
    m.add("AssociationError", py.get_type::<AssociationError>())?;
    m.add("AssociationRejected", py.get_type::<AssociationRejected>())?;
    m.add("AssociationAborted", py.get_type::<AssociationAborted>())?;
    m.add("DimseError", py.get_type::<DimseError>())?;
    m.add("CodecError", py.get_type::<CodecError>())?;
    m.add("NmError", py.get_type::<NmError>())?;
    m.add("DicomTimeout", py.get_type::<DicomTimeout>())?;
    m.add("DimseTimeout", py.get_type::<DimseTimeout>())?;
    Ok(())
}
