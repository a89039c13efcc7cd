//! The SCP server loop and the streaming C-STORE data path, end to end over loopback, without Python:
//! a Rust `StoreHandler` records what the storage service hands it; a requestor sends Part 10 data.
use codec::part10::{write_file_meta, FileMetaInfo};
use codec::{Dictionary, Tag};
use node::{
    Hooks, Link, LinkLimits, Outcome, Prepared, Received, Reply, Server, ServerConfig, Services,
    StorageConfig, StorageService, StoreHandler, StoreRequest, StoreState,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ul::negotiate::{reject, AcceptorConfig, ProposedContext, RequestorConfig, SupportedContext};
use ul::pdu::Pdu;
use ul::{AssocError, Association, Command, Timeouts};

const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const ELE: &str = "1.2.840.10008.1.2.1";
const EBE: &str = "1.2.840.10008.1.2.2";

/// Explicit VR element, little or big endian.
fn el(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8], big: bool) {
    let (g, e) = if big {
        (group.to_be_bytes(), elem.to_be_bytes())
    } else {
        (group.to_le_bytes(), elem.to_le_bytes())
    };
    out.extend_from_slice(&g);
    out.extend_from_slice(&e);
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"UN" | b"SQ") {
        out.extend_from_slice(&[0, 0]);
        let n = value.len() as u32;
        out.extend_from_slice(&if big {
            n.to_be_bytes()
        } else {
            n.to_le_bytes()
        });
    } else {
        let n = value.len() as u16;
        out.extend_from_slice(&if big {
            n.to_be_bytes()
        } else {
            n.to_le_bytes()
        });
    }
    out.extend_from_slice(value);
}

/// A small CT data set: UIDs, patient, rows/columns and `pixels` 16-bit words.
fn data_set(sop_instance: &str, pixels: &[u16], big: bool) -> Vec<u8> {
    let mut d = Vec::new();
    let ui = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        v
    };
    el(&mut d, 0x0008, 0x0016, b"UI", &ui(CT), big);
    el(&mut d, 0x0008, 0x0018, b"UI", &ui(sop_instance), big);
    el(&mut d, 0x0008, 0x0060, b"CS", b"CT", big);
    el(&mut d, 0x0010, 0x0020, b"LO", b"PID1", big);
    el(&mut d, 0x0020, 0x000D, b"UI", &ui("1.2.3.4"), big);
    el(&mut d, 0x0020, 0x000E, b"UI", &ui("1.2.3.4.5"), big);
    let us = |v: u16| {
        if big {
            v.to_be_bytes().to_vec()
        } else {
            v.to_le_bytes().to_vec()
        }
    };
    el(&mut d, 0x0028, 0x0010, b"US", &us(1), big);
    el(&mut d, 0x0028, 0x0011, b"US", &us(pixels.len() as u16), big);
    el(&mut d, 0x0028, 0x0100, b"US", &us(16), big);
    let px: Vec<u8> = pixels
        .iter()
        .flat_map(|p| {
            if big {
                p.to_be_bytes()
            } else {
                p.to_le_bytes()
            }
        })
        .collect();
    el(&mut d, 0x7FE0, 0x0010, b"OW", &px, big);
    d
}

/// One C-STORE as the handler saw it.
struct Stored {
    instance: String,
    path: Option<PathBuf>,
    placed: Option<PathBuf>,
    discarded: bool,
    transfer_syntax: String,
    keys: Vec<(u32, String)>,
    failure: Option<(u16, String)>,
}

/// What the handler and the hooks saw.
#[derive(Default)]
struct Seen {
    stored: Vec<Stored>,
    /// (instance, keys) for each `prepare` call.
    prepared: Vec<(String, Vec<(u32, String)>)>,
    events: Vec<&'static str>,
    /// The thread each association was served on.
    threads: Vec<std::thread::ThreadId>,
}

/// Instances "9.9.1.*" are placed early (with an early B007), "9.9.2.*" discarded; the rest
/// are left to `stored`.
struct TestHandler {
    /// Where `prepare` places "9.9.1.*" instances.
    place_dir: PathBuf,
    seen: Arc<Mutex<Seen>>,
}

