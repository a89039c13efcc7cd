//! Where a received instance goes, decided without Python for the common case (PS3.4 B.2.3).
//!
//! The archive (Python) decides where each C-STORE's file goes once its index keys are known:
//! it checks the UIDs, applies the duplicate policy and makes the series directory. Most
//! instances are the plainest case: strictly valid UIDs, a data set that agrees with its command,
//! a series whose directory the archive has already made, and a SOP Instance UID the index has
//! never held. [`Placer::try_place`] recognises exactly that case and gives the same answer the
//! archive would (the file goes to `<root>/<study>/<series>/<sop>.dcm`, Success), so the
//! association's thread need not enter Python; anything else returns `None` and the archive
//! decides as before. The archive owns the state this needs and keeps it current:
//!
//! - the SOP Instance UIDs its index holds, as a Bloom filter ([`UidFilter`]: "certainly
//!   absent" or "maybe present");
//! - the UIDs reserved by an ingest in progress (one ingest per UID at a time, until its row is
//!   committed), shared with the archive's own duplicate check;
//! - the series directories it has made.
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Longest UID (PS3.5 §9.1).
pub const UID_MAX_LEN: usize = 64;

/// True for a UID usable as a file name without any remark: 1-64 characters, digits and single
/// dots, no empty component, no component with a leading zero (PS3.5 §9.1). The archive accepts
/// the last with a warning; that case is left to it.
pub fn is_plain_uid(uid: &str) -> bool {
    if uid.is_empty() || uid.len() > UID_MAX_LEN {
        return false;
    }
    uid.split('.').all(|c| {
        !c.is_empty()
            && c.bytes().all(|b| b.is_ascii_digit())
            && (c.len() == 1 || c.as_bytes()[0] != b'0')
    })
}

/// A command's UID without the UI VR's padding (PS3.5 §6.2), as the archive cleans it.
pub fn clean_uid(value: &str) -> &str {
    value.trim_end_matches(['\0', ' ']).trim_start_matches(' ')
}

/// How many series directories are remembered before the set starts again (memory stays bounded;
/// a forgotten directory is only checked again by the archive, which finds it made).
const MAX_DIRS: usize = 100_000;

const PROBES: u64 = 4;
const BITS_PER_UID: u64 = 8;
const MIN_UIDS: u64 = 1 << 20;

/// A Bloom filter of SOP Instance UIDs: never "absent" for a UID added, never forgets one.
///
/// Sized for twice `expected` UIDs (at least a million) at 8 bits each, rounded up to a power of
/// two: 1 MiB for an empty archive, 32 MiB for ten million. With 4 probes a false "maybe" is
/// about 1 in 400 at that size, 1 in 40 once the archive has doubled. Until [`UidFilter::set_ready`]
/// (the index's existing UIDs all added) and after [`UidFilter::disable`] (rows were written
/// around it) every answer is "maybe".
pub struct UidFilter {
    words: Box<[AtomicU64]>,
    mask: u64,
    ready: AtomicBool,
    enabled: AtomicBool,
}

impl UidFilter {
    pub fn new(expected: u64) -> UidFilter {
        let wanted = expected.saturating_mul(2).max(MIN_UIDS) * BITS_PER_UID;
        let bits = wanted.next_power_of_two();
        let words = (0..bits / 64).map(|_| AtomicU64::new(0)).collect();
        UidFilter {
            words,
            mask: bits - 1,
            ready: AtomicBool::new(false),
            enabled: AtomicBool::new(true),
        }
    }

    /// The filter's size in bytes.
    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    fn positions(&self, uid: &str) -> [u64; PROBES as usize] {
        // SipHash with fixed keys: the same positions in every run and thread.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        uid.hash(&mut h);
        let h = h.finish();
        let g = (h >> 32) | 1;
        std::array::from_fn(|i| h.wrapping_add((i as u64).wrapping_mul(g)) & self.mask)
    }

    pub fn add(&self, uid: &str) {
        for p in self.positions(uid) {
            self.words[(p >> 6) as usize].fetch_or(1 << (p & 63), Ordering::Release);
        }
    }

    /// False only for a UID never added, once ready and while enabled.
    pub fn may_contain(&self, uid: &str) -> bool {
        if !self.ready.load(Ordering::Acquire) || !self.enabled.load(Ordering::Acquire) {
            return true;
        }
        self.positions(uid)
            .iter()
            .all(|p| self.words[(p >> 6) as usize].load(Ordering::Acquire) & (1 << (p & 63)) != 0)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }
    /// From now on every answer is "maybe" (rows were written without passing the filter).
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::Release);
    }
}

