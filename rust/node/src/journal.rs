//! A write-ahead journal that makes small received instances durable with one data write and one
//! flush (durability "full").
//!
//! Making a *new* file durable costs its data, its inode, its directory entry and several device
//! flushes: ~0.8 ms for a 512 KiB file on the reference disk, which bounds a synchronous sender
//! (PS3.7 §9.1.1: one C-STORE-RSP per C-STORE-RQ). Overwriting blocks of a file that already exists
//! and is fully written changes no metadata, so `fdatasync` costs one data write and one flush
//! (~0.4 ms). So each instance up to [`Journal::max_record`] is appended here (its complete Part 10
//! bytes and its path in the archive, CRC-protected), the C-STORE is answered once the record is
//! durable, and the archive file and its index row are made durable later, many at a time (a
//! checkpoint: `syncfs`), after which their records are given up. At open, the records written
//! after the last checkpoint are replayed: their files are written again.
//!
//! Layout of `<archive>/.journal`: two header copies (offsets 0 and 2048, written alternately, the
//! valid one with the higher generation wins, so a torn header write loses nothing), then a ring
//! of `ring` bytes. Records are 4 KiB aligned: a 4 KiB block (64-byte header + path) then the data.
//! A record never wraps: a `WRAP` marker sends the reader back to the ring's start. A record is
//! valid when its magic, header CRC, epoch (bumped at every open, so an older life's records never
//! count) and sequence number (consecutive) match and its data CRC is right.
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// File name of the journal inside the archive root.
pub const JOURNAL_FILE: &str = ".journal";
const BLOCK: u64 = 4096;
const HEAD_MAGIC: &[u8; 4] = b"FDJH";
const REC_MAGIC: &[u8; 4] = b"FDJR";
const KIND_INSTANCE: u32 = 1;
const KIND_WRAP: u32 = 2;
const KIND_CANCELLED: u32 = 3;
const CHUNK: usize = 1 << 20;

fn align(n: u64) -> u64 {
    n.div_ceil(BLOCK) * BLOCK
}

/// Counters for the node's statistics and the benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct JournalStats {
    /// Records appended (instances acknowledged through the journal).
    pub appended: u64,
    /// Appends refused because the ring had no room (the caller fsyncs the file instead).
    pub full: u64,
    /// `fdatasync` calls made for appends (fewer than `appended` when associations share one).
    pub syncs: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
}

#[derive(Clone, Copy)]
struct Header {
    generation: u64,
    epoch: u64,
    ring: u64,
    tail_v: u64,
    tail_seq: u64,
}

impl Header {
    fn encode(&self) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[0..4].copy_from_slice(HEAD_MAGIC);
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..16].copy_from_slice(&self.generation.to_le_bytes());
        b[16..24].copy_from_slice(&self.epoch.to_le_bytes());
        b[24..32].copy_from_slice(&self.ring.to_le_bytes());
        b[32..40].copy_from_slice(&self.tail_v.to_le_bytes());
        b[40..44].copy_from_slice(&(self.tail_seq as u32).to_le_bytes());
        let crc = crc32fast::hash(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Header> {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        if &b[0..4] != HEAD_MAGIC
            || crc32fast::hash(&b[..44]) != u32::from_le_bytes(b[44..48].try_into().unwrap())
        {
            return None;
        }
        Some(Header {
            generation: u64_at(8),
            epoch: u64_at(16),
            ring: u64_at(24),
            tail_v: u64_at(32),
            tail_seq: u32::from_le_bytes(b[40..44].try_into().unwrap()) as u64,
        })
    }
}

/// One record header (the 4 KiB block's first bytes, then the path).
struct RecHeader {
    kind: u32,
    epoch: u64,
    seq: u64,
    data_len: u64,
    data_crc: u32,
}

