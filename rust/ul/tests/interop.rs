//! Interoperability with software we did not write, over loopback TCP: DCMTK's and pynetdicom's
//! echoscu and storescu against our acceptor, and our requestor against their storescp (PS3.8
//! §9, PS3.7 §9.1.1, §9.1.5). Needs the Debian `dcmtk` package and pynetdicom (scripts/test-all
//! installs both).
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Proc, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use ul::dimse::{command_field, request, response_to, tag};
use ul::{
    AcceptorConfig, Association, Incoming, ProposedContext, RequestorConfig, SupportedContext,
    Timeouts,
};

const VERIFICATION: &str = "1.2.840.10008.1.1";
const NM: &str = "1.2.840.10008.5.1.4.1.1.20";
const IMPLICIT: &str = "1.2.840.10008.1.2";
const EXPLICIT: &str = "1.2.840.10008.1.2.1";
const INSTANCE: &str = "1.2.826.0.1.3680043.9.3811.7.1";
/// Guards against hangs only (never a timing assertion).
const GUARD: Duration = Duration::from_secs(30);

fn dcmtk(tool: &str) -> PathBuf {
    let p = PathBuf::from("/usr/bin").join(tool);
    assert!(
        p.exists(),
        "{} not found: install the Debian package dcmtk (scripts/test-all does)",
        p.display()
    );
    p
}

fn timeouts() -> Timeouts {
    Timeouts {
        artim: Duration::from_secs(5),
        acse: Some(GUARD),
        dimse: Some(GUARD),
        connect: Some(GUARD),
    }
}

/// The fixture NM image (scripts/gen_pdu_fixtures.py) and the offset of its data set, after the
/// File Meta Information (PS3.10 §7.1).
fn nm_file() -> (PathBuf, Vec<u8>) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/pdu/nm_image.dcm");
    let bytes = std::fs::read(&p).unwrap();
    let ds = data_set_of(&bytes).to_vec();
    (p, ds)
}

fn data_set_of(part10: &[u8]) -> &[u8] {
    assert_eq!(&part10[128..132], b"DICM");
    // (0002,0000) UL, explicit VR little endian: tag 4, VR 2, length 2, value 4.
    assert_eq!(&part10[132..138], &[2, 0, 0, 0, b'U', b'L']);
    let meta_len = u32::from_le_bytes(part10[140..144].try_into().unwrap()) as usize;
    &part10[144 + meta_len..]
}

fn acceptor_cfg(max_pdu: u32) -> AcceptorConfig {
    let mut cfg = AcceptorConfig::new("STORESCP");
    cfg.max_pdu = max_pdu;
    for abs in [VERIFICATION, NM] {
        cfg.contexts.push(SupportedContext {
            abstract_syntax: abs.into(),
            transfer_syntaxes: vec![EXPLICIT.into(), IMPLICIT.into()],
            scp_role: true,
            scu_role: false,
        });
    }
    cfg
}

/// A data set stored by [`serve_one`]: transfer syntax, PDV sizes, bytes.
type Stored = (String, Vec<usize>, Vec<u8>);

/// Our acceptor on one connection, answering C-ECHO and C-STORE until released. Returns the
/// stored data sets with the PDV sizes each arrived in, and the negotiated transfer syntaxes.
fn serve_one(l: TcpListener, max_pdu: u32) -> thread::JoinHandle<Vec<Stored>> {
    thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let (mut a, rq) = Association::accept_transport(s, timeouts()).unwrap();
        a.respond(&acceptor_cfg(max_pdu), &rq).unwrap();
        let mut stored = Vec::new();
        loop {
            match a.receive(Some(GUARD)).unwrap() {
                Incoming::Command {
                    context_id,
                    command,
                } => {
                    let ts = a
                        .negotiated()
                        .context(context_id)
                        .unwrap()
                        .transfer_syntax
                        .clone();
                    let mut sizes = Vec::new();
                    let mut data = Vec::new();
                    if command.has_data_set() {
                        a.read_data_set(|c| {
                            sizes.push(c.len());
                            data.extend_from_slice(c);
                            Ok(())
                        })
                        .unwrap();
                    }
                    if command.command_field() == Some(command_field::C_STORE_RQ) {
                        stored.push((ts, sizes, data));
                    }
                    a.send_message(context_id, &response_to(&command, 0, false), None)
                        .unwrap();
                }
                Incoming::Released => return stored,
                Incoming::Aborted(ab) => panic!("DCMTK aborted: {ab:?}"),
            }
        }
    })
}

fn run(cmd: &mut Proc) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dcmtk_echoscu_against_our_acceptor() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let h = serve_one(l, 16384);
    run(Proc::new(dcmtk("echoscu")).args([
        "-aet",
        "DCMTK",
        "-aec",
        "STORESCP",
        "127.0.0.1",
        &port,
    ]));
    assert!(h.join().unwrap().is_empty());
}

/// storescu sends the NM image to us with our maximum PDU of 4096: it must fragment, and the
/// data set must arrive byte for byte.
#[test]
fn dcmtk_storescu_against_our_acceptor() {
    let (file, ds) = nm_file();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let h = serve_one(l, 4096);
    run(Proc::new(dcmtk("storescu"))
        .args(["-aet", "DCMTK", "-aec", "STORESCP", "127.0.0.1", &port])
        .arg(&file));
    let stored = h.join().unwrap();
    assert_eq!(stored.len(), 1);
    let (ts, sizes, data) = &stored[0];
    assert_eq!(ts, EXPLICIT);
    assert!(
        data == &ds,
        "data set differs ({} vs {} bytes)",
        data.len(),
        ds.len()
    );
    assert!(
        sizes.len() > 1 && sizes.iter().all(|&n| n <= 4096 - 6),
        "{sizes:?}"
    );
}

