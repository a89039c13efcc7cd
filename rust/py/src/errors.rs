//! The exception hierarchy: every error raised by the extension is a `ferrodicom.DicomError`.
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("DicomError", py.get_type::<DicomError>())?;
    m.add("PduError", py.get_type::<PduError>())?;
    m.add("AssociationError", py.get_type::<AssociationError>())?;
    m.add("DimseError", py.get_type::<DimseError>())?;
    m.add("CodecError", py.get_type::<CodecError>())?;
    m.add("NmError", py.get_type::<NmError>())?;
    m.add("DicomTimeout", py.get_type::<DicomTimeout>())?;
    Ok(())
}
