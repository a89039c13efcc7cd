//! Byte swapping (PS3.5 §7.3) and the output sinks of the codec.

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

/// Pieces small enough to stay in cache between the copy and the swap.
const PIECE: usize = 32 * 1024;

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
    fn put_swapped(&mut self, b: &[u8], unit: usize) {
        self.reserve(b.len());
        for piece in b.chunks(PIECE) {
            let start = self.len();
            self.extend_from_slice(piece);
            swap_in_place(&mut self[start..], unit);
        }
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

/// Writes into a preallocated slice; records overflow instead of panicking.
pub struct SliceSink<'a> {
    pub buf: &'a mut [u8],
    pub pos: usize,
    pub overflow: bool,
}

impl<'a> SliceSink<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceSink {
            buf,
            pos: 0,
            overflow: false,
        }
    }
    fn room(&mut self, n: usize) -> Option<&mut [u8]> {
        if self.overflow || self.buf.len() - self.pos < n {
            self.overflow = true;
            return None;
        }
        let s = &mut self.buf[self.pos..self.pos + n];
        self.pos += n;
        Some(s)
    }
}

impl Sink for SliceSink<'_> {
    #[inline]
    fn put(&mut self, b: &[u8]) {
        if let Some(d) = self.room(b.len()) {
            d.copy_from_slice(b);
        }
    }
    fn put_swapped(&mut self, b: &[u8], unit: usize) {
        if let Some(d) = self.room(b.len()) {
            swap_copy(b, d, unit);
        }
    }
}
