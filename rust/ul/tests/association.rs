//! Associations over loopback TCP (PS3.8 §9.2 state machine, §9.3 PDUs; PS3.7 Annex E
//! fragmentation): two real ends in threads, or one real end against a scripted raw-socket peer
//! where a scenario (release collision, garbage, oversized PDUs) must be forced.
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;
use ul::dimse::{command_field, request, response_to, tag, Command};
use ul::fsm::State;
use ul::negotiate::{accept_or_reject, reject};
use ul::pdu::*;
use ul::{
    AcceptorConfig, AssocError, Association, Incoming, PduError, ProposedContext, RequestorConfig,
    SupportedContext, Timeouts,
};

/// Records the largest single allocation made by this test binary, so that tests can show a
/// length claimed by a peer was never allocated.
struct Counting;
static LARGEST_ALLOC: AtomicUsize = AtomicUsize::new(0);
/// Allocations above this are refused outright (the test process would abort rather than
/// exhaust the machine's memory if the code under test tried one).
const ALLOC_CEILING: usize = 256 << 20;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOC.fetch_max(layout.size(), Ordering::Relaxed);
        if layout.size() > ALLOC_CEILING {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOC.fetch_max(layout.size(), Ordering::Relaxed);
        if layout.size() > ALLOC_CEILING {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOC.fetch_max(new_size, Ordering::Relaxed);
        if new_size > ALLOC_CEILING {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const VERIFICATION: &str = "1.2.840.10008.1.1";
const NM: &str = "1.2.840.10008.5.1.4.1.1.20";
const IMPLICIT: &str = "1.2.840.10008.1.2";
const EXPLICIT: &str = "1.2.840.10008.1.2.1";
/// Guards against hangs only (never a timing assertion).
const GUARD: Duration = Duration::from_secs(20);

fn timeouts() -> Timeouts {
    Timeouts {
        artim: Duration::from_secs(5),
        acse: Some(GUARD),
        dimse: Some(GUARD),
        connect: Some(GUARD),
    }
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

fn requestor_cfg(max_pdu: u32) -> RequestorConfig {
    let mut cfg = RequestorConfig::new("XELERIS", "STORESCP");
    cfg.max_pdu = max_pdu;
    for abs in [VERIFICATION, NM] {
        cfg.contexts.push(ProposedContext {
            abstract_syntax: abs.into(),
            transfer_syntaxes: vec![IMPLICIT.into()],
            roles: None,
        });
    }
    cfg
}

fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

/// Runs a real acceptor on one connection: accepts the association with `cfg`, then `body`.
fn spawn_acceptor<T: Send + 'static>(
    cfg: AcceptorConfig,
    t: Timeouts,
    body: impl FnOnce(&mut Association) -> T + Send + 'static,
) -> (String, thread::JoinHandle<T>) {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let (mut assoc, rq) = Association::accept_transport(s, t).unwrap();
        assoc.respond(&cfg, &rq).unwrap();
        body(&mut assoc)
    });
    (addr, h)
}

// ---- raw-socket peer helpers ----------------------------------------------------------------

fn read_pdu(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 6];
    s.read_exact(&mut h).expect("PDU header");
    let len = u32::from_be_bytes([h[2], h[3], h[4], h[5]]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("PDU body");
    (h[0], body)
}

fn read_whole_pdu(s: &mut TcpStream) -> Pdu {
    let (ty, body) = read_pdu(s);
    Pdu::decode_body(ty, &body).expect("valid PDU from our side")
}

/// Reads exactly `n` bytes.
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v).expect("bytes from our side");
    v
}

/// Reads until the peer closes (bounded by the guard timeout); returns what arrived.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(GUARD)).unwrap();
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    v
}

/// A raw requestor: connects, sends an A-ASSOCIATE-RQ built from `cfg`, reads the AC.
fn raw_requestor(addr: &str, cfg: &RequestorConfig) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    let rq = cfg.build_request().unwrap();
    s.write_all(&Pdu::AssociateRq(rq).encode()).unwrap();
    match read_whole_pdu(&mut s) {
        Pdu::AssociateAc(_) => s,
        other => panic!("expected A-ASSOCIATE-AC, got {other:?}"),
    }
}

/// A raw acceptor on one connection: reads the RQ, answers with our own policy's AC, then `body`.
fn raw_acceptor<T: Send + 'static>(
    cfg: AcceptorConfig,
    body: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (String, thread::JoinHandle<T>) {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        let Pdu::AssociateRq(rq) = read_whole_pdu(&mut s) else {
            panic!("expected A-ASSOCIATE-RQ")
        };
        let (ac, _) = accept_or_reject(&cfg, &rq).unwrap();
        s.write_all(&Pdu::AssociateAc(ac).encode()).unwrap();
        body(s)
    });
    (addr, h)
}

fn echo_rq(id: u16) -> Command {
    request(command_field::C_ECHO_RQ, id, VERIFICATION, false)
}

fn expect_command(inc: Incoming) -> (u8, Command) {
    match inc {
        Incoming::Command {
            context_id,
            command,
        } => (context_id, command),
        other => panic!("expected a command, got {other:?}"),
    }
}

const ABORT_UNRECOGNIZED_PDU: [u8; 10] = [7, 0, 0, 0, 0, 4, 0, 0, 2, 1];
const ABORT_INVALID_PARAMETER: [u8; 10] = [7, 0, 0, 0, 0, 4, 0, 0, 2, 6];

// ---- establishment, C-ECHO, release -----------------------------------------------------------