/// The archive's placement state and its Rust decision for the common case (see the module
/// documentation).
pub struct Placer {
    root: String,
    open: AtomicBool,
    /// Placements may be answered at once (durability none, or full with a journal).
    early: AtomicBool,
    filter: RwLock<Option<Arc<UidFilter>>>,
    reserved: Mutex<HashSet<String>>,
    released: Condvar,
    /// "<study>/<series>" directories the archive has made in this run.
    dirs: RwLock<HashSet<String>>,
}

/// The keys the decision needs, from the data set being received.
#[derive(Default, Clone, Copy)]
pub struct PlacementKeys<'k> {
    pub sop_instance_uid: Option<&'k str>,
    pub sop_class_uid: Option<&'k str>,
    pub study_instance_uid: Option<&'k str>,
    pub series_instance_uid: Option<&'k str>,
}

/// A placement decided by [`Placer::try_place`]: its UID stays reserved until released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub sop_instance_uid: String,
    /// "<study>/<series>", the directory the file goes into.
    pub dir: String,
    pub path: PathBuf,
}

impl Placer {
    /// A placer for the archive at `root`; it decides nothing until [`Placer::attach`].
    pub fn new(root: String) -> Placer {
        Placer {
            root,
            open: AtomicBool::new(true),
            early: AtomicBool::new(false),
            filter: RwLock::new(None),
            reserved: Mutex::new(HashSet::new()),
            released: Condvar::new(),
            dirs: RwLock::new(HashSet::new()),
        }
    }

    /// Decides from now on, with the index's UID filter; `early`: the archive answers a new
    /// placement before indexing it.
    pub fn attach(&self, filter: Arc<UidFilter>, early: bool) {
        self.early.store(early, Ordering::Release);
        *self.filter.write() = Some(filter);
    }

    /// The archive is closing: every decision goes back to it (which refuses).
    pub fn close(&self) {
        self.open.store(false, Ordering::Release);
    }

    /// The common case's placement, with its UID reserved; `None` leaves the decision to the
    /// archive (and reserves nothing).
    pub fn try_place(
        &self,
        command_class: &str,
        command_uid: &str,
        keys: PlacementKeys<'_>,
    ) -> Option<Placement> {
        if !self.open.load(Ordering::Acquire) || !self.early.load(Ordering::Acquire) {
            return None;
        }
        let uid = clean_uid(command_uid);
        let (study, series) = (keys.study_instance_uid?, keys.series_instance_uid?);
        if keys.sop_instance_uid? != uid
            || keys.sop_class_uid? != clean_uid(command_class)
            || !is_plain_uid(uid)
            || !is_plain_uid(study)
            || !is_plain_uid(series)
        {
            return None;
        }
        let dir = format!("{study}/{series}");
        if !self.dirs.read().contains(&dir) {
            return None;
        }
        let filter = self.filter.read().clone()?;
        // Reserve first: an earlier ingest of this UID has then committed its row, which was added
        // to the filter before its commit.
        if !self.reserved.lock().insert(uid.to_owned()) {
            return None;
        }
        if filter.may_contain(uid) {
            self.release(uid);
            return None;
        }
        let path = PathBuf::from(format!("{}/{dir}/{uid}.dcm", self.root));
        Some(Placement {
            sop_instance_uid: uid.to_owned(),
            dir,
            path,
        })
    }

    /// Reserves `uid`, waiting while another ingest holds it.
    pub fn reserve(&self, uid: &str) {
        let mut reserved = self.reserved.lock();
        while reserved.contains(uid) {
            self.released.wait(&mut reserved);
        }
        reserved.insert(uid.to_owned());
    }

    pub fn release(&self, uid: &str) {
        if self.reserved.lock().remove(uid) {
            self.released.notify_all();
        }
    }