fn encode_record(h: &RecHeader, path: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 64 + path.len()];
    b[0..4].copy_from_slice(REC_MAGIC);
    b[4..8].copy_from_slice(&h.kind.to_le_bytes());
    b[8..16].copy_from_slice(&h.epoch.to_le_bytes());
    // Sequence numbers are 32-bit on disk (they restart at every open's epoch).
    b[16..20].copy_from_slice(&(h.seq as u32).to_le_bytes());
    b[20..24].copy_from_slice(&(path.len() as u32).to_le_bytes());
    b[24..32].copy_from_slice(&h.data_len.to_le_bytes());
    b[32..36].copy_from_slice(&h.data_crc.to_le_bytes());
    b[64..].copy_from_slice(path);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&b[..40]);
    crc.update(path);
    let crc = crc.finalize();
    b[40..44].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_record(block: &[u8]) -> Option<(RecHeader, Vec<u8>)> {
    if block.len() < 64 || &block[0..4] != REC_MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(block[i..i + 4].try_into().unwrap());
    let path_len = u32_at(20) as usize;
    if 64 + path_len > block.len() {
        return None;
    }
    let path = &block[64..64 + path_len];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&block[..40]);
    crc.update(path);
    if crc.finalize() != u32_at(40) {
        return None;
    }
    Some((
        RecHeader {
            kind: u32_at(4),
            epoch: u64::from_le_bytes(block[8..16].try_into().unwrap()),
            seq: u32_at(16) as u64,
            data_len: u64::from_le_bytes(block[24..32].try_into().unwrap()),
            data_crc: u32_at(32),
        },
        path.to_vec(),
    ))
}