#[test]
fn echo_and_release() {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(16384), timeouts(), |a| {
        assert!(a.is_established());
        let n = a.negotiated().clone();
        let (ctx, cmd) = expect_command(a.receive(Some(GUARD)).unwrap());
        assert_eq!(cmd.command_field(), Some(command_field::C_ECHO_RQ));
        assert_eq!(cmd.message_id(), Some(42));
        let rsp = response_to(&cmd, 0x0000, false);
        a.send_message(ctx, &rsp, None).unwrap();
        let end = a.receive(Some(GUARD)).unwrap();
        assert!(matches!(end, Incoming::Released), "{end:?}");
        (n, a.state())
    });
    let mut a = Association::request(&addr, &requestor_cfg(32768), timeouts()).unwrap();
    assert!(a.is_established());
    let n = a.negotiated();
    assert_eq!(n.peer_max_pdu, 16384);
    assert_eq!(n.local_max_pdu, 32768);
    let ctx = n.find_context(VERIFICATION, None).unwrap().id;
    assert_eq!(ctx, 1);
    a.send_message(ctx, &echo_rq(42), None).unwrap();
    let (rctx, rsp) = expect_command(a.receive(Some(GUARD)).unwrap());
    assert_eq!(rctx, ctx);
    assert_eq!(rsp.command_field(), Some(command_field::C_ECHO_RSP));
    assert_eq!(rsp.status(), Some(0));
    assert_eq!(rsp.get_us(tag::MESSAGE_ID_BEING_RESPONDED_TO), Some(42));
    a.release().unwrap();
    assert_eq!(a.state(), State::Sta1);
    let (theirs, state) = acc.join().unwrap();
    assert_eq!(theirs.calling_ae, "XELERIS");
    assert_eq!(theirs.peer_max_pdu, 32768);
    assert_eq!(state, State::Sta1);
    // Nothing may be sent once released.
    assert!(matches!(
        a.send_message(ctx, &echo_rq(43), None),
        Err(AssocError::WrongState(State::Sta1))
    ));
}

#[test]
fn sending_on_a_rejected_context_is_refused_locally() {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(16384), timeouts(), |a| {
        matches!(a.receive(Some(GUARD)).unwrap(), Incoming::Released)
    });
    let mut cfg = requestor_cfg(16384);
    cfg.contexts.push(ProposedContext {
        abstract_syntax: "1.2.3.4".into(),
        transfer_syntaxes: vec![IMPLICIT.into()],
        roles: None,
    });
    let mut a = Association::request(&addr, &cfg, timeouts()).unwrap();
    assert_eq!(a.negotiated().context(5).unwrap().result, 3);
    assert!(matches!(
        a.send_message(5, &echo_rq(1), None),
        Err(AssocError::Config(_))
    ));
    a.release().unwrap();
    assert!(acc.join().unwrap());
}

// ---- release collision ----------------------------------------------------------------------

/// Both real ends call release() at once: each sends A-RELEASE-RQ before reading, so the
/// collision is certain (PS3.8 §9.2, Sta9–Sta12).
#[test]
fn release_collision_between_two_real_ends() {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(16384), timeouts(), |a| {
        let r = a.release();
        (r.map_err(|e| e.to_string()), a.state())
    });
    let mut a = Association::request(&addr, &requestor_cfg(16384), timeouts()).unwrap();
    a.release().unwrap();
    assert_eq!(a.state(), State::Sta1);
    let (r, state) = acc.join().unwrap();
    r.unwrap();
    assert_eq!(state, State::Sta1);
}

/// A scripted acceptor answers our A-RELEASE-RQ with its own: as requestor we must send
/// A-RELEASE-RP first (AR-9), then accept its A-RELEASE-RP (AR-3).
#[test]
fn release_collision_requestor_side() {
    let (addr, peer) = raw_acceptor(acceptor_cfg(16384), |mut s| {
        assert_eq!(read_whole_pdu(&mut s), Pdu::RELEASE_RQ);
        s.write_all(&Pdu::RELEASE_RQ.encode()).unwrap();
        assert_eq!(read_whole_pdu(&mut s), Pdu::RELEASE_RP);
        s.write_all(&Pdu::RELEASE_RP.encode()).unwrap();
        read_to_close(&mut s)
    });
    let mut a = Association::request(&addr, &requestor_cfg(16384), timeouts()).unwrap();
    a.release().unwrap();
    assert_eq!(a.state(), State::Sta1);
    drop(a);
    assert!(peer.join().unwrap().is_empty());
}

/// A scripted requestor answers our (acceptor's) A-RELEASE-RQ with its own: as acceptor we
/// wait for its A-RELEASE-RP (Sta10), then answer ours (AR-10, AR-4).
#[test]
fn release_collision_acceptor_side() {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(16384), timeouts(), |a| {
        let r = a.release().map_err(|e| e.to_string());
        (r, a.state())
    });
    let mut s = raw_requestor(&addr, &requestor_cfg(16384));
    assert_eq!(read_whole_pdu(&mut s), Pdu::RELEASE_RQ);
    s.write_all(&Pdu::RELEASE_RQ.encode()).unwrap();
    // PS3.8: the requestor side of a collision sends its A-RELEASE-RP first...
    s.write_all(&Pdu::RELEASE_RP.encode()).unwrap();
    // ...and then receives the acceptor's.
    assert_eq!(read_whole_pdu(&mut s), Pdu::RELEASE_RP);
    drop(s);
    let (r, state) = acc.join().unwrap();
    r.unwrap();
    assert_eq!(state, State::Sta1);
}

// ---- abort ----------------------------------------------------------------------------------

#[test]
fn peer_abort_is_reported_to_the_receiver() {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(16384), timeouts(), |a| {
        let r = a.receive(Some(GUARD)).unwrap();
        (
            format!("{r:?}"),
            matches!(
                r,
                Incoming::Aborted(Abort {
                    source: 0,
                    reason: 0,
                    ..
                })
            ),
        )
    });
    let mut a = Association::request(&addr, &requestor_cfg(16384), timeouts()).unwrap();
    a.abort(0).unwrap();
    assert_eq!(a.state(), State::Sta1);
    let (what, ok) = acc.join().unwrap();
    assert!(ok, "{what}");
}

#[test]
fn abort_handle_from_another_thread_wakes_the_peer() {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(16384), timeouts(), |a| {
        let h = a.abort_handle().unwrap();
        h.abort();
    });
    let mut a = Association::request(&addr, &requestor_cfg(16384), timeouts()).unwrap();
    let r = a.receive(Some(GUARD)).unwrap();
    assert!(
        matches!(r, Incoming::Aborted(Abort { source: 0, .. })),
        "{r:?}"
    );
    acc.join().unwrap();
}

