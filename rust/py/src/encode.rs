//! A pydicom Dataset encoded in Implicit or Explicit VR Little Endian (PS3.5 §7.1) without pydicom's writer:
//! the response data sets of the services (C-FIND identifiers, N-GET attribute lists) are small and many, and
//! pydicom's `write_dataset` costs far more than reading the elements. Only the common cases are handled here:
//! anything else (elements still raw from a file, ambiguous VRs, a character set other than the default,
//! ISO_IR 100 and ISO_IR 192, unusual value types) returns None and the caller uses pydicom.
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyString, PyTuple};

/// The character set text values are encoded in (PS3.5 §6.1.2.3, Specific Character Set).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Charset {
    /// No Specific Character Set: the default repertoire only (ASCII).
    Default,
    /// ISO_IR 100: Latin-1.
    Latin1,
    /// ISO_IR 192: UTF-8.
    Utf8,
}

/// Why the fast path stops (the caller falls back to pydicom).
struct Unsupported;

type Enc<T> = Result<T, Failure>;

/// A Python error, or a case this encoder leaves to pydicom.
enum Failure {
    Py(PyErr),
    Unsupported,
}

impl From<PyErr> for Failure {
    fn from(e: PyErr) -> Self {
        Failure::Py(e)
    }
}

impl From<Unsupported> for Failure {
    fn from(_: Unsupported) -> Self {
        Failure::Unsupported
    }
}

/// VRs whose explicit-VR header has a 4-byte length (PS3.5 Table 7.1-1).
fn long_length(vr: &str) -> bool {
    matches!(
        vr,
        "OB" | "OD" | "OF" | "OL" | "OV" | "OW" | "SQ" | "SV" | "UC" | "UN" | "UR" | "UT" | "UV"
    )
}

/// Text VRs whose values may use the Specific Character Set (PS3.5 §6.1.2.2).
fn uses_charset(vr: &str) -> bool {
    matches!(vr, "SH" | "LO" | "ST" | "LT" | "UC" | "UT" | "PN")
}

fn is_text(vr: &str) -> bool {
    matches!(
        vr,
        "AE" | "AS"
            | "CS"
            | "DA"
            | "DS"
            | "DT"
            | "IS"
            | "LO"
            | "LT"
            | "PN"
            | "SH"
            | "ST"
            | "TM"
            | "UC"
            | "UI"
            | "UR"
            | "UT"
    )
}

fn header(out: &mut Vec<u8>, tag: u32, vr: &str, len: u32, implicit: bool) {
    out.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
    out.extend_from_slice(&(tag as u16).to_le_bytes());
    if implicit {
        out.extend_from_slice(&len.to_le_bytes());
    } else if long_length(vr) {
        out.extend_from_slice(vr.as_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        out.extend_from_slice(vr.as_bytes());
        out.extend_from_slice(&(len as u16).to_le_bytes());
    }
}

/// The text of one value (str, or anything whose str() is its DICOM text: PersonName, DSfloat, IS, UID).
fn text_of(v: &Bound<'_, PyAny>) -> Enc<String> {
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(s.extract::<String>()?);
    }
    if v.is_instance_of::<PyBytes>() || v.is_instance_of::<PyByteArray>() {
        return Err(Unsupported.into());
    }
    Ok(v.str()?.extract::<String>()?)
}

/// The values of an element as a list: the items of a MultiValue, list or tuple, else the one value (a str,
/// PersonName or number, even when iterable).
fn values_of<'py>(v: &Bound<'py, PyAny>) -> Enc<Vec<Bound<'py, PyAny>>> {
    let many = v.is_instance_of::<PyList>()
        || v.is_instance_of::<PyTuple>()
        || v.get_type().name()?.extract::<String>()? == "MultiValue";
    if !many {
        return Ok(vec![v.clone()]);
    }
    Ok(v.try_iter()?.collect::<PyResult<Vec<_>>>()?)
}

fn encode_text(vr: &str, value: &Bound<'_, PyAny>, charset: Charset, out: &mut Vec<u8>) -> Enc<()> {
    let parts = if value.is_none() {
        Vec::new()
    } else {
        values_of(value)?
            .iter()
            .map(text_of)
            .collect::<Enc<Vec<String>>>()?
    };
    let text = parts.join("\\");
    if vr == "DS" && parts.iter().any(|p| p.len() > 16) {
        return Err(Unsupported.into()); // pydicom decides how to shorten (or refuse)
    }
    let start = out.len();
    if text.is_ascii() {
        out.extend_from_slice(text.as_bytes());
    } else if !uses_charset(vr) {
        return Err(Unsupported.into());
    } else {
        match charset {
            Charset::Utf8 => out.extend_from_slice(text.as_bytes()),
            Charset::Latin1 if text.chars().all(|c| (c as u32) < 0x100) => {
                out.extend(text.chars().map(|c| c as u8))
            }
            _ => return Err(Unsupported.into()),
        }
    }
    if (out.len() - start) % 2 == 1 {
        out.push(if vr == "UI" { 0 } else { b' ' });
    }
    Ok(())
}

