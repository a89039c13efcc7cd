//! The archive's placement state (`node::placement`) for Python: the index's UID filter and the
//! placer the storage data path asks before entering Python.
use node::placement::{PlacementKeys, Placer, UidFilter};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::Arc;

/// A Bloom filter of SOP Instance UIDs (see `node::placement::UidFilter`): `uid in f` is False
/// only for a UID never added, once `ready` and unless `disable()`d.
#[pyclass(name = "UidFilter", module = "ferrodicom._core", frozen)]
pub struct PyUidFilter {
    pub inner: Arc<UidFilter>,
}

#[pymethods]
impl PyUidFilter {
    #[new]
    fn new(expected: u64) -> Self {
        PyUidFilter {
            inner: Arc::new(UidFilter::new(expected)),
        }
    }
    fn add(&self, uid: &str) {
        self.inner.add(uid);
    }
    /// Adds every UID of an iterable (the index's rows at open).
    fn add_many(&self, uids: &Bound<'_, PyAny>) -> PyResult<()> {
        for uid in uids.try_iter()? {
            let uid: pyo3::pybacked::PyBackedStr = uid?.extract()?;
            self.inner.add(&uid);
        }
        Ok(())
    }
    fn __contains__(&self, uid: &str) -> bool {
        self.inner.may_contain(uid)
    }
    /// The index's existing UIDs are all in: "absent" answers may be given.
    #[getter]
    fn ready(&self) -> bool {
        self.inner.is_ready()
    }
    #[setter]
    fn set_ready(&self, ready: bool) {
        self.inner.set_ready(ready);
    }
    #[getter]
    fn enabled(&self) -> bool {
        self.inner.is_enabled()
    }
    /// Rows were written without passing the filter: every answer is "maybe" from now on.
    fn disable(&self) {
        self.inner.disable();
    }
    /// Size in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.bytes()
    }
}

/// The archive's placement state (see `node::placement::Placer`): reserved SOP Instance UIDs,
/// the series directories made, and the Rust decision for the common case.
#[pyclass(name = "Placer", module = "ferrodicom._core", frozen)]
pub struct PyPlacer {
    pub inner: Arc<Placer>,
}

fn key(keys: &Bound<'_, PyDict>, name: &str) -> PyResult<Option<String>> {
    keys.get_item(name)?.map(|v| v.extract()).transpose()
}

#[pymethods]
impl PyPlacer {
    #[new]
    fn new(root: String) -> Self {
        PyPlacer {
            inner: Arc::new(Placer::new(root)),
        }
    }
    /// Decides from now on with `filter`; `early`: new placements are answered before indexing.
    fn attach(&self, filter: &Bound<'_, PyUidFilter>, early: bool) {
        self.inner.attach(Arc::clone(&filter.get().inner), early);
    }
    fn close(&self) {
        self.inner.close();
    }
    /// The data path's decision for these UIDs and keys (by keyword): the final path with the
    /// UID reserved, or None when the archive must decide.
    fn try_place(
        &self,
        sop_class_uid: &str,
        sop_instance_uid: &str,
        keys: &Bound<'_, PyDict>,
    ) -> PyResult<Option<String>> {
        let (sop, class, study, series) = (
            key(keys, "SOPInstanceUID")?,
            key(keys, "SOPClassUID")?,
            key(keys, "StudyInstanceUID")?,
            key(keys, "SeriesInstanceUID")?,
        );
        let k = PlacementKeys {
            sop_instance_uid: sop.as_deref(),
            sop_class_uid: class.as_deref(),
            study_instance_uid: study.as_deref(),
            series_instance_uid: series.as_deref(),
        };
        Ok(self
            .inner
            .try_place(sop_class_uid, sop_instance_uid, k)
            .map(|p| p.path.to_string_lossy().into_owned()))
    }
    /// Reserves `uid` (one ingest per SOP Instance UID), waiting without the GIL while another
    /// holds it.
    fn reserve(&self, py: Python<'_>, uid: &str) {
        py.detach(|| self.inner.reserve(uid));
    }
    fn release(&self, uid: &str) {
        self.inner.release(uid);
    }
    fn release_all(&self, uids: Vec<String>) {
        self.inner.release_all(uids.iter().map(String::as_str));
    }
    /// `uid` is reserved: an ingest of it is in progress (decided, row not yet committed).
    fn __contains__(&self, uid: &str) -> bool {
        self.inner.is_reserved(uid)
    }
    /// How many UIDs are reserved.
    fn __len__(&self) -> usize {
        self.inner.reserved()
    }
    /// The "<study>/<series>" directory was made in this run.
    fn has_dir(&self, dir: &str) -> bool {
        self.inner.has_dir(dir)
    }
    fn add_dir(&self, dir: &str) {
        self.inner.add_dir(dir);
    }
    fn forget_dir(&self, dir: &str) {
        self.inner.forget_dir(dir);
    }
    fn forget_dirs(&self) {
        self.inner.forget_dirs();
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyUidFilter>()?;
    m.add_class::<PyPlacer>()?;
    Ok(())
}