fn instance_of(command: &Command) -> String {
    command
        .get_str(ul::dimse::tag::AFFECTED_SOP_INSTANCE_UID)
        .unwrap_or_default()
}

impl StoreHandler for TestHandler {
    fn prepare(
        &self,
        rq: &StoreRequest<'_>,
        keys: &[(Tag, String)],
    ) -> (Prepared, Option<StoreState>) {
        let inst = instance_of(rq.command);
        let keys = keys.iter().map(|(t, v)| (t.0, v.clone())).collect();
        self.seen
            .lock()
            .unwrap()
            .prepared
            .push((inst.clone(), keys));
        let prepared = if inst.starts_with("9.9.1.") {
            Prepared::Place {
                path: self.place_dir.join(format!("{inst}.dcm")),
                early: Some(Reply::status(0xB007)),
            }
        } else if inst.starts_with("9.9.2.") {
            Prepared::Discard
        } else {
            Prepared::Later
        };
        (prepared, None)
    }
    fn stored(&self, rq: &StoreRequest<'_>, r: Received, _state: Option<StoreState>) -> Reply {
        let status = r.failure.as_ref().map(|f| f.0).unwrap_or(0);
        let status = if r.discarded { 0xA900 } else { status };
        let keys = r.keys.iter().map(|(t, v)| (t.0, v.clone())).collect();
        self.seen.lock().unwrap().stored.push(Stored {
            instance: instance_of(rq.command),
            path: r.part_path,
            placed: r.placed,
            discarded: r.discarded,
            transfer_syntax: r.transfer_syntax,
            keys,
            failure: r.failure,
        });
        Reply::status(status)
    }
}

/// Records on which thread each association was served and how it ended.
struct TestHooks(Arc<Mutex<Seen>>);

impl Hooks for TestHooks {
    fn established(&self, _link: &Arc<Link>) {
        self.0
            .lock()
            .unwrap()
            .threads
            .push(std::thread::current().id());
    }
    fn closed(&self, _link: &Arc<Link>, outcome: Outcome) {
        self.0.lock().unwrap().events.push(match outcome {
            Outcome::Released => "released",
            Outcome::Aborted => "aborted",
        });
    }
}

fn start(dir: &Path, store_ts: Option<&str>) -> (Server, Arc<Mutex<Seen>>) {
    start_with(dir, store_ts, None, 4)
}

fn start_with(
    dir: &Path,
    store_ts: Option<&str>,
    journal: Option<Arc<node::Journal>>,
    max_associations: usize,
) -> (Server, Arc<Mutex<Seen>>) {
    let mut acceptor = AcceptorConfig::new("NODE");
    acceptor.contexts = vec![SupportedContext {
        abstract_syntax: CT.into(),
        transfer_syntaxes: vec![ELE.into(), EBE.into()],
        scp_role: true,
        scu_role: false,
    }];
    let seen = Arc::new(Mutex::new(Seen::default()));
    let storage = StorageConfig {
        incoming_dir: dir.to_path_buf(),
        store_transfer_syntax: store_ts.map(String::from),
        fsync: true,
        writeback: true,
        implementation_class_uid: "1.2.3".into(),
        implementation_version_name: "TEST".into(),
        dictionary: Dictionary::standard(),
        extract: vec![Tag(0x0008_0018), Tag(0x0010_0020), Tag(0x0028_0011)],
        journal,
        parts: Some(std::sync::Arc::new(
            node::PartPool::new(dir.to_path_buf(), 2).expect("part pool"),
        )),
    };
    let mut services = Services::new();
    services.add(
        ul::dimse::command_field::C_STORE_RQ,
        None,
        Arc::new(StorageService::new(
            storage,
            Arc::new(TestHandler {
                place_dir: dir.join("placed"),
                seen: seen.clone(),
            }),
        )),
    );
    let config = ServerConfig {
        acceptor,
        timeouts: Timeouts::default(),
        max_associations,
        limits: LinkLimits::default(),
    };
    let server = Server::bind(
        ("127.0.0.1", 0),
        config,
        Arc::new(services),
        Arc::new(TestHooks(seen.clone())),
    )
    .unwrap();
    server.start().unwrap();
    (server, seen)
}

