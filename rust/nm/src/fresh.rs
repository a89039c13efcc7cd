//! Filling freshly mapped memory (a new volume).
//!
//! A new 64 MiB volume costs two things of about the same size: the kernel's page faults (each
//! zeroes a page; on a VM whose free memory was reported to the host, the host faults too) and
//! the copy itself. numpy's gather does one after the other, a huge page at a time. Here the
//! destination's 2 MiB-aligned interior is advised `MADV_HUGEPAGE`, and the calling thread
//! faults the pages in with `MADV_POPULATE_WRITE`, 2 MiB (one transparent huge page) per call
//! and in address order, while copier threads fill them behind it, batch by batch, each batch
//! once its pages are present; when the faulter is done it copies too. Faults taken by several
//! threads at once contend (on the 2-core VM two threads faulting 64 MiB at once take as long
//! as one, with twice the system time), which is why one thread faults and the others copy.
//!
//! The faulter copies whatever the copiers leave behind: until a copier has started (a thread
//! just spawned may wait milliseconds for a core), everything it has faulted, at once, while it
//! is in cache; after that, whatever trails the faults by more than a chunk. With no copier it
//! is one thread faulting 2 MiB and filling it. Unless the caller fixed the thread count, no
//! more copiers are spawned than the system's load leaves room for ([`copier_room`]).
//!
//! Prefaulting never changes the bytes of a mapping (it maps zeroed pages where none are
//! present, and leaves present pages alone), so the copiers do not depend on it for
//! correctness: the watermark they wait for only keeps them off pages not yet faulted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Granule of the faulter: one transparent huge page on x86_64 and on aarch64 with 4 KiB pages.
pub(crate) const FAULT_CHUNK: usize = 2 << 20;
/// Target size of a copier's batch (whole units, at least one).
const BATCH_BYTES: usize = 256 << 10;
/// A waiting copier yields its core once every this many spins (a few microseconds)...
const SPINS_PER_YIELD: u32 = 256;
/// ...and parks once it has waited this long.
const SPIN_FOR: Duration = Duration::from_millis(1);
/// Alignment of the prefaulted range: a multiple of every base page size in use (4, 16 and
/// 64 KiB), so that no page-size query is needed; the unaligned edges fault during the copy.
const EDGE_ALIGN: usize = 64 << 10;

/// The `madvise` calls used here, where their numbers are the generic Linux ones.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod sys {
    use std::ffi::{c_int, c_void};

    extern "C" {
        fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
    }
    const MADV_HUGEPAGE: c_int = 14;
    const MADV_POPULATE_WRITE: c_int = 23;

    fn advise(addr: usize, len: usize, advice: c_int) -> bool {
        // SAFETY: both advices leave the contents of the range unchanged (HUGEPAGE sets a flag
        // on the mapping; POPULATE_WRITE maps zeroed pages only where none are present) and
        // fail with an error, not a signal, on ranges that are not mapped; the callers pass
        // page-aligned ranges inside a buffer they hold.
        unsafe { madvise(addr as *mut c_void, len, advice) == 0 }
    }

    pub(super) fn hugepage(addr: usize, len: usize) -> bool {
        advise(addr, len, MADV_HUGEPAGE)
    }

    /// False when the kernel cannot prefault (before Linux 5.14: EINVAL) or runs out of memory.
    pub(super) fn populate_write(addr: usize, len: usize) -> bool {
        advise(addr, len, MADV_POPULATE_WRITE)
    }
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod sys {
    pub(super) fn hugepage(_: usize, _: usize) -> bool {
        false
    }
    pub(super) fn populate_write(_: usize, _: usize) -> bool {
        false
    }
}

/// The copy work: batches of whole units in address order, and where the next one starts.
struct Queue<I: Iterator> {
    batches: std::iter::Peekable<I>,
    /// Offset into the destination of the first byte not yet handed to a copier.
    frontier: usize,
}

/// What [`run`]'s `take` found at the head of the queue.
#[derive(PartialEq, Eq)]
enum Took {
    /// A batch, now filled.
    One,
    /// A batch not allowed yet; the offset of its end.
    NotYet(usize),
    /// Nothing: every batch has been handed out.
    Done,
}