#[test]
fn peer_closing_without_release_is_an_error() {
    let (addr, peer) = raw_acceptor(acceptor_cfg(16384), drop);
    let mut a = Association::request(&addr, &requestor_cfg(16384), timeouts()).unwrap();
    peer.join().unwrap();
    let r = a.receive(Some(GUARD));
    assert!(matches!(r, Err(AssocError::Closed)), "{r:?}");
    assert_eq!(a.state(), State::Sta1);
}

// ---- garbage and oversized PDUs ---------------------------------------------------------------

/// An unknown PDU type on an established association: Evt19 -> AA-8, A-ABORT with source 2
/// (service provider) and reason 1 (unrecognized PDU) is sent back (PS3.8 Table 9-26).
#[test]
fn unknown_pdu_type_gets_a_provider_abort() {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(16384), timeouts(), |a| {
        let r = a.receive(Some(GUARD));
        (format!("{r:?}"), a.state())
    });
    let mut s = raw_requestor(&addr, &requestor_cfg(16384));
    s.write_all(&[0x09, 0, 0, 0, 0, 4, 1, 2, 3, 4]).unwrap();
    assert_eq!(read_n(&mut s, 10), ABORT_UNRECOGNIZED_PDU);
    drop(s);
    let (r, state) = acc.join().unwrap();
    assert!(
        r.contains("UnknownPduType") && r.contains("pdu_type: 9"),
        "{r}"
    );
    assert_eq!(state, State::Sta1);
}

/// A malformed P-DATA-TF (PDV length 1) also gets A-ABORT source 2.
#[test]
fn malformed_pdv_gets_a_provider_abort() {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(16384), timeouts(), |a| {
        format!("{:?}", a.receive(Some(GUARD)))
    });
    let mut s = raw_requestor(&addr, &requestor_cfg(16384));
    s.write_all(&[4, 0, 0, 0, 0, 6, 0, 0, 0, 1, 1, 3]).unwrap();
    assert_eq!(read_n(&mut s, 10), ABORT_INVALID_PARAMETER);
    drop(s);
    let r = acc.join().unwrap();
    assert!(r.contains("PDV item length"), "{r}");
}

/// A P-DATA-TF longer than our maximum PDU: refused from its header (TooLong), A-ABORT sent,
/// and the claimed size never allocated.
#[test]
fn p_data_tf_longer_than_our_max_pdu() {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(16384), timeouts(), |a| {
        let r = a.receive(Some(GUARD));
        match r {
            Err(AssocError::Pdu(PduError::TooLong { length, limit, .. })) => (length, limit),
            other => panic!("expected TooLong, got {other:?}"),
        }
    });
    let mut s = raw_requestor(&addr, &requestor_cfg(16384));
    // Claims 2 GiB; 16385 would be enough to exceed the limit.
    s.write_all(&[4, 0, 0x80, 0, 0, 0, 0, 0, 0, 2, 1, 3])
        .unwrap();
    assert_eq!(read_n(&mut s, 10), ABORT_INVALID_PARAMETER);
    drop(s);
    assert_eq!(acc.join().unwrap(), (0x8000_0000, 16384));
    assert!(LARGEST_ALLOC.load(Ordering::Relaxed) < 0x8000_0000);
}

#[test]
fn p_data_tf_one_byte_over_the_limit() {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(4096), timeouts(), |a| {
        format!("{:?}", a.receive(Some(GUARD)))
    });
    let mut s = raw_requestor(&addr, &requestor_cfg(16384));
    let pdu = Pdu::PDataTf(PDataTf {
        pdvs: vec![Pdv {
            context_id: 1,
            control: 3,
            data: vec![0; 4091],
        }],
        ..Default::default()
    })
    .encode();
    assert_eq!(pdu.len(), 6 + 4097);
    let _ = s.write_all(&pdu);
    assert_eq!(read_n(&mut s, 10), ABORT_INVALID_PARAMETER);
    drop(s);
    let r = acc.join().unwrap();
    assert!(r.contains("TooLong") && r.contains("4097"), "{r}");
}

/// With an unlimited maximum PDU (0) a peer may claim a 4 GiB P-DATA-TF; the buffer must grow
/// with the bytes that actually arrive, not with the claim.
#[test]
fn unlimited_max_pdu_does_not_trust_the_claimed_length() {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(0), timeouts(), |a| {
        format!("{:?}", a.receive(Some(GUARD)))
    });
    let mut s = raw_requestor(&addr, &requestor_cfg(16384));
    s.write_all(&[4, 0, 0xFF, 0xFF, 0xFF, 0xF0, 0, 0, 0, 2, 1, 3])
        .unwrap();
    drop(s);
    let r = acc.join().unwrap();
    assert!(r.contains("Closed"), "{r}");
    assert!(LARGEST_ALLOC.load(Ordering::Relaxed) < 0xFFFF_FFF0);
}

// ---- fragmentation ----------------------------------------------------------------------------

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// Sends a C-STORE-RQ with `data` from the requestor; the acceptor returns the PDV sizes it
/// saw and the reassembled data set.
fn store_through(
    acc_max: u32,
    req_max: u32,
    data: Vec<u8>,
    streamed: bool,
) -> (Vec<usize>, Vec<u8>) {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(acc_max), timeouts(), |a| {
        let (ctx, cmd) = expect_command(a.receive(Some(GUARD)).unwrap());
        assert_eq!(cmd.command_field(), Some(command_field::C_STORE_RQ));
        assert!(cmd.has_data_set());
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        let n = a
            .read_data_set(|chunk| {
                sizes.push(chunk.len());
                got.extend_from_slice(chunk);
                Ok(())
            })
            .unwrap();
        assert_eq!(n as usize, got.len());
        a.send_message(ctx, &response_to(&cmd, 0, false), None)
            .unwrap();
        assert!(matches!(
            a.receive(Some(GUARD)).unwrap(),
            Incoming::Released
        ));
        (sizes, got)
    });
    let mut a = Association::request(&addr, &requestor_cfg(req_max), timeouts()).unwrap();
    let ctx = a.negotiated().find_context(NM, None).unwrap().id;
    let mut rq = request(command_field::C_STORE_RQ, 1, NM, true);
    rq.set_str(tag::AFFECTED_SOP_INSTANCE_UID, "1.2.3.4");
    if streamed {
        let sent = a.send_message_streamed(ctx, &rq, &data[..]).unwrap();
        assert_eq!(sent as usize, data.len());
    } else {
        a.send_message(ctx, &rq, Some(&data)).unwrap();
    }
    let (_, rsp) = expect_command(a.receive(Some(GUARD)).unwrap());
    assert_eq!(rsp.status(), Some(0));
    a.release().unwrap();
    acc.join().unwrap()
}

