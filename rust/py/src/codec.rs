//! Bindings for the codec crate: transfer-syntax conversion, extraction, private dictionaries.
//! Byte work runs with the GIL released (`py.detach`).
use crate::errors::CodecError as PyCodecError;
use codec::{CodecError, Dictionary, Extracted, PrivateDictionary, Tag, TransferSyntax, Vr};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn to_py(e: CodecError) -> PyErr {
    match e {
        CodecError::Io(io) => io.into(),
        other => PyCodecError::new_err(other.to_string()),
    }
}

/// A private data dictionary keyed by (Private Creator, group, low byte of the element)
/// (PS3.5 §7.8.1).
#[pyclass(name = "PrivateDictionary", module = "ferrodicom._core", frozen)]
pub struct PyPrivateDictionary {
    inner: Mutex<Arc<PrivateDictionary>>,
    /// This object is the process-wide default: changes are published to the codec.
    is_default: AtomicBool,
}

impl PyPrivateDictionary {
    fn snapshot(&self) -> Arc<PrivateDictionary> {
        self.inner.lock().expect("private dictionary lock").clone()
    }
}

fn parse_vr(vr: &str) -> PyResult<Vr> {
    // "US or SS"-style entries take the first VR: both alternatives swap alike.
    let first = vr.split(" or ").next().unwrap_or("").trim();
    Vr::parse(first).ok_or_else(|| PyValueError::new_err(format!("not a DICOM VR: {vr:?}")))
}

#[pymethods]
impl PyPrivateDictionary {
    #[new]
    fn new() -> Self {
        PyPrivateDictionary {
            inner: Mutex::new(Arc::new(PrivateDictionary::new())),
            is_default: AtomicBool::new(false),
        }
    }

    /// Registers the VR of (group, xx`element`) reserved by `creator`; `element` is the low
    /// byte 0x00-0xFF, `group` must be odd.
    fn add(&self, creator: &str, group: u16, element: u16, vr: &str) -> PyResult<()> {
        if group & 1 == 0 {
            return Err(PyValueError::new_err(format!(
                "private groups are odd, got {group:#06x}"
            )));
        }
        if element > 0xFF {
            return Err(PyValueError::new_err(format!(
                "element is the low byte 0x00-0xFF, got {element:#x}"
            )));
        }
        let vr = parse_vr(vr)?;
        let mut guard = self.inner.lock().expect("private dictionary lock");
        Arc::make_mut(&mut guard).add(creator, group, element as u8, vr);
        if self.is_default.load(Ordering::SeqCst) {
            codec::dict::set_default_private_dictionary(Some(guard.clone()));
        }
        Ok(())
    }

    /// The VR registered for (creator, group, element low byte), or None.
    fn get(&self, creator: &str, group: u16, element: u16) -> Option<&'static str> {
        if element > 0xFF {
            return None;
        }
        self.snapshot()
            .get(creator, group, element as u8)
            .map(Vr::as_str)
    }

    fn __len__(&self) -> usize {
        self.snapshot().len()
    }
}

static DEFAULT_PRIVATE: Mutex<Option<Py<PyPrivateDictionary>>> = Mutex::new(None);

/// Sets (or clears with None) the private dictionary every conversion uses by default,
/// including the converters other Rust code builds with `Dictionary::with_default_private`.
#[pyfunction]
#[pyo3(signature = (d))]
fn set_default_private_dictionary(d: Option<Py<PyPrivateDictionary>>) {
    let mut slot = DEFAULT_PRIVATE.lock().expect("default lock");
    if let Some(old) = slot.as_ref() {
        old.get().is_default.store(false, Ordering::SeqCst);
    }
    if let Some(new) = d.as_ref() {
        new.get().is_default.store(true, Ordering::SeqCst);
    }
    codec::dict::set_default_private_dictionary(d.as_ref().map(|d| d.get().snapshot()));
    *slot = d;
}

/// The default private dictionary, if one was set.
#[pyfunction]
fn get_default_private_dictionary(py: Python<'_>) -> Option<Py<PyPrivateDictionary>> {
    DEFAULT_PRIVATE
        .lock()
        .expect("default lock")
        .as_ref()
        .map(|d| d.clone_ref(py))
}

/// The dictionary a conversion uses: `given`, else the process-wide default (also used by
/// the storage bindings in net.rs).
pub(crate) fn dictionary(
    _py: Python<'_>,
    given: Option<&Bound<'_, PyPrivateDictionary>>,
) -> Dictionary {
    match given {
        Some(d) => Dictionary::with_private(d.get().snapshot()),
        None => Dictionary::with_default_private(),
    }
}

