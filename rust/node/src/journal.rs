//! A write-ahead journal that makes small received instances durable with one data write and one
//! flush (durability "full").
//!
//! Making a *new* file durable costs its data, its inode, its directory entry and several device
//! flushes: ~0.8 ms for a 512 KiB file on the reference disk, which bounds a synchronous sender
//! (PS3.7 §9.1.1: one C-STORE-RSP per C-STORE-RQ). Overwriting blocks of a file that already exists
//! and is fully written changes no metadata, so `fdatasync` costs one data write and one flush. So
//! while an instance streams in, its bytes are also written to a slot of this journal; at the end
//! the slot's header (archive path, length, CRC) is written, one `fdatasync` (shared by concurrent
//! associations) makes the record durable, and the C-STORE is answered.
//!
//! Two ways to write a record:
//! * direct (where the filesystem takes `O_DIRECT` and the kernel has io_uring; see
//!   [`DirectRecord`]): the association thread writes the `.part` file through the page cache as
//!   the bytes arrive, and copies them into an aligned image of the slot from which io_uring writes
//!   them to the journal in 128 KiB pieces. No page cache for the journal, no copy at commit;
//! * buffered: the bytes go to the slot only, through the page cache (write-out started every
//!   128 KiB); at the commit the journal's copier thread copies the data into the `.part` file
//!   (`copy_file_range`) while the `fdatasync` runs. An instance that outgrows the slot, or is not
//!   to be journaled, is spilled: what the slot holds is copied into the `.part` file, which takes
//!   the rest.
//!
//! The archive file and its index row are made durable later, many at a time (a checkpoint:
//! `syncfs`), after which their slots are reused and their pages leave the page cache
//! (`POSIX_FADV_DONTNEED`: ingest keeps writing into recently freed memory instead of growing the
//! cache).
//! At open, the records not yet checkpointed are replayed: their files are written again.
//!
//! Layout of `<archive>/.journal`: a 4 KiB block with two header copies (offsets 0 and 2048,
//! written alternately; the valid one with the higher generation wins, so a torn header write loses
//! nothing), then `slots` fixed-size slots: a 4 KiB record header block (header + path) and up to
//! `slot_data` bytes of data. A record is valid when its magic and header CRC are right, its epoch
//! is the header's (the epoch is bumped at every open, so an older life's records never count), its
//! sequence number is not below the header's checkpoint, and its data CRC is right. Replay applies
//! the valid records in sequence order. Fixed slots let records complete in any order: a record
//! that was never finished (association aborted, crash) simply is not valid.
use crate::direct::AlignedBuf;
use crate::uring::WriteRing;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// File name of the journal inside the archive root.
pub const JOURNAL_FILE: &str = ".journal";
const BLOCK: u64 = 4096;
const HEAD_MAGIC: &[u8; 4] = b"FDJ2";
const REC_MAGIC: &[u8; 4] = b"FDR2";
const KIND_INSTANCE: u32 = 1;
const KIND_CANCELLED: u32 = 3;
const CHUNK: usize = 1 << 20;
/// Journal bytes written between two write-out kicks while a record streams in.
const KICK_STEP: u64 = 128 * 1024;

fn align(n: u64) -> u64 {
    n.div_ceil(BLOCK) * BLOCK
}

/// Counters for the node's statistics and the benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct JournalStats {
    /// Records committed (instances acknowledged through the journal).
    pub appended: u64,
    /// Records refused because no slot was free (the caller fsyncs the file instead).
    pub full: u64,
    /// `fdatasync` calls made for commits (fewer than `appended` when associations share one).
    pub syncs: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
}

#[derive(Clone, Copy, Debug)]
struct Header {
    generation: u64,
    epoch: u64,
    slot_data: u64,
    slots: u64,
    /// Records with a smaller sequence number are checkpointed (never replayed).
    checkpoint_seq: u64,
}

