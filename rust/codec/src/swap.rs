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

/// Byte-swaps each `unit`-byte number of a 16-byte block (lane-parallel bit operations
/// for 16-bit words, which compile to SIMD shifts).
#[inline(always)]
fn swap_block16(b: [u8; 16], unit: usize) -> [u8; 16] {
    match unit {
        2 => {
            let v = u128::from_ne_bytes(b);
            let m = 0x00FF_00FF_00FF_00FF_00FF_00FF_00FF_00FFu128;
            (((v & m) << 8) | ((v >> 8) & m)).to_ne_bytes()
        }
        4 => {
            let mut o = [0u8; 16];
            for i in 0..4 {
                let w = u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
                o[4 * i..4 * i + 4].copy_from_slice(&w.swap_bytes().to_ne_bytes());
            }
            o
        }
        8 => {
            let mut o = [0u8; 16];
            for i in 0..2 {
                let w = u64::from_ne_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes"));
                o[8 * i..8 * i + 8].copy_from_slice(&w.swap_bytes().to_ne_bytes());
            }
            o
        }
        _ => b,
    }
}

/// [`swap_copy`] into an uninitialised destination of the same length.
#[inline]
pub fn swap_copy_uninit(src: &[u8], dst: &mut [MaybeUninit<u8>], unit: usize) {
    assert_eq!(src.len(), dst.len());
    if !matches!(unit, 2 | 4 | 8) {
        return copy_uninit(src, dst);
    }
    let blocks = src.len() / 16 * 16;
    for (d, s) in dst[..blocks]
        .chunks_exact_mut(16)
        .zip(src[..blocks].chunks_exact(16))
    {
        let o = swap_block16(s.try_into().expect("16 bytes"), unit);
        // SAFETY: `d` is 16 writable bytes; MaybeUninit<u8> has the layout of u8.
        unsafe { d.as_mut_ptr().cast::<[u8; 16]>().write_unaligned(o) };
    }
    for (d, s) in dst[blocks..]
        .chunks_exact_mut(unit)
        .zip(src[blocks..].chunks_exact(unit))
    {
        for i in 0..unit {
            d[i] = MaybeUninit::new(s[unit - 1 - i]);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_and_scalar_swaps_agree() {
        let src: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for unit in [2usize, 4, 8] {
            for len in (0..200).step_by(unit) {
                let mut want = src[..len].to_vec();
                swap_in_place(&mut want, unit);
                let mut out = vec![MaybeUninit::new(0u8); len];
                swap_copy_uninit(&src[..len], &mut out, unit);
                let got: Vec<u8> = out.iter().map(|b| unsafe { b.assume_init() }).collect();
                assert_eq!(got, want, "unit {unit} len {len}");
                let mut v = Vec::new();
                v.put_swapped(&src[..len], unit);
                assert_eq!(v, want);
                // Reference: reverse each unit.
                let manual: Vec<u8> = src[..len]
                    .chunks(unit)
                    .flat_map(|c| c.iter().rev().copied())
                    .collect();
                assert_eq!(want, manual);
            }
        }
    }
}