/// A new `bytes` of `len` bytes filled by `init`, without zeroing it first (one memory pass
/// fewer than `PyBytes::new_with` on large objects). `init` must write every byte when it
/// returns `Ok`; on `Err` the object is dropped unread.
fn bytes_uninit<'py>(
    py: Python<'py>,
    len: usize,
    init: impl FnOnce(&mut [MaybeUninit<u8>]) -> PyResult<()>,
) -> PyResult<Bound<'py, PyBytes>> {
    let size = pyo3::ffi::Py_ssize_t::try_from(len)
        .map_err(|_| PyValueError::new_err("object too large"))?;
    // SAFETY: PyBytes_FromStringAndSize(NULL, n) returns a new reference to a bytes object
    // with n writable, uninitialised bytes (or NULL with an exception set); nothing else can
    // see the object until we return it.
    unsafe {
        let ptr = pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), size);
        let obj = Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked::<PyBytes>();
        let buf = std::slice::from_raw_parts_mut(
            pyo3::ffi::PyBytes_AsString(ptr).cast::<MaybeUninit<u8>>(),
            len,
        );
        codec::swap::advise_huge_pages(buf);
        init(buf)?;
        Ok(obj)
    }
}

fn tags_of(tags: Option<Vec<u32>>) -> Vec<Tag> {
    tags.unwrap_or_default().into_iter().map(Tag).collect()
}

fn extracted_dict<'py>(py: Python<'py>, ex: &Extracted) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (tag, v) in ex.iter() {
        d.set_item(tag.0, (v.vr.as_str(), PyBytes::new(py, &v.bytes)))?;
    }
    Ok(d)
}

/// Converts a Part 10 file (bytes) to `transfer_syntax`; returns the new file's bytes with
/// (0002,0010) and the File Meta group length updated.
#[pyfunction]
#[pyo3(signature = (data, transfer_syntax, *, private_dictionary=None))]
fn transcode<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
    transfer_syntax: &str,
    private_dictionary: Option<&Bound<'py, PyPrivateDictionary>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let dict = dictionary(py, private_dictionary);
    let bytes = data.as_bytes();
    let (mut meta, start) = codec::parse_file_meta(bytes)
        .map_err(to_py)?
        .ok_or_else(|| {
            PyCodecError::new_err("not a DICOM Part 10 file: it ends inside the File Meta group")
        })?;
    let src = TransferSyntax::from_uid(&meta.transfer_syntax_uid().unwrap_or_default());
    let dst = TransferSyntax::from_uid(transfer_syntax);
    let body = &bytes[start..];
    if let Some(len) = codec::predicted_len(&src, &dst, body.len()) {
        // Sizes are known: convert straight into the new bytes object.
        meta.set_string(Tag::TRANSFER_SYNTAX_UID, Vr::UI, &dst.uid);
        let head = meta.to_bytes();
        return bytes_uninit(py, head.len() + len, |buf| {
            let (h, b) = buf.split_at_mut(head.len());
            codec::swap::copy_uninit(&head, h);
            py.detach(|| codec::convert_dataset_into_uninit(&src, &dst, &dict, &[], body, b))
                .map_err(to_py)?;
            Ok(())
        });
    }
    let (out, _) = py
        .detach(|| codec::transcode_part10(bytes, transfer_syntax, &dict, &[]))
        .map_err(to_py)?;
    Ok(PyBytes::new(py, &out))
}

/// Converts a bare data set (no File Meta) from one transfer syntax to another.
#[pyfunction]
#[pyo3(signature = (data, source_syntax, transfer_syntax, *, private_dictionary=None))]
fn transcode_dataset<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
    source_syntax: &str,
    transfer_syntax: &str,
    private_dictionary: Option<&Bound<'py, PyPrivateDictionary>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let dict = dictionary(py, private_dictionary);
    let bytes = data.as_bytes();
    let (src, dst) = (
        TransferSyntax::from_uid(source_syntax),
        TransferSyntax::from_uid(transfer_syntax),
    );
    let (out, _) = py
        .detach(|| codec::convert_dataset(&src, &dst, &dict, &[], bytes))
        .map_err(to_py)?;
    Ok(PyBytes::new(py, &out))
}

/// Streams the Part 10 file `src` into `dst` in `transfer_syntax` with bounded memory;
/// returns the extracted top-level `tags` as {tag: (vr, little-endian bytes)}.
#[pyfunction]
#[pyo3(signature = (src, dst, transfer_syntax, *, private_dictionary=None, tags=None))]
fn transcode_file<'py>(
    py: Python<'py>,
    src: PathBuf,
    dst: PathBuf,
    transfer_syntax: &str,
    private_dictionary: Option<&Bound<'py, PyPrivateDictionary>>,
    tags: Option<Vec<u32>>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = dictionary(py, private_dictionary);
    let tags = tags_of(tags);
    let ex = py
        .detach(|| codec::transcode_file(&src, &dst, transfer_syntax, &dict, &tags))
        .map_err(to_py)?;
    extracted_dict(py, &ex)
}

/// Validates a Part 10 file (bytes or path) and returns its top-level `tags` as
/// {tag: (vr, little-endian bytes)} in one streaming pass.
#[pyfunction]
#[pyo3(signature = (data, tags, *, private_dictionary=None))]
fn extract<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    tags: Vec<u32>,
    private_dictionary: Option<&Bound<'py, PyPrivateDictionary>>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = dictionary(py, private_dictionary);
    let tags = tags_of(Some(tags));
    let ex = if let Ok(b) = data.cast::<PyBytes>() {
        let mut input: &[u8] = b.as_bytes();
        py.detach(|| {
            codec::transcode_part10_stream(&mut input, &mut std::io::sink(), None, &dict, &tags)
        })
    } else {
        let path: PathBuf = data.extract()?;
        py.detach(|| {
            let mut f = std::fs::File::open(&path)?;
            codec::transcode_part10_stream(&mut f, &mut std::io::sink(), None, &dict, &tags)
        })
    }
    .map_err(to_py)?;
    extracted_dict(py, &ex)
}

