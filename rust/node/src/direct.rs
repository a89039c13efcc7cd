//! Direct I/O for the tail of large data sets (multi-frame NM, PET, CT series in one object).
//!
//! Past a threshold, the rest of a `.part` file is written with `O_DIRECT` in 1 MiB pieces by a
//! writer thread, while the association thread receives the next piece (two more buffers, so at
//! most 3 MiB per data set). The bytes go from our buffers to the device without page-cache
//! copies or write-back: on the reference machine one thread writes 1 MiB pieces at ~1.6 GB/s with
//! ~12% of a CPU, where buffered writes of new pages are limited by the page allocation (and, in
//! that VM, by a host page fault for each page never used before). The data is on the device (not
//! yet flushed from its cache) once [`DirectWriter::finish`] returns; durability "full" still
//! fsyncs the file, which then has only the metadata and the flush left to do.
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Alignment of direct I/O offsets, lengths and buffers (covers devices with 512-byte or 4 KiB
/// logical blocks).
pub const ALIGN: u64 = 4096;
/// Size of one direct write.
pub const PIECE: usize = 1 << 20;
/// Buffers per data set: one filling, up to two written.
const BUFFERS: usize = 3;

/// A zero-initialised buffer aligned to [`ALIGN`] (also the journal's direct records).
pub(crate) struct AlignedBuf {
    ptr: *mut u8,
    cap: usize,
    len: usize,
}

// SAFETY: the buffer is owned by one thread at a time (moved through channels).
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    pub(crate) fn new(cap: usize) -> Self {
        let layout = Self::layout(cap);
        // SAFETY: the layout has a non-zero size; a null result is handled.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, cap, len: 0 }
    }

    fn layout(cap: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(cap, ALIGN as usize).expect("valid layout")
    }

    /// Copies `data` to offset `at` (which must leave room for it), touching no other byte:
    /// the kernel may be writing other parts of the buffer meanwhile.
    pub(crate) fn put_at(&mut self, at: usize, data: &[u8]) {
        assert!(at + data.len() <= self.cap, "write past the aligned buffer");
        // SAFETY: in bounds (checked above); the source is a distinct slice.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(at), data.len()) };
    }

    /// Zeroes `len` bytes from offset `at`, touching no other byte.
    pub(crate) fn zero_at(&mut self, at: usize, len: usize) {
        assert!(at + len <= self.cap, "write past the aligned buffer");
        // SAFETY: in bounds (checked above).
        unsafe { std::ptr::write_bytes(self.ptr.add(at), 0, len) };
    }

    /// The first byte, for writes the kernel makes from this buffer.
    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    fn filled(&self) -> &[u8] {
        // SAFETY: `ptr` points to `cap` initialised bytes owned by `self`; `len <= cap`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Appends as much of `data` as fits; returns how much.
    fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.cap - self.len);
        // SAFETY: `len + n <= cap`; the source is a distinct slice.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(self.len), n) };
        self.len += n;
        n
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, Self::layout(self.cap)) };
    }
}