/// How many copier threads the system's load leaves room for: the cores this process may use,
/// plus one, minus the threads runnable at this moment, this one included (Linux: the fourth
/// field of `/proc/loadavg`; elsewhere, every other core). The plus one: a copier that shares a
/// core with one other busy thread still gets about half of it, which is worth having; with
/// two or more others per spare core it starts late and, preempted in the middle of a batch,
/// holds up the end of the copy. On the 2-core VM (medians of 8-10 alternations, 64 MiB, numpy's
/// gather = 1): faulter alone 0.95-1.04x; faulter and copier, both cores free 1.75-1.83x, the
/// other core busy with another process half the time 1.56x, 70% of the time 1.62x, all the
/// time 0.98x; two such processes besides: 0.94-0.98x against 1.06-1.18x for the faulter alone.
pub(crate) fn copier_room() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    #[cfg(target_os = "linux")]
    if let Some(runnable) = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| runnable_threads(&s))
    {
        return (cores + 1).saturating_sub(runnable.max(1));
    }
    cores - 1
}

/// The threads runnable at the moment of reading, from the text of `/proc/loadavg`
/// (`"0.98 1.40 1.90 2/131 1234"`: 2).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn runnable_threads(loadavg: &str) -> Option<usize> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// A copier's wait until the faulter has made the pages below `need` present. It spins: a
/// parked thread takes long to wake on a VM whose idle vCPUs halt, and longer when another
/// process holds the core. It yields the core now and then, so that a faulter queued on the
/// same core can run, and parks only once the faulter has been silent for a while (descheduled,
/// or done and copying the last batches itself).
fn wait_for(ready: &AtomicUsize, need: usize) {
    let since = Instant::now();
    let mut spins = 0u32;
    while ready.load(Ordering::Acquire) < need {
        spins += 1;
        if spins < SPINS_PER_YIELD {
            std::hint::spin_loop();
            continue;
        }
        spins = 0;
        if since.elapsed() < SPIN_FOR {
            std::thread::yield_now();
        } else {
            // The faulter unparks the copiers after every chunk; the timeout only bounds the
            // wait should that wake-up be lost to a stray park token.
            std::thread::park_timeout(Duration::from_micros(200));
        }
    }
}