/// A path inside the archive that is safe to recreate: relative, only normal components.
fn safe_rel(rel: &str) -> bool {
    !rel.is_empty()
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

struct Pending {
    seq: u64,
    start_v: u64,
    end_v: u64,
    done: bool,
    /// The record's archive path (for [`Journal::supersede`]).
    rel: Box<str>,
}

struct State {
    file: Option<Arc<File>>,
    header: Header,
    head_v: u64,
    tail_v: u64,
    next_seq: u64,
    pending: VecDeque<Pending>,
    /// Every record with a smaller sequence number is durable.
    synced_seq: u64,
    syncing: bool,
    closing: bool,
    /// An I/O error made the journal unusable for this life; callers fsync their files instead.
    failed: bool,
    stats: JournalStats,
}

struct Inner {
    root: PathBuf,
    ring: u64,
    interval: Duration,
    state: Mutex<State>,
    /// Wakes appenders waiting for a group sync and the checkpointer.
    cv: Condvar,
    stop_create: AtomicBool,
    checkpoint_gen: AtomicU64,
    /// One checkpoint at a time (the tail only moves forward, headers in generation order).
    checkpointing: Mutex<()>,
    /// Journaled files whose write-out is to be started (see [`Journal::write_out`]).
    writeout: Mutex<(VecDeque<File>, bool)>,
    writeout_cv: Condvar,
}

/// The journal of one archive (see the module documentation). Shared by every association.
pub struct Journal {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    replayed: Vec<String>,
}

impl Journal {
    /// Opens `<root>/.journal`, replaying the records after its last checkpoint (their files are
    /// written again under `root`, and the paths returned by [`Journal::replayed`]). Without a
    /// journal, one of `ring` bytes is created and zero-filled by a background thread (appends
    /// return `None` until it is ready: the caller fsyncs its files meanwhile). A checkpoint runs
    /// when a quarter of the ring is in use, or every `interval` while records wait.
    pub fn open(root: &Path, ring: u64, interval: Duration) -> io::Result<Journal> {
        let ring = align(ring.max(16 * BLOCK));
        let path = root.join(JOURNAL_FILE);
        let mut replayed = Vec::new();
        let mut state = State {
            file: None,
            header: Header {
                generation: 0,
                epoch: 0,
                ring,
                tail_v: 0,
                tail_seq: 1,
            },
            head_v: 0,
            tail_v: 0,
            next_seq: 1,
            pending: VecDeque::new(),
            synced_seq: 1,
            syncing: false,
            closing: false,
            failed: false,
            stats: JournalStats::default(),
        };
        let existing = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(file) = existing {
            let header = read_header(&file)?;
            let (end_v, paths) = replay(&file, &header, root)?;
            replayed = paths;
            if !replayed.is_empty() {
                syncfs(&file)?;
            }
            let header = Header {
                generation: header.generation + 1,
                epoch: header.epoch + 1,
                ring: header.ring,
                tail_v: end_v,
                tail_seq: 1,
            };
            write_header(&file, &header)?;
            state.header = header;
            state.head_v = end_v;
            state.tail_v = end_v;
            state.file = Some(Arc::new(file));
        }
        let ring = state.header.ring;
        let inner = Arc::new(Inner {
            root: root.to_path_buf(),
            ring,
            interval,
            state: Mutex::new(state),
            cv: Condvar::new(),
            stop_create: AtomicBool::new(false),
            checkpoint_gen: AtomicU64::new(0),
            checkpointing: Mutex::new(()),
            writeout: Mutex::new((VecDeque::new(), false)),
            writeout_cv: Condvar::new(),
        });
        let mut threads = Vec::new();
        if inner.lock().file.is_none() {
            let me = Arc::clone(&inner);
            threads.push(
                std::thread::Builder::new()
                    .name("ferrodicom-journal-create".into())
                    .spawn(move || me.create())?,
            );
        }
        let me = Arc::clone(&inner);
        threads.push(
            std::thread::Builder::new()
                .name("ferrodicom-journal-checkpoint".into())
                .spawn(move || me.checkpointer())?,
        );
        let me = Arc::clone(&inner);
        threads.push(
            std::thread::Builder::new()
                .name("ferrodicom-journal-writeout".into())
                .spawn(move || me.writer())?,
        );
        Ok(Journal {
            inner,
            threads: Mutex::new(threads),
            replayed,
        })
    }

    /// Archive-relative paths of the files rewritten from the journal at open.
    pub fn replayed(&self) -> &[String] {
        &self.replayed
    }

    /// The archive root the record paths are relative to.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Largest instance (bytes) that goes through the journal; larger ones are fsynced directly
    /// (writing their bytes twice would cost more than the fsync saves).
    pub fn max_record(&self) -> u64 {
        (self.inner.ring / 8).min(16 << 20)
    }

    /// Whether appends can be made now (the journal file exists and no I/O error happened).
    pub fn ready(&self) -> bool {
        let st = self.inner.lock();
        st.file.is_some() && !st.failed && !st.closing
    }

    /// Waits up to `timeout` for the journal to become ready.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut st = self.inner.lock();
        while st.file.is_none() && !st.failed && !st.closing {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .inner
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.file.is_some() && !st.failed && !st.closing
    }

    pub fn stats(&self) -> JournalStats {
        self.inner.lock().stats
    }

    /// Appends the first `len` bytes of `src` as the file to be found at `rel` (relative to the
    /// root) and waits until the record is durable (one `fdatasync` shared by concurrent appends).
    /// `Ok(None)`: not journaled (too large, ring full, not ready): the caller makes the file
    /// durable itself. `Ok(Some(seq))`: durable; the caller reports [`Journal::done`] once the
    /// file and its index row no longer need the record.
    pub fn append(&self, src: &File, len: u64, rel: &str) -> io::Result<Option<u64>> {
        if len > self.max_record() || rel.len() > (BLOCK as usize - 64) || !safe_rel(rel) {
            return Ok(None);
        }
        let inner = &*self.inner;
        let rec_len = BLOCK + align(len);
        let mut st = inner.lock();
        let Some(file) = st.file.clone().filter(|_| !st.failed && !st.closing) else {
            return Ok(None);
        };
        let mut v = st.head_v;
        let wrap = (v % inner.ring + rec_len > inner.ring).then_some(v);
        if wrap.is_some() {
            v += inner.ring - v % inner.ring;
        }
        if v + rec_len - st.tail_v > inner.ring {
            st.stats.full += 1;
            drop(st);
            inner.cv.notify_all();
            return Ok(None);
        }
        let seq = st.next_seq;
        let epoch = st.header.epoch;
        // Written under the lock, so a group sync covers every record numbered below `next_seq`.
        let written = (|| -> io::Result<()> {
            if let Some(w) = wrap {
                let marker = RecHeader {
                    kind: KIND_WRAP,
                    epoch,
                    seq,
                    data_len: 0,
                    data_crc: 0,
                };
                file.write_all_at(&encode_record(&marker, b""), inner.phys(w))?;
            }
            let mut crc = crc32fast::Hasher::new();
            let mut buf = vec![0u8; CHUNK.min(len as usize).max(1)];
            let mut pos = 0u64;
            while pos < len {
                let n = buf.len().min((len - pos) as usize);
                src.read_exact_at(&mut buf[..n], pos)?;
                crc.update(&buf[..n]);
                file.write_all_at(&buf[..n], inner.phys(v) + BLOCK + pos)?;
                pos += n as u64;
            }
            let header = RecHeader {
                kind: KIND_INSTANCE,
                epoch,
                seq,
                data_len: len,
                data_crc: crc.finalize(),
            };
            file.write_all_at(&encode_record(&header, rel.as_bytes()), inner.phys(v))
        })();
        if let Err(e) = written {
            st.failed = true;
            drop(st);
            inner.cv.notify_all();
            return Err(e);
        }
        st.next_seq += 1;
        st.head_v = v + rec_len;
        st.pending.push_back(Pending {
            seq,
            start_v: v,
            end_v: v + rec_len,
            done: false,
            rel: rel.into(),
        });
        st.stats.appended += 1;
        self.sync_wait(st, seq, &file)
    }

    /// Waits until record `seq` is durable: the first waiter syncs for everyone written so far
    /// (group commit), the others wait for it.
    fn sync_wait<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        seq: u64,
        file: &File,
    ) -> io::Result<Option<u64>> {
        let inner = &*self.inner;
        loop {
            if st.synced_seq > seq {
                return Ok(Some(seq));
            }
            if st.failed {
                return Err(io::Error::other("journal sync failed"));
            }
            if st.syncing {
                st = inner.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.syncing = true;
            st.stats.syncs += 1;
            let target = st.next_seq;
            drop(st);
            let synced = file.sync_data();
            st = inner.lock();
            st.syncing = false;
            match synced {
                Ok(()) => st.synced_seq = st.synced_seq.max(target),
                Err(_) => st.failed = true,
            }
            inner.cv.notify_all();
        }
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
                q.0.push_back(f);
                self.inner.writeout_cv.notify_one();
            }
        }
    }

    /// The file and index row of record `seq` are in place: its record may go at the next
    /// checkpoint.
    pub fn done(&self, seq: u64) {
        let inner = &*self.inner;
        let mut st = inner.lock();
        if let Some(p) = st.find(seq) {
            p.done = true;
        }
        if st.head_v - st.tail_v >= inner.ring / 4 {
            drop(st);
            inner.cv.notify_all();
        }
    }

    /// Record `seq` must not be replayed (placing its file failed after it was appended).
    pub fn cancel(&self, seq: u64) -> io::Result<()> {
        let inner = &*self.inner;
        let mut st = inner.lock();
        let epoch = st.header.epoch;
        let Some(file) = st.file.clone() else {
            return Ok(());
        };
        let Some(p) = st.find(seq) else {
            return Ok(());
        };
        p.done = true;
        let at = inner.phys(p.start_v);
        drop(st);
        let mut block = vec![0u8; BLOCK as usize];
        file.read_exact_at(&mut block, at)?;
        let (mut h, path) =
            decode_record(&block).ok_or_else(|| io::Error::other("journal record unreadable"))?;
        if h.epoch != epoch {
            return Ok(());
        }
        h.kind = KIND_CANCELLED;
        file.write_all_at(&encode_record(&h, &path), at)?;
        file.sync_data()
    }

    /// A newer copy of the file at `rel` is durable by other means (a replacement, fsynced): the
    /// records still holding an older copy are cancelled, so a replay cannot bring it back.
    pub fn supersede(&self, rel: &str) -> io::Result<()> {
        let seqs: Vec<u64> = {
            let st = self.inner.lock();
            st.pending
                .iter()
                .filter(|p| &*p.rel == rel)
                .map(|p| p.seq)
                .collect()
        };
        for seq in seqs {
            self.cancel(seq)?;
        }
        Ok(())
    }

    /// Runs one checkpoint now (for tests and `close`); returns whether the tail moved.
    pub fn checkpoint(&self) -> io::Result<bool> {
        self.inner.checkpoint_once()
    }

    /// Final checkpoint of what is done, then stops the threads. Records not reported done stay
    /// in the journal and are replayed at the next open.
    pub fn close(&self) {
        {
            let mut st = self.inner.lock();
            st.closing = true;
        }
        self.inner.stop_create.store(true, Ordering::Relaxed);
        self.inner.cv.notify_all();
        self.inner
            .writeout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1 = true;
        self.inner.writeout_cv.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Checkpoints completed so far.
    pub fn checkpoints(&self) -> u64 {
        self.inner.checkpoint_gen.load(Ordering::Relaxed)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

impl State {
    fn find(&mut self, seq: u64) -> Option<&mut Pending> {
        let front = self.pending.front()?.seq;
        let i = seq.checked_sub(front)? as usize;
        self.pending.get_mut(i).filter(|p| p.seq == seq)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn phys(&self, v: u64) -> u64 {
        BLOCK + v % self.ring
    }

    /// Creates the journal file: headers, then the ring zero-filled (so later overwrites change
    /// no metadata), fsynced, then renamed into place.
    fn create(&self) {
        let tmp = self.root.join(format!("{JOURNAL_FILE}.new"));
        let made = (|| -> io::Result<Option<File>> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            let zeros = vec![0u8; CHUNK];
            let total = BLOCK + self.ring;
            let mut pos = 0u64;
            while pos < total {
                if self.stop_create.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let n = zeros.len().min((total - pos) as usize);
                file.write_all_at(&zeros[..n], pos)?;
                pos += n as u64;
            }
            let header = Header {
                generation: 1,
                epoch: 1,
                ring: self.ring,
                tail_v: 0,
                tail_seq: 1,
            };
            file.write_all_at(&header.encode(), 0)?;
            file.sync_all()?;
            std::fs::rename(&tmp, self.root.join(JOURNAL_FILE))?;
            File::open(&self.root)?.sync_all()?;
            Ok(Some(file))
        })();
        let mut st = self.lock();
        match made {
            Ok(Some(file)) if !st.closing => {
                st.header = Header {
                    generation: 1,
                    epoch: 1,
                    ring: self.ring,
                    tail_v: 0,
                    tail_seq: 1,
                };
                st.file = Some(Arc::new(file));
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
            if let Some(f) = q.0.pop_front() {
                drop(q);
                crate::storage::start_writeback(&f, 0);
                drop(f);
                q = self.writeout.lock().unwrap_or_else(|e| e.into_inner());
            } else if q.1 {
                return;
            } else {
                q = self.writeout_cv.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    fn checkpointer(&self) {
        let mut deadline = std::time::Instant::now() + self.interval;
        let mut st = self.lock();
        loop {
            if st.closing {
                drop(st);
                let _ = self.checkpoint_once();
                return;
            }
            let ready = st.pending.front().is_some_and(|p| p.done);
            let busy = st.head_v - st.tail_v >= self.ring / 4;
            let now = std::time::Instant::now();
            if ready && (busy || now >= deadline) {
                drop(st);
                let _ = self.checkpoint_once();
                deadline = std::time::Instant::now() + self.interval;
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

    /// Makes every file written so far durable (`syncfs`), then moves the tail past the leading
    /// records reported done.
    fn checkpoint_once(&self) -> io::Result<bool> {
        let _one = self.checkpointing.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = self.lock();
        let Some(file) = st.file.clone() else {
            return Ok(false);
        };
        let mut last = None;
        while st.pending.front().is_some_and(|p| p.done) {
            last = st.pending.pop_front().map(|p| p.end_v);
        }
        let Some(end_v) = last else {
            return Ok(false);
        };
        let header = Header {
            generation: st.header.generation + 1,
            tail_v: end_v,
            tail_seq: st.pending.front().map_or(st.next_seq, |p| p.seq),
            ..st.header
        };
        st.header.generation += 1;
        drop(st);
        let result = syncfs(&file).and_then(|()| write_header(&file, &header));
        let mut st = self.lock();
        match &result {
            Ok(()) => {
                st.tail_v = end_v;
                st.stats.checkpoints += 1;
                self.checkpoint_gen.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => st.failed = true,
        }
        drop(st);
        self.cv.notify_all();
        result.map(|()| true)
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
    let a = Header::decode(&b[..48]);
    let c = Header::decode(&b[2048..2096]);
    let h = match (a, c) {
        (Some(a), Some(c)) => Some(if a.generation >= c.generation { a } else { c }),
        (a, c) => a.or(c),
    }
    .ok_or_else(|| io::Error::other("journal header unreadable (both copies damaged)"))?;
    let len = file.metadata()?.len();
    if h.ring == 0 || h.ring % BLOCK != 0 || len < BLOCK + h.ring {
        return Err(io::Error::other(format!(
            "journal header names a {} byte ring but the file has {len} bytes",
            h.ring
        )));
    }
    Ok(h)
}

/// Writes the header copy for its generation (alternating slots) and makes it durable.
fn write_header(file: &File, h: &Header) -> io::Result<()> {
    let at = if h.generation.is_multiple_of(2) {
        0
    } else {
        2048
    };
    file.write_all_at(&h.encode(), at)?;
    file.sync_data()
}

/// Rewrites the files of the valid records after the header's tail; returns the virtual end of
/// the last one and the paths rewritten.
fn replay(file: &File, h: &Header, root: &Path) -> io::Result<(u64, Vec<String>)> {
    let ring = h.ring;
    let phys = |v: u64| BLOCK + v % ring;
    let mut v = h.tail_v;
    let mut seq = h.tail_seq;
    let mut paths = Vec::new();
    let mut block = vec![0u8; BLOCK as usize];
    let mut buf = vec![0u8; CHUNK];
    let mut walked = 0u64;
    while walked < ring {
        file.read_exact_at(&mut block, phys(v))?;
        let Some((rec, path)) = decode_record(&block) else {
            break;
        };
        if rec.epoch != h.epoch || rec.seq != seq & 0xffff_ffff {
            break;
        }
        if rec.kind == KIND_WRAP {
            let skip = ring - v % ring;
            v += skip;
            walked += skip;
            continue;
        }
        let rec_len = BLOCK + align(rec.data_len);
        if v % ring + rec_len > ring || (rec.kind != KIND_INSTANCE && rec.kind != KIND_CANCELLED) {
            break;
        }
        // Check the data before writing anything.
        let mut crc = crc32fast::Hasher::new();
        let mut pos = 0u64;
        while pos < rec.data_len {
            let n = buf.len().min((rec.data_len - pos) as usize);
            file.read_exact_at(&mut buf[..n], phys(v) + BLOCK + pos)?;
            crc.update(&buf[..n]);
            pos += n as u64;
        }
        if crc.finalize() != rec.data_crc {
            break;
        }
        let rel = String::from_utf8_lossy(&path).into_owned();
        if rec.kind == KIND_INSTANCE && safe_rel(&rel) {
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
            let mut pos = 0u64;
            while pos < rec.data_len {
                let n = buf.len().min((rec.data_len - pos) as usize);
                file.read_exact_at(&mut buf[..n], phys(v) + BLOCK + pos)?;
                out.write_all_at(&buf[..n], pos)?;
                pos += n as u64;
            }
            drop(out);
            std::fs::rename(&tmp, &dest)?;
            paths.push(rel);
        }
        v += rec_len;
        walked += rec_len;
        seq += 1;
    }
    Ok((v, paths))
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

    fn open(dir: &Path, ring: u64) -> Journal {
        let j = Journal::open(dir, ring, Duration::from_secs(3600)).unwrap();
        assert!(j.wait_ready(Duration::from_secs(30)));
        j
    }

    #[test]
    fn records_not_checkpointed_are_replayed_at_open() {
        let dir = tmpdir("replay");
        let j = open(&dir, 1 << 20);
        let a = vec![7u8; 5000];
        let b = vec![9u8; 300];
        let sa = j
            .append(&src(&dir, &a), a.len() as u64, "s1/e1/1.2.dcm")
            .unwrap();
        let sb = j
            .append(&src(&dir, &b), b.len() as u64, "s1/e2/1.3.dcm")
            .unwrap();
        assert_eq!((sa, sb), (Some(1), Some(2)));
        // Simulate a crash: no checkpoint, no close (the threads are left to the drop).
        std::mem::forget(j);
        let j = open(&dir, 1 << 20);
        assert_eq!(j.replayed(), ["s1/e1/1.2.dcm", "s1/e2/1.3.dcm"]);
        assert_eq!(std::fs::read(dir.join("s1/e1/1.2.dcm")).unwrap(), a);
        assert_eq!(std::fs::read(dir.join("s1/e2/1.3.dcm")).unwrap(), b);
        drop(j);
        // Replayed records are not replayed twice.
        let j = open(&dir, 1 << 20);
        assert!(j.replayed().is_empty());
    }

    #[test]
    fn checkpointed_and_cancelled_records_are_not_replayed() {
        let dir = tmpdir("checkpoint");
        let j = open(&dir, 1 << 20);
        let data = vec![1u8; 10_000];
        let s1 = j
            .append(&src(&dir, &data), 10_000, "a/b/1.dcm")
            .unwrap()
            .unwrap();
        let s2 = j
            .append(&src(&dir, &data), 10_000, "a/b/2.dcm")
            .unwrap()
            .unwrap();
        let s3 = j
            .append(&src(&dir, &data), 10_000, "a/b/3.dcm")
            .unwrap()
            .unwrap();
        j.done(s1);
        j.cancel(s3).unwrap();
        j.checkpoint().unwrap();
        std::mem::forget(j);
        let j = open(&dir, 1 << 20);
        // 1 was checkpointed; 2 is replayed; 3 was cancelled.
        assert_eq!(j.replayed(), ["a/b/2.dcm"]);
        let _ = s2;
    }

    #[test]
    fn the_ring_wraps_refuses_when_full_and_replay_follows_the_wrap() {
        let dir = tmpdir("wrap");
        let ring = 64 * BLOCK; // 256 KiB; max record 32 KiB
        let j = open(&dir, ring);
        assert_eq!(j.max_record(), ring / 8);
        let data = vec![3u8; 20_000]; // 5 blocks + 1 header block each
        let mut seqs = Vec::new();
        for i in 0..10 {
            seqs.push(
                j.append(&src(&dir, &data), 20_000, &format!("x/y/{i}.dcm"))
                    .unwrap()
                    .unwrap(),
            );
        }
        // 10 × 24 KiB = 240 KiB of 256: the next one does not fit before the tail moves.
        assert_eq!(
            j.append(&src(&dir, &data), 20_000, "x/y/full.dcm").unwrap(),
            None
        );
        assert_eq!(j.stats().full, 1);
        for s in &seqs[..6] {
            j.done(*s);
        }
        j.checkpoint().unwrap();
        // Now it fits, wrapping to the ring's start.
        for i in 10..14 {
            assert!(j
                .append(&src(&dir, &data), 20_000, &format!("x/y/{i}.dcm"))
                .unwrap()
                .is_some());
        }
        std::mem::forget(j);
        let j = open(&dir, ring);
        let want: Vec<String> = (6..14).map(|i| format!("x/y/{i}.dcm")).collect();
        assert_eq!(j.replayed(), want.as_slice());
        // Too large or hostile paths are never journaled.
        assert_eq!(
            j.append(&src(&dir, &vec![0u8; 40_000]), 40_000, "x/y/big.dcm")
                .unwrap(),
            None
        );
        assert_eq!(
            j.append(&src(&dir, &data), 100, "../escape.dcm").unwrap(),
            None
        );
        assert_eq!(j.append(&src(&dir, &data), 100, "/abs.dcm").unwrap(), None);
    }

    #[test]
    fn a_damaged_record_ends_the_replay() {
        let dir = tmpdir("torn");
        let j = open(&dir, 1 << 20);
        let data = vec![5u8; 9000];
        for i in 0..3 {
            j.append(&src(&dir, &data), 9000, &format!("t/u/{i}.dcm"))
                .unwrap()
                .unwrap();
        }
        std::mem::forget(j);
        // Damage the second record's data (as a torn write would).
        let f = OpenOptions::new()
            .write(true)
            .open(dir.join(JOURNAL_FILE))
            .unwrap();
        let second = BLOCK + (BLOCK + align(9000)) + BLOCK + 100;
        f.write_all_at(b"torn", second).unwrap();
        let j = open(&dir, 1 << 20);
        assert_eq!(j.replayed(), ["t/u/0.dcm"]);
        assert!(!dir.join("t/u/1.dcm").exists());
    }

    #[test]
    fn concurrent_appends_share_syncs() {
        let dir = tmpdir("group");
        let j = Arc::new(open(&dir, 8 << 20));
        let data = vec![2u8; 64 * 1024];
        let srcs: Vec<PathBuf> = (0..4)
            .map(|k| {
                let p = dir.join(".incoming").join(format!("{k}.part"));
                std::fs::write(&p, &data).unwrap();
                p
            })
            .collect();
        let handles: Vec<_> = srcs
            .into_iter()
            .enumerate()
            .map(|(k, p)| {
                let j = Arc::clone(&j);
                std::thread::spawn(move || {
                    let f = File::open(p).unwrap();
                    for i in 0..20 {
                        let seq = j
                            .append(&f, 65536, &format!("g/{k}/{i}.dcm"))
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
        // Everything was done: the final checkpoint leaves nothing to replay.
        let j2 = open(&dir, 8 << 20);
        assert!(j2.replayed().is_empty());
    }
}