#[test]
fn one_megabyte_data_set_with_peer_max_pdu_4096() {
    let data = pattern(1 << 20);
    for streamed in [false, true] {
        let (sizes, got) = store_through(4096, 16384, data.clone(), streamed);
        assert!(got == data, "data set altered (streamed {streamed})");
        assert!(
            sizes.iter().all(|&n| n <= 4096 - 6),
            "{:?}",
            sizes.iter().max()
        );
        assert_eq!(
            sizes.len(),
            (1usize << 20).div_ceil(4090),
            "streamed {streamed}"
        );
    }
}

#[test]
fn small_message_shares_one_pdu_and_odd_sizes_survive() {
    for len in [0usize, 1, 4089, 4090, 4091, 12345] {
        let data = pattern(len);
        let (sizes, got) = store_through(4096, 4096, data.clone(), false);
        assert!(got == data, "len {len}");
        assert!(sizes.iter().all(|&n| n <= 4090));
    }
}

#[test]
fn unlimited_max_pdu_both_ways() {
    let data = pattern(3 << 20);
    let (sizes, got) = store_through(0, 0, data.clone(), false);
    assert!(got == data);
    // An unlimited peer gets 1 MiB PDUs from us.
    assert!(sizes.iter().all(|&n| n <= (1 << 20) - 6));
    assert_eq!(sizes.len(), 4);
}

/// The acceptor sends large data sets back to a requestor with max PDU 4096 (the C-GET/C-FIND
/// direction); the requestor reads one into a buffer and refuses the next over its limit.
#[test]
fn acceptor_to_requestor_fragmentation_and_size_limit() {
    let data = pattern(300_000);
    let expect = data.clone();
    let (addr, acc) = spawn_acceptor(acceptor_cfg(16384), timeouts(), move |a| {
        let (ctx, cmd) = expect_command(a.receive(Some(GUARD)).unwrap());
        let pending = response_to(&cmd, 0xFF00, true);
        a.send_message(ctx, &pending, Some(&data)).unwrap();
        // The peer aborts while this one is in flight: a write error is expected then.
        let _ = a.send_message(ctx, &pending, Some(&data));
        format!("{:?}", a.receive(Some(GUARD)))
    });
    let mut a = Association::request(&addr, &requestor_cfg(4096), timeouts()).unwrap();
    let ctx = a.negotiated().find_context(NM, None).unwrap().id;
    let query = b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ";
    a.send_message(
        ctx,
        &request(command_field::C_FIND_RQ, 1, NM, true),
        Some(query),
    )
    .unwrap();
    let (_, r1) = expect_command(a.receive(Some(GUARD)).unwrap());
    assert_eq!(r1.status(), Some(0xFF00));
    assert!(a.read_data_set_to_vec(4 << 20).unwrap() == expect);
    // The second data set exceeds the caller's limit: an error, not an allocation.
    let (_, r2) = expect_command(a.receive(Some(GUARD)).unwrap());
    assert_eq!(r2.status(), Some(0xFF00));
    assert!(matches!(
        a.read_data_set_to_vec(1000),
        Err(AssocError::Io(_))
    ));
    a.abort(0).unwrap();
    let seen = acc.join().unwrap();
    // Either the A-ABORT was read, or the reset of a socket closed with unread data.
    assert!(
        seen.contains("Aborted") || seen.starts_with("Err(Io") || seen.contains("Closed"),
        "{seen}"
    );
}

// ---- ARTIM and rejection ----------------------------------------------------------------------

/// A client that connects and sends nothing is dropped when ARTIM expires (PS3.8 §9.1.5, Evt18).
#[test]
fn artim_drops_a_silent_client() {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let t = Timeouts {
            artim: Duration::from_millis(200),
            ..timeouts()
        };
        match Association::accept_transport(s, t) {
            Err(e) => e,
            Ok(_) => panic!("a silent client must not get an association"),
        }
    });
    let mut s = TcpStream::connect(&addr).unwrap();
    // The acceptor closes the connection: read returns end of stream (no PDU is sent).
    assert_eq!(read_to_close(&mut s), Vec::<u8>::new());
    let e = h.join().unwrap();
    assert!(matches!(e, AssocError::Timeout(_)), "{e:?}");
}

/// A client that sends half a PDU header and stops is also dropped by ARTIM.
#[test]
fn artim_drops_a_client_that_stalls_mid_pdu() {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let t = Timeouts {
            artim: Duration::from_millis(200),
            ..timeouts()
        };
        Association::accept_transport(s, t).err()
    });
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(&[1, 0, 0]).unwrap();
    assert_eq!(read_to_close(&mut s), Vec::<u8>::new());
    assert!(matches!(h.join().unwrap(), Some(AssocError::Timeout(_))));
}