struct Scp(Child, PathBuf);

impl Drop for Scp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// Starts DCMTK storescp with a maximum PDU of 4096 and waits until it listens.
fn start_storescp() -> (Scp, String) {
    start_scp(|dir, port| {
        let mut p = Proc::new(dcmtk("storescp"));
        p.args(["-aet", "STORESCP", "-pdu", "4096", "-od"])
            .arg(dir)
            .arg(port.to_string());
        p
    })
}

/// Starts pynetdicom's storescp with a maximum PDU of 4096 and waits until it listens.
fn start_pynetdicom_storescp() -> (Scp, String) {
    start_scp(|dir, port| {
        let mut p = Proc::new("python3");
        p.args([
            "-m",
            "pynetdicom",
            "storescp",
            "-aet",
            "STORESCP",
            "-pdu",
            "4096",
            "-od",
        ])
        .arg(dir)
        .arg(port.to_string());
        p
    })
}

fn start_scp(cmd: impl FnOnce(&Path, u16) -> Proc) -> (Scp, String) {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("ferro-interop-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = cmd(&dir, port)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let scp = Scp(child, dir);
    let addr = format!("127.0.0.1:{port}");
    let start = Instant::now();
    while TcpStream::connect(&addr).is_err() {
        assert!(start.elapsed() < GUARD, "the storage SCP did not start");
        thread::sleep(Duration::from_millis(20));
    }
    (scp, addr)
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// Our requestor against a storage SCP: C-ECHO, then C-STORE of the NM image fragmented to
/// its maximum PDU of 4096; the SCP writes the same data set to disk.
fn store_to(scp: Scp, addr: &str) {
    let (_, ds) = nm_file();
    let mut cfg = RequestorConfig::new("FERRO", "STORESCP");
    cfg.max_pdu = 16384;
    for abs in [VERIFICATION, NM] {
        cfg.contexts.push(ProposedContext {
            abstract_syntax: abs.into(),
            transfer_syntaxes: vec![EXPLICIT.into()],
            roles: None,
        });
    }
    let mut a = Association::request(addr, &cfg, timeouts()).unwrap();
    assert_eq!(a.negotiated().peer_max_pdu, 4096);
    let echo_ctx = a.negotiated().find_context(VERIFICATION, None).unwrap().id;
    a.send_message(
        echo_ctx,
        &request(command_field::C_ECHO_RQ, 1, VERIFICATION, false),
        None,
    )
    .unwrap();
    let Incoming::Command { command: rsp, .. } = a.receive(Some(GUARD)).unwrap() else {
        panic!("no C-ECHO-RSP")
    };
    assert_eq!(rsp.command_field(), Some(command_field::C_ECHO_RSP));
    assert_eq!(rsp.status(), Some(0));

    let ctx = a.negotiated().find_context(NM, Some(EXPLICIT)).unwrap();
    assert_eq!(ctx.transfer_syntax, EXPLICIT);
    let ctx = ctx.id;
    let mut rq = request(command_field::C_STORE_RQ, 2, NM, true);
    rq.set_str(tag::AFFECTED_SOP_INSTANCE_UID, INSTANCE);
    rq.set_us(tag::PRIORITY, 0);
    a.send_message(ctx, &rq, Some(&ds)).unwrap();
    let Incoming::Command { command: rsp, .. } = a.receive(Some(GUARD)).unwrap() else {
        panic!("no C-STORE-RSP")
    };
    assert_eq!(rsp.command_field(), Some(command_field::C_STORE_RSP));
    assert_eq!(rsp.status(), Some(0));
    assert_eq!(
        rsp.get_str(tag::AFFECTED_SOP_INSTANCE_UID).as_deref(),
        Some(INSTANCE)
    );
    a.release().unwrap();

    let files = files_in(&scp.1);
    assert_eq!(files.len(), 1, "{files:?}");
    let mut written = Vec::new();
    std::fs::File::open(&files[0])
        .unwrap()
        .read_to_end(&mut written)
        .unwrap();
    assert!(
        data_set_of(&written) == &ds[..],
        "the SCP wrote a different data set"
    );
}

#[test]
fn our_requestor_against_dcmtk_storescp() {
    let (scp, addr) = start_storescp();
    store_to(scp, &addr);
}

#[test]
fn our_requestor_against_pynetdicom_storescp() {
    let (scp, addr) = start_pynetdicom_storescp();
    store_to(scp, &addr);
}

#[test]
fn pynetdicom_echoscu_against_our_acceptor() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let h = serve_one(l, 16384);
    run(Proc::new("python3").args([
        "-m",
        "pynetdicom",
        "echoscu",
        "-aet",
        "PYNETDICOM",
        "-aec",
        "STORESCP",
        "127.0.0.1",
        &port,
    ]));
    assert!(h.join().unwrap().is_empty());
}

/// pynetdicom's storescu against our acceptor with an unlimited maximum PDU (0).
#[test]
fn pynetdicom_storescu_against_our_unlimited_acceptor() {
    let (file, ds) = nm_file();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let h = serve_one(l, 0);
    run(Proc::new("python3")
        .args([
            "-m",
            "pynetdicom",
            "storescu",
            "-aet",
            "PYNETDICOM",
            "-aec",
            "STORESCP",
        ])
        .args(["127.0.0.1", &port])
        .arg(&file));
    let stored = h.join().unwrap();
    assert_eq!(stored.len(), 1);
    let (_, _, data) = &stored[0];
    assert!(
        data == &ds,
        "data set differs ({} vs {} bytes)",
        data.len(),
        ds.len()
    );
}
