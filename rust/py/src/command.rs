//! The DIMSE command set as a Python value (PS3.7 §9.3, §10.3, Annex E).
use crate::errors::DimseError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use ul::dimse::{self, command_field, command_vr, tag, CommandVr};

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

impl PyCommand {
    /// A command from a mapping of group-0000 element numbers to values.
    pub fn from_fields(fields: &Bound<'_, PyDict>) -> PyResult<dimse::Command> {
        let mut inner = dimse::Command::new();
        for (k, v) in fields.iter() {
            set_from_py(&mut inner, k.extract::<u16>()?, &v)?;
        }
        Ok(inner)
    }
}

#[pymethods]
impl PyCommand {
    /// Builds a command from a mapping of group-0000 element numbers to values.
    #[new]
    fn new(fields: &Bound<'_, PyDict>) -> PyResult<Self> {
        Ok(PyCommand {
            inner: PyCommand::from_fields(fields)?,
        })
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
    /// pynetdicom-style access by keyword: `command.MessageID`, `command.AffectedSOPClassUID`
    /// (PS3.6 Table E.1-1); None when the element is absent.
    fn __getattr__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let Some(element) = dimse::element_for_keyword(name) else {
            return Err(pyo3::exceptions::PyAttributeError::new_err(format!(
                "'Command' object has no attribute '{name}'"
            )));
        };
        self.get(py, element, None)
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCommand>()?;
    Ok(())
}
