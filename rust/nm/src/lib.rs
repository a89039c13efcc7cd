//! NM multi-frame reorganisation (PS3.3 C.8.4.8).
//!
//! An NM image is one multi-frame object whose frames are indexed by the vectors that the Frame
//! Increment Pointer (0028,0009) names, the last one varying fastest (PS3.3 C.8.4.8.1.1). Each
//! vector holds one 1-based index per frame. [`Plan::new`] turns the vectors into an N-D grid
//! (one axis per vector, C order), checks that every position is filled by exactly one frame,
//! and [`Plan::gather`] / [`Plan::scatter`] move frames between the frame list and a
//! C-contiguous volume in one pass, optionally swapping 16-bit samples (big-endian pixels).
//!
//! The vectors decide, never the order in which frames arrive.

use std::collections::HashSet;
use std::fmt::Write as _;

mod fresh;

/// How many offending positions an error message lists before summarising.
const LIST_MAX: usize = 8;

/// A malformed or inconsistent NM frame index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NmError {
    /// A vector does not hold one value per frame (PS3.3 C.8.4.8.1).
    #[error("{axis} vector has {got} values, expected one per frame ({expected})")]
    VectorLength {
        axis: String,
        expected: usize,
        got: usize,
    },
    /// A vector value lies outside 1..=Number of X.
    #[error("{axis} vector value {value} at frame {frame} is outside 1..={extent}")]
    OutOfRange {
        axis: String,
        frame: usize,
        value: u32,
        extent: usize,
    },
    /// An axis has no positions at all (Number of X is 0).
    #[error("{axis} axis has extent 0: Number of {axis} must be at least 1")]
    EmptyAxis { axis: String },
    /// The grid is larger than any buffer we are willing to describe.
    #[error("grid of {0} would overflow the address space")]
    Overflow(String),
    /// Two or more frames claim the same N-D position.
    #[error("{count} duplicated position(s): {list}")]
    Duplicate { count: usize, list: String },
    /// Grid positions that no frame fills.
    #[error("{count} missing position(s) (grid {grid} positions, {frames} frames): {list}")]
    Missing {
        count: usize,
        grid: usize,
        frames: usize,
        list: String,
    },
    /// A frame index given in a subset is not a frame of the object.
    #[error("frame {frame} is not in 1..={n_frames}")]
    BadFrame { frame: usize, n_frames: usize },
    /// A pixel buffer does not have the size the plan needs.
    #[error("{what} buffer holds {got} bytes, expected {expected}")]
    BufferSize {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// Sample size other than 1 or 2 bytes, or a swap asked for 8-bit data.
    #[error("unsupported sample layout: {0}")]
    Sample(String),
}

/// One indexing vector (PS3.3 C.8.4.8.1): its name, one value per frame, and the number of
/// positions along its axis ("Number of X").
#[derive(Debug, Clone, Copy)]
pub struct Axis<'a> {
    pub name: &'a str,
    pub values: &'a [u32],
    pub extent: usize,
}

/// How a copy is carried out. The defaults suit volumes of any size: streaming stores and
/// worker threads only for volumes of at least [`STREAM_THRESHOLD`] / [`PARALLEL_THRESHOLD`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// `Some(true)`: non-temporal stores (best into memory already touched); `Some(false)`:
    /// cached stores (best into freshly mapped memory, which the page-fault handler has just
    /// zeroed through the cache); `None`: stream from [`STREAM_THRESHOLD`] bytes.
    pub stream: Option<bool>,
    /// Worker threads; `None`: up to [`MAX_THREADS`] of the available cores from
    /// [`PARALLEL_THRESHOLD`] bytes, else 1.
    pub threads: Option<usize>,
    /// The destination was just allocated and never touched (a new volume): the calling
    /// thread faults its pages in, 2 MiB at a time, ahead of the other threads, which copy
    /// (see `fresh.rs`); with `threads: None`, no more copiers than the load leaves room for.
    /// For memory that already holds data the result is the same (prefaulting leaves present
    /// pages alone).
    pub fresh: bool,
}