impl Header {
    fn encode(&self) -> [u8; 52] {
        let mut b = [0u8; 52];
        b[0..4].copy_from_slice(HEAD_MAGIC);
        b[4..12].copy_from_slice(&self.generation.to_le_bytes());
        b[12..20].copy_from_slice(&self.epoch.to_le_bytes());
        b[20..28].copy_from_slice(&self.slot_data.to_le_bytes());
        b[28..36].copy_from_slice(&self.slots.to_le_bytes());
        b[36..44].copy_from_slice(&self.checkpoint_seq.to_le_bytes());
        let crc = crc32fast::hash(&b[..48]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Header> {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        if &b[0..4] != HEAD_MAGIC
            || crc32fast::hash(&b[..48]) != u32::from_le_bytes(b[48..52].try_into().unwrap())
        {
            return None;
        }
        Some(Header {
            generation: u64_at(4),
            epoch: u64_at(12),
            slot_data: u64_at(20),
            slots: u64_at(28),
            checkpoint_seq: u64_at(36),
        })
    }

    fn slot_size(&self) -> u64 {
        BLOCK + self.slot_data
    }
}

/// One record header (the slot's first block: these 48 bytes, then the path).
struct RecHeader {
    kind: u32,
    epoch: u64,
    seq: u64,
    data_len: u64,
    data_crc: u32,
}

fn encode_record(h: &RecHeader, path: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 48 + path.len()];
    b[0..4].copy_from_slice(REC_MAGIC);
    b[4..8].copy_from_slice(&h.kind.to_le_bytes());
    b[8..16].copy_from_slice(&h.epoch.to_le_bytes());
    b[16..24].copy_from_slice(&h.seq.to_le_bytes());
    b[24..32].copy_from_slice(&h.data_len.to_le_bytes());
    b[32..36].copy_from_slice(&h.data_crc.to_le_bytes());
    b[36..40].copy_from_slice(&(path.len() as u32).to_le_bytes());
    b[48..].copy_from_slice(path);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&b[..40]);
    crc.update(path);
    let crc = crc.finalize();
    b[40..44].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_record(block: &[u8]) -> Option<(RecHeader, Vec<u8>)> {
    if block.len() < 48 || &block[0..4] != REC_MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(block[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(block[i..i + 8].try_into().unwrap());
    let path_len = u32_at(36) as usize;
    if 48 + path_len > block.len() {
        return None;
    }
    let path = &block[48..48 + path_len];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&block[..40]);
    crc.update(path);
    if crc.finalize() != u32_at(40) {
        return None;
    }
    Some((
        RecHeader {
            kind: u32_at(4),
            epoch: u64_at(8),
            seq: u64_at(16),
            data_len: u64_at(24),
            data_crc: u32_at(32),
        },
        path.to_vec(),
    ))
}

/// A path inside the archive that is safe to recreate: relative, only normal components.
fn safe_rel(rel: &str) -> bool {
    !rel.is_empty()
        && rel.len() <= (BLOCK as usize - 48)
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// A slot in use: being written, or committed and waiting for its checkpoint.
struct Pending {
    slot: u64,
    /// Committed: its header is written (and durable once the commit returned).
    committed: bool,
    /// Its file and index row are in place (may go at the next checkpoint).
    done: bool,
    /// The record's archive path (for [`Journal::supersede`]).
    rel: Box<str>,
}

struct State {
    file: Option<Arc<File>>,
    /// The same file opened with `O_DIRECT`, when records are written directly (see [`DirectRecord`]).
    direct: Option<Arc<File>>,
    header: Header,
    free: Vec<u64>,
    next_seq: u64,
    pending: BTreeMap<u64, Pending>,
    /// Group sync: syncs started and finished so far; a record whose header was written before a
    /// sync started is durable once that sync finished.
    syncs_started: u64,
    syncs_done: u64,
    syncing: bool,
    closing: bool,
    /// An I/O error made the journal unusable for this life; callers fsync their files instead.
    failed: bool,
    stats: JournalStats,
}

struct Inner {
    root: PathBuf,
    interval: Duration,
    state: Mutex<State>,
    /// Wakes sync waiters, the checkpointer and `wait_ready`.
    cv: Condvar,
    stop_create: AtomicBool,
    /// One checkpoint at a time.
    checkpointing: Mutex<()>,
    /// Journaled files whose write-out is to be started (see [`Journal::write_out`]).
    writeout: Mutex<(Vec<File>, bool)>,
    writeout_cv: Condvar,
    /// Journaled files whose write-out has been started: once a checkpoint has made them durable,
    /// their pages leave the page cache (see [`drop_cached`]).
    written_out: Mutex<Vec<File>>,
    /// Work for the copier thread (see [`Slot::commit`]); `None` once closing.
    copier: Mutex<Option<mpsc::Sender<CopyJob>>>,
    /// Write records directly where the filesystem and the kernel allow it.
    want_direct: bool,
    /// Rings and buffers of finished direct records, for the next ones.
    idle_records: Mutex<Vec<(WriteRing, AlignedBuf)>>,
}

/// Idle direct-record buffers kept (each one slot); more are freed.
const IDLE_RECORDS: usize = 16;

/// A record's data to copy into its `.part` file while the commit's `fdatasync` runs.
struct CopyJob {
    journal: Arc<File>,
    from: u64,
    len: u64,
    to: File,
    done: mpsc::SyncSender<io::Result<()>>,
}

/// The journal of one archive (see the module documentation). Shared by every association.
pub struct Journal {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    replayed: Vec<String>,
    damaged: Option<String>,
}

/// One record being written (see [`Journal::begin`]). Dropping it unfinished frees its slot.
pub struct Slot {
    inner: Arc<Inner>,
    file: Arc<File>,
    seq: u64,
    base: u64,
    capacity: u64,
    /// Data bytes received, and written to the file (whole pages; the rest waits in `tail`).
    written: u64,
    flushed: u64,
    tail: Vec<u8>,
    kicked: u64,
    crc: crc32fast::Hasher,
    /// Written with direct I/O (the caller writes the part file itself: [`Slot::tees`]).
    direct: Option<DirectRecord>,
    /// The data outgrew the slot: the record cannot be committed, what it holds can be spilled.
    full: bool,
    /// A write failed: the record can neither be committed nor spilled.
    spoiled: bool,
    finished: bool,
}

impl Journal {
    /// Opens `<root>/.journal`, replaying the records not checkpointed (their files are written
    /// again under `root`; paths in [`Journal::replayed`]). Without a journal, one of `slots`
    /// slots of `slot_data` bytes is created and zero-filled by a background thread ([`Journal::begin`]
    /// returns `None` until it is ready: the caller fsyncs its files meanwhile). A checkpoint runs
    /// when half the slots are in use, or every `interval` while committed records wait.
    ///
    /// Records are written with direct I/O (see [`DirectRecord`]) where the filesystem and the
    /// kernel allow it; [`Journal::open_buffered`] writes them through the page cache.
    pub fn open(
        root: &Path,
        slot_data: u64,
        slots: u64,
        interval: Duration,
    ) -> io::Result<Journal> {
        Self::open_with(root, slot_data, slots, interval, true)
    }

    /// [`Journal::open`], records always written through the page cache (and copied into their
    /// part files by the journal).
    pub fn open_buffered(
        root: &Path,
        slot_data: u64,
        slots: u64,
        interval: Duration,
    ) -> io::Result<Journal> {
        Self::open_with(root, slot_data, slots, interval, false)
    }

    fn open_with(
        root: &Path,
        slot_data: u64,
        slots: u64,
        interval: Duration,
        want_direct: bool,
    ) -> io::Result<Journal> {
        let path = root.join(JOURNAL_FILE);
        let mut replayed = Vec::new();
        let mut header = Header {
            generation: 0,
            epoch: 0,
            slot_data: align(slot_data.max(BLOCK)),
            slots: slots.max(2),
            checkpoint_seq: 1,
        };
        let mut file = None;
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => {
                let old = match read_header(&f) {
                    Ok(h) => h,
                    Err(e) => {
                        return Self::set_aside(
                            root,
                            &path,
                            e,
                            slot_data,
                            slots,
                            interval,
                            want_direct,
                        )
                    }
                };
                replayed = replay(&f, &old, root)?;
                if !replayed.is_empty() {
                    syncfs(&f)?;
                }
                header = Header {
                    generation: old.generation + 1,
                    epoch: old.epoch + 1,
                    checkpoint_seq: 1,
                    ..old
                };
                write_header(&f, &header)?;
                file = Some(Arc::new(f));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut idle_records = Vec::new();
        let direct = match &file {
            Some(_) if want_direct => open_direct_records(&path, &header, &mut idle_records),
            _ => None,
        };
        let state = State {
            file,
            direct,
            header,
            free: (0..header.slots).rev().collect(),
            next_seq: 1,
            pending: BTreeMap::new(),
            syncs_started: 0,
            syncs_done: 0,
            syncing: false,
            closing: false,
            failed: false,
            stats: JournalStats::default(),
        };
        let inner = Arc::new(Inner {
            root: root.to_path_buf(),
            interval,
            state: Mutex::new(state),
            cv: Condvar::new(),
            stop_create: AtomicBool::new(false),
            checkpointing: Mutex::new(()),
            writeout: Mutex::new((Vec::new(), false)),
            writeout_cv: Condvar::new(),
            written_out: Mutex::new(Vec::new()),
            copier: Mutex::new(None),
            want_direct,
            idle_records: Mutex::new(idle_records),
        });
        let mut threads = Vec::new();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(f)
        };
        if inner.lock().file.is_none() {
            let me = Arc::clone(&inner);
            threads.push(spawn("fd-journal-make", Box::new(move || me.create()))?);
        }
        let me = Arc::clone(&inner);
        threads.push(spawn(
            "fd-journal-ckpt",
            Box::new(move || me.checkpointer()),
        )?);
        let me = Arc::clone(&inner);
        threads.push(spawn("fd-journal-wout", Box::new(move || me.writer()))?);
        let (tx, rx) = mpsc::channel::<CopyJob>();
        threads.push(spawn(
            "fd-journal-copy",
            Box::new(move || {
                for job in rx {
                    let _ = job
                        .done
                        .send(copy_range(&job.journal, job.from, &job.to, job.len));
                }
            }),
        )?);
        *inner.copier.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        Ok(Journal {
            inner,
            threads: Mutex::new(threads),
            replayed,
            damaged: None,
        })
    }

    /// A journal whose header cannot be read is kept for inspection as `.journal.damaged-<secs>`
    /// (its records cannot be trusted without the header's epoch and checkpoint) and a new one is
    /// made; [`Journal::damaged`] says so, and the archive then runs its full recovery scan.
    fn set_aside(
        root: &Path,
        path: &Path,
        why: io::Error,
        slot_data: u64,
        slots: u64,
        interval: Duration,
        want_direct: bool,
    ) -> io::Result<Journal> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = root.join(format!("{JOURNAL_FILE}.damaged-{secs}"));
        std::fs::rename(path, &aside)?;
        let mut j = Journal::open_with(root, slot_data, slots, interval, want_direct)?;
        j.damaged = Some(format!("{why}; kept as {}", aside.display()));
        Ok(j)
    }

    /// Why the journal found at open was set aside, if it was.
    pub fn damaged(&self) -> Option<&str> {
        self.damaged.as_deref()
    }

    /// Archive-relative paths of the files rewritten from the journal at open.
    pub fn replayed(&self) -> &[String] {
        &self.replayed
    }

    /// The archive root the record paths are relative to.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Largest file (bytes) a record holds; larger instances are fsynced directly.
    pub fn max_record(&self) -> u64 {
        self.inner.lock().header.slot_data
    }

    /// Whether records can be made now (the journal file exists and no I/O error happened).
    pub fn ready(&self) -> bool {
        let st = self.inner.lock();
        st.file.is_some() && !st.failed && !st.closing
    }

    /// Waits up to `timeout` for the journal to become ready.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let st = self.inner.lock();
        let st = self
            .inner
            .cv
            .wait_timeout_while(st, timeout, |st| {
                st.file.is_none() && !st.failed && !st.closing
            })
            .unwrap_or_else(|e| e.into_inner())
            .0;
        st.file.is_some() && !st.failed && !st.closing
    }

    pub fn stats(&self) -> JournalStats {
        self.inner.lock().stats
    }

    /// Whether records are written with direct I/O (see [`DirectRecord`]).
    pub fn writes_direct(&self) -> bool {
        self.inner.lock().direct.is_some()
    }

    /// Takes a free slot for a record that will be written as the data arrives; `None` when the
    /// journal is not ready or every slot is in use (the caller makes its file durable itself).
    pub fn begin(&self) -> Option<Slot> {
        let inner = &self.inner;
        let mut st = inner.lock();
        let file = st.file.clone().filter(|_| !st.failed && !st.closing)?;
        let Some(slot) = st.free.pop() else {
            st.stats.full += 1;
            drop(st);
            inner.cv.notify_all();
            return None;
        };
        let seq = st.next_seq;
        st.next_seq += 1;
        st.pending.insert(
            seq,
            Pending {
                slot,
                committed: false,
                done: false,
                rel: "".into(),
            },
        );
        let h = st.header;
        let direct_file = st.direct.clone();
        drop(st);
        let direct = direct_file.and_then(|file| {
            let idle = inner
                .idle_records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let (ring, buf) = match idle {
                Some(parts) => parts,
                None => (
                    WriteRing::new().ok()?,
                    AlignedBuf::new((BLOCK + h.slot_data) as usize),
                ),
            };
            Some(DirectRecord {
                file,
                parts: Some((ring, buf)),
                submitted: 0,
            })
        });
        Some(Slot {
            inner: Arc::clone(inner),
            file,
            seq,
            base: BLOCK + slot * h.slot_size(),
            capacity: h.slot_data,
            written: 0,
            flushed: 0,
            tail: Vec::with_capacity(BLOCK as usize),
            kicked: 0,
            crc: crc32fast::Hasher::new(),
            direct,
            full: false,
            spoiled: false,
            finished: false,
        })
    }

    /// Copies the first `len` bytes of `src` into a new record for `rel` and commits it (see
    /// [`Slot::commit`]). `Ok(None)`: not journaled (too large, no free slot, not ready). The
    /// data path streams through [`Journal::begin`] instead; this is for the tests.
    #[cfg(test)]
    pub fn append(&self, src: &File, len: u64, rel: &str) -> io::Result<Option<u64>> {
        if len > self.max_record() || !safe_rel(rel) {
            return Ok(None);
        }
        let Some(mut slot) = self.begin() else {
            return Ok(None);
        };
        let mut buf = vec![0u8; CHUNK.min(len as usize).max(1)];
        let mut pos = 0u64;
        while pos < len {
            let n = buf.len().min((len - pos) as usize);
            src.read_exact_at(&mut buf[..n], pos)?;
            if !slot.write(&buf[..n])? {
                return Ok(None);
            }
            pos += n as u64;
        }
        slot.commit(rel, len, None)
    }

    /// Starts writing a journaled file out to disk on the journal's own thread (Linux
    /// `sync_file_range`), so that the checkpoint finds little left to write.
    pub fn write_out(&self, file: &File) {
        if let Ok(f) = file.try_clone() {
            let mut q = self
                .inner
                .writeout
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !q.1 {
                q.0.push(f);
                self.inner.writeout_cv.notify_one();
            }
        }
    }

    /// The file and index row of record `seq` are in place: its slot may be reused after the next
    /// checkpoint.
    pub fn done(&self, seq: u64) {
        let inner = &*self.inner;
        let mut st = inner.lock();
        if let Some(p) = st.pending.get_mut(&seq) {
            p.done = true;
        }
        if st.free.len() as u64 <= st.header.slots / 2 {
            drop(st);
            inner.cv.notify_all();
        }
    }

    /// Record `seq` must not be replayed (placing its file failed after it was committed, or a
    /// newer copy replaced it).
    pub fn cancel(&self, seq: u64) -> io::Result<()> {
        self.inner.cancel(seq)
    }

    /// A newer copy of the file at `rel` is durable by other means (a replacement, fsynced): the
    /// records still holding an older copy are cancelled, so a replay cannot bring it back.
    pub fn supersede(&self, rel: &str) -> io::Result<()> {
        let seqs: Vec<u64> = {
            let st = self.inner.lock();
            st.pending
                .iter()
                .filter(|(_, p)| p.committed && &*p.rel == rel)
                .map(|(s, _)| *s)
                .collect()
        };
        for seq in seqs {
            self.cancel(seq)?;
        }
        Ok(())
    }

    /// Runs one checkpoint now (for tests and `close`); returns whether slots were freed.
    pub fn checkpoint(&self) -> io::Result<bool> {
        self.inner.checkpoint_once()
    }

    /// Final checkpoint of what is done, then stops the threads. Records not reported done stay
    /// in the journal and are replayed at the next open.
    pub fn close(&self) {
        self.inner.lock().closing = true;
        self.inner.stop_create.store(true, Ordering::Relaxed);
        self.inner.cv.notify_all();
        self.inner
            .writeout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1 = true;
        self.inner.writeout_cv.notify_all();
        self.inner
            .copier
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

impl Slot {
    /// Appends data to the record (the file's next bytes). `Ok(false)`: the data would outgrow
    /// the slot and was not taken (the record holds what came before: [`Slot::spill`] it);
    /// `Err`: a write failed, the record can neither be committed nor spilled.
    pub fn write(&mut self, data: &[u8]) -> io::Result<bool> {
        if self.spoiled {
            return Err(io::Error::other(
                "journal record unusable after a write error",
            ));
        }
        let len = data.len() as u64;
        if self.full || self.written + len > self.capacity {
            self.full = true;
            return Ok(false);
        }
        self.crc.update(data);
        if let Some(d) = &mut self.direct {
            let at = self.written;
            self.written += len;
            if d.take(self.base, at, data).is_err() {
                // The part file has every byte (the caller tees): it is made durable without
                // the journal.
                self.full = true;
                return Ok(false);
            }
            return Ok(true);
        }
        self.written += len;
        // Only whole pages are written (the last one at commit, zero-padded): a partial-page
        // write into a page no longer cached would first read it from disk.
        let mut data = data;
        if !self.tail.is_empty() {
            let take = (BLOCK as usize - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < BLOCK as usize {
                return Ok(true);
            }
            let page = std::mem::take(&mut self.tail);
            self.put(&page)?;
            self.tail = page;
            self.tail.clear();
        }
        let whole = data.len() / BLOCK as usize * BLOCK as usize;
        self.put(&data[..whole])?;
        self.tail.extend_from_slice(&data[whole..]);
        if self.flushed - self.kicked >= KICK_STEP {
            // Start the disk write of what arrived so far: the commit's fdatasync then waits
            // for the last bytes only.
            crate::writeback::start_writeback(
                &self.file,
                self.base + BLOCK + self.kicked,
                self.flushed - self.kicked,
            );
            self.kicked = self.flushed;
        }
        Ok(true)
    }

    /// Writes whole pages at the record's flushed end.
    fn put(&mut self, pages: &[u8]) -> io::Result<()> {
        if pages.is_empty() {
            return Ok(());
        }
        match self
            .file
            .write_all_at(pages, self.base + BLOCK + self.flushed)
        {
            Ok(()) => {
                self.flushed += pages.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.spoiled = true;
                Err(e)
            }
        }
    }

    /// Whether the caller must also write every byte it gives this record to its part file
    /// (a direct record: its data is never copied there by the journal). [`Slot::spill`] and
    /// [`Slot::commit`] then write nothing to the part file.
    pub fn tees(&self) -> bool {
        self.direct.is_some()
    }

    /// Data bytes taken so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    /// Whether nothing was taken yet.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Gives the record up and writes what it holds to `to` at its current position (`to` then
    /// continues with the next bytes); the slot is freed.
    pub fn spill(self, to: &File) -> io::Result<()> {
        self.write_data_to(to)
    }

    /// Writes the data taken so far to `to` at its position: the pages already in the journal
    /// (copied in the kernel), then the bytes still waiting for a whole page.
    fn write_data_to(&self, to: &File) -> io::Result<()> {
        if self.direct.is_some() {
            // The caller wrote the part file itself.
            return Ok(());
        }
        if self.spoiled {
            return Err(io::Error::other(
                "journal record unusable after a write error",
            ));
        }
        let in_journal = self.flushed.min(self.written);
        copy_range(&self.file, self.base + BLOCK, to, in_journal)?;
        if in_journal < self.written {
            let mut to = to;
            to.write_all(&self.tail)?;
        }
        Ok(())
    }

    /// Writes the record's header naming the file at `rel` (archive-relative) of `len` bytes and
    /// waits until the record is durable (one `fdatasync` shared by concurrent commits).
    /// `Ok(Some(seq))`: durable; report [`Journal::done`] once the file and its index row no longer
    /// need it. `Ok(None)`: declined (outgrown, length differs, unsafe path, journal failed); the
    /// slot is freed.
    ///
    /// With `copy_to` (an empty file), the data is also written there: by the copier thread while
    /// the sync runs, or here when the record is declined. `Ok` then means that `copy_to` holds
    /// the data (the caller fsyncs it itself after `Ok(None)`), `Err` that it could not be
    /// written (and the record, if written, is cancelled).
    pub fn commit(
        mut self,
        rel: &str,
        len: u64,
        copy_to: Option<&File>,
    ) -> io::Result<Option<u64>> {
        let declined = self.full || self.spoiled || len != self.written || !safe_rel(rel);
        let inner = Arc::clone(&self.inner);
        let failed = inner.lock().failed;
        if self.direct.is_some() {
            return self.commit_direct(rel, declined || failed);
        }
        if !declined && !failed && !self.tail.is_empty() {
            // The last page, zero-padded (`flushed` then runs past `written`).
            let mut page = std::mem::take(&mut self.tail);
            page.resize(BLOCK as usize, 0);
            self.put(&page)?;
        }
        if declined || failed {
            return match copy_to {
                Some(to) => self.write_data_to(to).map(|()| None),
                None => Ok(None),
            };
        }
        let header = RecHeader {
            kind: KIND_INSTANCE,
            epoch: inner.lock().header.epoch,
            seq: self.seq,
            data_len: len,
            data_crc: self.crc.clone().finalize(),
        };
        if let Err(e) = self
            .file
            .write_all_at(&encode_record(&header, rel.as_bytes()), self.base)
        {
            inner.lock().failed = true;
            return match copy_to {
                Some(to) => self.write_data_to(to).map(|()| None),
                None => Err(e),
            };
        }
        self.finished = true;
        // The copy runs on the copier thread while this one waits for the sync.
        let copy = copy_to.map(|to| self.start_copy(to));
        let synced = self.sync(rel);
        let copied = match copy {
            None => Ok(()),
            Some(rx) => rx
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("journal copier stopped"))),
        };
        match (synced, copied) {
            (Ok(()), Ok(())) => Ok(Some(self.seq)),
            (_, Err(e)) => {
                // The file is incomplete: the record must not bring it back either.
                let _ = inner.cancel(self.seq);
                Err(e)
            }
            // The file is complete but the record may not be durable: the caller fsyncs.
            (Err(_), Ok(())) if copy_to.is_some() => Ok(None),
            (Err(e), Ok(())) => Err(e),
        }
    }

    /// [`Slot::commit`] of a direct record: the last piece and the header go with the pieces
    /// still in flight; once all are written, the shared sync makes the record durable. Any
    /// failure declines the record (`Ok(None)`): the part file, which the caller wrote, is then
    /// fsynced instead.
    fn commit_direct(&mut self, rel: &str, declined: bool) -> io::Result<Option<u64>> {
        if declined {
            return Ok(None);
        }
        let header = RecHeader {
            kind: KIND_INSTANCE,
            epoch: self.inner.lock().header.epoch,
            seq: self.seq,
            data_len: self.written,
            data_crc: self.crc.clone().finalize(),
        };
        let record = encode_record(&header, rel.as_bytes());
        let d = self.direct.as_mut().expect("a direct record");
        if d.finish(self.base, self.written, &record).is_err() {
            return Ok(None);
        }
        self.finished = true;
        match self.sync(rel) {
            Ok(()) => Ok(Some(self.seq)),
            Err(_) => Ok(None),
        }
    }

    /// Hands the copy of this committed record's data into `to` to the copier thread (or makes
    /// it here when the journal is closing); the result comes on the returned channel.
    fn start_copy(&self, to: &File) -> mpsc::Receiver<io::Result<()>> {
        let (done, rx) = mpsc::sync_channel(1);
        match to.try_clone() {
            Err(e) => {
                let _ = done.send(Err(e));
            }
            Ok(to) => {
                let job = CopyJob {
                    journal: Arc::clone(&self.file),
                    from: self.base + BLOCK,
                    len: self.written,
                    to,
                    done,
                };
                let copier = self.inner.copier.lock().unwrap_or_else(|e| e.into_inner());
                let unsent = match copier.as_ref() {
                    Some(tx) => tx.send(job).err().map(|e| e.0),
                    None => Some(job),
                };
                drop(copier);
                if let Some(job) = unsent {
                    let _ = job.done.send(job.run());
                }
            }
        }
        rx
    }

    /// Marks the committed record and waits until a sync started after its header was written
    /// has finished (one `fdatasync` shared by every association committing meanwhile).
    fn sync(&self, rel: &str) -> io::Result<()> {
        let inner = &*self.inner;
        let mut st = inner.lock();
        if let Some(p) = st.pending.get_mut(&self.seq) {
            p.committed = true;
            p.rel = rel.into();
        }
        st.stats.appended += 1;
        // Any sync that starts from now on covers this record.
        let want = st.syncs_started + 1;
        loop {
            if st.syncs_done >= want {
                return Ok(());
            }
            if st.failed {
                return Err(io::Error::other("journal sync failed"));
            }
            if st.syncing {
                st = inner.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.syncing = true;
            st.syncs_started += 1;
            st.stats.syncs += 1;
            let mine = st.syncs_started;
            drop(st);
            let synced = self.file.sync_data();
            st = inner.lock();
            st.syncing = false;
            match synced {
                Ok(()) => st.syncs_done = mine,
                Err(_) => st.failed = true,
            }
            inner.cv.notify_all();
        }
    }
}

impl CopyJob {
    fn run(&self) -> io::Result<()> {
        copy_range(&self.journal, self.from, &self.to, self.len)
    }
}

/// A record written with `O_DIRECT` (issue 26): its bytes are copied into an aligned image of the
/// slot (header block, then data) and written from there by io_uring from the association thread,
/// in pieces of [`KICK_STEP`] as they arrive. The commit starts the last (zero-padded) piece and the
/// header block and waits for all, then the shared `fdatasync` flushes the device's cache. No page
/// cache, no write-back, no other thread; the caller writes the part file itself as the bytes
/// arrive (the journal copies nothing into it).
struct DirectRecord {
    file: Arc<File>,
    /// The ring and the slot's image; `None` once given back (or leaked after a ring failure).
    parts: Option<(WriteRing, AlignedBuf)>,
    /// Data bytes whose write has been started (whole blocks).
    submitted: u64,
}

impl DirectRecord {
    /// Copies `data`, the record's bytes from data offset `at`, into the image, and starts writing
    /// the whole blocks now complete once a piece's worth has gathered.
    fn take(&mut self, base: u64, at: u64, data: &[u8]) -> io::Result<()> {
        let (_, buf) = self.parts.as_mut().ok_or_else(released)?;
        buf.put_at((BLOCK + at) as usize, data);
        let whole = (at + data.len() as u64) / BLOCK * BLOCK;
        if whole - self.submitted >= KICK_STEP {
            self.start(base, BLOCK + self.submitted, BLOCK + whole)?;
            self.submitted = whole;
        }
        Ok(())
    }

    /// Starts writing the image's bytes `from..to` (offsets in the slot, whole blocks), in writes
    /// of at most 1 GiB (a slot may be configured larger than one write can take).
    fn start(&mut self, base: u64, from: u64, to: u64) -> io::Result<()> {
        const MAX_WRITE: u64 = 1 << 30;
        let (ring, buf) = self.parts.as_mut().ok_or_else(released)?;
        let mut at = from;
        while at < to {
            let n = (to - at).min(MAX_WRITE);
            // SAFETY: the bytes are in the image, which is neither changed in this range nor
            // freed before the ring is idle again (`finish`, `release`); `file` outlives the
            // ring's use.
            unsafe {
                ring.write(
                    self.file.as_raw_fd(),
                    buf.as_ptr().add(at as usize),
                    n as u32,
                    base + at,
                )?
            };
            at += n;
        }
        Ok(())
    }

    /// Writes the rest of `written` data bytes and the header block holding `record`, and
    /// waits until every write of the record has completed.
    fn finish(&mut self, base: u64, written: u64, record: &[u8]) -> io::Result<()> {
        let end = BLOCK + align(written);
        let from = BLOCK + self.submitted;
        {
            let (_, buf) = self.parts.as_mut().ok_or_else(released)?;
            buf.zero_at((BLOCK + written) as usize, (end - BLOCK - written) as usize);
            buf.zero_at(0, BLOCK as usize);
            buf.put_at(0, record);
        }
        if self.submitted == 0 {
            // Nothing started yet (a small record): header and data in one write.
            self.start(base, 0, end)?;
        } else {
            if end > from {
                self.start(base, from, end)?;
            }
            self.start(base, 0, BLOCK)?;
        }
        self.submitted = end - BLOCK;
        let (ring, _) = self.parts.as_mut().ok_or_else(released)?;
        ring.wait_all()
    }

    /// Waits for the writes in flight and gives back the ring and the image for another record;
    /// `None` if the ring failed with writes in flight (both are then leaked: the kernel may
    /// still read the image).
    fn release(&mut self) -> Option<(WriteRing, AlignedBuf)> {
        let (mut ring, buf) = self.parts.take()?;
        let _ = ring.wait_all();
        if ring.idle() {
            Some((ring, buf))
        } else {
            std::mem::forget(buf);
            std::mem::forget(ring);
            None
        }
    }
}

fn released() -> io::Error {
    io::Error::other("journal record already released")
}

/// The journal opened again with `O_DIRECT` for [`DirectRecord`]s, if the filesystem takes direct
/// I/O and the kernel io_uring; the ring and image made to check are kept in `idle`, and the
/// journal's clean pages leave the page cache.
fn open_direct_records(
    path: &Path,
    h: &Header,
    idle: &mut Vec<(WriteRing, AlignedBuf)>,
) -> Option<Arc<File>> {
    let file = crate::direct::open_direct(path).ok()?;
    let ring = WriteRing::new().ok()?;
    idle.push((ring, AlignedBuf::new((BLOCK + h.slot_data) as usize)));
    // What the zero fill or a replay left cached is never read again: records bypass the cache.
    drop_cached(&file);
    Some(Arc::new(file))
}

/// Copies `len` bytes of `from` starting at `offset` to `to` at its position (which advances):
/// in the kernel with `copy_file_range` where it can, else through a buffer.
fn copy_range(from: &File, offset: u64, to: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut done = 0u64;
    while done < len {
        let mut off = (offset + done) as libc::loff_t;
        // SAFETY: plain syscall on two open descriptors; `off` outlives the call, and a null
        // output offset means "the file position".
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut off,
                to.as_raw_fd(),
                std::ptr::null_mut(),
                (len - done) as usize,
                0,
            )
        };
        if n > 0 {
            done += n as u64;
            continue;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) if n < 0 => continue,
            // Not supported here (another filesystem, an old kernel): through a buffer.
            Some(libc::ENOSYS | libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP) if n < 0 => break,
            _ if n == 0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ => return Err(err),
        }
    }
    let mut buf = vec![0u8; CHUNK.min((len - done) as usize)];
    let mut to = to;
    while done < len {
        let n = buf.len().min((len - done) as usize);
        from.read_exact_at(&mut buf[..n], offset + done)?;
        to.write_all(&buf[..n])?;
        done += n as u64;
    }
    Ok(())
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(d) = &mut self.direct {
            if let Some(parts) = d.release() {
                let mut idle = self
                    .inner
                    .idle_records
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if idle.len() < IDLE_RECORDS {
                    idle.push(parts);
                }
            }
        }
        if !self.finished {
            // Never committed: nothing valid was written, the slot is free again.
            let mut st = self.inner.lock();
            if let Some(p) = st.pending.remove(&self.seq) {
                st.free.push(p.slot);
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// See [`Journal::cancel`].
    fn cancel(&self, seq: u64) -> io::Result<()> {
        let mut st = self.lock();
        let (Some(file), epoch, slot_size) =
            (st.file.clone(), st.header.epoch, st.header.slot_size())
        else {
            return Ok(());
        };
        let Some(p) = st.pending.get_mut(&seq).filter(|p| p.committed) else {
            return Ok(());
        };
        p.done = true;
        let at = BLOCK + p.slot * slot_size;
        drop(st);
        let mut block = vec![0u8; BLOCK as usize];
        file.read_exact_at(&mut block, at)?;
        let (mut h, path) =
            decode_record(&block).ok_or_else(|| io::Error::other("journal record unreadable"))?;
        if h.epoch != epoch || h.seq != seq {
            return Ok(());
        }
        h.kind = KIND_CANCELLED;
        file.write_all_at(&encode_record(&h, &path), at)?;
        file.sync_data()
    }

    /// Creates the journal file: header, then every slot zero-filled (so later overwrites change
    /// no metadata), fsynced, then renamed into place.
    fn create(&self) {
        let tmp = self.root.join(format!("{JOURNAL_FILE}.new"));
        let header = Header {
            generation: 1,
            epoch: 1,
            ..self.lock().header
        };
        let made = (|| -> io::Result<Option<File>> {
            let total = BLOCK + header.slots * header.slot_size();
            // Never take the space instances need: no journal on a filesystem short of room.
            if free_bytes(&self.root)? < 2 * total + MIN_FREE_AFTER {
                return Err(io::Error::other("not enough free space for the journal"));
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            let zeros = vec![0u8; CHUNK];
            let mut pos = 0u64;
            while pos < total {
                if self.stop_create.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let n = zeros.len().min((total - pos) as usize);
                file.write_all_at(&zeros[..n], pos)?;
                pos += n as u64;
            }
            file.write_all_at(&header.encode(), 0)?;
            file.sync_all()?;
            std::fs::rename(&tmp, self.root.join(JOURNAL_FILE))?;
            File::open(&self.root)?.sync_all()?;
            Ok(Some(file))
        })();
        let mut st = self.lock();
        match made {
            Ok(Some(file)) if !st.closing => {
                st.header = header;
                st.file = Some(Arc::new(file));
                if self.want_direct {
                    let mut idle = self.idle_records.lock().unwrap_or_else(|e| e.into_inner());
                    st.direct =
                        open_direct_records(&self.root.join(JOURNAL_FILE), &header, &mut idle);
                }
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&tmp);
            }
            Err(_) => {
                st.failed = true;
                let _ = std::fs::remove_file(&tmp);
            }
        }
        drop(st);
        self.cv.notify_all();
    }

    fn writer(&self) {
        let mut q = self.writeout.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(f) = q.0.pop() {
                drop(q);
                crate::writeback::start_writeback(&f, 0, 0);
                self.written_out
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(f);
                q = self.writeout.lock().unwrap_or_else(|e| e.into_inner());
            } else if q.1 {
                return;
            } else {
                q = self.writeout_cv.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    fn checkpointer(&self) {
        let mut deadline = Instant::now() + self.interval;
        let mut st = self.lock();
        loop {
            if st.closing {
                drop(st);
                let _ = self.checkpoint_once();
                return;
            }
            let ready = st.pending.values().any(|p| p.done);
            let busy = st.free.len() as u64 <= st.header.slots / 2;
            let now = Instant::now();
            if ready && (busy || now >= deadline) {
                drop(st);
                let _ = self.checkpoint_once();
                deadline = Instant::now() + self.interval;
                st = self.lock();
                continue;
            }
            if now >= deadline {
                deadline = now + self.interval;
            }
            st = self
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Makes every file written so far durable (`syncfs`), then frees the slots of the records
    /// reported done and raises the header's checkpoint to the oldest record still needed.
    fn checkpoint_once(&self) -> io::Result<bool> {
        let _one = self.checkpointing.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = self.lock();
        let Some(file) = st.file.clone() else {
            return Ok(false);
        };
        let done: Vec<u64> = st
            .pending
            .iter()
            .filter(|(_, p)| p.done)
            .map(|(s, _)| *s)
            .collect();
        if done.is_empty() {
            return Ok(false);
        }
        let needed = st
            .pending
            .iter()
            .find(|(_, p)| !p.done)
            .map_or(st.next_seq, |(s, _)| *s);
        st.header.generation += 1;
        let header = Header {
            checkpoint_seq: needed,
            ..st.header
        };
        drop(st);
        // Every file handed to the writer so far is complete: the syncfs below makes it durable.
        let written_out =
            std::mem::take(&mut *self.written_out.lock().unwrap_or_else(|e| e.into_inner()));
        // The files of the done records (and their index rows) reach the disk first; only then
        // may their records stop counting.
        let result = syncfs(&file).and_then(|()| write_header(&file, &header));
        if result.is_ok() {
            for f in &written_out {
                drop_cached(f);
            }
        }
        let mut st = self.lock();
        match &result {
            Ok(()) => {
                for seq in done {
                    if let Some(p) = st.pending.remove(&seq) {
                        st.free.push(p.slot);
                    }
                }
                st.stats.checkpoints += 1;
            }
            Err(_) => st.failed = true,
        }
        drop(st);
        self.cv.notify_all();
        result.map(|()| true)
    }
}

/// Drops the (clean, durable) pages of an archive file from the page cache, so that the next
/// instances are written into recently freed memory. Ingest reads none of them back, and in a
/// virtual machine whose host reclaims the guest's free memory (virtio-balloon free page
/// reporting) a page the guest has not used for a while costs a host page fault on first write:
/// on the reference machine, copying into such pages ran at about a third of the speed.
fn drop_cached(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor; no memory is passed.
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// Free space a new journal must leave on its filesystem (beyond twice its own size).
const MIN_FREE_AFTER: u64 = 256 << 20;

/// Bytes available to this process on the filesystem of `dir`.
fn free_bytes(dir: &Path) -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::other("path with a NUL byte"))?;
        // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        Ok(u64::MAX)
    }
}

fn syncfs(file: &File) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on an open descriptor.
        if unsafe { libc::syncfs(file.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        file.sync_all()
    }
}

/// The valid header copy with the higher generation.
fn read_header(file: &File) -> io::Result<Header> {
    let mut b = [0u8; BLOCK as usize];
    file.read_exact_at(&mut b, 0)?;
    let a = Header::decode(&b[..52]);
    let c = Header::decode(&b[2048..2100]);
    let h = match (a, c) {
        (Some(a), Some(c)) => Some(if a.generation >= c.generation { a } else { c }),
        (a, c) => a.or(c),
    }
    .ok_or_else(|| io::Error::other("journal header unreadable (both copies damaged)"))?;
    let len = file.metadata()?.len();
    if h.slot_data == 0
        || !h.slot_data.is_multiple_of(BLOCK)
        || h.slots == 0
        || len < BLOCK + h.slots * h.slot_size()
    {
        return Err(io::Error::other(format!(
            "journal header names {} slots of {} bytes but the file has {len} bytes",
            h.slots, h.slot_data
        )));
    }
    Ok(h)
}

/// Writes the header copy for its generation (alternating places) and makes it durable.
fn write_header(file: &File, h: &Header) -> io::Result<()> {
    let at = if h.generation.is_multiple_of(2) {
        0
    } else {
        2048
    };
    file.write_all_at(&h.encode(), at)?;
    file.sync_data()
}

/// Rewrites the files of the valid records not checkpointed, in sequence order; returns their
/// archive-relative paths.
fn replay(file: &File, h: &Header, root: &Path) -> io::Result<Vec<String>> {
    let mut block = vec![0u8; BLOCK as usize];
    let mut buf = vec![0u8; CHUNK];
    let mut found: BTreeMap<u64, (u64, u64, String)> = BTreeMap::new();
    for slot in 0..h.slots {
        let base = BLOCK + slot * h.slot_size();
        file.read_exact_at(&mut block, base)?;
        let Some((rec, path)) = decode_record(&block) else {
            continue;
        };
        if rec.epoch != h.epoch
            || rec.seq < h.checkpoint_seq
            || rec.kind != KIND_INSTANCE
            || rec.data_len > h.slot_data
        {
            continue;
        }
        let mut crc = crc32fast::Hasher::new();
        let mut pos = 0u64;
        while pos < rec.data_len {
            let n = buf.len().min((rec.data_len - pos) as usize);
            file.read_exact_at(&mut buf[..n], base + BLOCK + pos)?;
            crc.update(&buf[..n]);
            pos += n as u64;
        }
        let rel = String::from_utf8_lossy(&path).into_owned();
        if crc.finalize() == rec.data_crc && safe_rel(&rel) {
            found.insert(rec.seq, (base, rec.data_len, rel));
        }
    }
    let mut paths = Vec::new();
    for (seq, (base, len, rel)) in found {
        let dest = root.join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = root
            .join(".incoming")
            .join(format!("journal-replay-{seq}.part"));
        let out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        copy_range(file, base + BLOCK, &out, len)?;
        drop(out);
        std::fs::rename(&tmp, &dest)?;
        paths.push(rel);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fd-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join(".incoming")).unwrap();
        d
    }

    fn src(dir: &Path, bytes: &[u8]) -> File {
        let p = dir.join(".incoming").join("src.part");
        let mut f = File::create(&p).unwrap();
        f.write_all(bytes).unwrap();
        File::open(&p).unwrap()
    }

    /// 8 slots of 32 KiB (written directly where the folder's filesystem allows it).
    fn open(dir: &Path) -> Journal {
        let j = Journal::open(dir, 32 * 1024, 8, Duration::from_secs(3600)).unwrap();
        assert!(j.wait_ready(Duration::from_secs(30)));
        j
    }

    /// [`open`], records written through the page cache.
    fn open_buffered(dir: &Path) -> Journal {
        let j = Journal::open_buffered(dir, 32 * 1024, 8, Duration::from_secs(3600)).unwrap();
        assert!(j.wait_ready(Duration::from_secs(30)));
        j
    }

    /// Overwrites bytes of the journal file (damage, as a torn write or a bad disk would do).
    fn overwrite(dir: &Path, at: u64, bytes: &[u8]) {
        let f = OpenOptions::new()
            .write(true)
            .open(dir.join(JOURNAL_FILE))
            .unwrap();
        f.write_all_at(bytes, at).unwrap();
    }

    /// A crash: the journal's threads are left running, nothing is closed or checkpointed.
    fn crash(j: Journal) {
        std::mem::forget(j);
    }

    #[test]
    fn records_not_checkpointed_are_replayed_at_open_in_order() {
        let dir = tmpdir("replay");
        let j = open(&dir);
        let a = vec![7u8; 5000];
        let b = vec![9u8; 300];
        let c = vec![4u8; 700];
        let sa = j.append(&src(&dir, &a), 5000, "s1/e1/1.2.dcm").unwrap();
        let sb = j.append(&src(&dir, &b), 300, "s1/e2/1.3.dcm").unwrap();
        // A newer copy of the first file: replay applies records in sequence order.
        let sc = j.append(&src(&dir, &c), 700, "s1/e1/1.2.dcm").unwrap();
        assert_eq!((sa, sb, sc), (Some(1), Some(2), Some(3)));
        crash(j);
        let j = open(&dir);
        assert_eq!(
            j.replayed(),
            ["s1/e1/1.2.dcm", "s1/e2/1.3.dcm", "s1/e1/1.2.dcm"]
        );
        assert_eq!(std::fs::read(dir.join("s1/e1/1.2.dcm")).unwrap(), c);
        assert_eq!(std::fs::read(dir.join("s1/e2/1.3.dcm")).unwrap(), b);
        drop(j);
        // Replayed records are not replayed twice.
        let j = open(&dir);
        assert!(j.replayed().is_empty());
    }

    #[test]
    fn checkpointed_cancelled_and_unfinished_records_are_not_replayed() {
        let dir = tmpdir("checkpoint");
        let j = open(&dir);
        let data = vec![1u8; 10_000];
        let s1 = j
            .append(&src(&dir, &data), 10_000, "a/b/1.dcm")
            .unwrap()
            .unwrap();
        let _s2 = j
            .append(&src(&dir, &data), 10_000, "a/b/2.dcm")
            .unwrap()
            .unwrap();
        let s3 = j
            .append(&src(&dir, &data), 10_000, "a/b/3.dcm")
            .unwrap()
            .unwrap();
        let s4 = j
            .append(&src(&dir, &data), 10_000, "a/b/4.dcm")
            .unwrap()
            .unwrap();
        // Begun and written but never committed (the association ended): not a record.
        let mut open_slot = j.begin().unwrap();
        assert!(open_slot.write(&data).unwrap());
        j.done(s1);
        j.cancel(s3).unwrap();
        j.supersede("a/b/4.dcm").unwrap();
        let _ = s4;
        j.checkpoint().unwrap();
        std::mem::forget(open_slot);
        crash(j);
        let j = open(&dir);
        // 1 was checkpointed; 2 is replayed; 3 was cancelled; 4 superseded; 5 never committed.
        assert_eq!(j.replayed(), ["a/b/2.dcm"]);
    }

    #[test]
    fn slots_run_out_are_reused_after_a_checkpoint_and_oversize_or_hostile_is_declined() {
        let dir = tmpdir("slots");
        let j = open(&dir);
        assert_eq!(j.max_record(), 32 * 1024);
        let data = vec![3u8; 20_000];
        let mut seqs = Vec::new();
        for i in 0..8 {
            seqs.push(
                j.append(&src(&dir, &data), 20_000, &format!("x/y/{i}.dcm"))
                    .unwrap()
                    .unwrap(),
            );
        }
        assert_eq!(
            j.append(&src(&dir, &data), 20_000, "x/y/full.dcm").unwrap(),
            None
        );
        assert_eq!(j.stats().full, 1);
        for s in &seqs[..5] {
            j.done(*s);
        }
        j.checkpoint().unwrap();
        for i in 8..12 {
            assert!(j
                .append(&src(&dir, &data), 20_000, &format!("x/y/{i}.dcm"))
                .unwrap()
                .is_some());
        }
        // Too large, streamed too large, or hostile paths are never journaled.
        assert_eq!(
            j.append(&src(&dir, &[0u8; 40_000]), 40_000, "x/y/big.dcm")
                .unwrap(),
            None
        );
        let mut big = j.begin().unwrap();
        assert!(big.write(&[0u8; 30_000]).unwrap());
        assert!(!big.write(&[0u8; 30_000]).unwrap());
        assert_eq!(big.commit("x/y/big.dcm", 60_000, None).unwrap(), None);
        assert_eq!(
            j.append(&src(&dir, &data), 100, "../escape.dcm").unwrap(),
            None
        );
        assert_eq!(j.append(&src(&dir, &data), 100, "/abs.dcm").unwrap(), None);
        crash(j);
        let j = open(&dir);
        let want: Vec<String> = (5..12).map(|i| format!("x/y/{i}.dcm")).collect();
        assert_eq!(j.replayed(), want.as_slice());
        assert!(!dir.join("x/y/big.dcm").exists());
    }

    #[test]
    fn a_damaged_record_is_skipped_and_the_others_replayed() {
        let dir = tmpdir("torn");
        let j = open(&dir);
        let data = vec![5u8; 9000];
        for i in 0..3 {
            j.append(&src(&dir, &data), 9000, &format!("t/u/{i}.dcm"))
                .unwrap()
                .unwrap();
        }
        crash(j);
        // Damage the second record's data, as a torn write would (slots are taken from 0 up).
        overwrite(&dir, BLOCK + (BLOCK + 32 * 1024) + BLOCK + 100, b"torn");
        let j = open(&dir);
        assert_eq!(j.replayed(), ["t/u/0.dcm", "t/u/2.dcm"]);
        assert!(!dir.join("t/u/1.dcm").exists());
    }

    /// A folder on a disk filesystem (where direct I/O is certain: tmpfs takes it only on recent
    /// kernels): under the build's target directory.
    fn diskdir(name: &str) -> PathBuf {
        let d = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target")
            .join(format!("fd-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join(".incoming")).unwrap();
        d
    }

    /// A journal of `slots` slots of `slot_data` bytes, its records written directly or not.
    fn open_as(dir: &Path, slot_data: u64, slots: u64, direct: bool) -> Journal {
        let j =
            Journal::open_with(dir, slot_data, slots, Duration::from_secs(3600), direct).unwrap();
        assert!(j.wait_ready(Duration::from_secs(30)));
        assert_eq!(
            j.writes_direct(),
            direct,
            "direct records need a filesystem that takes O_DIRECT and a kernel that allows io_uring: this machine refuses one"
        );
        if direct {
            // Made or replayed, the journal leaves the page cache (at most its header block stays).
            assert!(cached_pages(&dir.join(JOURNAL_FILE)) <= 1);
        }
        j
    }

    #[test]
    fn data_streamed_in_odd_pieces_is_replayed_exactly_direct_or_buffered() {
        for direct in [true, false] {
            let dir = diskdir(&format!("pieces-{direct}"));
            let open = || open_as(&dir, 1 << 20, 4, direct);
            let j = open();
            // One record smaller than a write piece (header and data in one direct write), one
            // of several pieces, the last one partial.
            let small: Vec<u8> = (0..30_001u32).map(|i| (i * 7 % 251) as u8).collect();
            let large: Vec<u8> = (0..300_001u32).map(|i| (i * 11 % 253) as u8).collect();
            for (rel, data) in [("p/q/1.dcm", &small), ("p/q/2.dcm", &large)] {
                let mut slot = j.begin().unwrap();
                assert_eq!(slot.tees(), direct);
                let mut at = 0;
                for n in [1, 4095, 3, 5000, 4096, 12_000, 70_000].into_iter().cycle() {
                    let end = (at + n).min(data.len());
                    assert!(slot.write(&data[at..end]).unwrap());
                    at = end;
                    if at == data.len() {
                        break;
                    }
                }
                assert!(slot.commit(rel, data.len() as u64, None).unwrap().is_some());
            }
            crash(j);
            let j = open();
            assert_eq!(j.replayed(), ["p/q/1.dcm", "p/q/2.dcm"]);
            assert_eq!(std::fs::read(dir.join("p/q/1.dcm")).unwrap(), small);
            assert_eq!(std::fs::read(dir.join("p/q/2.dcm")).unwrap(), large);
            drop(j);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// An empty `.part` file to receive a record's data.
    fn part(dir: &Path, name: &str) -> (PathBuf, File) {
        let p = dir.join(".incoming").join(name);
        (p.clone(), File::create(&p).unwrap())
    }

    fn stream(slot: &mut Slot, data: &[u8]) {
        for piece in data.chunks(3001) {
            assert!(slot.write(piece).unwrap());
        }
    }

    /// Pages of the file at `path` in the page cache now (`mincore` of a read-only mapping).
    fn cached_pages(path: &Path) -> usize {
        use std::os::fd::AsRawFd;
        let f = File::open(path).unwrap();
        let len = f.metadata().unwrap().len() as usize;
        let pages = len.div_ceil(4096);
        let mut vec = vec![0u8; pages];
        // SAFETY: a read-only shared mapping of `len` bytes of an open file, unmapped below;
        // `vec` has one byte per page of it.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED);
            assert_eq!(libc::mincore(addr, len, vec.as_mut_ptr()), 0);
            libc::munmap(addr, len);
        }
        vec.iter().filter(|b| **b & 1 == 1).count()
    }

    #[test]
    fn a_checkpoint_drops_the_written_out_files_from_the_page_cache() {
        // On a disk filesystem (tmpfs pages cannot be dropped): the build's target directory.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target")
            .join(format!("fd-journal-dontneed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(".incoming")).unwrap();
        let j = open_buffered(&dir);
        let data: Vec<u8> = (0..30_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (p1, f1) = part(&dir, "1.part");
        let mut slot = j.begin().unwrap();
        stream(&mut slot, &data);
        let seq = slot
            .commit("e/f/1.dcm", data.len() as u64, Some(&f1))
            .unwrap()
            .unwrap();
        // Written but not handed to the writer: a checkpoint leaves it cached.
        let (p2, f2) = part(&dir, "2.part");
        (&f2).write_all(&data).unwrap();
        assert_eq!(cached_pages(&p1), 8);
        j.write_out(&f1);
        j.done(seq);
        // The writer thread takes the file shortly.
        let t = Instant::now();
        while j.inner.written_out.lock().unwrap().is_empty() {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(j.checkpoint().unwrap());
        assert_eq!(cached_pages(&p1), 0);
        assert_eq!(cached_pages(&p2), 8);
        // Dropped from memory, not lost.
        assert_eq!(std::fs::read(&p1).unwrap(), data);
        assert_eq!(std::fs::read(&p2).unwrap(), data);
        drop(j);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_part_file_gets_a_buffered_records_data_by_commit_or_spill_and_nothing_from_a_direct_one()
    {
        for direct in [true, false] {
            let dir = diskdir(&format!("part-{direct}"));
            let open = || open_as(&dir, 32 * 1024, 8, direct);
            let j = open();
            // What the journal itself puts into a part file: a direct record's caller writes it.
            let from_journal = |bytes: &[u8]| if direct { Vec::new() } else { bytes.to_vec() };
            let data: Vec<u8> = (0..20_011u32).map(|i| (i * 13 % 241) as u8).collect();
            // Committed: durable (and, buffered, copied into the part file while the sync ran).
            let (p1, f1) = part(&dir, "1.part");
            let mut slot = j.begin().unwrap();
            assert_eq!(slot.tees(), direct);
            stream(&mut slot, &data);
            let seq = slot.commit("c/d/1.dcm", data.len() as u64, Some(&f1));
            assert_eq!(seq.unwrap(), Some(1));
            assert_eq!(std::fs::read(&p1).unwrap(), from_journal(&data));
            // Declined (hostile path): not a record.
            let (p2, f2) = part(&dir, "2.part");
            let mut slot = j.begin().unwrap();
            stream(&mut slot, &data);
            assert_eq!(
                slot.commit("../2.dcm", data.len() as u64, Some(&f2))
                    .unwrap(),
                None
            );
            assert_eq!(std::fs::read(&p2).unwrap(), from_journal(&data));
            // Outgrowing the 32 KiB slot: spilled, the file takes the rest.
            let big: Vec<u8> = data.iter().chain(data.iter()).copied().collect();
            let (p3, f3) = part(&dir, "3.part");
            let mut slot = j.begin().unwrap();
            stream(&mut slot, &big[..30_000]);
            assert!(!slot.write(&big[30_000..]).unwrap());
            slot.spill(&f3).unwrap();
            (&f3).write_all(&big[30_000..]).unwrap();
            let mut expected = from_journal(&big[..30_000]);
            expected.extend_from_slice(&big[30_000..]);
            assert_eq!(std::fs::read(&p3).unwrap(), expected);
            // Declined and spilled slots are free again: 7 of 8 can still be taken.
            let taken: Vec<Slot> = std::iter::from_fn(|| j.begin()).take(8).collect();
            assert_eq!(taken.len(), 7);
            drop(taken);
            if direct {
                // Their images are kept for the next records.
                assert!(!j.inner.idle_records.lock().unwrap().is_empty());
            }
            crash(j);
            let j = open();
            assert_eq!(j.replayed(), ["c/d/1.dcm"]);
            assert_eq!(std::fs::read(dir.join("c/d/1.dcm")).unwrap(), data);
            drop(j);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn a_journal_with_a_damaged_header_is_set_aside() {
        let dir = tmpdir("damaged");
        let j = open(&dir);
        j.append(&src(&dir, &[1u8; 100]), 100, "d/e/1.dcm")
            .unwrap()
            .unwrap();
        crash(j);
        overwrite(&dir, 0, &[0xffu8; 4096]);
        let j = open(&dir);
        assert!(j.damaged().unwrap().contains("header unreadable"));
        assert!(j.replayed().is_empty());
        let aside: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".journal.damaged-")
            })
            .collect();
        assert_eq!(aside.len(), 1);
        // The new journal works.
        assert!(j
            .append(&src(&dir, &[2u8; 100]), 100, "d/e/2.dcm")
            .unwrap()
            .is_some());
    }

    #[test]
    fn concurrent_commits_share_syncs_and_a_clean_close_leaves_nothing() {
        let dir = tmpdir("group");
        let j = Arc::new(Journal::open(&dir, 128 * 1024, 64, Duration::from_millis(50)).unwrap());
        assert!(j.wait_ready(Duration::from_secs(30)));
        let data = vec![2u8; 64 * 1024];
        let handles: Vec<_> = (0..4)
            .map(|k| {
                let j = Arc::clone(&j);
                let data = data.clone();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        let mut slot = loop {
                            // Every slot may be waiting for its checkpoint: retry (bounded).
                            if let Some(s) = j.begin() {
                                break s;
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        };
                        for part in data.chunks(16 * 1024) {
                            assert!(slot.write(part).unwrap());
                        }
                        let seq = slot
                            .commit(&format!("g/{k}/{i}.dcm"), 64 * 1024, None)
                            .unwrap()
                            .unwrap();
                        j.done(seq);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = j.stats();
        assert_eq!(s.appended, 80);
        assert!(s.syncs <= 80);
        j.close();
        let j2 = open(&dir);
        assert!(j2.replayed().is_empty());
        drop(j2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
