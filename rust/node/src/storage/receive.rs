//! The streaming C-STORE data path, receiving side (PS3.4 Annex B, PS3.7 §9.1.1).
//!
//! The data-set PDVs of a C-STORE-RQ go straight through the codec (validating, extracting index
//! keys, optionally converting the transfer syntax) into a Part 10 file in the archive's
//! incoming folder (PS3.10 §7.1 preamble and File Meta first), which is fsynced. Memory stays
//! bounded by the codec's and the writer's buffers, whatever the size of the data set.
use crate::direct::{DirectWriter, ALIGN};
use crate::journal::{Journal, Slot};
use crate::link::{DataSetSource, Reply};
use crate::writeback::start_writeback;
use codec::part10::{write_file_meta, FileMetaInfo};
use codec::{Dictionary, Extracted, StreamConverter, Tag, TransferSyntax, Vr};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use ul::dimse::tag;
use ul::{AssocError, Command, NegotiatedContext};

/// How received instances are written.
#[derive(Clone)]
pub struct StorageConfig {
    /// Folder for the temporary `.part` files (on the archive's filesystem, so a rename is atomic).
    pub incoming_dir: PathBuf,
    /// Store uncompressed data sets in this transfer syntax (converted while streaming); `None`
    /// keeps what was negotiated. Encapsulated syntaxes are always stored exactly as received.
    pub store_transfer_syntax: Option<String>,
    /// fsync each file before it is reported (durability "full").
    pub fsync: bool,
    /// Start writing each file out to disk while it streams in (Linux `sync_file_range`), so
    /// that the fsync which makes it durable (here or in the archive) has less left to wait for.
    pub writeback: bool,
    pub implementation_class_uid: String,
    pub implementation_version_name: String,
    pub dictionary: Dictionary,
    /// Top-level attributes extracted while streaming, for the index.
    pub extract: Vec<Tag>,
    /// Empty `.part` files made ahead of time (see [`PartPool`]); `None` creates each one inline.
    pub parts: Option<Arc<PartPool>>,
    /// With `fsync`: stream each data set into a record of this journal (copied into its `.part`
    /// file at commit, or spilled there when it is not to be journaled), and make a placed instance
    /// durable by committing that record instead of fsyncing its file (see [`crate::journal`]); its
    /// early reply is then sent at once.
    pub journal: Option<Arc<Journal>>,
}

impl StorageConfig {
    /// A new, empty, exclusively created `.part` file in the incoming folder.
    fn new_part(&self) -> io::Result<(File, PathBuf)> {
        if let Some(pool) = &self.parts {
            if let Some(part) = pool.take() {
                return Ok(part);
            }
        }
        create_part(&self.incoming_dir)
    }
}

fn create_part(dir: &Path) -> io::Result<(File, PathBuf)> {
    let n = PART_COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{}-{}.part", std::process::id(), n));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((file, path))
}

