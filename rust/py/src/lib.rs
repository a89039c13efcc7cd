//! `ferrodicom._core`: PyO3 bindings only. Each file converts types for one Rust crate and
//! releases the GIL around byte work; no DICOM logic lives here.
use pyo3::prelude::*;

mod codec;
mod errors;
mod journal;
mod net;
mod nm;
mod pdu;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    pdu::register(m)?;
    net::register(m)?;
    codec::register(m)?;
    nm::register(m)?;
    journal::register(m)?;
    Ok(())
}