#[test]
fn rejected_by_a_real_acceptor_called_ae() {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let (mut a, rq) = Association::accept_transport(s, timeouts()).unwrap();
        let mut cfg = acceptor_cfg(16384);
        cfg.require_called_aet = true;
        cfg.ae_title = "SOMEONE-ELSE".into();
        a.respond(&cfg, &rq).err()
    });
    let r = Association::request(&addr, &requestor_cfg(16384), timeouts());
    match r {
        Err(AssocError::Rejected(rj)) => {
            assert_eq!(rj, reject::CALLED_AE_NOT_RECOGNIZED);
            assert_eq!((rj.result, rj.source, rj.reason), (1, 1, 7));
        }
        other => panic!("expected rejection, got {:?}", other.err()),
    }
    assert!(matches!(h.join().unwrap(), Some(AssocError::Rejected(_))));
}

/// A scripted peer answering A-ASSOCIATE-RJ (transient, presentation provider, congestion).
#[test]
fn rejected_by_a_raw_peer_with_the_right_fields() {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        assert!(matches!(read_whole_pdu(&mut s), Pdu::AssociateRq(_)));
        s.write_all(&[3, 0, 0, 0, 0, 4, 0, 2, 3, 1]).unwrap();
        read_to_close(&mut s)
    });
    let e = Association::request(&addr, &requestor_cfg(16384), timeouts()).err();
    match e {
        Some(AssocError::Rejected(rj)) => assert_eq!(
            rj,
            AssociateRj {
                result: 2,
                source: 3,
                reason: 1,
                ..Default::default()
            }
        ),
        other => panic!("{other:?}"),
    }
    assert!(h.join().unwrap().is_empty());
    let msg = AssocError::Rejected(reject::TEMPORARY_CONGESTION).to_string();
    assert!(msg.contains("temporary congestion"), "{msg}");
}

#[test]
fn aborted_during_negotiation() {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        let _ = read_whole_pdu(&mut s);
        s.write_all(&[7, 0, 0, 0, 0, 4, 0, 0, 2, 0]).unwrap();
    });
    let e = Association::request(&addr, &requestor_cfg(16384), timeouts()).err();
    assert!(
        matches!(
            e,
            Some(AssocError::Aborted(Abort {
                source: 2,
                reason: 0,
                ..
            }))
        ),
        "{e:?}"
    );
    h.join().unwrap();
}

/// An A-ASSOCIATE-AC choosing a transfer syntax we did not propose: we abort.
#[test]
fn acceptor_choosing_an_unproposed_transfer_syntax_is_aborted() {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        let Pdu::AssociateRq(rq) = read_whole_pdu(&mut s) else {
            panic!()
        };
        let (mut ac, _) = accept_or_reject(&acceptor_cfg(16384), &rq).unwrap();
        ac.presentation_contexts[0].transfer_syntax = Some("1.2.840.10008.1.2.2".into());
        s.write_all(&Pdu::AssociateAc(ac).encode()).unwrap();
        read_to_close(&mut s)
    });
    let e = Association::request(&addr, &requestor_cfg(16384), timeouts()).err();
    assert!(
        matches!(e, Some(AssocError::Protocol(ref m)) if m.contains("transfer syntax")),
        "{e:?}"
    );
    // The A-ABORT we sent (service user).
    assert_eq!(h.join().unwrap(), [7, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
}

/// A request with an unsupported protocol version gets A-ASSOCIATE-RJ 1/2/2 from the transport
/// step itself (AE-6 -> AE-8).
#[test]
fn protocol_version_rejected() {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        Association::accept_transport(s, timeouts()).err()
    });
    let mut s = TcpStream::connect(&addr).unwrap();
    let mut rq = requestor_cfg(16384).build_request().unwrap();
    rq.protocol_version = 2;
    s.write_all(&Pdu::AssociateRq(rq).encode()).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    assert_eq!(
        read_whole_pdu(&mut s),
        Pdu::AssociateRj(reject::PROTOCOL_VERSION_NOT_SUPPORTED)
    );
    drop(s);
    assert!(matches!(
        h.join().unwrap(),
        Some(AssocError::Rejected(AssociateRj {
            result: 1,
            source: 2,
            reason: 2,
            ..
        }))
    ));
}

/// An A-ASSOCIATE-RQ without any presentation context (PS3.8 §9.3.2 requires one or more) is
/// answered A-ASSOCIATE-RJ 1/1/1 by a real acceptor, not accepted with an empty AC.
#[test]
fn request_without_presentation_contexts_rejected() {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let (mut assoc, rq) = Association::accept_transport(s, timeouts()).unwrap();
        let r = assoc.respond(&acceptor_cfg(16384), &rq);
        (r, assoc.state(), assoc.is_established())
    });
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    let mut rq = requestor_cfg(16384).build_request().unwrap();
    rq.presentation_contexts.clear();
    s.write_all(&Pdu::AssociateRq(rq).encode()).unwrap();
    assert_eq!(
        read_whole_pdu(&mut s),
        Pdu::AssociateRj(AssociateRj {
            result: 1,
            source: 1,
            reason: 1,
            ..Default::default()
        })
    );
    drop(s);
    let (r, state, established) = h.join().unwrap();
    assert!(
        matches!(r, Err(AssocError::Rejected(rj)) if rj == reject::NO_REASON),
        "{r:?}"
    );
    assert_eq!(state, State::Sta1);
    assert!(!established);
}

/// An acceptor configuration with a maximum PDU length no P-DATA-TF could honour (below one PDV
/// item header and a byte, PS3.8 §9.3.5) accepts nothing: the request gets A-ASSOCIATE-RJ 1/1/1
/// and `respond` says why, instead of an association on which every P-DATA is refused.
#[test]
fn invalid_acceptor_config_rejects_with_a_clear_error() {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let (mut assoc, rq) = Association::accept_transport(s, timeouts()).unwrap();
        let r = assoc.respond(&acceptor_cfg(6), &rq);
        (r, assoc.state())
    });
    let e = Association::request(&addr, &requestor_cfg(16384), timeouts()).err();
    assert!(
        matches!(e, Some(AssocError::Rejected(rj)) if rj == reject::NO_REASON),
        "{e:?}"
    );
    let (r, state) = h.join().unwrap();
    match r {
        Err(AssocError::Config(m)) => assert!(m.contains("maximum PDU length 6"), "{m}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert_eq!(state, State::Sta1);
}

// ---- invalid DIMSE traffic on an established association ------------------------------------

/// Runs a real acceptor, lets a raw requestor send `bytes`, and returns the acceptor's
/// `receive` result (as text) and the PDU it sent back.
fn acceptor_answer_to(bytes: &[u8]) -> (String, Vec<u8>) {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(16384), timeouts(), |a| {
        format!("{:?}", a.receive(Some(GUARD)))
    });
    let mut s = raw_requestor(&addr, &requestor_cfg(16384));
    let _ = s.write_all(bytes);
    let back = read_n(&mut s, 10);
    drop(s);
    (acc.join().unwrap(), back)
}

