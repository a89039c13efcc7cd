//! Asynchronous direct writes started and completed on the calling thread (Linux io_uring).
//!
//! The journal writes its records with `O_DIRECT` from an aligned buffer while the data set
//! streams in (see [`crate::journal`]): no page-cache copy, no write-back work, and no other thread
//! to wake (with threads, on two cores the writes started late: DESIGN.md, "Journal"). One ring
//! serves one record at a time; the journal keeps the idle ones.
use std::io;
use std::os::fd::RawFd;

/// Writes in flight at most; more wait for the oldest to complete.
const ENTRIES: u32 = 16;

/// A small io_uring for one writer at a time.
pub(crate) struct WriteRing {
    ring: io_uring::IoUring,
    in_flight: u32,
    /// The first error of a completed write, until [`WriteRing::wait_all`] reports it.
    failed: Option<io::Error>,
}

impl WriteRing {
    /// `Err` where io_uring is unavailable (old kernel, disabled, or refused by a seccomp filter).
    pub(crate) fn new() -> io::Result<WriteRing> {
        Ok(WriteRing {
            ring: io_uring::IoUring::new(ENTRIES)?,
            in_flight: 0,
            failed: None,
        })
    }

    /// Starts writing `len` bytes from `buf` to `fd` at `offset`, and returns at once.
    ///
    /// # Safety
    /// The `len` bytes at `buf` must stay allocated and unchanged, and `fd` open, until
    /// [`WriteRing::wait_all`] has returned with [`WriteRing::idle`] true.
    pub(crate) unsafe fn write(
        &mut self,
        fd: RawFd,
        buf: *const u8,
        len: u32,
        offset: u64,
    ) -> io::Result<()> {
        while self.in_flight >= ENTRIES {
            self.wait_one()?;
        }
        let entry = io_uring::opcode::Write::new(io_uring::types::Fd(fd), buf, len)
            .offset(offset)
            .build()
            .user_data(u64::from(len));
        // SAFETY: the caller keeps the buffer and descriptor valid until the write completes.
        unsafe { self.ring.submission().push(&entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        self.in_flight += 1;
        match self.ring.submit() {
            Ok(_) => Ok(()),
            // Submitted with the next call.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether no write is in flight.
    pub(crate) fn idle(&self) -> bool {
        self.in_flight == 0
    }

    /// Waits until every write started has completed; `Err`: the first that failed or was short.
    /// An `Err` with [`WriteRing::idle`] false means the ring itself failed: the buffers of the
    /// writes still in flight must then never be reused or freed.
    pub(crate) fn wait_all(&mut self) -> io::Result<()> {
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn wait_one(&mut self) -> io::Result<()> {
        self.reap();
        if self.in_flight == 0 {
            return Ok(());
        }
        match self.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
        self.reap();
        Ok(())
    }

    fn reap(&mut self) {
        for cqe in self.ring.completion() {
            self.in_flight -= 1;
            let res = cqe.result();
            if res < 0 {
                self.failed
                    .get_or_insert(io::Error::from_raw_os_error(-res));
            } else if res as u64 != cqe.user_data() {
                self.failed
                    .get_or_insert(io::Error::other("short direct write to the journal"));
            }
        }
    }
}