fn requestor(ts: &str, max_pdu: u32) -> RequestorConfig {
    let mut cfg = RequestorConfig::new("SCU", "NODE");
    cfg.contexts = vec![ProposedContext {
        abstract_syntax: CT.into(),
        transfer_syntaxes: vec![ts.into()],
        roles: None,
    }];
    cfg.max_pdu = max_pdu;
    cfg
}

/// A requestor's link (it serves nothing of the peer's).
fn connect(port: u16, ts: &str, max_pdu: u32) -> Arc<Link> {
    let assoc = Association::request(
        ("127.0.0.1", port),
        &requestor(ts, max_pdu),
        Timeouts::default(),
    )
    .unwrap();
    Link::new(assoc, Arc::new(Services::new()), LinkLimits::default()).unwrap()
}

fn send(link: &Link, sop: &str, ts: &str, data: &[u8]) -> u16 {
    let out = node::Outgoing {
        sop_class_uid: CT,
        sop_instance_uid: sop,
        transfer_syntax_uid: ts,
        priority: 0,
        move_originator: None,
    };
    let mut g = link.lock();
    node::store_data_set(
        link,
        &mut g,
        &out,
        &mut std::io::Cursor::new(data),
        &Dictionary::standard(),
        Some(Duration::from_secs(10)),
    )
    .unwrap()
    .status
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferrodicom-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn stores_a_part10_file_and_extracts_keys_while_streaming() {
    let dir = tempdir("store");
    let (server, seen) = start(&dir, None);
    // 600 KB of pixels over 16 KiB PDUs: many fragments, streamed, not buffered.
    let pixels: Vec<u16> = (0..300_000u32).map(|i| (i % 65_521) as u16).collect();
    let ds = data_set("1.2.3.4.5.6", &pixels, false);
    let assoc = connect(server.local_addr().port(), ELE, 16_384);
    assert_eq!(send(&assoc, "1.2.3.4.5.6", ELE, &ds), 0);
    assoc.release().unwrap();
    server.shutdown();
    let seen = seen.lock().unwrap();
    let Stored {
        instance: inst,
        path,
        transfer_syntax: ts,
        keys,
        failure,
        ..
    } = &seen.stored[0];
    assert_eq!(
        (inst.as_str(), ts.as_str(), failure),
        ("1.2.3.4.5.6", ELE, &None)
    );
    assert!(keys.contains(&(0x0008_0018, "1.2.3.4.5.6".into())));
    assert!(keys.contains(&(0x0010_0020, "PID1".into())));
    assert!(keys.contains(&(0x0028_0011, (pixels.len() as u16).to_string())));
    let file = std::fs::read(path.as_ref().unwrap()).unwrap();
    assert_eq!(&file[128..132], b"DICM");
    assert!(
        file.ends_with(&ds),
        "the data set is stored byte for byte after the File Meta"
    );
    let mut meta = Vec::new();
    write_file_meta(
        &mut meta,
        &FileMetaInfo {
            sop_class_uid: CT,
            sop_instance_uid: "1.2.3.4.5.6",
            transfer_syntax_uid: ELE,
            implementation_class_uid: "1.2.3",
            implementation_version_name: "TEST",
            source_ae_title: "SCU",
        },
    )
    .unwrap();
    assert_eq!(
        &file[..meta.len()],
        &meta[..],
        "File Meta names the sender as Source AE Title"
    );
    assert_eq!(seen.events, vec!["released"]);
}

#[test]
fn converts_big_endian_to_the_storage_syntax_on_the_fly() {
    let dir = tempdir("convert");
    let (server, seen) = start(&dir, Some(ELE));
    let pixels: Vec<u16> = (0..70_000u32).map(|i| (i * 7) as u16).collect();
    let assoc = connect(server.local_addr().port(), EBE, 0);
    assert_eq!(
        send(&assoc, "1.2.3.9", EBE, &data_set("1.2.3.9", &pixels, true)),
        0
    );
    assoc.release().unwrap();
    server.shutdown();
    let seen = seen.lock().unwrap();
    let Stored {
        path,
        transfer_syntax: ts,
        ..
    } = &seen.stored[0];
    assert_eq!(ts, ELE);
    let file = std::fs::read(path.as_ref().unwrap()).unwrap();
    assert!(
        file.ends_with(&data_set("1.2.3.9", &pixels, false)),
        "swapped to little endian, values intact"
    );
}

#[test]
fn truncated_data_set_is_reported_and_leaves_no_file() {
    let dir = tempdir("truncated");
    let (server, seen) = start(&dir, None);
    let ds = data_set("1.2.3.7", &[1, 2, 3, 4, 5, 6, 7, 8], false);
    let assoc = connect(server.local_addr().port(), ELE, 16_384);
    let status = send(&assoc, "1.2.3.7", ELE, &ds[..ds.len() - 5]);
    assert!(
        (0xC000..=0xCFFF).contains(&status),
        "cannot understand, got {status:04X}"
    );
    // The association survives: a good instance follows.
    assert_eq!(
        send(
            &assoc,
            "1.2.3.8",
            ELE,
            &data_set("1.2.3.8", &[9; 16], false)
        ),
        0
    );
    assoc.release().unwrap();
    server.shutdown();
    let seen = seen.lock().unwrap();
    assert!(seen.stored[0].path.is_none() && seen.stored[0].failure.is_some());
    // Empty files are the part pool's, made ahead of time; every received file has its File Meta.
    let parts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().metadata().unwrap().len() > 0)
        .collect();
    assert_eq!(parts.len(), 1, "only the good instance's file remains");
}