    pub fn release_all<'a>(&self, uids: impl IntoIterator<Item = &'a str>) {
        let mut reserved = self.reserved.lock();
        let mut any = false;
        for uid in uids {
            any |= reserved.remove(uid);
        }
        drop(reserved);
        if any {
            self.released.notify_all();
        }
    }

    pub fn is_reserved(&self, uid: &str) -> bool {
        self.reserved.lock().contains(uid)
    }

    /// How many UIDs are reserved now.
    pub fn reserved(&self) -> usize {
        self.reserved.lock().len()
    }

    pub fn has_dir(&self, dir: &str) -> bool {
        self.dirs.read().contains(dir)
    }
    pub fn add_dir(&self, dir: &str) {
        let mut dirs = self.dirs.write();
        if dirs.len() >= MAX_DIRS {
            dirs.clear();
        }
        dirs.insert(dir.to_owned());
    }
    /// The directory must be checked (made) again before it is used.
    pub fn forget_dir(&self, dir: &str) {
        self.dirs.write().remove(dir);
    }
    pub fn forget_dirs(&self) {
        self.dirs.write().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";

    fn keys<'a>(sop: &'a str, study: &'a str, series: &'a str) -> PlacementKeys<'a> {
        PlacementKeys {
            sop_instance_uid: Some(sop),
            sop_class_uid: Some(CT),
            study_instance_uid: Some(study),
            series_instance_uid: Some(series),
        }
    }

    fn ready_placer() -> (Placer, Arc<UidFilter>) {
        let placer = Placer::new("/arc".into());
        let filter = Arc::new(UidFilter::new(0));
        filter.set_ready(true);
        placer.attach(Arc::clone(&filter), true);
        placer.add_dir("1.2/1.2.3");
        (placer, filter)
    }

    #[test]
    fn plain_uids() {
        for ok in ["1", "0", "1.2.840.10008", "1.0.3", &"1".repeat(64)] {
            assert!(is_plain_uid(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "1..2",
            "1.2.",
            ".1",
            "1.02",
            "01",
            "1.a",
            "../1",
            "1/2",
            &"1".repeat(65),
        ] {
            assert!(!is_plain_uid(bad), "{bad}");
        }
    }

    #[test]
    fn the_common_case_is_placed_and_reserved() {
        let (placer, _) = ready_placer();
        let p = placer
            .try_place(CT, "1.2.3.4\0", keys("1.2.3.4", "1.2", "1.2.3"))
            .unwrap();
        assert_eq!(p.path, PathBuf::from("/arc/1.2/1.2.3/1.2.3.4.dcm"));
        assert_eq!(placer.reserved(), 1);
        // Reserved: a second one goes to the archive, which waits for the first.
        assert!(placer
            .try_place(CT, "1.2.3.4", keys("1.2.3.4", "1.2", "1.2.3"))
            .is_none());
        placer.release(&p.sop_instance_uid);
        assert_eq!(placer.reserved(), 0);
    }

    #[test]
    fn anything_else_is_left_to_the_archive() {
        let (placer, filter) = ready_placer();
        filter.add("1.2.3.9");
        let cases = [
            (CT, "1.2.3.9", keys("1.2.3.9", "1.2", "1.2.3")), // maybe in the index
            (CT, "1.2.3.4", keys("1.2.3.5", "1.2", "1.2.3")), // data set disagrees
            ("1.2.5", "1.2.3.4", keys("1.2.3.4", "1.2", "1.2.3")), // class disagrees
            (CT, "1.2.03", keys("1.2.03", "1.2", "1.2.3")),   // leading zero: a warning
            (CT, "1.2.3.4", keys("1.2.3.4", "1.2", "1.2.4")), // directory not made
            (CT, "1.2.3.4", PlacementKeys::default()),
        ];
        for (class, uid, k) in cases {
            assert!(placer.try_place(class, uid, k).is_none(), "{uid}");
        }
        assert_eq!(placer.reserved(), 0, "nothing stays reserved");
        filter.disable();
        assert!(placer
            .try_place(CT, "1.2.3.7", keys("1.2.3.7", "1.2", "1.2.3"))
            .is_none());
    }

    #[test]
    fn the_directories_remembered_are_bounded() {
        let (placer, _) = ready_placer();
        for i in 0..MAX_DIRS + 10 {
            placer.add_dir(&format!("1.2/{i}"));
        }
        assert!(placer.dirs.read().len() <= MAX_DIRS);
        assert!(placer.has_dir(&format!("1.2/{}", MAX_DIRS + 9)));
    }

    #[test]
    fn not_before_ready_nor_after_close() {
        let (placer, filter) = ready_placer();
        filter.set_ready(false);
        assert!(placer
            .try_place(CT, "1.2.3.4", keys("1.2.3.4", "1.2", "1.2.3"))
            .is_none());
        filter.set_ready(true);
        placer.close();
        assert!(placer
            .try_place(CT, "1.2.3.4", keys("1.2.3.4", "1.2", "1.2.3"))
            .is_none());
    }

    #[test]
    fn a_filter_never_says_absent_for_an_added_uid() {
        let f = UidFilter::new(0);
        f.set_ready(true);
        let uids: Vec<String> = (0..20_000)
            .map(|i| format!("1.2.826.0.1.{i}.{}", i * 7919 % 100_003))
            .collect();
        uids.iter().for_each(|u| f.add(u));
        assert!(uids.iter().all(|u| f.may_contain(u)));
        let false_maybe = (0..50_000)
            .filter(|i| f.may_contain(&format!("1.2.826.0.2.{i}")))
            .count();
        assert!(false_maybe < 500, "{false_maybe}");
        assert_eq!(f.bytes(), 1 << 20);
    }
}