/// Runs `job(first_unit, dst_chunk)` over every unit of `dst`, which the caller has just
/// allocated and nobody has touched (see the module documentation). The calling thread faults
/// the pages in, 2 MiB at a time; `threads - 1` copier threads fill them behind it. Whenever the
/// copy trails the faults by more than a chunk (no copier, or no free core for it), the faulter
/// fills the oldest faulted batches itself before faulting on: with one core the work is that
/// of one thread (fault 2 MiB, fill it while it is still in cache), never waiting on a copier
/// that cannot run. Returns false, having done nothing, for a buffer under 2 MiB or of fewer
/// than two units; the caller then copies the ordinary way. Where the kernel cannot prefault
/// (Linux before 5.14, other systems) or runs out of memory, the faulter stops faulting and
/// copies, and the copy takes the remaining faults itself.
pub(crate) fn run<F>(dst: &mut [u8], unit: usize, threads: usize, stream: bool, job: F) -> bool
where
    F: Fn(usize, &mut [u8]) + Sync,
{
    let len = dst.len();
    if unit == 0 || len / unit < 2 {
        return false;
    }
    let base = dst.as_mut_ptr() as usize;
    let start = base.next_multiple_of(EDGE_ALIGN);
    let end = (base + len) / EDGE_ALIGN * EDGE_ALIGN;
    if end < start + FAULT_CHUNK {
        return false;
    }
    let huge_start = base.next_multiple_of(FAULT_CHUNK);
    let huge_end = (base + len) / FAULT_CHUNK * FAULT_CHUNK;
    if huge_end > huge_start {
        // Best effort: without transparent huge pages the faults are 4 KiB ones.
        let _ = sys::hugepage(huge_start, huge_end - huge_start);
    }
    let per = (BATCH_BYTES / unit).max(1);
    let queue = Mutex::new(Queue {
        batches: dst
            .chunks_mut(per * unit)
            .enumerate()
            .map(|(k, c)| (k * per, c))
            .peekable(),
        frontier: 0,
    });
    // Offset into `dst` below which the pages are present (or are edges left to the copy).
    let ready = AtomicUsize::new(0);
    // Fills the batch at the head of the queue if `allowed(offset of its end)`.
    let take = |allowed: &dyn Fn(usize) -> bool| -> Took {
        let next = {
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
            let Queue { batches, frontier } = &mut *q;
            let at = *frontier;
            match batches.next_if(|(_, c)| allowed(at + c.len())) {
                Some(b) => {
                    *frontier += b.1.len();
                    b
                }
                None => match batches.peek() {
                    Some((_, c)) => return Took::NotYet(at + c.len()),
                    None => return Took::Done,
                },
            }
        };
        job(next.0, next.1);
        Took::One
    };
    // How far the copy may trail the faults before the faulter copies too: with copiers, a
    // chunk (a copier keeping up waits within the chunk being faulted); without, nothing.
    // Zero until a copier has started: a thread just spawned may wait milliseconds for a core.
    let copying = AtomicBool::new(false);
    let lag = || {
        if copying.load(Ordering::Relaxed) {
            FAULT_CHUNK
        } else {
            0
        }
    };
    let fault = |wake: &dyn Fn()| {
        let mut at = start;
        while at < end {
            let to = (at + 1).next_multiple_of(FAULT_CHUNK).min(end);
            if !sys::populate_write(at, to - at) {
                break;
            }
            let upto = if to == end { len } else { to - base };
            ready.store(upto, Ordering::Release);
            wake();
            while take(&|e| e + lag() <= upto) == Took::One {}
            at = to;
        }
        ready.store(len, Ordering::Release);
        wake();
        while take(&|_| true) == Took::One {}
        if stream {
            crate::fence();
        }
    };
    let copier = || {
        copying.store(true, Ordering::Relaxed);
        loop {
            match take(&|e| e <= ready.load(Ordering::Acquire)) {
                Took::One => {}
                Took::Done => break,
                Took::NotYet(need) => wait_for(&ready, need),
            }
        }
        if stream {
            crate::fence();
        }
    };
    if threads < 2 {
        fault(&|| ());
    } else {
        std::thread::scope(|sc| {
            let copiers: Vec<_> = (1..threads).map(|_| sc.spawn(copier)).collect();
            fault(&|| copiers.iter().for_each(|h| h.thread().unpark()));
        });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills each unit with its index (as u16 words), so that a unit copied twice, skipped or
    /// misplaced shows up.
    fn fill(first: usize, chunk: &mut [u8], unit: usize) {
        for (k, u) in chunk.chunks_exact_mut(unit).enumerate() {
            let v = ((first + k) as u16).to_le_bytes();
            for w in u.chunks_exact_mut(2) {
                w.copy_from_slice(&v);
            }
        }
    }

    #[test]
    fn every_unit_once_at_any_offset() {
        // 5 MiB and a bit: several 2 MiB fault chunks, unaligned edges at each offset.
        let unit = 96 * 1024 + 8;
        let units = 57;
        let want: Vec<u8> = {
            let mut v = vec![0u8; unit * units];
            fill(0, &mut v, unit);
            v
        };
        for threads in [1, 2, 3] {
            for offset in [0usize, 2, 4096 + 6, (2 << 20) - 2] {
                // Prior contents must all be overwritten, and prefaulting must not clear them.
                let mut buf = vec![0xA5u8; unit * units + offset];
                let dst = &mut buf[offset..];
                assert!(run(dst, unit, threads, false, |f, c| fill(f, c, unit)));
                assert!(buf[..offset].iter().all(|&b| b == 0xA5));
                assert!(
                    buf[offset..] == want[..],
                    "threads={threads} offset={offset}"
                );
            }
        }
    }

    #[test]
    fn load_counts() {
        assert_eq!(runnable_threads("0.98 1.40 1.90 2/131 1234"), Some(2));
        assert_eq!(runnable_threads("0.00 0.00 0.00 0/1 1"), Some(0));
        assert_eq!(runnable_threads("nonsense"), None);
        assert_eq!(runnable_threads("0.5 0.5 0.5"), None);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(copier_room() <= cores);
    }

    #[test]
    fn small_buffers_are_left_to_the_caller() {
        let mut buf = vec![0u8; 1 << 20];
        assert!(!run(&mut buf, 4096, 2, false, |_, _| unreachable!()));
        let mut one = vec![0u8; 8 << 20];
        assert!(!run(&mut one, 8 << 20, 2, false, |_, _| unreachable!()));
    }
}