fn pdata(pdvs: &[(u8, u8, &[u8])]) -> Vec<u8> {
    Pdu::PDataTf(PDataTf {
        pdvs: pdvs
            .iter()
            .map(|(c, ctl, d)| Pdv {
                context_id: *c,
                control: *ctl,
                data: d.to_vec(),
            })
            .collect(),
        ..Default::default()
    })
    .encode()
}

const ABORT_UNEXPECTED_PDU: [u8; 10] = [7, 0, 0, 0, 0, 4, 0, 0, 2, 2];
const ABORT_UNEXPECTED_PARAMETER: [u8; 10] = [7, 0, 0, 0, 0, 4, 0, 0, 2, 5];

#[test]
fn command_on_a_context_that_was_not_accepted() {
    let cmd = echo_rq(1).encode();
    let (r, back) = acceptor_answer_to(&pdata(&[(7, 3, &cmd)]));
    assert!(r.contains("context 7"), "{r}");
    assert_eq!(back, ABORT_INVALID_PARAMETER);
}

#[test]
fn data_set_fragment_where_a_command_was_expected() {
    let (r, back) = acceptor_answer_to(&pdata(&[(1, 2, b"\x08\x00")]));
    assert!(r.contains("data set fragment"), "{r}");
    assert_eq!(back, ABORT_UNEXPECTED_PARAMETER);
}

#[test]
fn command_fragments_on_two_contexts() {
    let cmd = echo_rq(1).encode();
    let (r, back) = acceptor_answer_to(&pdata(&[(1, 1, &cmd[..10]), (3, 3, &cmd[10..])]));
    assert!(r.contains("different presentation contexts"), "{r}");
    assert_eq!(back, ABORT_UNEXPECTED_PARAMETER);
}

#[test]
fn malformed_command_set_is_a_dimse_error() {
    let mut cmd = echo_rq(1).encode();
    cmd[12] = 8; // first element after the group length moves to group 0008
    let (r, back) = acceptor_answer_to(&pdata(&[(1, 3, &cmd)]));
    assert!(r.contains("Dimse(WrongGroup"), "{r}");
    assert_eq!(back, ABORT_INVALID_PARAMETER);
}

#[test]
fn command_set_over_64_kib_is_refused() {
    let chunk = vec![0u8; 16000];
    let mut bytes = Vec::new();
    for _ in 0..5 {
        bytes.extend(pdata(&[(1, 1, &chunk)]));
    }
    let (r, back) = acceptor_answer_to(&bytes);
    assert!(r.contains("TooLarge"), "{r}");
    assert_eq!(back, ABORT_INVALID_PARAMETER);
}

#[test]
fn association_request_on_an_established_association() {
    let rq = requestor_cfg(16384).build_request().unwrap();
    let (r, back) = acceptor_answer_to(&Pdu::AssociateRq(rq).encode());
    assert!(r.contains("unexpected PDU type 0x01"), "{r}");
    assert_eq!(back, ABORT_UNEXPECTED_PDU);
}

#[test]
fn release_rp_without_release_rq() {
    let (r, back) = acceptor_answer_to(&Pdu::RELEASE_RP.encode());
    assert!(r.contains("unexpected PDU type 0x06"), "{r}");
    assert_eq!(back, ABORT_UNEXPECTED_PDU);
}

#[test]
fn empty_p_data_tf_on_the_wire() {
    let (r, back) = acceptor_answer_to(&[4, 0, 0, 0, 0, 0]);
    assert!(r.contains("empty P-DATA-TF"), "{r}");
    assert_eq!(back, ABORT_INVALID_PARAMETER);
}

/// A first PDU other than A-ASSOCIATE-RQ (Sta2, Evt12): AA-1, A-ABORT from the service user.
#[test]
fn release_rq_before_association() {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        Association::accept_transport(s, timeouts()).err()
    });
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(&Pdu::RELEASE_RQ.encode()).unwrap();
    assert_eq!(read_n(&mut s, 10), [7, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    drop(s);
    let e = h.join().unwrap();
    assert!(
        matches!(e, Some(AssocError::Protocol(ref m)) if m.contains("0x05")),
        "{e:?}"
    );
}

/// Garbage as the first PDU (unknown type) is also answered with A-ABORT and refused.
#[test]
fn garbage_before_association() {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        Association::accept_transport(s, timeouts()).err()
    });
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_n(&mut s, 10), [7, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    drop(s);
    let e = h.join().unwrap();
    assert!(
        matches!(
            e,
            Some(AssocError::Pdu(PduError::UnknownPduType {
                pdu_type: b'G',
                ..
            }))
        ),
        "{e:?}"
    );
}

#[test]
fn connection_refused_is_an_io_error() {
    let (l, addr) = listener();
    drop(l);
    let e = Association::request(&addr, &requestor_cfg(16384), timeouts()).err();
    assert!(matches!(e, Some(AssocError::Io(_))), "{e:?}");
}

// ---- release edge cases and local timers --------------------------------------------------------

