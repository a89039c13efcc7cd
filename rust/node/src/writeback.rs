//! Starting write-out of a file's dirty pages early (Linux `sync_file_range`): used by the
//! C-STORE data path while a data set streams in, and by the journal's copier.
use std::fs::File;

/// Asks the kernel to start writing the file's dirty pages in `from..from + len` (`len` 0: to
/// the end), without waiting (the durability still comes from fsync; this only starts the I/O
/// earlier).
#[cfg(target_os = "linux")]
pub(crate) fn start_writeback(f: &File, from: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor; no memory is passed.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            from as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn start_writeback(_f: &File, _from: u64, _len: u64) {}