/// Opens `path` (existing) again for writing with `O_DIRECT`; `Err` where the filesystem has no
/// direct I/O.
pub(crate) fn open_direct(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

/// Writes a file's bytes from an aligned offset on, with `O_DIRECT`, overlapping each write with
/// the arrival of the next bytes.
pub struct DirectWriter {
    /// The file opened with `O_DIRECT` (for the writer thread) and as given (for the last,
    /// unaligned bytes).
    file: File,
    filling: Option<AlignedBuf>,
    /// File offset of `filling`'s first byte.
    at: u64,
    free: Vec<AlignedBuf>,
    to_writer: Option<mpsc::Sender<(AlignedBuf, u64)>>,
    back: mpsc::Receiver<(AlignedBuf, io::Result<()>)>,
    in_flight: usize,
    thread: Option<JoinHandle<()>>,
    failed: Option<io::Error>,
}

impl DirectWriter {
    /// Opens `path` again with `O_DIRECT` to write from `at` (a multiple of [`ALIGN`]) on;
    /// `plain` is the file as opened so far (it writes the last bytes). `Err` when the
    /// filesystem has no direct I/O (tmpfs): keep writing through the page cache.
    pub fn start(path: &Path, plain: &File, at: u64) -> io::Result<DirectWriter> {
        if !at.is_multiple_of(ALIGN) {
            return Err(io::Error::other(
                "direct I/O must start at an aligned offset",
            ));
        }
        let direct = open_direct(path)?;
        let (to_writer, jobs) = mpsc::channel::<(AlignedBuf, u64)>();
        let (done, back) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ferrodicom-direct".into())
            .spawn(move || {
                for (buf, at) in jobs {
                    let r = direct.write_all_at(buf.filled(), at);
                    if done.send((buf, r)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(DirectWriter {
            file: plain.try_clone()?,
            filling: Some(AlignedBuf::new(PIECE)),
            at,
            free: (1..BUFFERS).map(|_| AlignedBuf::new(PIECE)).collect(),
            to_writer: Some(to_writer),
            back,
            in_flight: 0,
            thread: Some(thread),
            failed: None,
        })
    }

    /// Takes `data` (the file's next bytes). A write error of an earlier piece comes back here.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            self.check()?;
            let buf = self.filling.as_mut().expect("a buffer is filling");
            let n = buf.push(data);
            data = &data[n..];
            if buf.len == buf.cap {
                let full = self.filling.take().expect("a buffer is filling");
                let at = self.at;
                self.at += full.len as u64;
                self.send(full, at)?;
                self.filling = Some(self.free_buffer()?);
            }
        }
        Ok(())
    }

    /// Writes what is left (whole blocks directly, the last bytes through the page cache) and
    /// waits for every write. The file then holds every byte given.
    pub fn finish(mut self) -> io::Result<()> {
        self.check()?;
        let mut rest = Vec::new();
        let mut rest_at = self.at;
        if let Some(mut buf) = self.filling.take() {
            let whole = buf.len / ALIGN as usize * ALIGN as usize;
            rest = buf.filled()[whole..].to_vec();
            rest_at = self.at + whole as u64;
            if whole > 0 {
                buf.len = whole;
                let at = self.at;
                self.send(buf, at)?;
            }
        }
        while self.in_flight > 0 {
            self.receive()?;
        }
        self.check()?;
        // After the direct writes: the file's size then only grows, by this write.
        if !rest.is_empty() {
            self.file.write_all_at(&rest, rest_at)?;
        }
        Ok(())
    }

    fn send(&mut self, buf: AlignedBuf, at: u64) -> io::Result<()> {
        let sender = self.to_writer.as_ref().expect("writer running");
        if sender.send((buf, at)).is_err() {
            return Err(io::Error::other("direct writer stopped"));
        }
        self.in_flight += 1;
        Ok(())
    }

    /// A buffer to fill: a free one, else the next one the writer gives back.
    fn free_buffer(&mut self) -> io::Result<AlignedBuf> {
        if let Some(mut buf) = self.free.pop() {
            buf.len = 0;
            return Ok(buf);
        }
        let mut buf = self.receive()?;
        self.check()?;
        buf.len = 0;
        Ok(buf)
    }

    /// Waits for one written buffer; keeps the first error.
    fn receive(&mut self) -> io::Result<AlignedBuf> {
        let (buf, result) = self
            .back
            .recv()
            .map_err(|_| io::Error::other("direct writer stopped"))?;
        self.in_flight -= 1;
        if let Err(e) = result {
            self.failed.get_or_insert(e);
        }
        Ok(buf)
    }

    fn check(&mut self) -> io::Result<()> {
        match &self.failed {
            Some(e) => Err(io::Error::new(e.kind(), e.to_string())),
            None => Ok(()),
        }
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        // Stop the writer after what it has (an abandoned file is deleted by its owner).
        self.to_writer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmpdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ferro-direct-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    #[test]
    fn bytes_given_in_odd_pieces_after_an_aligned_prefix_are_written_exactly() {
        let dir = tmpdir("exact");
        let path = dir.join("f.part");
        let data = pattern(3 * PIECE + 12_345);
        let prefix = 2 * ALIGN as usize;
        let mut plain = File::create(&path).unwrap();
        plain.write_all(&data[..prefix]).unwrap();
        let mut w = match DirectWriter::start(&path, &plain, prefix as u64) {
            Ok(w) => w,
            // No direct I/O on this filesystem (tmpfs): nothing to test here.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return,
            Err(e) => panic!("{e}"),
        };
        let mut pos = prefix;
        let mut step = 1usize;
        while pos < data.len() {
            let n = step.min(data.len() - pos);
            w.write(&data[pos..pos + n]).unwrap();
            pos += n;
            step = step * 3 + 17;
        }
        w.finish().unwrap();
        drop(plain);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unaligned_start_is_refused() {
        let dir = tmpdir("unaligned");
        let path = dir.join("f.part");
        let plain = File::create(&path).unwrap();
        assert!(DirectWriter::start(&path, &plain, 100).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