/// P-DATA-TF arriving after our A-RELEASE-RQ is a P-DATA indication (PS3.8 Table 9-10,
/// Sta7: AR-6; §7.2.2: the release requestor may still receive P-DATA). It does not stop the
/// release, and `release()`, which has no one to hand it to, reports it instead of dropping it.
#[test]
fn p_data_while_awaiting_release_rp() {
    let rsp = response_to(&echo_rq(1), 0, false).encode();
    let sent = rsp.clone();
    let (addr, peer) = raw_acceptor(acceptor_cfg(16384), move |mut s| {
        assert_eq!(read_whole_pdu(&mut s), Pdu::RELEASE_RQ);
        s.write_all(&pdata(&[(1, 3, &sent)])).unwrap();
        s.write_all(&Pdu::RELEASE_RP.encode()).unwrap();
        read_to_close(&mut s)
    });
    let mut a = Association::request(&addr, &requestor_cfg(16384), timeouts()).unwrap();
    let r = a.release();
    assert!(
        matches!(r, Err(AssocError::DataDuringRelease { pdvs: 1, bytes }) if bytes == rsp.len() as u64),
        "{r:?}"
    );
    // The release itself completed.
    assert_eq!(a.state(), State::Sta1);
    drop(a);
    assert!(peer.join().unwrap().is_empty());
}

/// `release_with` hands every PDV received while awaiting A-RELEASE-RP to the caller, in order
/// (AR-6, Sta7), across PDUs and with several PDVs in one PDU, then completes the release.
#[test]
fn release_with_delivers_p_data_received_while_awaiting_release_rp() {
    let rsp = response_to(&echo_rq(1), 0, false).encode();
    let ds = pattern(3000);
    let (cmd2, ds2) = (rsp.clone(), ds.clone());
    let (addr, peer) = raw_acceptor(acceptor_cfg(16384), move |mut s| {
        assert_eq!(read_whole_pdu(&mut s), Pdu::RELEASE_RQ);
        s.write_all(&pdata(&[(1, 3, &cmd2)])).unwrap();
        s.write_all(&pdata(&[(3, 0, &ds2[..1000]), (3, 2, &ds2[1000..])]))
            .unwrap();
        s.write_all(&Pdu::RELEASE_RP.encode()).unwrap();
        read_to_close(&mut s)
    });
    let mut a = Association::request(&addr, &requestor_cfg(16384), timeouts()).unwrap();
    let mut got: Vec<(u8, u8, Vec<u8>)> = Vec::new();
    a.release_with(|p| got.push((p.context_id, p.control, p.data.to_vec())))
        .unwrap();
    assert_eq!(a.state(), State::Sta1);
    assert_eq!(
        got,
        vec![
            (1, 3, rsp),
            (3, 0, ds[..1000].to_vec()),
            (3, 2, ds[1000..].to_vec())
        ]
    );
    drop(a);
    assert!(peer.join().unwrap().is_empty());
}

/// An invalid P-DATA-TF while awaiting A-RELEASE-RP (Sta7, Evt19): AA-8, A-ABORT from the
/// service provider; nothing of it is handed over.
#[test]
fn malformed_p_data_while_awaiting_release_rp() {
    let (addr, peer) = raw_acceptor(acceptor_cfg(16384), |mut s| {
        assert_eq!(read_whole_pdu(&mut s), Pdu::RELEASE_RQ);
        // One PDV, then a PDV item length of 1.
        let mut bytes = pdata(&[(1, 3, b"ok")]);
        bytes.extend_from_slice(&[0, 0, 0, 1, 1]);
        let len = (bytes.len() - 6) as u32;
        bytes[2..6].copy_from_slice(&len.to_be_bytes());
        s.write_all(&bytes).unwrap();
        read_n(&mut s, 10)
    });
    let mut a = Association::request(&addr, &requestor_cfg(16384), timeouts()).unwrap();
    let mut n = 0;
    let r = a.release_with(|_| n += 1);
    assert!(
        matches!(r, Err(AssocError::Pdu(PduError::InvalidField { .. }))),
        "{r:?}"
    );
    assert_eq!(n, 0);
    assert_eq!(a.state(), State::Sta1);
    drop(a);
    assert_eq!(peer.join().unwrap(), ABORT_INVALID_PARAMETER);
}

/// A PDV on a presentation context that was not accepted, while awaiting A-RELEASE-RP, is
/// refused as it is on an established association.
#[test]
fn p_data_on_an_unaccepted_context_while_awaiting_release_rp() {
    let (addr, peer) = raw_acceptor(acceptor_cfg(16384), |mut s| {
        assert_eq!(read_whole_pdu(&mut s), Pdu::RELEASE_RQ);
        s.write_all(&pdata(&[(7, 3, b"xx")])).unwrap();
        read_n(&mut s, 10)
    });
    let mut a = Association::request(&addr, &requestor_cfg(16384), timeouts()).unwrap();
    let r = a.release_with(|_| panic!("nothing may be handed over"));
    assert!(
        matches!(r, Err(AssocError::Protocol(ref m)) if m.contains("context 7")),
        "{r:?}"
    );
    assert_eq!(a.state(), State::Sta1);
    drop(a);
    assert_eq!(peer.join().unwrap(), ABORT_INVALID_PARAMETER);
}

/// After a release collision (Sta11 here, requestor side) P-DATA is no longer expected: AA-8,
/// A-ABORT from the service provider, reason "unexpected PDU".
#[test]
fn p_data_after_a_release_collision_is_aborted() {
    let (addr, peer) = raw_acceptor(acceptor_cfg(16384), |mut s| {
        assert_eq!(read_whole_pdu(&mut s), Pdu::RELEASE_RQ);
        s.write_all(&Pdu::RELEASE_RQ.encode()).unwrap();
        assert_eq!(read_whole_pdu(&mut s), Pdu::RELEASE_RP);
        s.write_all(&pdata(&[(1, 3, b"xx")])).unwrap();
        read_n(&mut s, 10)
    });
    let mut a = Association::request(&addr, &requestor_cfg(16384), timeouts()).unwrap();
    let r = a.release_with(|_| panic!("nothing may be handed over"));
    assert!(
        matches!(r, Err(AssocError::Protocol(ref m)) if m.contains("while releasing")),
        "{r:?}"
    );
    assert_eq!(a.state(), State::Sta1);
    drop(a);
    assert_eq!(peer.join().unwrap(), ABORT_UNEXPECTED_PDU);
}