fn encode_numbers(vr: &str, value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Enc<()> {
    if value.is_none() {
        return Ok(());
    }
    for v in values_of(value)? {
        match vr {
            "US" => out.extend_from_slice(&v.extract::<u16>()?.to_le_bytes()),
            "SS" => out.extend_from_slice(&v.extract::<i16>()?.to_le_bytes()),
            "UL" => out.extend_from_slice(&v.extract::<u32>()?.to_le_bytes()),
            "SL" => out.extend_from_slice(&v.extract::<i32>()?.to_le_bytes()),
            "UV" => out.extend_from_slice(&v.extract::<u64>()?.to_le_bytes()),
            "SV" => out.extend_from_slice(&v.extract::<i64>()?.to_le_bytes()),
            "FL" => out.extend_from_slice(&v.extract::<f32>()?.to_le_bytes()),
            "FD" => out.extend_from_slice(&v.extract::<f64>()?.to_le_bytes()),
            "AT" => {
                let t: u32 = v.extract()?;
                out.extend_from_slice(&((t >> 16) as u16).to_le_bytes());
                out.extend_from_slice(&(t as u16).to_le_bytes());
            }
            _ => return Err(Unsupported.into()),
        }
    }
    Ok(())
}

fn encode_bytes(vr: &str, value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Enc<()> {
    if value.is_none() {
        return Ok(());
    }
    let data: Vec<u8> = if let Ok(b) = value.cast::<PyBytes>() {
        b.as_bytes().to_vec()
    } else if let Ok(b) = value.cast::<PyByteArray>() {
        b.to_vec()
    } else {
        return Err(Unsupported.into());
    };
    if data.len() % 2 == 1 && vr != "OB" && vr != "UN" {
        return Err(Unsupported.into());
    }
    out.extend_from_slice(&data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
    Ok(())
}

fn charset_of(ds: &Bound<'_, PyAny>, inherited: Charset) -> Enc<Charset> {
    let Some(elem) = ds
        .call_method1("get", (0x0008_0005u32,))
        .ok()
        .filter(|e| !e.is_none())
    else {
        return Ok(inherited);
    };
    let value = elem.getattr("value")?;
    let terms: Vec<String> = if value.is_none() {
        Vec::new()
    } else {
        values_of(&value)?
            .iter()
            .map(text_of)
            .collect::<Enc<Vec<String>>>()?
    };
    let terms: Vec<&str> = terms
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect();
    match terms.as_slice() {
        [] => Ok(Charset::Default),
        ["ISO_IR 100"] => Ok(Charset::Latin1),
        ["ISO_IR 192"] => Ok(Charset::Utf8),
        ["ISO_IR 6"] => Ok(Charset::Default),
        _ => Err(Unsupported.into()),
    }
}

fn encode_into(
    ds: &Bound<'_, PyAny>,
    implicit: bool,
    inherited: Charset,
    out: &mut Vec<u8>,
) -> Enc<()> {
    let charset = charset_of(ds, inherited)?;
    for elem in ds.call_method0("elements")?.try_iter()? {
        let elem = elem?;
        if !elem.hasattr("is_undefined_length")? {
            return Err(Unsupported.into()); // a RawDataElement, still encoded as read
        }
        let tag: u32 = elem.getattr("tag")?.extract()?;
        let vr: String = elem.getattr("VR")?.extract()?;
        let value = elem.getattr("value")?;
        let at = out.len();
        header(out, tag, &vr, 0, implicit);
        let body = out.len();
        if vr == "SQ" {
            // Undefined length, items of undefined length (PS3.5 §7.5.2).
            if !value.is_none() {
                for item in value.try_iter()? {
                    out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
                    encode_into(&item?, implicit, charset, out)?;
                    out.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
                }
            }
            out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
            let len = u32::MAX.to_le_bytes();
            let len_at = if implicit { at + 4 } else { at + 8 };
            out[len_at..len_at + 4].copy_from_slice(&len);
            continue;
        }
        if is_text(&vr) {
            encode_text(&vr, &value, charset, out)?;
        } else if matches!(vr.as_str(), "OB" | "OD" | "OF" | "OL" | "OV" | "OW" | "UN") {
            encode_bytes(&vr, &value, out)?;
        } else {
            encode_numbers(&vr, &value, out)?;
        }
        let len = out.len() - body;
        if !implicit && !long_length(&vr) {
            if len > u16::MAX as usize {
                return Err(Unsupported.into());
            }
            out[at + 6..at + 8].copy_from_slice(&(len as u16).to_le_bytes());
        } else {
            let len_at = if implicit { at + 4 } else { at + 8 };
            out[len_at..len_at + 4].copy_from_slice(&(len as u32).to_le_bytes());
        }
    }
    Ok(())
}

/// `ds` (a pydicom Dataset) encoded in Implicit (`implicit`) or Explicit VR Little Endian, or None when it
/// holds something this fast path leaves to pydicom (see the module documentation).
#[pyfunction]
fn encode_dataset<'py>(
    py: Python<'py>,
    ds: &Bound<'py, PyAny>,
    implicit: bool,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let mut out = Vec::with_capacity(256);
    match encode_into(ds, implicit, Charset::Default, &mut out) {
        Ok(()) => Ok(Some(PyBytes::new(py, &out))),
        Err(Failure::Unsupported) => Ok(None),
        Err(Failure::Py(e))
            if e.is_instance_of::<pyo3::exceptions::PyTypeError>(py)
                || e.is_instance_of::<pyo3::exceptions::PyOverflowError>(py)
                || e.is_instance_of::<pyo3::exceptions::PyValueError>(py) =>
        {
            Ok(None) // a value of an unexpected type or range: pydicom says what is wrong with it
        }
        Err(Failure::Py(e)) => Err(e),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_dataset, m)?)?;
    Ok(())
}