/// Volumes at least this large are copied by several threads when `threads` is `None`.
pub const PARALLEL_THRESHOLD: usize = 4 << 20;
/// Upper bound of the automatic thread count.
pub const MAX_THREADS: usize = 4;

impl CopyOptions {
    fn resolve(self, bytes: usize, units: usize) -> (bool, usize) {
        let stream = self.stream.unwrap_or(bytes >= STREAM_THRESHOLD);
        let threads = match self.threads {
            Some(t) => t.max(1),
            None if bytes >= PARALLEL_THRESHOLD => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(MAX_THREADS),
            None => 1,
        };
        (stream, threads.min(units.max(1)))
    }

    /// The threads for a fresh destination: as resolved, but when the count is automatic,
    /// no more copiers than the system's load leaves room for (see [`fresh::copier_room`]).
    fn fresh_threads(self, resolved: usize) -> usize {
        match self.threads {
            Some(_) => resolved,
            None if resolved > 1 => 1 + fresh::copier_room().min(resolved - 1),
            None => resolved,
        }
    }
}

/// Runs `job(first_unit, dst_chunk)` over `dst` split into `threads` runs of whole units.
fn split_run<F>(dst: &mut [u8], unit: usize, threads: usize, stream: bool, job: F)
where
    F: Fn(usize, &mut [u8]) + Sync,
{
    let units = dst.len() / unit;
    if threads <= 1 || units <= 1 {
        job(0, dst);
    } else {
        let per = units.div_ceil(threads);
        std::thread::scope(|sc| {
            for (k, chunk) in dst.chunks_mut(per * unit).enumerate() {
                let job = &job;
                sc.spawn(move || {
                    job(k * per, chunk);
                    if stream {
                        fence();
                    }
                });
            }
        });
    }
    if stream {
        fence();
    }
}

/// A validated mapping between frames and grid positions.
#[derive(Debug, Clone)]
pub struct Plan {
    shape: Vec<usize>,
    /// For each grid slot (C order), the 0-based frame that fills it.
    slot_frame: Vec<u32>,
    /// For each frame of the object, its slot, or `u32::MAX` when outside the subset.
    frame_slot: Vec<u32>,
}

