//! Binding of `node::Journal`, the archive's write-ahead journal (durability "full").
use pyo3::prelude::*;
use std::sync::Arc;
use std::time::Duration;

fn os_err(e: std::io::Error) -> PyErr {
    pyo3::exceptions::PyOSError::new_err(e.to_string())
}

/// `<archive>/.journal`: small instances are acknowledged once appended here; files and index rows
/// become durable at checkpoints. Opening replays what the last run left (see `replayed`).
#[pyclass(name = "Journal", module = "ferrodicom._core", frozen)]
pub struct PyJournal {
    pub inner: Arc<node::Journal>,
}

#[pymethods]
impl PyJournal {
    /// Opens (replaying) or creates the journal of the archive at `root`. A new journal has
    /// `size_bytes` of slots holding up to `record_bytes` each (an existing one keeps its own);
    /// `checkpoint_interval`: seconds between checkpoints while records wait.
    #[new]
    #[pyo3(signature = (root, size_bytes = 128 << 20, record_bytes = 1 << 20, checkpoint_interval = 1.0))]
    fn new(
        py: Python<'_>,
        root: std::path::PathBuf,
        size_bytes: u64,
        record_bytes: u64,
        checkpoint_interval: f64,
    ) -> PyResult<Self> {
        let interval = Duration::from_secs_f64(checkpoint_interval.max(0.001));
        let record = record_bytes.max(4096);
        let slots = (size_bytes / (record + 4096)).max(2);
        let inner = py
            .detach(|| node::Journal::open(&root, record, slots, interval))
            .map_err(|e| {
                pyo3::exceptions::PyOSError::new_err(format!("journal of {}: {e}", root.display()))
            })?;
        Ok(PyJournal {
            inner: Arc::new(inner),
        })
    }
    /// Archive-relative paths of the files written again from the journal at open.
    #[getter]
    fn replayed(&self) -> Vec<String> {
        self.inner.replayed().to_vec()
    }
    /// Why the journal found at open was set aside (header unreadable), or None.
    #[getter]
    fn damaged(&self) -> Option<String> {
        self.inner.damaged().map(str::to_owned)
    }
    /// Whether instances can be journaled now.
    #[getter]
    fn ready(&self) -> bool {
        self.inner.ready()
    }
    /// Largest instance (bytes) that is journaled.
    #[getter]
    fn max_record(&self) -> u64 {
        self.inner.max_record()
    }
    /// Whether records are written with direct I/O through io_uring (else through the page cache:
    /// a filesystem without direct I/O, or a kernel without io_uring).
    #[getter]
    fn writes_direct(&self) -> bool {
        self.inner.writes_direct()
    }
    /// Waits up to `timeout` seconds for the journal file to be ready (a new one is zero-filled).
    fn wait_ready(&self, py: Python<'_>, timeout: f64) -> bool {
        let inner = Arc::clone(&self.inner);
        py.detach(move || inner.wait_ready(Duration::from_secs_f64(timeout.max(0.0))))
    }
    /// The records' files and index rows are in place: they may go at the next checkpoint.
    fn done(&self, seqs: Vec<u64>) {
        for s in seqs {
            self.inner.done(s);
        }
    }
    /// A newer copy of the file at `rel` (archive-relative) is durable: older records of it are
    /// cancelled so that a replay cannot bring the old copy back.
    fn supersede(&self, py: Python<'_>, rel: &str) -> PyResult<()> {
        let inner = Arc::clone(&self.inner);
        py.detach(move || inner.supersede(rel)).map_err(os_err)
    }
    /// Runs a checkpoint now; returns whether records were given up.
    fn checkpoint(&self, py: Python<'_>) -> PyResult<bool> {
        let inner = Arc::clone(&self.inner);
        py.detach(move || inner.checkpoint()).map_err(os_err)
    }
    /// {appended, full, syncs, checkpoints}.
    #[getter]
    fn stats(&self) -> std::collections::HashMap<&'static str, u64> {
        let s = self.inner.stats();
        [
            ("appended", s.appended),
            ("full", s.full),
            ("syncs", s.syncs),
            ("checkpoints", s.checkpoints),
        ]
        .into_iter()
        .collect()
    }
    /// Final checkpoint, then stops the journal's threads.
    fn close(&self, py: Python<'_>) {
        let inner = Arc::clone(&self.inner);
        py.detach(move || inner.close());
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyJournal>()
}
