//! Runs a storage handler's `stored` for instances already answered (the early reply: PS3.4 B.2.3
//! status sent once the file was in place) on a thread of its own, several per entry into Python.
//!
//! The association's thread then goes back to its socket instead of indexing, and Python is entered
//! once per DIMSE message on it (`prepare`); the indexing runs in batches whose code and data stay
//! in the caches. Nothing waits for these calls but `flush` (the archive's readers and its close).
use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use std::sync::Arc;
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

/// One deferred call into Python.
pub type Job = Box<dyn FnOnce(Python<'_>) + Send>;

/// How long the thread waits after a first job for others to join it. At full speed (storescu,
/// 400 CT) 10 ms gathers ~14 instances and the finisher spends 0.017-0.029 ms per instance,
/// against 0.040-0.082 ms with 2 ms (~3 instances: its code and data are cold again each time).
/// The index commit lingers 20 ms after it anyway (`Committer`), and `flush` cuts the wait short.
const GATHER: Duration = Duration::from_millis(10);
/// The thread ends after this long without a job (the next job starts another).
const IDLE: Duration = Duration::from_secs(2);
/// Beyond this many queued jobs (a `stored` that blocks), a job runs on its caller's thread: the
/// association then slows down instead of the queue growing.
const MAX_QUEUED: usize = 1024;

#[derive(Default)]
struct State {
    jobs: Vec<Job>,
    /// A batch taken from `jobs` is running.
    running: bool,
    closed: bool,
    worker: Option<(ThreadId, JoinHandle<()>)>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    arrived: Condvar,
    drained: Condvar,
}

/// The queue of deferred `stored` calls and its thread (see the module documentation).
#[derive(Default, Clone)]
pub struct Finisher {
    shared: Arc<Shared>,
}

impl Finisher {
    /// Queues `job`; after [`Finisher::close`] it runs at once on the calling thread.
    pub fn push(&self, job: Job) {
        let mut st = self.shared.state.lock();
        if st.closed || st.jobs.len() >= MAX_QUEUED {
            drop(st);
            let _ = Python::try_attach(job);
            return;
        }
        st.jobs.push(job);
        if st.worker.is_none() {
            let shared = Arc::clone(&self.shared);
            match std::thread::Builder::new()
                .name("ferrodicom-finish".into())
                .spawn(move || run(&shared))
            {
                Ok(h) => st.worker = Some((h.thread().id(), h)),
                Err(_) => {
                    // No thread: run what is queued here.
                    let jobs = std::mem::take(&mut st.jobs);
                    drop(st);
                    let _ = Python::try_attach(|py| jobs.into_iter().for_each(|j| j(py)));
                }
            }
        } else if st.jobs.len() == 1 && !st.running {
            self.shared.arrived.notify_one();
        }
    }

    /// Waits until every job queued so far has run (at once on the finisher's own thread).
    pub fn flush(&self) {
        let mut st = self.shared.state.lock();
        if st
            .worker
            .as_ref()
            .is_some_and(|(id, _)| *id == std::thread::current().id())
        {
            return;
        }
        self.shared.arrived.notify_all(); // no gathering: somebody waits
        while !st.jobs.is_empty() || st.running {
            self.shared.drained.wait(&mut st);
        }
    }

    /// Runs what is queued, then ends the thread; later jobs run on their caller's thread.
    pub fn close(&self) {
        self.flush();
        let worker = {
            let mut st = self.shared.state.lock();
            st.closed = true;
            self.shared.arrived.notify_all();
            st.worker.take()
        };
        if let Some((id, handle)) = worker {
            if id != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

fn run(shared: &Shared) {
    let mut st = shared.state.lock();
    loop {
        if st.jobs.is_empty() {
            if st.closed {
                break;
            }
            let timed_out = shared.arrived.wait_for(&mut st, IDLE).timed_out();
            if st.jobs.is_empty() {
                if timed_out {
                    break;
                }
                continue;
            }
            // A first job: let the next few gather (not when closing: flush waits).
            if !st.closed {
                shared.arrived.wait_for(&mut st, GATHER);
            }
        }
        let jobs = std::mem::take(&mut st.jobs);
        st.running = true;
        drop(st);
        // A job that panics (a bug) must not leave `running` set: `flush`, and so the archive's
        // close, would wait for ever. The rest of its batch is dropped, as when the interpreter is
        // gone: those files stay in place, unindexed until a recovery scan (`Archive.recover()`).
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Python::try_attach(|py| {
                for job in jobs {
                    job(py);
                }
            })
        }));
        if !matches!(ran, Ok(Some(()))) {
            eprintln!(
                "ferrodicom: instances answered early were not indexed (storage finisher {}); \
                 Archive.recover() indexes their files",
                if ran.is_err() {
                    "panicked"
                } else {
                    "found no interpreter"
                }
            );
        }
        st = shared.state.lock();
        st.running = false;
        if st.jobs.is_empty() {
            shared.drained.notify_all();
        }
    }
    st.worker = None;
    shared.drained.notify_all();
}