/// With an unlimited maximum PDU (0), a P-DATA-TF claiming 4 GiB while awaiting A-RELEASE-RP
/// is read as its bytes arrive; the claimed length is never allocated.
#[test]
fn unlimited_max_pdu_release_does_not_trust_the_claimed_length() {
    let (addr, peer) = raw_acceptor(acceptor_cfg(16384), |mut s| {
        assert_eq!(read_whole_pdu(&mut s), Pdu::RELEASE_RQ);
        s.write_all(&[4, 0, 0xFF, 0xFF, 0xFF, 0xF0, 0, 0, 0, 2, 1, 3])
            .unwrap();
    });
    let mut a = Association::request(&addr, &requestor_cfg(0), timeouts()).unwrap();
    let r = a.release();
    assert!(matches!(r, Err(AssocError::Closed)), "{r:?}");
    assert_eq!(a.state(), State::Sta1);
    peer.join().unwrap();
    assert!(LARGEST_ALLOC.load(Ordering::Relaxed) < 0xFFFF_FFF0);
}

#[test]
fn abort_instead_of_release_rp() {
    let (addr, peer) = raw_acceptor(acceptor_cfg(16384), |mut s| {
        assert_eq!(read_whole_pdu(&mut s), Pdu::RELEASE_RQ);
        s.write_all(&[7, 0, 0, 0, 0, 4, 0, 0, 0, 0]).unwrap();
    });
    let mut a = Association::request(&addr, &requestor_cfg(16384), timeouts()).unwrap();
    let r = a.release();
    assert!(
        matches!(
            r,
            Err(AssocError::Aborted(Abort {
                source: 0,
                reason: 0,
                ..
            }))
        ),
        "{r:?}"
    );
    assert_eq!(a.state(), State::Sta1);
    peer.join().unwrap();
}

/// The DIMSE timer expiring aborts the association (AA-1: A-ABORT, service user).
#[test]
fn dimse_timeout_aborts() {
    let (addr, peer) = raw_acceptor(acceptor_cfg(16384), |mut s| read_to_close(&mut s));
    let mut a = Association::request(&addr, &requestor_cfg(16384), timeouts()).unwrap();
    let r = a.receive(Some(Duration::from_millis(100)));
    assert!(matches!(r, Err(AssocError::Timeout(_))), "{r:?}");
    assert_eq!(a.state(), State::Sta1);
    drop(a);
    assert_eq!(peer.join().unwrap(), [7, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
}

/// No answer to our A-ASSOCIATE-RQ within the ACSE timeout: A-ABORT and a timeout error.
#[test]
fn acse_timeout_aborts() {
    let (l, addr) = listener();
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        assert!(matches!(read_whole_pdu(&mut s), Pdu::AssociateRq(_)));
        read_to_close(&mut s)
    });
    let t = Timeouts {
        acse: Some(Duration::from_millis(100)),
        ..timeouts()
    };
    let e = Association::request(&addr, &requestor_cfg(16384), t).err();
    assert!(matches!(e, Some(AssocError::Timeout(_))), "{e:?}");
    assert_eq!(h.join().unwrap(), [7, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
}

/// A data set the receiver does not read is skipped by the next `receive`.
#[test]
fn unread_data_set_is_skipped() {
    let (addr, acc) = spawn_acceptor(acceptor_cfg(4096), timeouts(), |a| {
        let (_, first) = expect_command(a.receive(Some(GUARD)).unwrap());
        assert!(first.has_data_set());
        // Not read: the next receive skips its fragments.
        let (_, second) = expect_command(a.receive(Some(GUARD)).unwrap());
        let n = a.read_data_set(|_| Ok(())).unwrap();
        let end = a.receive(Some(GUARD)).unwrap();
        (
            first.message_id(),
            second.message_id(),
            n,
            matches!(end, Incoming::Released),
        )
    });
    let mut a = Association::request(&addr, &requestor_cfg(16384), timeouts()).unwrap();
    let ctx = a.negotiated().find_context(NM, None).unwrap().id;
    a.send_message(
        ctx,
        &request(command_field::C_STORE_RQ, 1, NM, true),
        Some(&pattern(50_000)),
    )
    .unwrap();
    a.send_message(
        ctx,
        &request(command_field::C_STORE_RQ, 2, NM, true),
        Some(&pattern(10)),
    )
    .unwrap();
    a.release().unwrap();
    assert_eq!(acc.join().unwrap(), (Some(1), Some(2), 10, true));
}

/// An invalid PDV after a valid one in the same P-DATA-TF: the error names its offset from the
/// start of the PDU (PS3.8 §9.3.5).
#[test]
fn second_pdv_error_reports_its_offset_in_the_pdu() {
    let cmd = echo_rq(1).encode();
    let mut bytes = pdata(&[(1, 3, &cmd)]);
    bytes.extend_from_slice(&[0, 0, 0, 1, 1]); // PDV item length 1
    let len = (bytes.len() - 6) as u32;
    bytes[2..6].copy_from_slice(&len.to_be_bytes());
    let (addr, acc) = spawn_acceptor(acceptor_cfg(16384), timeouts(), |a| {
        let (_, first) = expect_command(a.receive(Some(GUARD)).unwrap());
        assert_eq!(first.message_id(), Some(1));
        match a.receive(Some(GUARD)) {
            Err(AssocError::Pdu(e)) => e,
            other => panic!("expected a PDU error, got {other:?}"),
        }
    });
    let mut s = raw_requestor(&addr, &requestor_cfg(16384));
    s.write_all(&bytes).unwrap();
    assert_eq!(read_n(&mut s, 10), ABORT_INVALID_PARAMETER);
    drop(s);
    let e = acc.join().unwrap();
    assert_eq!(
        e,
        PduError::InvalidField {
            offset: 6 + 6 + cmd.len(),
            field: "PDV item length",
            reason: "1 is shorter than the context ID and control header".into()
        }
    );
}
