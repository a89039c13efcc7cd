//! `ferrodicom._core`: PyO3 bindings only. Each file converts types for one concern and releases
//! the GIL around byte work; no DICOM policy lives here.
use pyo3::prelude::*;

mod associate;
mod association;
mod codec;
mod command;
mod encode;
mod errors;
mod finisher;
mod journal;
mod nm;
mod pdu;
mod placement;
mod server;
mod service;
mod types;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    pdu::register(m)?;
    command::register(m)?;
    types::register(m)?;
    association::register(m)?;
    associate::register(m)?;
    service::register(m)?;
    server::register(m)?;
    codec::register(m)?;
    encode::register(m)?;
    nm::register(m)?;
    journal::register(m)?;
    placement::register(m)?;
    Ok(())
}