/// Empty `.part` files created by a background thread, so that making a file (inode allocation,
/// which ext4 can make slow after many deletions) is not on the path between a data set's last
/// PDV and its C-STORE-RSP. Files left when the pool is dropped are removed; after a crash the
/// archive's recovery removes everything in the incoming folder.
pub struct PartPool {
    shared: Arc<PoolShared>,
    filler: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct PoolShared {
    dir: PathBuf,
    target: usize,
    state: Mutex<PoolState>,
    cv: Condvar,
}

#[derive(Default)]
struct PoolState {
    ready: std::collections::VecDeque<(File, PathBuf)>,
    stop: bool,
    /// Creation failed (e.g. disk full): callers create inline and get the real error.
    failed: bool,
}

impl PartPool {
    /// Keeps up to `target` empty files ready in `dir`.
    pub fn new(dir: PathBuf, target: usize) -> io::Result<Self> {
        let shared = Arc::new(PoolShared {
            dir,
            target: target.max(1),
            state: Mutex::new(PoolState::default()),
            cv: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let filler = std::thread::Builder::new()
            .name("ferrodicom-parts".into())
            .spawn(move || worker.fill())?;
        Ok(Self {
            shared,
            filler: Mutex::new(Some(filler)),
        })
    }

    /// A ready file, or `None` when the pool is empty. The filler is woken once half the pool is
    /// used (it then makes several files in a row), not for every file taken.
    pub fn take(&self) -> Option<(File, PathBuf)> {
        let mut st = self.shared.lock();
        let part = st.ready.pop_front();
        let wake = std::mem::take(&mut st.failed) || st.ready.len() <= self.shared.target / 2;
        drop(st);
        if wake {
            self.shared.cv.notify_one();
        }
        part
    }

    /// Stops the filler and removes the files not handed out (also done on drop). After this,
    /// [`PartPool::take`] returns `None`.
    pub fn close(&self) {
        self.shared.lock().stop = true;
        self.shared.cv.notify_all();
        let filler = self.filler.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = filler {
            let _ = t.join();
        }
        let mut st = self.shared.lock();
        for (file, path) in st.ready.drain(..) {
            drop(file);
            let _ = std::fs::remove_file(path);
        }
    }

    /// Files ready now.
    pub fn ready(&self) -> usize {
        let st = self.shared.lock();
        st.ready.len()
    }
}

impl PoolShared {
    /// The pool state (a panic elsewhere never makes the pool unusable).
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fill(&self) {
        let mut st = self.lock();
        loop {
            while !st.stop && (st.failed || st.ready.len() >= self.target) {
                st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.stop {
                return;
            }
            drop(st);
            let made = create_part(&self.dir);
            st = self.lock();
            match made {
                Ok((file, path)) if st.stop => {
                    drop(file);
                    let _ = std::fs::remove_file(path);
                }
                Ok(part) => st.ready.push_back(part),
                Err(_) => st.failed = true,
            }
        }
    }
}

impl Drop for PartPool {
    fn drop(&mut self) {
        self.close();
    }
}

/// What the storage service decided about a C-STORE once the data set's index keys were known,
/// while the rest of the data set (usually the Pixel Data) is still arriving (ARCHITECTURE.md,
/// "Ingest, as data flows", step 3). Deciding early takes that work off the path between the last
/// PDV and the C-STORE-RSP.
#[derive(Debug)]
pub enum Prepared {
    /// No decision yet: the session's `stored` decides once the data set is complete.
    Later,
    /// Keep nothing: the rest of the data set is read and dropped and the part file deleted;
    /// `stored` gives the reply (`Received::discarded`).
    Discard,
    /// Rename the complete file to `path` (after its fsync when configured). With `early`, that
    /// reply is sent as soon as the file is in place, before `stored` runs (whose reply is then
    /// not sent).
    Place { path: PathBuf, early: Option<Reply> },
}

/// Extracted keys as text, in the order met.
pub type Keys = Vec<(Tag, String)>;

/// The storage service's mid-stream decision (see [`receive_to_file`]).
pub type PrepareFn<'a> = dyn FnMut(&[(Tag, String)]) -> Prepared + 'a;

/// The outcome of receiving one data set.
#[derive(Debug)]
pub struct Received {
    /// The complete Part 10 file, still in the incoming folder (None when `failure` is set, the
    /// data set was discarded, or the file was placed: nothing is left there).
    pub part_path: Option<PathBuf>,
    /// Where the file was placed, as [`Prepared::Place`] asked.
    pub placed: Option<PathBuf>,
    /// The reply to send before calling `stored` (only with `placed`).
    pub early: Option<Reply>,
    /// The data set was dropped as [`Prepared::Discard`] asked.
    pub discarded: bool,
    /// The journal record that made the placed file durable (report it done once indexed).
    pub journal_seq: Option<u64>,
    /// File size in bytes.
    pub size: u64,
    /// Data-set bytes read from the association (before any conversion).
    pub received_bytes: u64,
    /// The transfer syntax the file is stored in.
    pub transfer_syntax: String,
    /// Extracted values as text (PS3.5 §6.2 padding removed; binary integers in decimal).
    pub keys: Vec<(Tag, String)>,
    /// A failure status and its comment (e.g. 0xC000 unparsable, 0xA700 out of resources).
    pub failure: Option<(u16, String)>,
}

static PART_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The part file's write buffer. 256 KiB was tried (issue 26): alone, a 512 KiB file written in
/// 256 KiB pieces costs the page cache ~10% less CPU than in 64 KiB ones, but the bytes still
/// buffered when the last PDV arrives are written between that PDV and the response, so a
/// synchronous sender waited longer (storescu, 400 CT: 1,041-1,492/s against 1,288-1,477/s).
const WRITE_BUFFER: usize = 64 * 1024;

/// Bytes received between two writeback kicks.
const WRITEBACK_STEP: u64 = 256 * 1024;

/// The value of an extracted element as text.
pub fn value_text(v: &codec::ExtractedValue) -> String {
    match v.vr {
        Vr::US | Vr::UL | Vr::SS | Vr::SL => v.as_u64().map(|n| n.to_string()).unwrap_or_default(),
        _ => v.as_string(),
    }
}

fn keys_of(ex: &Extracted) -> Vec<(Tag, String)> {
    ex.iter().map(|(t, v)| (t, value_text(v))).collect()
}

/// Maps a write error to a DIMSE failure: out of resources for a full disk or quota
/// (PS3.4 B.2.3 A7xx), processing failure otherwise.
fn io_failure(e: &io::Error) -> (u16, String) {
    let full = matches!(e.raw_os_error(), Some(28) | Some(122)); // ENOSPC, EDQUOT
    if full || e.kind() == io::ErrorKind::StorageFull {
        (0xA700, format!("out of resources: {e}"))
    } else {
        (0xA701, format!("cannot write the instance: {e}"))
    }
}

/// With fsync (durability "full"), bytes of a data set's file written through the page cache
/// before the rest goes to the disk directly (see [`crate::direct`]): large multi-frame objects.
/// Measured on the reference machine (4 NM objects of 64 MiB, `storescu` sending, 2026-11-23):
/// 1,233-1,349 MB/s in three runs with every round within 30% of the median, against
/// 1,201-1,344 MB/s through the page cache with rounds up to 3x slower, and ~25% less CPU.
const DIRECT_FROM: u64 = 4 << 20;

/// Where a data set's bytes go: the part file, and (durability full with a journal) a journal
/// slot. A direct record ([`Slot::tees`]) takes a copy of each byte the part file takes. A
/// buffered one takes them first, alone: its bytes reach the part file when the record is
/// committed (copied while the commit's sync runs), or are spilled into it when the instance
/// outgrows the slot or is not to be journaled; the part file then takes the rest. Past
/// [`DIRECT_FROM`] bytes, the rest of the file is written with direct I/O where the filesystem has
/// it (with fsync only).
struct Sink {
    file: File,
    slot: Option<Slot>,
    /// The part file's path (direct I/O opens it again).
    path: PathBuf,
    /// Bytes taken so far.
    len: u64,
    direct: Option<DirectWriter>,
    /// Direct I/O may be (or has been) started: durability full, and the filesystem did not refuse it.
    direct_allowed: bool,
}

impl Sink {
    /// From now on the bytes go to the part file (what the slot holds first).
    fn spill(&mut self) -> io::Result<()> {
        match self.slot.take() {
            Some(slot) => slot.spill(&self.file),
            None => Ok(()),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(slot) = &mut self.slot {
            if !slot.write(buf)? {
                self.spill()?;
            } else if !slot.tees() {
                self.len += buf.len() as u64;
                return Ok(buf.len());
            }
        }
        let mut rest = buf;
        if self.direct.is_none() && self.direct_allowed && self.len >= DIRECT_FROM {
            // Through the page cache up to an aligned offset, then directly.
            let pad = (((ALIGN - self.len % ALIGN) % ALIGN) as usize).min(buf.len());
            self.file.write_all(&buf[..pad])?;
            self.len += pad as u64;
            rest = &buf[pad..];
            if self.len.is_multiple_of(ALIGN) {
                match DirectWriter::start(&self.path, &self.file, self.len) {
                    Ok(d) => self.direct = Some(d),
                    // No direct I/O here (tmpfs): the page cache it is.
                    Err(_) => self.direct_allowed = false,
                }
            }
        }
        match &mut self.direct {
            Some(d) => d.write(rest)?,
            None => self.file.write_all(rest)?,
        }
        self.len += rest.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// What the sink saw while the PDVs streamed.
enum SinkState {
    Writing,
    /// The storage service wants nothing of this data set: read and drop the rest.
    Discarding,
    /// Something failed: the rest of the data set is read and discarded.
    Draining((u16, String)),
}

/// Receives the pending data set of `command` (a C-STORE-RQ) into a Part 10 file.
/// Association-level failures (abort, timeout, protocol error) are returned as `Err`; data
/// failures (unparsable data set, full disk) come back in `Received::failure` with the data set
/// fully drained and no file left behind.
///
/// `prepare` is called at most once, as soon as every key in `cfg.extract` is final (a later
/// top-level element has begun), with the keys met so far; see [`Prepared`]. If the keys at the end
/// differ from those (a data set out of tag order), a placement is not made and `stored` decides.
pub fn receive_to_file(
    source: &mut dyn DataSetSource,
    command: &Command,
    ctx: &NegotiatedContext,
    calling_ae: &str,
    cfg: &StorageConfig,
    prepare: &mut PrepareFn<'_>,
) -> Result<Received, AssocError> {
    let src = TransferSyntax::from_uid(&ctx.transfer_syntax);
    let dst = match &cfg.store_transfer_syntax {
        Some(t) if src.native && TransferSyntax::from_uid(t).native => TransferSyntax::from_uid(t),
        _ => src.clone(),
    };
    let sop_class = command
        .get_str(tag::AFFECTED_SOP_CLASS_UID)
        .unwrap_or_default();
    let sop_instance = command
        .get_str(tag::AFFECTED_SOP_INSTANCE_UID)
        .unwrap_or_default();
    let mut part_path = PathBuf::new();
    let mut state = SinkState::Writing;
    let mut file: Option<BufWriter<Sink>> = None;
    let mut converter = match StreamConverter::new(&src, &dst, &cfg.dictionary, &cfg.extract) {
        Ok(c) => Some(c),
        Err(e) => {
            state = SinkState::Draining((0xC000, format!("cannot convert: {e}")));
            None
        }
    };
    if let SinkState::Writing = state {
        let opened = cfg.new_part().and_then(|(f, path)| {
            part_path = path;
            // Chunks of a PDV or more bypass the buffer and go straight to the sink; smaller ones
            // gather into few large writes (see WRITE_BUFFER).
            // With fsync and a journal, the bytes stream into a journal slot: if the instance is
            // placed with an early reply, committing that record makes it durable.
            let slot = match &cfg.journal {
                Some(j) if cfg.fsync => j.begin(),
                _ => None,
            };
            let sink = Sink {
                file: f,
                slot,
                path: part_path.clone(),
                len: 0,
                direct: None,
                // Only where the bytes must reach the disk before the reply anyway: durability
                // "none" leaves them to the page cache and the operating system, as DCMTK does.
                direct_allowed: cfg.fsync,
            };
            let mut w = BufWriter::with_capacity(WRITE_BUFFER, sink);
            write_file_meta(
                &mut w,
                &FileMetaInfo {
                    sop_class_uid: &sop_class,
                    sop_instance_uid: &sop_instance,
                    transfer_syntax_uid: &dst.uid,
                    implementation_class_uid: &cfg.implementation_class_uid,
                    implementation_version_name: &cfg.implementation_version_name,
                    source_ae_title: calling_ae,
                },
            )?;
            Ok(w)
        });
        match opened {
            Ok(w) => file = Some(w),
            Err(e) => state = SinkState::Draining(io_failure(&e)),
        }
    }

    let mut fed: u64 = 0;
    let mut kicked: u64 = 0;
    // Data that may go through the journal is not written out early: the journal write comes first.
    let kick_floor = match file.as_ref().and_then(|w| w.get_ref().slot.as_ref()) {
        Some(_) => cfg.journal.as_ref().map_or(0, |j| j.max_record()),
        None => 0,
    };
    let mut asked = false;
    // (where to place the file, its early reply, the keys the decision was made on)
    let mut plan: Option<(PathBuf, Option<Reply>, Keys)> = None;
    let streamed = source.read_data_set(&mut |chunk| {
        if let (SinkState::Writing, Some(conv), Some(w)) =
            (&state, converter.as_mut(), file.as_mut())
        {
            fed += chunk.len() as u64;
            if cfg.writeback
                && fed > kick_floor
                && fed - kicked >= WRITEBACK_STEP
                && w.get_ref().direct.is_none()
            {
                start_writeback(&w.get_ref().file, kicked.saturating_sub(WRITEBACK_STEP), 0);
                kicked = fed;
            }
            if let Err(e) = conv.feed(chunk, w) {
                state = SinkState::Draining(match e {
                    codec::CodecError::Io(io) => io_failure(&io),
                    other => (0xC000, format!("cannot understand the data set: {other}")),
                });
            } else if !asked && conv.keys_complete() {
                asked = true;
                let keys = keys_of(conv.extracted());
                // Only a placement answered early is journaled (a replacement waits for its
                // index): any other goes to the part file from here on.
                let stays_in_slot = match prepare(&keys) {
                    Prepared::Later => false,
                    Prepared::Discard => {
                        // Nothing more is written anywhere.
                        state = SinkState::Discarding;
                        true
                    }
                    Prepared::Place { path, early } => {
                        let answered_early = early.is_some();
                        plan = Some((path, early, keys));
                        answered_early
                    }
                };
                if !stays_in_slot {
                    if let Err(e) = w.flush().and_then(|()| w.get_mut().spill()) {
                        state = SinkState::Draining(io_failure(&e));
                    }
                }
            }
        }
        Ok(())
    });
    let cleanup = |file: Option<BufWriter<Sink>>| {
        drop(file);
        let _ = std::fs::remove_file(&part_path);
    };
    let received_bytes = match streamed {
        Ok(n) => n,
        Err(e) => {
            cleanup(file);
            return Err(e);
        }
    };
    let mut extracted = Extracted::default();
    if let (SinkState::Writing, Some(conv), Some(w)) = (&state, converter.take(), file.as_mut()) {
        match conv.finish(w) {
            Ok(ex) => extracted = ex,
            Err(codec::CodecError::Io(io)) => state = SinkState::Draining(io_failure(&io)),
            Err(e) => {
                state =
                    SinkState::Draining((0xC000, format!("cannot understand the data set: {e}")))
            }
        }
    }
    if let SinkState::Writing = state {
        let w = file.take().expect("file is open while writing");
        let keys = keys_of(&extracted);
        // The placement stands only if the keys it was decided on are still the keys.
        let plan = plan.filter(|(_, _, keys_then)| *keys_then == keys);
        let done = w.into_inner().map_err(|e| e.into_error()).and_then(|sink| {
            let Sink {
                file: f,
                slot,
                direct,
                len,
                ..
            } = sink;
            if let Some(direct) = direct {
                direct.finish()?;
            }
            let (size, journaled) = match slot {
                Some(slot) => {
                    let size = slot.len();
                    // Only a placement answered early is journaled (see above).
                    let rel = match (&cfg.journal, &plan) {
                        (Some(j), Some((path, Some(_), _))) => {
                            path.strip_prefix(j.root()).ok().and_then(|r| r.to_str())
                        }
                        _ => None,
                    };
                    match rel {
                        // The data reaches the part file in either case; a journal that cannot
                        // take the record leaves the file to be fsynced.
                        Some(rel) => (size, slot.commit(rel, size, Some(&f))?),
                        None => {
                            slot.spill(&f)?;
                            (size, None)
                        }
                    }
                }
                None => (len, None),
            };
            if let (Some(_), Some(j)) = (journaled, &cfg.journal) {
                // Start writing the file itself out now, off this thread: the checkpoint then has
                // little left to wait for, and the disk is not hit by one large burst.
                j.write_out(&f);
            } else {
                if cfg.writeback {
                    start_writeback(&f, kicked.saturating_sub(WRITEBACK_STEP), 0);
                }
                if cfg.fsync {
                    f.sync_all()?;
                }
            }
            Ok((size, journaled))
        });
        match done {
            Ok((size, journaled)) => {
                let mut received = Received {
                    part_path: Some(part_path),
                    placed: None,
                    early: None,
                    discarded: false,
                    journal_seq: journaled,
                    size,
                    received_bytes,
                    transfer_syntax: dst.uid,
                    keys,
                    failure: None,
                };
                if let Some((path, early, _)) = plan {
                    // Durable already (no fsync wanted, or journaled): the early reply may go.
                    let early = early.filter(|_| !cfg.fsync || journaled.is_some());
                    place(&mut received, path, early);
                    if let (Some(seq), Some(j)) = (journaled, &cfg.journal) {
                        if received.placed.is_none() {
                            // Placing failed: the record must not bring the file back.
                            let _ = j.cancel(seq);
                            received.journal_seq = None;
                        }
                    }
                }
                return Ok(received);
            }
            Err(e) => state = SinkState::Draining(io_failure(&e)),
        }
    }
    cleanup(file);
    let (failure, discarded) = match state {
        SinkState::Draining(failure) => (Some(failure), false),
        SinkState::Discarding => (None, true),
        SinkState::Writing => unreachable!("writing state returned above"),
    };
    Ok(Received {
        part_path: None,
        placed: None,
        early: None,
        discarded,
        journal_seq: None,
        size: 0,
        received_bytes,
        transfer_syntax: dst.uid,
        keys: Vec::new(),
        failure,
    })
}

/// Renames the complete part file to where the storage service asked (same filesystem: atomic).
/// On failure the part is deleted and the failure reported.
fn place(received: &mut Received, path: PathBuf, early: Option<Reply>) {
    let Some(part) = received.part_path.take() else {
        return;
    };
    match std::fs::rename(&part, &path) {
        Ok(()) => {
            received.placed = Some(path);
            received.early = early;
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            received.failure = Some(io_failure(&e));
        }
    }
}