#[test]
fn part_pool_hands_out_fresh_files_and_removes_the_rest_on_close() {
    let dir = std::env::temp_dir().join(format!("ferrodicom-pool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pool = node::PartPool::new(dir.clone(), 3).unwrap();
    // The filler thread makes up to 3 files ahead (bounded wait).
    for _ in 0..200 {
        if pool.ready() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(pool.ready(), 3);
    let (mut file, path) = pool.take().expect("a ready file");
    use std::io::Write;
    file.write_all(b"data").unwrap();
    assert!(path.starts_with(&dir) && path.extension().unwrap() == "part");
    let (_, other) = pool.take().unwrap();
    assert_ne!(path, other, "every file is handed out once");
    pool.close();
    assert!(pool.take().is_none(), "a closed pool hands out nothing");
    // Only the two files handed out remain; the ready ones were removed.
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    left.sort();
    let mut expected = vec![path, other];
    expected.sort();
    assert_eq!(left, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn prepare_places_discards_or_defers_once_the_keys_are_known_direct_journal() {
    let (dir, journal) = direct_journal("prepare-direct", 1 << 20);
    prepare_places_discards_or_defers(&dir, journal);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn prepare_places_discards_or_defers_once_the_keys_are_known_buffered_journal() {
    let dir = tempdir("prepare-buffered");
    let journal = Arc::new(
        node::Journal::open_buffered(&dir, 1 << 20, 4, Duration::from_secs(3600)).unwrap(),
    );
    assert!(journal.wait_ready(Duration::from_secs(30)));
    assert!(!journal.writes_direct());
    prepare_places_discards_or_defers(&dir, journal);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_instance_outgrowing_its_direct_record_is_stored_whole_and_fsynced() {
    // Slots of 64 KiB: the 200 KB data set outgrows its record after two direct pieces.
    let (dir, journal) = direct_journal("outgrow", 64 << 10);
    std::fs::create_dir_all(dir.join("placed")).unwrap();
    let (server, seen) = start_with(&dir, None, Some(journal.clone()), 4);
    let pixels: Vec<u16> = (0..100_000u32).map(|i| (i * 7) as u16).collect();
    let assoc = connect(server.local_addr().port(), ELE, 16_384);
    let placed = data_set("9.9.1.3", &pixels, false);
    // Not journaled, so no early reply: stored() answers once the file is fsynced.
    assert_eq!(send(&assoc, "9.9.1.3", ELE, &placed), 0);
    assoc.release().unwrap();
    server.shutdown();
    assert_eq!(journal.stats().appended, 0);
    journal.close();
    let seen = seen.lock().unwrap();
    let file = std::fs::read(seen.stored[0].placed.as_ref().unwrap()).unwrap();
    // Preamble, "DICM", File Meta group (its length at 140), then the data set as sent.
    assert_eq!(&file[128..132], b"DICM");
    let meta = 144 + u32::from_le_bytes(file[140..144].try_into().unwrap()) as usize;
    assert_eq!(file.len(), meta + placed.len());
    assert_eq!(&file[meta..], &placed[..]);
    drop(seen);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fresh folder on a disk filesystem (the build's target directory: tmpfs may refuse direct I/O)
/// and a ready journal of 4 slots of `slot_data` bytes in it, asserted to write direct records.
fn direct_journal(name: &str, slot_data: u64) -> (PathBuf, Arc<node::Journal>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target")
        .join(format!("ferrodicom-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let journal =
        Arc::new(node::Journal::open(&dir, slot_data, 4, Duration::from_secs(3600)).unwrap());
    assert!(journal.wait_ready(Duration::from_secs(30)));
    assert!(
        journal.writes_direct(),
        "direct records need a filesystem that takes O_DIRECT and a kernel that allows io_uring: this machine refuses one"
    );
    (dir, journal)
}

/// With fsync, an early reply may go only once the file is durable: here through `journal`.
fn prepare_places_discards_or_defers(dir: &Path, journal: Arc<node::Journal>) {
    let dir = dir.to_path_buf();
    std::fs::create_dir_all(dir.join("placed")).unwrap();
    let (server, seen) = start_with(&dir, None, Some(journal.clone()), 4);
    let pixels: Vec<u16> = (0..100_000u32).map(|i| i as u16).collect();
    let assoc = connect(server.local_addr().port(), ELE, 16_384);
    // Placed: the early reply (B007) is what the sender sees, not stored()'s.
    let placed = data_set("9.9.1.1", &pixels, false);
    assert_eq!(send(&assoc, "9.9.1.1", ELE, &placed), 0xB007);
    // Discarded: the rest of the data set is drained; stored() answers.
    let dropped = data_set("9.9.2.1", &pixels, false);
    assert_eq!(send(&assoc, "9.9.2.1", ELE, &dropped), 0xA900);
    // Keys out of tag order (Patient ID after the Pixel Data): prepare saw other keys than the
    // end did, so the placement is not made and the part file goes to stored().
    let many: Vec<u16> = (0..300_000u32).map(|i| i as u16).collect(); // several PDUs
    let mut odd = data_set("9.9.1.2", &many, false);
    el(&mut odd, 0x0010, 0x0020, b"LO", b"LATE", false);
    let odd = odd
        .windows(4)
        .position(|w| w == b"PID1")
        .map(|at| [&odd[..at - 8], &odd[at + 4..]].concat())
        .unwrap();
    assert_eq!(send(&assoc, "9.9.1.2", ELE, &odd), 0);
    assoc.release().unwrap();
    server.shutdown();
    assert_eq!(
        journal.stats().appended,
        1,
        "only the placed instance is journaled"
    );
    journal.close();
    let seen = seen.lock().unwrap();
    let prepared: Vec<&str> = seen.prepared.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(prepared, ["9.9.1.1", "9.9.2.1", "9.9.1.2"]);
    assert!(seen.prepared[0].1.contains(&(0x0010_0020, "PID1".into())));
    assert!(!seen.prepared[2].1.iter().any(|(t, _)| *t == 0x0010_0020));

    let s = &seen.stored[0];
    assert_eq!((s.path.as_ref(), s.discarded), (None, false));
    let at = s.placed.as_ref().unwrap();
    assert_eq!(at, &dir.join("placed").join("9.9.1.1.dcm"));
    assert!(std::fs::read(at).unwrap().ends_with(&placed));
    let s = &seen.stored[1];
    assert!(s.discarded && s.path.is_none() && s.placed.is_none() && s.failure.is_none());
    let s = &seen.stored[2];
    assert!(s.placed.is_none());
    assert!(s.keys.contains(&(0x0010_0020, "LATE".into())));
    assert!(std::fs::read(s.path.as_ref().unwrap())
        .unwrap()
        .ends_with(&odd));
    // Nothing of the discarded instance is left: only the deferred part (and pool files, empty).
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file() && e.metadata().unwrap().len() > 0)
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".journal"))
        .map(|e| e.path())
        .collect();
    assert_eq!(leftovers, vec![s.path.clone().unwrap()]);
}

#[test]
fn with_fsync_and_no_journal_the_early_reply_waits_for_stored() {
    let dir = tempdir("no-journal");
    std::fs::create_dir_all(dir.join("placed")).unwrap();
    let (server, seen) = start(&dir, None);
    let pixels: Vec<u16> = (0..100_000u32).map(|i| i as u16).collect();
    let assoc = connect(server.local_addr().port(), ELE, 16_384);
    // prepare offers B007 early, but the file is not durable until stored() has run: its 0 is sent.
    let placed = data_set("9.9.1.1", &pixels, false);
    assert_eq!(send(&assoc, "9.9.1.1", ELE, &placed), 0);
    assoc.release().unwrap();
    server.shutdown();
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.stored[0].placed.as_deref(),
        Some(dir.join("placed").join("9.9.1.1.dcm").as_path())
    );
}

/// Waits (bounded) until the server has no association left.
fn wait_idle(server: &Server) {
    for _ in 0..500 {
        if server.active() == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("associations still active: {}", server.active());
}

#[test]
fn association_threads_are_reused_one_after_another() {
    let dir = tempdir("threads");
    let (server, seen) = start(&dir, None);
    let port = server.local_addr().port();
    // One after another: each association is served by the thread the previous one left free.
    for _ in 0..3 {
        let assoc = connect(port, ELE, 16384);
        assert_eq!(
            send(
                &assoc,
                "1.2.3.4",
                ELE,
                &data_set("1.2.3.4", &[1, 2, 3, 4], false)
            ),
            0
        );
        assoc.release().unwrap();
        wait_idle(&server);
    }
    // At the same time: each has its own thread (and the free one is among them).
    let a = connect(port, ELE, 16384);
    let b = connect(port, ELE, 16384);
    for assoc in [a, b] {
        assoc.release().unwrap();
    }
    wait_idle(&server);
    let threads = seen.lock().unwrap().threads.clone();
    assert_eq!(threads.len(), 5);
    assert!(threads[..3].iter().all(|t| *t == threads[0]), "{threads:?}");
    assert_ne!(threads[3], threads[4]);
    assert!(threads[3..].contains(&threads[0]));
    server.shutdown();
    assert_eq!(server.active(), 0);
    // After shutdown nobody answers: a new connection is closed, not served.
    let cfg = requestor(ELE, 16384);
    assert!(Association::request(("127.0.0.1", port), &cfg, Timeouts::default()).is_err());
}

/// Writes one PDU and reads the type of the PDU that answers it.
fn exchange(raw: &mut std::net::TcpStream, pdu: &Pdu) -> u8 {
    use std::io::{Read, Write};
    raw.write_all(&pdu.encode()).unwrap();
    let mut header = [0u8; 6];
    raw.read_exact(&mut header).unwrap();
    let len = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    let mut body = vec![0u8; len];
    raw.read_exact(&mut body).unwrap();
    header[0]
}

/// The association limit counts an association out before its A-RELEASE-RP is sent: a peer that
/// opens its next association as soon as it reads the RP, still holding the old socket open (as
/// pynetdicom may), is accepted, while a second association during the first is refused 2/3/2.
#[test]
fn a_released_association_no_longer_counts_against_the_limit() {
    let dir = tempdir("limit");
    let (server, _seen) = start_with(&dir, None, None, 1);
    let port = server.local_addr().port();
    let cfg = requestor(ELE, 16384);
    let rq = Pdu::AssociateRq(cfg.build_request().unwrap());
    for _ in 0..3 {
        let mut raw = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(exchange(&mut raw, &rq), 2, "A-ASSOCIATE-AC");
        match Association::request(("127.0.0.1", port), &cfg, Timeouts::default()) {
            Err(AssocError::Rejected(rj)) => assert_eq!(rj, reject::LOCAL_LIMIT_EXCEEDED),
            other => panic!(
                "second association while the first is open: {:?}",
                other.err()
            ),
        }
        assert_eq!(exchange(&mut raw, &Pdu::RELEASE_RQ), 6, "A-RELEASE-RP");
        let next = connect(port, ELE, 16384);
        next.release().unwrap();
        drop(raw);
        wait_idle(&server);
    }
    server.shutdown();
}