fn describe(axes: &[Axis<'_>], slot: usize) -> String {
    // Decompose a C-order slot into 1-based vector values, named.
    let mut rem = slot;
    let mut idx = vec![0usize; axes.len()];
    for (k, ax) in axes.iter().enumerate().rev() {
        idx[k] = rem % ax.extent;
        rem /= ax.extent;
    }
    let mut s = String::from("(");
    for (k, ax) in axes.iter().enumerate() {
        if k > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{}={}", ax.name, idx[k] + 1);
    }
    s.push(')');
    s
}

impl Plan {
    /// Builds the plan for `n_frames` frames, or for the 0-based frames in `subset` only (for
    /// example the frames of one phase of a ragged DYNAMIC object). Each vector must have
    /// `n_frames` values; within the chosen frames, each value must lie in 1..=extent and each
    /// grid position must be filled exactly once.
    pub fn new(
        axes: &[Axis<'_>],
        n_frames: usize,
        subset: Option<&[usize]>,
    ) -> Result<Plan, NmError> {
        if n_frames > u32::MAX as usize - 1 {
            return Err(NmError::Overflow(format!("{n_frames} frames")));
        }
        let mut grid: usize = 1;
        for ax in axes {
            if ax.values.len() != n_frames {
                return Err(NmError::VectorLength {
                    axis: ax.name.to_string(),
                    expected: n_frames,
                    got: ax.values.len(),
                });
            }
            if ax.extent == 0 {
                return Err(NmError::EmptyAxis {
                    axis: ax.name.to_string(),
                });
            }
            grid = grid.checked_mul(ax.extent).ok_or_else(|| {
                NmError::Overflow(
                    axes.iter()
                        .map(|a| a.extent.to_string())
                        .collect::<Vec<_>>()
                        .join("x"),
                )
            })?;
        }
        let shape: Vec<usize> = axes.iter().map(|a| a.extent).collect();
        let all: Vec<usize>;
        let frames: &[usize] = match subset {
            Some(s) => {
                for &f in s {
                    if f >= n_frames {
                        return Err(NmError::BadFrame {
                            frame: f + 1,
                            n_frames,
                        });
                    }
                }
                s
            }
            None => {
                all = (0..n_frames).collect();
                &all
            }
        };
        // Linear position of each chosen frame, with range checks.
        let mut pos = Vec::with_capacity(frames.len());
        for &f in frames {
            let mut p = 0usize;
            for ax in axes {
                let v = ax.values[f];
                if v == 0 || v as usize > ax.extent {
                    return Err(NmError::OutOfRange {
                        axis: ax.name.to_string(),
                        frame: f + 1,
                        value: v,
                        extent: ax.extent,
                    });
                }
                p = p * ax.extent + (v as usize - 1);
            }
            pos.push(p);
        }
        if grid > frames.len() {
            // Cannot be complete; report missing positions without allocating the whole grid.
            let filled: HashSet<usize> = pos.iter().copied().collect();
            let mut list = Vec::new();
            let mut slot = 0usize;
            while list.len() < LIST_MAX && slot < grid {
                if !filled.contains(&slot) {
                    list.push(describe(axes, slot));
                }
                slot += 1;
            }
            let mut dup = Self::duplicates(axes, frames, &pos);
            if let Some(d) = dup.take() {
                return Err(d);
            }
            let count = grid - filled.len();
            return Err(NmError::Missing {
                count,
                grid,
                frames: frames.len(),
                list: Self::join(list, count),
            });
        }
        let mut slot_frame = vec![u32::MAX; grid];
        let mut clash = false;
        for (i, &p) in pos.iter().enumerate() {
            if slot_frame[p] != u32::MAX {
                clash = true;
            } else {
                slot_frame[p] = frames[i] as u32;
            }
        }
        if clash {
            return Err(Self::duplicates(axes, frames, &pos).expect("clash implies duplicates"));
        }
        // grid <= frames.len() and no duplicates: grid == frames.len() and every slot is filled.
        debug_assert!(slot_frame.iter().all(|&f| f != u32::MAX));
        let mut frame_slot = vec![u32::MAX; n_frames];
        for (slot, &f) in slot_frame.iter().enumerate() {
            frame_slot[f as usize] = slot as u32;
        }
        Ok(Plan {
            shape,
            slot_frame,
            frame_slot,
        })
    }

    fn join(list: Vec<String>, count: usize) -> String {
        let mut s = list.join(", ");
        if count > list.len() {
            let _ = write!(s, ", ... and {} more", count - list.len());
        }
        s
    }

    fn duplicates(axes: &[Axis<'_>], frames: &[usize], pos: &[usize]) -> Option<NmError> {
        let mut order: Vec<usize> = (0..pos.len()).collect();
        order.sort_by_key(|&i| (pos[i], frames[i]));
        let mut list = Vec::new();
        let mut count = 0;
        let mut i = 0;
        while i < order.len() {
            let mut j = i + 1;
            while j < order.len() && pos[order[j]] == pos[order[i]] {
                j += 1;
            }
            if j - i > 1 {
                count += 1;
                if list.len() < LIST_MAX {
                    let fr: Vec<String> = order[i..j]
                        .iter()
                        .map(|&k| (frames[k] + 1).to_string())
                        .collect();
                    list.push(format!(
                        "{} held by frames {}",
                        describe(axes, pos[order[i]]),
                        fr.join(" and ")
                    ));
                }
            }
            i = j;
        }
        (count > 0).then(|| NmError::Duplicate {
            count,
            list: Self::join(list, count),
        })
    }

    /// Extent of each axis, in Frame Increment Pointer order.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of grid slots (= frames covered by the plan).
    pub fn len(&self) -> usize {
        self.slot_frame.len()
    }

    /// True when the plan covers no frame (never, for a valid plan: every axis has extent >= 1).
    pub fn is_empty(&self) -> bool {
        self.slot_frame.is_empty()
    }

    /// For each slot in C order, the 0-based frame that fills it.
    pub fn slot_frames(&self) -> &[u32] {
        &self.slot_frame
    }

    /// For each frame of the object, its C-order slot (`u32::MAX` if outside the subset).
    pub fn frame_slots(&self) -> &[u32] {
        &self.frame_slot
    }

    /// True when frame k fills slot k for every k: the frame list already is the volume.
    pub fn is_identity(&self) -> bool {
        self.slot_frame.len() == self.frame_slot.len()
            && self
                .slot_frame
                .iter()
                .enumerate()
                .all(|(i, &f)| f as usize == i)
    }

    fn check(sample_bytes: usize, swap: bool, frame_len: usize) -> Result<(), NmError> {
        match (sample_bytes, swap) {
            (1, false) | (2, _) => {}
            (1, true) => return Err(NmError::Sample("byte swap asked for 8-bit samples".into())),
            (n, _) => return Err(NmError::Sample(format!("{n}-byte samples (only 1 or 2)"))),
        }
        if frame_len == 0 || (frame_len / sample_bytes) * sample_bytes != frame_len {
            return Err(NmError::Sample(format!(
                "frame length {frame_len} is not a positive multiple of {sample_bytes}"
            )));
        }
        Ok(())
    }

    /// Copies frames from `frames` (the Pixel Data, `n_frames` × `frame_len` bytes; a longer
    /// buffer is accepted, as Pixel Data may carry a pad byte) into `volume` (slots × `frame_len`
    /// bytes, C order). With `swap`, 16-bit samples are byte-swapped on the way.
    pub fn gather(
        &self,
        frames: &[u8],
        frame_len: usize,
        sample_bytes: usize,
        swap: bool,
        volume: &mut [u8],
    ) -> Result<(), NmError> {
        self.gather_with(
            frames,
            frame_len,
            sample_bytes,
            swap,
            volume,
            CopyOptions::default(),
        )
    }

    /// [`Plan::gather`] with explicit [`CopyOptions`].
    pub fn gather_with(
        &self,
        frames: &[u8],
        frame_len: usize,
        sample_bytes: usize,
        swap: bool,
        volume: &mut [u8],
        opts: CopyOptions,
    ) -> Result<(), NmError> {
        Self::check(sample_bytes, swap, frame_len)?;
        let need_src = self.frame_slot.len() * frame_len;
        if frames.len() < need_src {
            return Err(NmError::BufferSize {
                what: "pixel",
                expected: need_src,
                got: frames.len(),
            });
        }
        let need_dst = self.slot_frame.len() * frame_len;
        if volume.len() != need_dst {
            return Err(NmError::BufferSize {
                what: "volume",
                expected: need_dst,
                got: volume.len(),
            });
        }
        let (stream, threads) = opts.resolve(need_dst, self.slot_frame.len());
        let job = |first: usize, chunk: &mut [u8]| {
            let slots = &self.slot_frame[first..];
            for (dst, &f) in chunk.chunks_exact_mut(frame_len).zip(slots) {
                let off = f as usize * frame_len;
                copy(&frames[off..off + frame_len], dst, swap, stream);
            }
        };
        if !(opts.fresh && fresh::run(volume, frame_len, opts.fresh_threads(threads), stream, job))
        {
            split_run(volume, frame_len, threads, stream, job);
        }
        Ok(())
    }

    /// The inverse of [`Plan::gather`]: copies the C-order `volume` back into frame order in
    /// `frames` (`n_frames` × `frame_len` bytes). Frames outside a subset are left untouched.
    pub fn scatter(
        &self,
        volume: &[u8],
        frame_len: usize,
        sample_bytes: usize,
        swap: bool,
        frames: &mut [u8],
    ) -> Result<(), NmError> {
        self.scatter_with(
            volume,
            frame_len,
            sample_bytes,
            swap,
            frames,
            CopyOptions::default(),
        )
    }

    /// [`Plan::scatter`] with explicit [`CopyOptions`].
    pub fn scatter_with(
        &self,
        volume: &[u8],
        frame_len: usize,
        sample_bytes: usize,
        swap: bool,
        frames: &mut [u8],
        opts: CopyOptions,
    ) -> Result<(), NmError> {
        Self::check(sample_bytes, swap, frame_len)?;
        let need_src = self.slot_frame.len() * frame_len;
        if volume.len() != need_src {
            return Err(NmError::BufferSize {
                what: "volume",
                expected: need_src,
                got: volume.len(),
            });
        }
        let need_dst = self.frame_slot.len() * frame_len;
        if frames.len() != need_dst {
            return Err(NmError::BufferSize {
                what: "pixel",
                expected: need_dst,
                got: frames.len(),
            });
        }
        let (stream, threads) = opts.resolve(need_dst, self.frame_slot.len());
        let job = |first: usize, chunk: &mut [u8]| {
            let slots = &self.frame_slot[first..];
            for (dst, &s) in chunk.chunks_exact_mut(frame_len).zip(slots) {
                if s == u32::MAX {
                    continue;
                }
                let off = s as usize * frame_len;
                copy(&volume[off..off + frame_len], dst, swap, stream);
            }
        };
        if !(opts.fresh && fresh::run(frames, frame_len, opts.fresh_threads(threads), stream, job))
        {
            split_run(frames, frame_len, threads, stream, job);
        }
        Ok(())
    }
}

/// Volumes at least this large are written with non-temporal stores: they do not fit in cache,
/// and streaming stores skip the read-for-ownership of each destination line (one memory pass
/// fewer than a cached copy).
pub const STREAM_THRESHOLD: usize = 8 << 20;

/// Copies one frame, swapping the two bytes of every 16-bit sample when asked.
#[inline]
fn copy(src: &[u8], dst: &mut [u8], swap: bool, stream: bool) {
    debug_assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if stream && (!swap || (dst.as_ptr() as usize) & 1 == 0) {
        // SAFETY: equal lengths checked by the callers; SSE2 is part of the x86_64 baseline.
        unsafe { stream_copy(src, dst, swap) };
        return;
    }
    let _ = stream;
    copy_plain(src, dst, swap);
}

#[inline]
fn copy_plain(src: &[u8], dst: &mut [u8], swap: bool) {
    if swap {
        for (d, s) in dst.chunks_exact_mut(2).zip(src.chunks_exact(2)) {
            d[0] = s[1];
            d[1] = s[0];
        }
    } else {
        dst.copy_from_slice(src);
    }
}

/// Copy with 16-byte non-temporal stores (SSE2), optionally swapping bytes within 16-bit words.
/// The unaligned head and the tail go through the plain copy; with `swap`, `dst` must be even
/// so that the head keeps whole samples.
#[cfg(target_arch = "x86_64")]
unsafe fn stream_copy(src: &[u8], dst: &mut [u8], swap: bool) {
    use std::arch::x86_64::*;
    let len = dst.len();
    let head = ((16 - (dst.as_ptr() as usize & 15)) & 15).min(len);
    copy_plain(&src[..head], &mut dst[..head], swap);
    let body = (len - head) & !63;
    let s = unsafe { src.as_ptr().add(head) };
    let d = unsafe { dst.as_mut_ptr().add(head) };
    let mut i = 0;
    while i < body {
        unsafe {
            let mut r0 = _mm_loadu_si128(s.add(i) as *const __m128i);
            let mut r1 = _mm_loadu_si128(s.add(i + 16) as *const __m128i);
            let mut r2 = _mm_loadu_si128(s.add(i + 32) as *const __m128i);
            let mut r3 = _mm_loadu_si128(s.add(i + 48) as *const __m128i);
            if swap {
                r0 = _mm_or_si128(_mm_slli_epi16(r0, 8), _mm_srli_epi16(r0, 8));
                r1 = _mm_or_si128(_mm_slli_epi16(r1, 8), _mm_srli_epi16(r1, 8));
                r2 = _mm_or_si128(_mm_slli_epi16(r2, 8), _mm_srli_epi16(r2, 8));
                r3 = _mm_or_si128(_mm_slli_epi16(r3, 8), _mm_srli_epi16(r3, 8));
            }
            _mm_stream_si128(d.add(i) as *mut __m128i, r0);
            _mm_stream_si128(d.add(i + 16) as *mut __m128i, r1);
            _mm_stream_si128(d.add(i + 32) as *mut __m128i, r2);
            _mm_stream_si128(d.add(i + 48) as *mut __m128i, r3);
        }
        i += 64;
    }
    let t = head + body;
    copy_plain(&src[t..], &mut dst[t..], swap);
}

/// Orders the non-temporal stores before anything that follows (a no-op off x86_64).
#[inline]
fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// Swaps the bytes of every 16-bit sample of `buf` in place (big ↔ little endian).
pub fn swap16_in_place(buf: &mut [u8]) -> Result<(), NmError> {
    if buf.len() & 1 == 1 {
        return Err(NmError::Sample(format!(
            "odd length {} for 16-bit samples",
            buf.len()
        )));
    }
    for c in buf.chunks_exact_mut(2) {
        c.swap(0, 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ax<'a>(name: &'a str, values: &'a [u32], extent: usize) -> Axis<'a> {
        Axis {
            name,
            values,
            extent,
        }
    }

    /// Tiny deterministic shuffle (xorshift) so the tests need no extra crate.
    fn shuffle(v: &mut [usize], mut seed: u64) {
        for i in (1..v.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            v.swap(i, (seed % (i as u64 + 1)) as usize);
        }
    }

    #[test]
    fn identity_and_shape() {
        // 2 detectors x 3 views, already in order.
        let det = [1, 1, 1, 2, 2, 2];
        let view = [1, 2, 3, 1, 2, 3];
        let p = Plan::new(
            &[ax("detector", &det, 2), ax("angular_view", &view, 3)],
            6,
            None,
        )
        .unwrap();
        assert_eq!(p.shape(), &[2, 3]);
        assert!(p.is_identity());
        assert_eq!(p.len(), 6);
    }

    #[test]
    fn shuffled_gather_scatter_round_trip_16bit_swap() {
        let (nd, nv, rows, cols) = (2usize, 5usize, 3usize, 4usize);
        let n = nd * nv;
        let mut order: Vec<usize> = (0..n).collect();
        shuffle(&mut order, 42);
        // Frame k holds grid position order[k]; its samples encode the position (big endian).
        let mut det = vec![0u32; n];
        let mut view = vec![0u32; n];
        let flen = rows * cols * 2;
        let mut frames = vec![0u8; n * flen];
        for (k, &slot) in order.iter().enumerate() {
            det[k] = (slot / nv + 1) as u32;
            view[k] = (slot % nv + 1) as u32;
            for s in 0..rows * cols {
                let v = (slot * 1000 + s) as u16;
                frames[k * flen + 2 * s..k * flen + 2 * s + 2].copy_from_slice(&v.to_be_bytes());
            }
        }
        let axes = [ax("detector", &det, nd), ax("angular_view", &view, nv)];
        let p = Plan::new(&axes, n, None).unwrap();
        assert!(!p.is_identity());
        let mut vol = vec![0u8; n * flen];
        p.gather(&frames, flen, 2, true, &mut vol).unwrap();
        for slot in 0..n {
            for s in 0..rows * cols {
                let o = slot * flen + 2 * s;
                assert_eq!(
                    u16::from_le_bytes([vol[o], vol[o + 1]]),
                    (slot * 1000 + s) as u16
                );
            }
        }
        let mut back = vec![0u8; n * flen];
        p.scatter(&vol, flen, 2, true, &mut back).unwrap();
        assert_eq!(back, frames);
        // Without swap the bytes move unchanged.
        let mut vol2 = vec![0u8; n * flen];
        p.gather(&frames, flen, 2, false, &mut vol2).unwrap();
        let mut back2 = vec![0u8; n * flen];
        p.scatter(&vol2, flen, 2, false, &mut back2).unwrap();
        assert_eq!(back2, frames);
    }

    #[test]
    fn eight_bit_gather() {
        let v = [2u32, 1];
        let p = Plan::new(&[ax("slice", &v, 2)], 2, None).unwrap();
        let frames = [10u8, 11, 20, 21];
        let mut vol = [0u8; 4];
        p.gather(&frames, 2, 1, false, &mut vol).unwrap();
        assert_eq!(vol, [20, 21, 10, 11]);
        assert!(matches!(
            p.gather(&frames, 2, 1, true, &mut vol),
            Err(NmError::Sample(_))
        ));
    }

    #[test]
    fn short_vector() {
        let v = [1u32, 2];
        let e = Plan::new(&[ax("slice", &v, 3)], 3, None).unwrap_err();
        assert_eq!(
            e,
            NmError::VectorLength {
                axis: "slice".into(),
                expected: 3,
                got: 2
            }
        );
    }

    #[test]
    fn out_of_range_and_zero() {
        let v = [1u32, 4, 2];
        let e = Plan::new(&[ax("slice", &v, 3)], 3, None).unwrap_err();
        assert!(e.to_string().contains("value 4 at frame 2"), "{e}");
        let z = [0u32, 1, 2];
        let e = Plan::new(&[ax("slice", &z, 3)], 3, None).unwrap_err();
        assert!(matches!(
            e,
            NmError::OutOfRange {
                value: 0,
                frame: 1,
                ..
            }
        ));
    }

    #[test]
    fn duplicate_names_position_and_frames() {
        let d = [1u32, 1, 2, 2];
        let v = [1u32, 2, 1, 1];
        let e =
            Plan::new(&[ax("detector", &d, 2), ax("angular_view", &v, 2)], 4, None).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, NmError::Duplicate { count: 1, .. }));
        assert!(
            msg.contains("(detector=2, angular_view=1) held by frames 3 and 4"),
            "{msg}"
        );
    }

    #[test]
    fn missing_named_when_grid_too_big() {
        let d = [1u32, 1, 2];
        let v = [1u32, 2, 1];
        let e =
            Plan::new(&[ax("detector", &d, 2), ax("angular_view", &v, 2)], 3, None).unwrap_err();
        assert!(
            e.to_string().contains("(detector=2, angular_view=2)"),
            "{e}"
        );
        assert!(matches!(
            e,
            NmError::Missing {
                count: 1,
                grid: 4,
                frames: 3,
                ..
            }
        ));
    }

    #[test]
    fn huge_extent_is_bounded() {
        // Number of X near the US maximum must not allocate the grid.
        let v = [1u32, 2];
        let e = Plan::new(
            &[ax("a", &v, 65535), ax("b", &v, 65535), ax("c", &v, 65535)],
            2,
            None,
        )
        .unwrap_err();
        assert!(matches!(e, NmError::Missing { .. }), "{e}");
        let e = Plan::new(
            &[
                ax("a", &v, usize::MAX / 2),
                ax("b", &v, usize::MAX / 2),
                ax("c", &v, 3),
            ],
            2,
            None,
        )
        .unwrap_err();
        assert!(matches!(e, NmError::Overflow(_)));
    }

    #[test]
    fn subset_plan_scatter_leaves_others() {
        // Ragged dynamic: phase 1 (frames 1, 3, 4) has 3 time slices, phase 2 (frame 2) has 1.
        let ts = [1u32, 1, 2, 3];
        let p1 = Plan::new(&[ax("time_slice", &ts, 3)], 4, Some(&[0, 2, 3])).unwrap();
        assert_eq!(p1.slot_frames(), &[0, 2, 3]);
        let frames = [1u8, 2, 3, 4];
        let mut vol = [0u8; 3];
        p1.gather(&frames, 1, 1, false, &mut vol).unwrap();
        assert_eq!(vol, [1, 3, 4]);
        let mut out = [9u8; 4];
        p1.scatter(&vol, 1, 1, false, &mut out).unwrap();
        assert_eq!(out, [1, 9, 3, 4]);
        assert!(matches!(
            Plan::new(&[ax("time_slice", &ts, 3)], 4, Some(&[7])),
            Err(NmError::BadFrame { frame: 8, .. })
        ));
    }

    #[test]
    fn buffer_sizes_checked() {
        let v = [1u32, 2];
        let p = Plan::new(&[ax("slice", &v, 2)], 2, None).unwrap();
        let mut vol = [0u8; 8];
        assert!(matches!(
            p.gather(&[0u8; 6], 4, 2, false, &mut vol),
            Err(NmError::BufferSize { .. })
        ));
        // A pad byte after the frames is accepted.
        p.gather(&[0u8; 9], 4, 2, false, &mut vol).unwrap();
        assert!(matches!(
            p.gather(&[0u8; 8], 3, 2, false, &mut [0u8; 6]),
            Err(NmError::Sample(_))
        ));
    }

    #[test]
    fn streaming_copy_matches_plain_at_any_alignment() {
        let src: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for swap in [false, true] {
            for off in [0usize, 2, 4, 6, 10, 14] {
                for len in [0usize, 2, 16, 62, 64, 130, 998] {
                    let mut a = vec![0u8; len + 16];
                    let mut b = vec![0u8; len + 16];
                    copy(&src[..len], &mut a[off..off + len], swap, true);
                    fence();
                    copy_plain(&src[..len], &mut b[off..off + len], swap);
                    assert_eq!(a, b, "swap={swap} off={off} len={len}");
                }
            }
            // Odd destination with swap falls back to the plain copy.
            let mut a = vec![0u8; 200];
            let mut b = vec![0u8; 200];
            copy(&src[..128], &mut a[1..129], swap, true);
            copy_plain(&src[..128], &mut b[1..129], swap);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn threaded_and_streamed_copies_agree() {
        let n = 37usize;
        let flen = 64usize;
        let mut order: Vec<usize> = (0..n).collect();
        shuffle(&mut order, 7);
        let v: Vec<u32> = order.iter().map(|&s| s as u32 + 1).collect();
        let p = Plan::new(&[ax("slice", &v, n)], n, None).unwrap();
        let frames: Vec<u8> = (0..n * flen).map(|i| (i * 31 % 251) as u8).collect();
        let mut reference = vec![0u8; n * flen];
        let one = CopyOptions {
            stream: Some(false),
            threads: Some(1),
            fresh: false,
        };
        p.gather_with(&frames, flen, 2, true, &mut reference, one)
            .unwrap();
        for threads in [1, 2, 3, 5, 64] {
            for stream in [false, true] {
                let o = CopyOptions {
                    stream: Some(stream),
                    threads: Some(threads),
                    fresh: false,
                };
                let mut vol = vec![0u8; n * flen];
                p.gather_with(&frames, flen, 2, true, &mut vol, o).unwrap();
                assert_eq!(vol, reference, "threads={threads} stream={stream}");
                let mut back = vec![0u8; n * flen];
                p.scatter_with(&vol, flen, 2, true, &mut back, o).unwrap();
                assert_eq!(back, frames, "threads={threads} stream={stream}");
            }
        }
    }

    #[test]
    fn fresh_destination_gives_the_same_bytes() {
        // 3.3 MiB: the faulter runs ahead of the copiers over two 2 MiB chunks.
        let n = 50usize;
        let flen = 64 * 1024 + 6;
        let mut order: Vec<usize> = (0..n).collect();
        shuffle(&mut order, 99);
        let v: Vec<u32> = order.iter().map(|&s| s as u32 + 1).collect();
        let p = Plan::new(&[ax("slice", &v, n)], n, None).unwrap();
        let frames: Vec<u8> = (0..n * flen).map(|i| (i * 13 % 253) as u8).collect();
        let mut reference = vec![0u8; n * flen];
        p.gather(&frames, flen, 2, true, &mut reference).unwrap();
        for threads in [None, Some(1), Some(2), Some(3)] {
            for stream in [false, true] {
                let o = CopyOptions {
                    stream: Some(stream),
                    threads,
                    fresh: true,
                };
                for offset in [0usize, 2, 4094] {
                    let mut buf = vec![0x5Au8; n * flen + offset];
                    p.gather_with(&frames, flen, 2, true, &mut buf[offset..], o)
                        .unwrap();
                    assert!(
                        buf[offset..] == reference[..],
                        "threads={threads:?} stream={stream} offset={offset}"
                    );
                    let mut back = vec![0x5Au8; n * flen + offset];
                    p.scatter_with(&buf[offset..], flen, 2, true, &mut back[offset..], o)
                        .unwrap();
                    assert!(back[offset..] == frames[..]);
                }
            }
        }
    }

    #[test]
    fn swap_in_place() {
        let mut b = [1u8, 2, 3, 4];
        swap16_in_place(&mut b).unwrap();
        assert_eq!(b, [2, 1, 4, 3]);
        assert!(swap16_in_place(&mut [0u8; 3]).is_err());
    }
}