/// Preamble + File Meta group (PS3.10 §7.1) for a new Part 10 file.
#[pyfunction]
#[pyo3(signature = (sop_class_uid, sop_instance_uid, transfer_syntax_uid, implementation_class_uid,
                    implementation_version_name="", source_ae_title=""))]
fn file_meta<'py>(
    py: Python<'py>,
    sop_class_uid: &str,
    sop_instance_uid: &str,
    transfer_syntax_uid: &str,
    implementation_class_uid: &str,
    implementation_version_name: &str,
    source_ae_title: &str,
) -> Bound<'py, PyBytes> {
    let info = codec::FileMetaInfo {
        sop_class_uid,
        sop_instance_uid,
        transfer_syntax_uid,
        implementation_class_uid,
        implementation_version_name,
        source_ae_title,
    };
    PyBytes::new(py, &codec::FileMeta::new(&info).to_bytes())
}

/// Chunk-by-chunk conversion of a bare data set (e.g. as PDVs arrive).
#[pyclass(name = "StreamConverter", module = "ferrodicom._core", frozen)]
pub struct PyStreamConverter {
    inner: Mutex<Option<codec::StreamConverter>>,
    /// Output buffer reused across `feed` calls.
    out: Mutex<Vec<u8>>,
}

#[pymethods]
impl PyStreamConverter {
    #[new]
    #[pyo3(signature = (source_syntax, transfer_syntax, *, tags=None, private_dictionary=None))]
    fn new(
        py: Python<'_>,
        source_syntax: &str,
        transfer_syntax: &str,
        tags: Option<Vec<u32>>,
        private_dictionary: Option<&Bound<'_, PyPrivateDictionary>>,
    ) -> PyResult<Self> {
        let dict = dictionary(py, private_dictionary);
        let conv = codec::StreamConverter::from_uids(
            source_syntax,
            transfer_syntax,
            &dict,
            &tags_of(tags),
        )
        .map_err(to_py)?;
        Ok(PyStreamConverter {
            inner: Mutex::new(Some(conv)),
            out: Mutex::new(Vec::new()),
        })
    }

    /// Feeds a chunk; returns the converted bytes produced so far.
    fn feed<'py>(
        &self,
        py: Python<'py>,
        chunk: &Bound<'py, PyBytes>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data = chunk.as_bytes();
        let mut guard = self.inner.lock().expect("converter lock");
        let conv = guard
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("converter already finished"))?;
        let mut guard = self.out.lock().expect("output lock");
        let out: &mut Vec<u8> = &mut guard;
        out.clear();
        py.detach(|| conv.feed(data, out)).map_err(to_py)?;
        Ok(PyBytes::new(py, out))
    }

    /// Ends the stream; returns (remaining bytes, {tag: (vr, bytes)}). Raises CodecError if
    /// the data set is truncated.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyDict>)> {
        let conv = self
            .inner
            .lock()
            .expect("converter lock")
            .take()
            .ok_or_else(|| PyValueError::new_err("converter already finished"))?;
        let mut out = Vec::new();
        let ex = py.detach(|| conv.finish(&mut out)).map_err(to_py)?;
        Ok((PyBytes::new(py, &out), extracted_dict(py, &ex)?))
    }
}

/// VR of a standard tag from the generated dictionary ("UN" when unknown; ambiguous VRs
/// are returned as e.g. "US or SS").
#[pyfunction]
fn dictionary_vr(tag: u32) -> String {
    match codec::dict::standard_vr(Tag(tag)) {
        Some(codec::dict::DictVr::One(vr)) => vr.as_str().to_owned(),
        Some(codec::dict::DictVr::UsSs) => "US or SS".into(),
        Some(codec::dict::DictVr::ObOw) => "OB or OW".into(),
        Some(codec::dict::DictVr::UsSsOw) => "US or SS or OW".into(),
        Some(codec::dict::DictVr::UsOw) => "US or OW".into(),
        None => "UN".into(),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPrivateDictionary>()?;
    m.add_class::<PyStreamConverter>()?;
    m.add_function(wrap_pyfunction!(set_default_private_dictionary, m)?)?;
    m.add_function(wrap_pyfunction!(get_default_private_dictionary, m)?)?;
    m.add_function(wrap_pyfunction!(transcode, m)?)?;
    m.add_function(wrap_pyfunction!(transcode_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(transcode_file, m)?)?;
    m.add_function(wrap_pyfunction!(extract, m)?)?;
    m.add_function(wrap_pyfunction!(file_meta, m)?)?;
    m.add_function(wrap_pyfunction!(dictionary_vr, m)?)?;
    Ok(())
}
