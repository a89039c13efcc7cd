//! Byte swapping (PS3.5 §7.3) and the output sinks of the codec.
use std::mem::MaybeUninit;

/// Reverses the bytes of each `unit`-byte number in `b` (`b.len()` is a multiple of `unit`).
#[inline]
pub fn swap_in_place(b: &mut [u8], unit: usize) {
    match unit {
        2 => {
            for c in b.chunks_exact_mut(2) {
                let v = u16::from_ne_bytes([c[0], c[1]]).swap_bytes();
                c.copy_from_slice(&v.to_ne_bytes());
            }
        }
        4 => {
            for c in b.chunks_exact_mut(4) {
                let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]).swap_bytes();
                c.copy_from_slice(&v.to_ne_bytes());
            }
        }
        8 => {
            for c in b.chunks_exact_mut(8) {
                let v = u64::from_ne_bytes(c.try_into().expect("8 bytes")).swap_bytes();
                c.copy_from_slice(&v.to_ne_bytes());
            }
        }
        _ => {}
    }
}

/// Copies `src` into `dst` (same length) reversing each `unit`-byte number.
#[inline]
pub fn swap_copy(src: &[u8], dst: &mut [u8], unit: usize) {
    match unit {
        2 => {
            for (d, s) in dst.chunks_exact_mut(2).zip(src.chunks_exact(2)) {
                let v = u16::from_ne_bytes([s[0], s[1]]).swap_bytes();
                d.copy_from_slice(&v.to_ne_bytes());
            }
        }
        4 => {
            for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                let v = u32::from_ne_bytes([s[0], s[1], s[2], s[3]]).swap_bytes();
                d.copy_from_slice(&v.to_ne_bytes());
            }
        }
        8 => {
            for (d, s) in dst.chunks_exact_mut(8).zip(src.chunks_exact(8)) {
                let v = u64::from_ne_bytes(s.try_into().expect("8 bytes")).swap_bytes();
                d.copy_from_slice(&v.to_ne_bytes());
            }
        }
        _ => dst.copy_from_slice(src),
    }
}

/// Where the codec writes converted bytes.
pub trait Sink {
    fn put(&mut self, b: &[u8]);
    /// Writes `b` with every `unit`-byte number byte-swapped.
    fn put_swapped(&mut self, b: &[u8], unit: usize);
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    fn put_swapped(&mut self, b: &[u8], unit: usize) {
        self.reserve(b.len());
        let len = self.len();
        swap_copy_uninit(b, &mut self.spare_capacity_mut()[..b.len()], unit);
        // SAFETY: the `b.len()` bytes after `len` were just written.
        unsafe { self.set_len(len + b.len()) };
    }
}

/// Discards output: used to validate and extract while the input passes through verbatim.
pub struct NullSink;

impl Sink for NullSink {
    #[inline]
    fn put(&mut self, _: &[u8]) {}
    #[inline]
    fn put_swapped(&mut self, _: &[u8], _: usize) {}
}

/// Writes into a preallocated, possibly uninitialised buffer (e.g. a fresh Python `bytes`);
/// records overflow instead of panicking. Every byte below `pos` has been written.
pub struct SliceSink<'a> {
    pub buf: &'a mut [MaybeUninit<u8>],
    pub pos: usize,
    pub overflow: bool,
}

impl<'a> SliceSink<'a> {
    pub fn new(buf: &'a mut [MaybeUninit<u8>]) -> Self {
        SliceSink {
            buf,
            pos: 0,
            overflow: false,
        }
    }
    fn room(&mut self, n: usize) -> Option<&mut [MaybeUninit<u8>]> {
        if self.overflow || self.buf.len() - self.pos < n {
            self.overflow = true;
            return None;
        }
        let s = &mut self.buf[self.pos..self.pos + n];
        self.pos += n;
        Some(s)
    }
}

/// Copies `src` into the same-length uninitialised `dst`.
#[inline]
pub fn copy_uninit(src: &[u8], dst: &mut [MaybeUninit<u8>]) {
    assert_eq!(src.len(), dst.len());
    // SAFETY: same length, distinct allocations (dst is uninitialised output), u8 has no
    // invalid bit patterns and MaybeUninit<u8> has the layout of u8.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), src.len()) }
}

/// [`swap_copy`] into an uninitialised destination.
#[inline]
pub fn swap_copy_uninit(src: &[u8], dst: &mut [MaybeUninit<u8>], unit: usize) {
    match unit {
        2 => {
            for (d, s) in dst.chunks_exact_mut(2).zip(src.chunks_exact(2)) {
                d[0] = MaybeUninit::new(s[1]);
                d[1] = MaybeUninit::new(s[0]);
            }
        }
        4 => {
            for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
                for i in 0..4 {
                    d[i] = MaybeUninit::new(s[3 - i]);
                }
            }
        }
        8 => {
            for (d, s) in dst.chunks_exact_mut(8).zip(src.chunks_exact(8)) {
                for i in 0..8 {
                    d[i] = MaybeUninit::new(s[7 - i]);
                }
            }
        }
        _ => copy_uninit(src, dst),
    }
}

impl Sink for SliceSink<'_> {
    #[inline]
    fn put(&mut self, b: &[u8]) {
        if let Some(d) = self.room(b.len()) {
            copy_uninit(b, d);
        }
    }
    fn put_swapped(&mut self, b: &[u8], unit: usize) {
        if let Some(d) = self.room(b.len()) {
            swap_copy_uninit(b, d, unit);
        }
    }
}

/// Asks the kernel to back a large output buffer with transparent huge pages (Linux
/// `madvise(MADV_HUGEPAGE)`), so that filling it costs 1/512 of the page faults. A hint only:
/// errors are ignored, and it does nothing for buffers under 4 MiB or on other systems.
pub fn advise_huge_pages(buf: &mut [MaybeUninit<u8>]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        if buf.len() < 2 * HUGE {
            return;
        }
        let start = buf.as_mut_ptr() as usize;
        let aligned = (start + HUGE - 1) & !(HUGE - 1);
        let end = (start + buf.len()) & !(HUGE - 1);
        if end > aligned {
            // SAFETY: the range lies inside `buf`; MADV_HUGEPAGE changes no contents.
            unsafe {
                libc::madvise(
                    aligned as *mut libc::c_void,
                    end - aligned,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}
