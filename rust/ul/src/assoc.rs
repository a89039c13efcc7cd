//! An association over TCP: the PS3.8 §9.2 state machine driven by socket I/O, with DIMSE
//! message fragmentation (to the peer's maximum PDU) and reassembly (PS3.7 §6.3.1, PS3.8 Annex E).
//!
//! Blocking I/O, one thread per association; all socket work happens here so that the binding
//! layer can release the GIL around every call.
use crate::dimse::{Command, MAX_COMMAND_SET};
use crate::error::{DimseError, PduError};
use crate::fsm::{transition, Action, Conditions, Event, State};
use crate::negotiate::{answer_with, AcceptorConfig, Decision, Negotiated, RequestorConfig};
use crate::pdu::*;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Everything that can go wrong on an association.
#[derive(Debug, Error)]
pub enum AssocError {
    #[error("network error: {0}")]
    Io(#[from] io::Error),
    #[error("invalid PDU from peer: {0}")]
    Pdu(#[from] PduError),
    #[error("invalid DIMSE message from peer: {0}")]
    Dimse(#[from] DimseError),
    #[error("association rejected: result {} source {} reason {} ({})", .0.result, .0.source, .0.reason, reject_meaning(.0))]
    Rejected(AssociateRj),
    #[error("association aborted by {} (source {}, reason {})", abort_origin(.0.source), .0.source, .0.reason)]
    Aborted(Abort),
    #[error("peer closed the connection")]
    Closed,
    /// The peer released the association while a response was still expected.
    #[error("the peer released the association")]
    Released,
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Config(String),
    #[error("operation not allowed in state {0:?}")]
    WrongState(State),
    /// The association was released, but P-DATA arrived while awaiting A-RELEASE-RP (a P-DATA
    /// indication, PS3.8 Table 9-10 AR-6) and [`Association::release`] had no one to hand it to.
    #[error("association released, but {pdvs} PDV(s) ({bytes} bytes) arrived from the peer while awaiting A-RELEASE-RP and were not read")]
    DataDuringRelease { pdvs: u64, bytes: u64 },
}

fn abort_origin(source: u8) -> &'static str {
    match source {
        0 => "the peer (service user)",
        2 => "the peer's upper layer (service provider)",
        _ => "an unknown source",
    }
}

/// A readable description of an A-ASSOCIATE-RJ (PS3.8 Table 9-21).
pub fn reject_meaning(rj: &AssociateRj) -> &'static str {
    match (rj.source, rj.reason) {
        (1, 1) => "no reason given",
        (1, 2) => "application context name not supported",
        (1, 3) => "calling AE title not recognized",
        (1, 7) => "called AE title not recognized",
        (2, 1) => "no reason given (ACSE)",
        (2, 2) => "protocol version not supported",
        (3, 1) => "temporary congestion",
        (3, 2) => "local limit exceeded",
        _ => "reserved reason",
    }
}

/// A-ABORT reasons for service-provider aborts (PS3.8 Table 9-26).
pub mod abort_reason {
    pub const NOT_SPECIFIED: u8 = 0;
    pub const UNRECOGNIZED_PDU: u8 = 1;
    pub const UNEXPECTED_PDU: u8 = 2;
    pub const UNRECOGNIZED_PDU_PARAMETER: u8 = 4;
    pub const UNEXPECTED_PDU_PARAMETER: u8 = 5;
    pub const INVALID_PDU_PARAMETER_VALUE: u8 = 6;
}

/// Timers of an association. `None` waits forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// ARTIM (PS3.8 §9.1.5): waiting for A-ASSOCIATE-RQ, or for the peer to close after a release/abort.
    pub artim: Duration,
    /// Waiting for A-ASSOCIATE-AC/RJ, and for A-RELEASE-RP.
    pub acse: Option<Duration>,
    /// Waiting for a DIMSE message (or its next fragment).
    pub dimse: Option<Duration>,
    /// TCP connect.
    pub connect: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            artim: Duration::from_secs(30),
            acse: Some(Duration::from_secs(30)),
            dimse: Some(Duration::from_secs(60)),
            connect: Some(Duration::from_secs(30)),
        }
    }
}

/// What `receive` returns.
#[derive(Debug)]
pub enum Incoming {
    /// A complete command set arrived on a context. If `command.has_data_set()`, the data set
    /// must be read next with [`Association::read_data_set`] (or it is skipped by the next call).
    Command { context_id: u8, command: Command },
    /// The peer asked to release; we answered A-RELEASE-RP and the association is over.
    Released,
    /// The peer aborted.
    Aborted(Abort),
}

/// The side we play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Requestor,
    Acceptor,
}

/// Reads of data-set PDVs in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// No data set expected.
    None,
    /// A data set on this context is expected and not yet finished.
    Pending(u8),
}

/// One association.
pub struct Association {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    state: State,
    role: Role,
    timeouts: Timeouts,
    negotiated: Negotiated,
    /// Body of the P-DATA-TF PDU being consumed, and the read position inside it.
    rx: Vec<u8>,
    rx_pos: usize,
    tx: Vec<u8>,
    /// Reused fragment buffer of [`PdvWriter`].
    pdv_buf: Vec<u8>,
    data: DataState,
    /// Largest PDU body we accept from the peer.
    rx_limit: usize,
    /// Run once, just before this acceptor sends its A-RELEASE-RP.
    before_release_rp: Option<Box<dyn FnOnce() + Send>>,
    /// The socket's read timeout as last set (`Some(None)`: off; `None`: not known).
    read_timeout: Option<Option<Duration>>,
}

/// One `recv` of at most `max` bytes into the spare capacity of `buf` (which must have room).
#[cfg(unix)]
fn recv_into_spare(stream: &TcpStream, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let spare = buf.spare_capacity_mut();
    let want = spare.len().min(max);
    // SAFETY: the kernel writes at most `want` bytes into the spare capacity, which is valid for
    // writes; `set_len` then covers exactly the bytes it reported as written.
    let got = unsafe { libc::recv(stream.as_raw_fd(), spare.as_mut_ptr().cast(), want, 0) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = got as usize;
    unsafe { buf.set_len(buf.len() + got) };
    Ok(got)
}

#[cfg(not(unix))]
fn recv_into_spare(stream: &TcpStream, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let mut tmp = vec![0u8; buf.capacity().saturating_sub(buf.len()).min(max)];
    let got = (&*stream).read(&mut tmp)?;
    buf.extend_from_slice(&tmp[..got]);
    Ok(got)
}

fn io_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Association {
    fn new(stream: TcpStream, role: Role, timeouts: Timeouts) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Association {
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
            state: State::Sta1,
            role,
            timeouts,
            negotiated: Negotiated::default(),
            rx: Vec::new(),
            rx_pos: 0,
            tx: Vec::with_capacity(16 * 1024),
            pdv_buf: Vec::new(),
            data: DataState::None,
            rx_limit: ASSOCIATION_PDU_LIMIT,
            before_release_rp: None,
            read_timeout: None,
        })
    }

    /// Fires an event through the state machine and returns the action PS3.8 prescribes.
    fn fire(&mut self, event: Event, rq_acceptable: bool) -> Result<Action, AssocError> {
        let cond = Conditions {
            rq_acceptable,
            is_requestor: self.role == Role::Requestor,
        };
        match transition(self.state, event, cond) {
            Some((action, next)) => {
                self.state = next;
                Ok(action)
            }
            None => Err(AssocError::WrongState(self.state)),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }
    pub fn is_established(&self) -> bool {
        self.state == State::Sta6
    }
    pub fn timeouts_mut(&mut self) -> &mut Timeouts {
        &mut self.timeouts
    }
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.writer.peer_addr().ok()
    }

    /// Runs `f` once, just before this acceptor answers a release with A-RELEASE-RP (PS3.8
    /// §7.2): the peer may open its next association as soon as it reads the RP, so whatever
    /// must be over by then (e.g. counting the association out of a limit) belongs here.
    pub fn before_release_response(&mut self, f: impl FnOnce() + Send + 'static) {
        self.before_release_rp = Some(Box::new(f));
    }

    /// Sends A-RELEASE-RP, running the [`Self::before_release_response`] hook first.
    fn send_release_rp(&mut self) -> Result<(), AssocError> {
        if let Some(f) = self.before_release_rp.take() {
            f();
        }
        self.send_pdu(&Pdu::RELEASE_RP)
    }

    /// A handle that can abort this association from another thread (closes the socket).
    pub fn abort_handle(&self) -> io::Result<AbortHandle> {
        Ok(AbortHandle(self.writer.try_clone()?))
    }

    /// A handle that waits, from any thread, until the peer has sent something (see
    /// [`Watcher::wait`]); bytes already read into this association's buffers are not seen by
    /// it: check [`Association::has_buffered_input`] first.
    pub fn watcher(&self) -> io::Result<Watcher> {
        Ok(Watcher(self.writer.try_clone()?))
    }

    /// True when bytes from the peer are already buffered here (a PDU, or the rest of one), so
    /// that the next read will not wait for the socket.
    pub fn has_buffered_input(&self) -> bool {
        self.rx_pos < self.rx.len() || !self.reader.buffer().is_empty()
    }

    // -----------------------------------------------------------------------------------------
    // Establishment
    // -----------------------------------------------------------------------------------------

    /// Requestor: connects, sends A-ASSOCIATE-RQ and waits for the answer (AE-1 … AE-4).
    pub fn request(
        addr: impl ToSocketAddrs,
        cfg: &RequestorConfig,
        timeouts: Timeouts,
    ) -> Result<Association, AssocError> {
        let rq = cfg.build_request().map_err(AssocError::Config)?;
        let mut last_err = None;
        let mut stream = None;
        for a in addr.to_socket_addrs()? {
            let r = match timeouts.connect {
                Some(t) => TcpStream::connect_timeout(&a, t),
                None => TcpStream::connect(a),
            };
            match r {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let stream = match stream {
            Some(s) => s,
            None => {
                return Err(last_err
                    .unwrap_or_else(|| io::Error::other("no address to connect to"))
                    .into())
            }
        };
        let mut assoc = Association::new(stream, Role::Requestor, timeouts)?;
        assoc.fire(Event::Evt1, true)?; // AE-1 (the connect above)
        assoc.fire(Event::Evt2, true)?; // AE-2: send A-ASSOCIATE-RQ
        assoc.send_pdu(&Pdu::AssociateRq(rq.clone()))?;
        let deadline = timeouts.acse.map(|t| Instant::now() + t);
        let (ty, body_len) = match assoc.read_pdu_header(deadline, "A-ASSOCIATE response") {
            Ok(h) => h,
            Err(e) => return Err(assoc.fail_on_read(e)),
        };
        let body = assoc.read_body(body_len)?;
        let pdu = match Pdu::decode_body(ty, &body) {
            Ok(p) => p,
            Err(e) => {
                let _ = assoc.fire(Event::Evt19, true);
                assoc.provider_abort(abort_reason::INVALID_PDU_PARAMETER_VALUE);
                return Err(e.into());
            }
        };
        match pdu {
            Pdu::AssociateAc(ac) => {
                assoc.fire(Event::Evt3, true)?; // AE-3
                match cfg.interpret(&rq, &ac) {
                    Ok(n) => {
                        assoc.negotiated = n;
                        assoc.rx_limit = cfg.max_pdu_limit();
                        Ok(assoc)
                    }
                    Err(msg) => {
                        let _ = assoc.abort(abort_reason::INVALID_PDU_PARAMETER_VALUE);
                        Err(AssocError::Protocol(msg))
                    }
                }
            }
            Pdu::AssociateRj(rj) => {
                assoc.fire(Event::Evt4, true)?; // AE-4: close
                let _ = assoc.writer.shutdown(Shutdown::Both);
                Err(AssocError::Rejected(rj))
            }
            Pdu::Abort(a) => {
                assoc.fire(Event::Evt16, true)?;
                let _ = assoc.writer.shutdown(Shutdown::Both);
                Err(AssocError::Aborted(a))
            }
            other => {
                let _ = assoc.fire(pdu_event(&other), true);
                assoc.provider_abort(abort_reason::UNEXPECTED_PDU);
                Err(AssocError::Protocol(format!(
                    "unexpected PDU type 0x{:02X} during negotiation",
                    other.pdu_type()
                )))
            }
        }
    }

    /// Acceptor, step 1: takes an accepted TCP connection and waits (under ARTIM) for the
    /// A-ASSOCIATE-RQ (AE-5, AE-6). Returns the request for the caller to decide on.
    pub fn accept_transport(
        stream: TcpStream,
        timeouts: Timeouts,
    ) -> Result<(Association, AssociateRq), AssocError> {
        let mut assoc = Association::new(stream, Role::Acceptor, timeouts)?;
        assoc.fire(Event::Evt5, true)?; // AE-5: start ARTIM
        let deadline = Some(Instant::now() + timeouts.artim);
        let (ty, len) = match assoc.read_pdu_header(deadline, "A-ASSOCIATE-RQ (ARTIM)") {
            Ok(h) => h,
            Err(e) => return Err(assoc.fail_on_read(e)),
        };
        let body = assoc.read_body(len)?;
        match Pdu::decode_body(ty, &body) {
            Ok(Pdu::AssociateRq(rq)) => {
                let acceptable = rq.protocol_version & 1 == 1;
                assoc.fire(Event::Evt6, acceptable)?; // AE-6
                if !acceptable {
                    assoc.send_pdu(&Pdu::AssociateRj(
                        crate::negotiate::reject::PROTOCOL_VERSION_NOT_SUPPORTED,
                    ))?;
                    assoc.await_close();
                    return Err(AssocError::Rejected(
                        crate::negotiate::reject::PROTOCOL_VERSION_NOT_SUPPORTED,
                    ));
                }
                Ok((assoc, rq))
            }
            Ok(other) => {
                let ev = pdu_event(&other);
                let action = assoc.fire(ev, true)?;
                if action == Action::Aa1 {
                    assoc.send_abort(0, 0);
                }
                assoc.await_close();
                Err(AssocError::Protocol(format!(
                    "expected A-ASSOCIATE-RQ, received PDU type 0x{:02X}",
                    other.pdu_type()
                )))
            }
            Err(e) => {
                assoc.fire(Event::Evt19, true)?; // AA-1 in Sta2
                assoc.send_abort(0, 0);
                assoc.await_close();
                Err(e.into())
            }
        }
    }

    /// Acceptor, step 2a: answer with our configuration's policy (accept or reject).
    ///
    /// A configuration that fails [`AcceptorConfig::validate_sizes`] accepts nothing: the request
    /// is rejected (1/1/1) and the reason returned as [`AssocError::Config`]. (The full
    /// [`AcceptorConfig::validate`], which also checks every UID, is for configuration time.)
    pub fn respond(&mut self, cfg: &AcceptorConfig, rq: &AssociateRq) -> Result<(), AssocError> {
        self.respond_with(cfg, rq, &Decision::default())
    }

    /// [`Association::respond`] with the application's [`Decision`] for this association
    /// (user identity server response, extended negotiation replies).
    pub fn respond_with(
        &mut self,
        cfg: &AcceptorConfig,
        rq: &AssociateRq,
        decision: &Decision,
    ) -> Result<(), AssocError> {
        if let Err(msg) = cfg.validate_sizes() {
            self.reject(crate::negotiate::reject::NO_REASON)?;
            return Err(AssocError::Config(format!(
                "invalid acceptor configuration: {msg}"
            )));
        }
        match answer_with(cfg, rq, decision) {
            Ok((ac, negotiated)) => {
                self.fire(Event::Evt7, true)?; // AE-7
                self.send_pdu(&Pdu::AssociateAc(ac))?;
                self.rx_limit = if cfg.max_pdu == 0 {
                    usize::MAX
                } else {
                    cfg.max_pdu as usize
                };
                self.negotiated = negotiated;
                Ok(())
            }
            Err(rj) => {
                self.reject(rj)?;
                Err(AssocError::Rejected(rj))
            }
        }
    }

    /// Acceptor, step 2b: reject (AE-8) and wait for the peer to close.
    pub fn reject(&mut self, rj: AssociateRj) -> Result<(), AssocError> {
        self.fire(Event::Evt8, true)?;
        self.send_pdu(&Pdu::AssociateRj(rj))?;
        self.await_close();
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Release and abort
    // -----------------------------------------------------------------------------------------

    /// Requests release (AR-1) and waits for A-RELEASE-RP, handling a release collision
    /// (AR-8 … AR-10), for a caller that expects nothing more from the peer.
    ///
    /// The requestor of a release may still receive P-DATA (PS3.8 §7.2.2): a P-DATA-TF PDU that
    /// arrives while awaiting A-RELEASE-RP is a P-DATA indication (Table 9-10, Sta7: AR-6).
    /// Nothing reads it here, so rather than dropping it silently the release is completed and
    /// [`AssocError::DataDuringRelease`] says how much arrived; when that error is returned the
    /// association *is* released. [`Association::release_with`] hands the data over instead.
    pub fn release(&mut self) -> Result<(), AssocError> {
        let (mut pdvs, mut bytes) = (0u64, 0u64);
        self.release_with(|p| {
            pdvs += 1;
            bytes += p.data.len() as u64;
        })?;
        if pdvs > 0 {
            return Err(AssocError::DataDuringRelease { pdvs, bytes });
        }
        Ok(())
    }

    /// Like [`Association::release`], handing every PDV that arrives while awaiting
    /// A-RELEASE-RP to `on_pdv`, in order (the P-DATA indication of AR-6, PS3.8 Table 9-10).
    /// A P-DATA-TF PDU is checked whole before any of its PDVs is handed over; an invalid one
    /// aborts the association (AA-8), as on an established association.
    pub fn release_with(&mut self, mut on_pdv: impl FnMut(PdvRef<'_>)) -> Result<(), AssocError> {
        self.fire(Event::Evt11, true)?;
        self.send_pdu(&Pdu::RELEASE_RQ)?;
        let deadline = self.timeouts.acse.map(|t| Instant::now() + t);
        let mut pdata_body = Vec::new();
        loop {
            let (ty, len) = match self.read_pdu_header(deadline, "A-RELEASE-RP") {
                Ok(h) => h,
                Err(e) => return Err(self.fail_on_read(e)),
            };
            if ty == pdu_type::P_DATA_TF {
                if self.state != State::Sta7 {
                    // After a release collision (Sta9–Sta12) P-DATA is unexpected: AA-8. Its
                    // body is not read (nor its claimed length allocated).
                    let _ = self.fire(Event::Evt10, true);
                    self.provider_abort(abort_reason::UNEXPECTED_PDU);
                    return Err(AssocError::Protocol(
                        "unexpected PDU while releasing".into(),
                    ));
                }
                self.read_pdata_body(&mut pdata_body, len, deadline, "A-RELEASE-RP")?;
                self.check_pdata(&pdata_body)?;
                let action = self.fire(Event::Evt10, true)?;
                debug_assert_eq!(action, Action::Ar6);
                for pdv in PdvIter::new(&pdata_body).flatten() {
                    on_pdv(pdv);
                }
                continue;
            }
            let body = self.read_body(len)?;
            let pdu = match Pdu::decode_body(ty, &body) {
                Ok(p) => p,
                Err(e) => {
                    self.fire(Event::Evt19, true)?;
                    self.provider_abort(abort_reason::INVALID_PDU_PARAMETER_VALUE);
                    return Err(e.into());
                }
            };
            let action = self.fire(pdu_event(&pdu), true)?;
            match action {
                Action::Ar3 => {
                    let _ = self.writer.shutdown(Shutdown::Both);
                    return Ok(());
                }
                Action::Ar8 => {
                    // Release collision: the requestor answers first (AR-9), then waits for RP.
                    if self.role == Role::Requestor {
                        self.fire(Event::Evt14, true)?;
                        self.send_release_rp()?;
                    }
                    continue;
                }
                Action::Ar10 => {
                    // Acceptor side of a collision: now answer (AR-4) and wait for close.
                    self.fire(Event::Evt14, true)?;
                    self.send_release_rp()?;
                    self.await_close();
                    return Ok(());
                }
                Action::Aa3 => {
                    let _ = self.writer.shutdown(Shutdown::Both);
                    if let Pdu::Abort(a) = pdu {
                        return Err(AssocError::Aborted(a));
                    }
                    return Err(AssocError::Closed);
                }
                Action::Aa8 => {
                    self.send_abort(2, abort_reason::UNEXPECTED_PDU);
                    self.await_close();
                    return Err(AssocError::Protocol(
                        "unexpected PDU while releasing".into(),
                    ));
                }
                other => {
                    return Err(AssocError::Protocol(format!(
                        "unexpected action {other:?} while releasing"
                    )))
                }
            }
        }
    }

    /// Aborts as service user (AA-1): sends A-ABORT and closes.
    pub fn abort(&mut self, reason: u8) -> Result<(), AssocError> {
        match self.fire(Event::Evt15, true) {
            Ok(Action::Aa2) | Err(_) => {}
            Ok(_) => self.send_abort(0, reason),
        }
        let _ = self.writer.shutdown(Shutdown::Both);
        self.state = State::Sta1;
        Ok(())
    }

    fn provider_abort(&mut self, reason: u8) {
        self.send_abort(2, reason);
        self.await_close();
    }

    fn send_abort(&mut self, source: u8, reason: u8) {
        let _ = self.send_pdu(&Pdu::Abort(Abort {
            source,
            reason: if source == 2 { reason } else { 0 },
            ..Default::default()
        }));
    }

    /// Sta13: waits (under ARTIM) for the peer to close, then closes our side.
    fn await_close(&mut self) {
        let deadline = Instant::now() + self.timeouts.artim;
        let mut sink = [0u8; 4096];
        loop {
            let now = Instant::now();
            if now >= deadline {
                break; // Evt18: ARTIM expired -> AA-2
            }
            self.read_timeout = None;
            let _ = self.reader.get_ref().set_read_timeout(Some(deadline - now));
            match self.reader.read(&mut sink) {
                Ok(0) => break,    // Evt17 -> AR-5
                Ok(_) => continue, // PDUs in Sta13 are ignored (AA-6)
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = self.writer.shutdown(Shutdown::Both);
        self.state = State::Sta1;
    }

    // -----------------------------------------------------------------------------------------
    // PDU I/O
    // -----------------------------------------------------------------------------------------

    fn send_pdu(&mut self, pdu: &Pdu) -> Result<(), AssocError> {
        self.tx.clear();
        pdu.encode_into(&mut self.tx);
        self.writer.write_all(&self.tx)?;
        Ok(())
    }

    /// Reads a PDU header with a deadline; errors of the header (unknown type, too long) are
    /// returned as `ReadFail::Invalid` so the caller fires Evt19.
    fn read_pdu_header(
        &mut self,
        deadline: Option<Instant>,
        what: &'static str,
    ) -> Result<(u8, usize), ReadFail> {
        let mut h = [0u8; PDU_HEADER_LEN];
        self.read_exact_deadline(&mut h, deadline, what)?;
        let limit = if h[0] == pdu_type::P_DATA_TF {
            self.rx_limit
        } else {
            ASSOCIATION_PDU_LIMIT
        };
        parse_header(&h, limit).map_err(ReadFail::Invalid)
    }

    fn read_exact_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
        what: &'static str,
    ) -> Result<(), ReadFail> {
        let mut done = 0;
        while done < buf.len() {
            self.arm_read_timeout(deadline, what)?;
            match self.reader.read(&mut buf[done..]) {
                Ok(0) => return Err(ReadFail::Closed),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if io_timeout(&e) => return Err(ReadFail::Timeout(what)),
                Err(e) => return Err(ReadFail::Io(e)),
            }
        }
        Ok(())
    }

    /// Sets the socket's read timeout to what is left before `deadline` (only when the next read
    /// will block, i.e. nothing is buffered); a deadline already past is a timeout. The socket
    /// option is left as it is when it is already off and should be, or already within 1/16 above
    /// what is left (so a read overruns a deadline by at most 1/16 of the timeout): deadlines are
    /// mostly "now + timeout" per PDU, and one syscall per read is saved.
    fn arm_read_timeout(
        &mut self,
        deadline: Option<Instant>,
        what: &'static str,
    ) -> Result<(), ReadFail> {
        let timeout = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Err(ReadFail::Timeout(what));
                }
                Some(d - now)
            }
            None => None,
        };
        if !self.reader.buffer().is_empty() {
            return Ok(());
        }
        let keep = match (self.read_timeout, timeout) {
            (Some(None), None) => true,
            (Some(Some(armed)), Some(left)) => left <= armed && armed - left <= armed / 16,
            _ => false,
        };
        if !keep {
            self.reader
                .get_ref()
                .set_read_timeout(timeout)
                .map_err(ReadFail::Io)?;
            self.read_timeout = Some(timeout);
        }
        Ok(())
    }

    /// Appends exactly `n` bytes to `buf`, reading into its spare capacity (no zero-filling).
    /// Bytes already buffered are taken first; the rest is read from the socket straight into
    /// `buf`, as much as has arrived per call, so large PDVs are copied once, not twice.
    fn read_append(
        &mut self,
        buf: &mut Vec<u8>,
        n: usize,
        deadline: Option<Instant>,
        what: &'static str,
    ) -> Result<(), ReadFail> {
        let target = buf.len() + n;
        buf.reserve(n);
        while buf.len() < target {
            let buffered = self.reader.buffer();
            if !buffered.is_empty() {
                let k = buffered.len().min(target - buf.len());
                buf.extend_from_slice(&buffered[..k]);
                self.reader.consume(k);
                continue;
            }
            self.arm_read_timeout(deadline, what)?;
            match recv_into_spare(self.reader.get_ref(), buf, target - buf.len()) {
                Ok(0) => return Err(ReadFail::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if io_timeout(&e) => return Err(ReadFail::Timeout(what)),
                Err(e) => return Err(ReadFail::Io(e)),
            }
        }
        Ok(())
    }

    /// Reads a P-DATA-TF body of `len` bytes into `body` (cleared first). The buffer grows with
    /// the bytes that arrive, not with the claimed length: with an unlimited maximum PDU (0)
    /// the claim alone may be 4 GiB.
    fn read_pdata_body(
        &mut self,
        body: &mut Vec<u8>,
        len: usize,
        deadline: Option<Instant>,
        what: &'static str,
    ) -> Result<(), AssocError> {
        body.clear();
        while body.len() < len {
            let step = (len - body.len()).min(1 << 20);
            if let Err(e) = self.read_append(body, step, deadline, what) {
                return Err(self.fail_on_read(e));
            }
        }
        Ok(())
    }

    /// Checks a whole P-DATA-TF body: one or more valid PDV items (PS3.8 §9.3.5), each on an
    /// accepted presentation context. An invalid one is aborted (Evt19, AA-8).
    fn check_pdata(&mut self, body: &[u8]) -> Result<(), AssocError> {
        if body.is_empty() {
            let _ = self.fire(Event::Evt19, true);
            self.provider_abort(abort_reason::INVALID_PDU_PARAMETER_VALUE);
            return Err(AssocError::Protocol("empty P-DATA-TF PDU".into()));
        }
        for pdv in PdvIter::new(body) {
            let ctx = match pdv {
                Ok(p) => p.context_id,
                Err(e) => {
                    let _ = self.fire(Event::Evt19, true);
                    self.provider_abort(abort_reason::INVALID_PDU_PARAMETER_VALUE);
                    return Err(e.into());
                }
            };
            if !self.negotiated.context(ctx).is_some_and(|c| c.accepted()) {
                let _ = self.fire(Event::Evt19, true);
                self.provider_abort(abort_reason::INVALID_PDU_PARAMETER_VALUE);
                return Err(AssocError::Protocol(format!(
                    "PDV on presentation context {ctx}, which was not accepted"
                )));
            }
        }
        Ok(())
    }

    fn read_body(&mut self, len: usize) -> Result<Vec<u8>, AssocError> {
        let mut body = vec![0u8; len];
        match self.read_exact_deadline(
            &mut body,
            self.timeouts.dimse.map(|t| Instant::now() + t),
            "PDU body",
        ) {
            Ok(()) => Ok(body),
            Err(e) => Err(self.fail_on_read(e)),
        }
    }

    /// Maps a failed read to the state machine's event and the error to return.
    fn fail_on_read(&mut self, e: ReadFail) -> AssocError {
        match e {
            ReadFail::Closed => {
                let _ = self.fire(Event::Evt17, true);
                self.state = State::Sta1;
                AssocError::Closed
            }
            ReadFail::Io(e) => {
                let _ = self.fire(Event::Evt17, true);
                self.state = State::Sta1;
                let _ = self.writer.shutdown(Shutdown::Both);
                AssocError::Io(e)
            }
            ReadFail::Timeout(what) => {
                match self.state {
                    State::Sta2 | State::Sta13 => {
                        let _ = self.fire(Event::Evt18, true); // ARTIM expired: AA-2
                        let _ = self.writer.shutdown(Shutdown::Both);
                    }
                    _ => {
                        // A local timer (ACSE/DIMSE) expired: abort as the service user (AA-1).
                        let _ = self.abort(0);
                    }
                }
                AssocError::Timeout(what)
            }
            ReadFail::Invalid(pe) => {
                let action = self.fire(Event::Evt19, true);
                let reason = match pe {
                    PduError::UnknownPduType { .. } => abort_reason::UNRECOGNIZED_PDU,
                    _ => abort_reason::INVALID_PDU_PARAMETER_VALUE,
                };
                match action {
                    Ok(Action::Aa1) => {
                        self.send_abort(0, 0);
                        self.await_close();
                    }
                    Ok(Action::Aa8) | Ok(Action::Aa7) => self.provider_abort(reason),
                    _ => {
                        let _ = self.writer.shutdown(Shutdown::Both);
                    }
                }
                AssocError::Pdu(pe)
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // DIMSE messages
    // -----------------------------------------------------------------------------------------

    /// Largest PDV value we may put in one PDU for the peer (PS3.8 §9.3.5: max length covers the
    /// PDV items, each with a 6-byte header). An unlimited peer (0) gets 1 MiB PDUs.
    fn max_pdv_data(&self) -> usize {
        let max = self.negotiated.peer_max_pdu as usize;
        let max = if max == 0 { 1 << 20 } else { max };
        max.saturating_sub(6).max(1)
    }

    fn check_send(&mut self, context_id: u8) -> Result<(), AssocError> {
        if !matches!(self.state, State::Sta6 | State::Sta8) {
            return Err(AssocError::WrongState(self.state));
        }
        match self.negotiated.context(context_id) {
            Some(c) if c.accepted() => Ok(()),
            _ => Err(AssocError::Config(format!(
                "presentation context {context_id} was not accepted"
            ))),
        }
    }

    /// Sends the fragments of one PDV stream (command or data set) as P-DATA-TF PDUs.
    fn send_fragments(
        &mut self,
        context_id: u8,
        command: bool,
        data: &[u8],
    ) -> Result<(), AssocError> {
        let max = self.max_pdv_data();
        let mut chunks = data.chunks(max).peekable();
        if data.is_empty() {
            // An empty stream is still one (empty, last) fragment.
            self.write_pdv(context_id, command as u8 | 0x02, &[])?;
            return Ok(());
        }
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            self.write_pdv(
                context_id,
                command as u8 | if last { 0x02 } else { 0 },
                chunk,
            )?;
        }
        Ok(())
    }

    fn write_pdv(&mut self, context_id: u8, control: u8, data: &[u8]) -> Result<(), AssocError> {
        self.fire(Event::Evt9, true)?; // DT-1 / AR-7
        let pdv_len = data.len() + 2;
        let mut head = [0u8; 12];
        head[0] = pdu_type::P_DATA_TF;
        head[2..6].copy_from_slice(&((pdv_len + 4) as u32).to_be_bytes());
        head[6..10].copy_from_slice(&(pdv_len as u32).to_be_bytes());
        head[10] = context_id;
        head[11] = control;
        if data.len() <= 16 * 1024 {
            self.tx.clear();
            self.tx.extend_from_slice(&head);
            self.tx.extend_from_slice(data);
            self.writer.write_all(&self.tx)?;
        } else {
            // Header and value in one system call, without copying the value.
            write_all_vectored(&mut self.writer, &head, data)?;
        }
        Ok(())
    }

    /// Sends one DIMSE message: the command set, then the data set if given.
    pub fn send_message(
        &mut self,
        context_id: u8,
        command: &Command,
        data_set: Option<&[u8]>,
    ) -> Result<(), AssocError> {
        self.check_send(context_id)?;
        let bytes = command.encode();
        let max = self.max_pdv_data();
        match data_set {
            // Small message: command and data set PDVs share one PDU.
            Some(ds) if bytes.len() + ds.len() + 12 <= max + 6 => {
                self.fire(Event::Evt9, true)?;
                self.tx.clear();
                self.tx.push(pdu_type::P_DATA_TF);
                self.tx.push(0);
                self.tx
                    .extend_from_slice(&((bytes.len() + ds.len() + 12) as u32).to_be_bytes());
                for (ctl, part) in [(0x03u8, bytes.as_slice()), (0x02u8, ds)] {
                    self.tx
                        .extend_from_slice(&((part.len() + 2) as u32).to_be_bytes());
                    self.tx.push(context_id);
                    self.tx.push(ctl);
                    self.tx.extend_from_slice(part);
                }
                self.writer.write_all(&self.tx)?;
                Ok(())
            }
            Some(ds) => {
                self.send_fragments(context_id, true, &bytes)?;
                self.send_fragments(context_id, false, ds)
            }
            None => self.send_fragments(context_id, true, &bytes),
        }
    }

    /// Sends a command whose data set is streamed from `reader` (of `len` bytes if known) in
    /// fragments no larger than the peer's maximum PDU.
    pub fn send_message_streamed(
        &mut self,
        context_id: u8,
        command: &Command,
        mut reader: impl Read,
    ) -> Result<u64, AssocError> {
        self.check_send(context_id)?;
        let bytes = command.encode();
        self.send_fragments(context_id, true, &bytes)?;
        let max = self.max_pdv_data().min(4 << 20);
        let mut buf = vec![0u8; max];
        let mut filled = 0usize;
        let mut total = 0u64;
        // Keep one full buffer in hand so the final fragment can be marked "last".
        loop {
            let n = reader.read(&mut buf[filled..])?;
            if n == 0 {
                self.write_pdv(context_id, 0x02, &buf[..filled])?;
                total += filled as u64;
                return Ok(total);
            }
            filled += n;
            if filled == max {
                // Peek whether more data follows.
                let mut probe = [0u8; 1];
                let m = loop {
                    match reader.read(&mut probe) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        r => break r?,
                    }
                };
                if m == 0 {
                    self.write_pdv(context_id, 0x02, &buf[..filled])?;
                    total += filled as u64;
                    return Ok(total);
                }
                self.write_pdv(context_id, 0x00, &buf[..filled])?;
                total += filled as u64;
                buf[0] = probe[0];
                filled = 1;
            }
        }
    }

    /// Sends a command and returns a writer for its data set: bytes written are sent as data-set
    /// PDVs no larger than the peer's maximum PDU; [`PdvWriter::finish`] sends the last fragment.
    pub fn send_command_with_writer(
        &mut self,
        context_id: u8,
        command: &Command,
    ) -> Result<PdvWriter<'_>, AssocError> {
        self.check_send(context_id)?;
        let bytes = command.encode();
        self.send_fragments(context_id, true, &bytes)?;
        let max = self.max_pdv_data().min(4 << 20);
        let mut buf = std::mem::take(&mut self.pdv_buf);
        buf.resize(max, 0);
        Ok(PdvWriter {
            assoc: self,
            context_id,
            buf,
            filled: 0,
            total: 0,
        })
    }

    /// Ensures `self.rx` holds a P-DATA-TF body with unread PDVs, reading PDUs as needed and
    /// handling release and abort from the peer. Returns `Ok(None)` when the association ended.
    fn next_pdata(
        &mut self,
        deadline: Option<Instant>,
        what: &'static str,
    ) -> Result<Option<Incoming>, AssocError> {
        while self.rx_pos >= self.rx.len() {
            let (ty, len) = match self.read_pdu_header(deadline, what) {
                Ok(h) => h,
                Err(e) => return Err(self.fail_on_read(e)),
            };
            if ty == pdu_type::P_DATA_TF {
                let action = self.fire(Event::Evt10, true)?;
                let mut body = std::mem::take(&mut self.rx);
                self.read_pdata_body(&mut body, len, deadline, what)?;
                self.rx = body;
                self.rx_pos = 0;
                match action {
                    Action::Dt2 | Action::Ar6 => {}
                    Action::Aa8 => {
                        self.provider_abort(abort_reason::UNEXPECTED_PDU);
                        return Err(AssocError::Protocol(
                            "P-DATA-TF received in the wrong state".into(),
                        ));
                    }
                    _ => {}
                }
                if self.rx.is_empty() {
                    let _ = self.fire(Event::Evt19, true);
                    self.provider_abort(abort_reason::INVALID_PDU_PARAMETER_VALUE);
                    return Err(AssocError::Protocol("empty P-DATA-TF PDU".into()));
                }
                continue;
            }
            let body = self.read_body(len)?;
            let pdu = match Pdu::decode_body(ty, &body) {
                Ok(p) => p,
                Err(e) => {
                    let _ = self.fire(Event::Evt19, true);
                    self.provider_abort(abort_reason::INVALID_PDU_PARAMETER_VALUE);
                    return Err(e.into());
                }
            };
            let action = self.fire(pdu_event(&pdu), true)?;
            match (action, pdu) {
                (Action::Ar2, _) => {
                    // Release requested by the peer: we have nothing pending, so answer (AR-4).
                    if self.data != DataState::None {
                        self.data = DataState::None;
                    }
                    self.fire(Event::Evt14, true)?;
                    self.send_release_rp()?;
                    self.await_close();
                    return Ok(Some(Incoming::Released));
                }
                (Action::Aa3, Pdu::Abort(a)) => {
                    let _ = self.writer.shutdown(Shutdown::Both);
                    return Ok(Some(Incoming::Aborted(a)));
                }
                (Action::Aa8, p) => {
                    self.provider_abort(abort_reason::UNEXPECTED_PDU);
                    return Err(AssocError::Protocol(format!(
                        "unexpected PDU type 0x{:02X} on an established association",
                        p.pdu_type()
                    )));
                }
                (a, _) => return Err(AssocError::Protocol(format!("unexpected action {a:?}"))),
            }
        }
        Ok(None)
    }

    /// Takes the next PDV from the current P-DATA-TF body (bounds-checked).
    fn take_pdv(&mut self) -> Result<(u8, u8, usize, usize), AssocError> {
        let body = &self.rx[self.rx_pos..];
        let mut it = PdvIter::at_offset(body, PDU_HEADER_LEN + self.rx_pos);
        match it.next() {
            Some(Ok(p)) => {
                let start = self.rx_pos + 6;
                let len = p.data.len();
                self.rx_pos += 6 + len;
                Ok((p.context_id, p.control, start, len))
            }
            Some(Err(e)) => {
                let _ = self.fire(Event::Evt19, true);
                self.provider_abort(abort_reason::INVALID_PDU_PARAMETER_VALUE);
                Err(e.into())
            }
            None => Err(AssocError::Protocol("no PDV".into())),
        }
    }

    /// Receives the next DIMSE command (PS3.7 §9.1, Annex E fragmentation). A data set left
    /// unread from the previous message is skipped first.
    pub fn receive(&mut self, timeout: Option<Duration>) -> Result<Incoming, AssocError> {
        if let DataState::Pending(_) = self.data {
            self.read_data_set(|_| Ok(()))?;
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut cmd_buf: Vec<u8> = Vec::new();
        let mut cmd_ctx: Option<u8> = None;
        loop {
            if let Some(inc) = self.next_pdata(deadline, "DIMSE message")? {
                return Ok(inc);
            }
            let (ctx, control, start, len) = self.take_pdv()?;
            if control & 0x01 == 0 {
                let _ = self.fire(Event::Evt19, true);
                self.provider_abort(abort_reason::UNEXPECTED_PDU_PARAMETER);
                return Err(AssocError::Protocol(
                    "data set fragment received where a command was expected".into(),
                ));
            }
            if cmd_ctx.is_some_and(|c| c != ctx) {
                self.provider_abort(abort_reason::UNEXPECTED_PDU_PARAMETER);
                return Err(AssocError::Protocol(
                    "command fragments on different presentation contexts".into(),
                ));
            }
            if !self.negotiated.context(ctx).is_some_and(|c| c.accepted()) {
                self.provider_abort(abort_reason::INVALID_PDU_PARAMETER_VALUE);
                return Err(AssocError::Protocol(format!(
                    "PDV on presentation context {ctx}, which was not accepted"
                )));
            }
            cmd_ctx = Some(ctx);
            if cmd_buf.len() + len > MAX_COMMAND_SET {
                self.provider_abort(abort_reason::INVALID_PDU_PARAMETER_VALUE);
                return Err(DimseError::TooLarge {
                    size: cmd_buf.len() + len,
                    limit: MAX_COMMAND_SET,
                }
                .into());
            }
            cmd_buf.extend_from_slice(&self.rx[start..start + len]);
            if control & 0x02 != 0 {
                let command = match Command::decode(&cmd_buf) {
                    Ok(c) => c,
                    Err(e) => {
                        self.provider_abort(abort_reason::INVALID_PDU_PARAMETER_VALUE);
                        return Err(e.into());
                    }
                };
                if command.has_data_set() {
                    self.data = DataState::Pending(ctx);
                }
                return Ok(Incoming::Command {
                    context_id: ctx,
                    command,
                });
            }
        }
    }

    /// Streams the pending data set's fragments to `sink` without buffering the whole data set.
    /// Returns the number of bytes delivered.
    pub fn read_data_set(
        &mut self,
        mut sink: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64, AssocError> {
        let ctx = match self.data {
            DataState::Pending(c) => c,
            DataState::None => return Err(AssocError::Protocol("no data set is pending".into())),
        };
        let deadline_for = |t: &Timeouts| t.dimse.map(|d| Instant::now() + d);
        let mut total = 0u64;
        loop {
            let deadline = deadline_for(&self.timeouts);
            if let Some(inc) = self.next_pdata(deadline, "data set fragment")? {
                self.data = DataState::None;
                return match inc {
                    Incoming::Aborted(a) => Err(AssocError::Aborted(a)),
                    _ => Err(AssocError::Protocol(
                        "association released in the middle of a data set".into(),
                    )),
                };
            }
            let (c, control, start, len) = self.take_pdv()?;
            if control & 0x01 != 0 || c != ctx {
                self.data = DataState::None;
                self.provider_abort(abort_reason::UNEXPECTED_PDU_PARAMETER);
                return Err(AssocError::Protocol(
                    "expected a data set fragment on the command's presentation context".into(),
                ));
            }
            sink(&self.rx[start..start + len])?;
            total += len as u64;
            if control & 0x02 != 0 {
                self.data = DataState::None;
                return Ok(total);
            }
        }
    }

    /// Reads the pending data set into memory, refusing more than `limit` bytes.
    pub fn read_data_set_to_vec(&mut self, limit: usize) -> Result<Vec<u8>, AssocError> {
        let mut v = Vec::new();
        self.read_data_set(|chunk| {
            if v.len() + chunk.len() > limit {
                return Err(io::Error::other(format!(
                    "data set larger than {limit} bytes"
                )));
            }
            v.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(v)
    }
}

impl RequestorConfig {
    fn max_pdu_limit(&self) -> usize {
        if self.max_pdu == 0 {
            usize::MAX
        } else {
            self.max_pdu as usize
        }
    }
}

enum ReadFail {
    Closed,
    Timeout(&'static str),
    Io(io::Error),
    Invalid(PduError),
}

fn pdu_event(p: &Pdu) -> Event {
    match p {
        Pdu::AssociateRq(_) => Event::Evt6,
        Pdu::AssociateAc(_) => Event::Evt3,
        Pdu::AssociateRj(_) => Event::Evt4,
        Pdu::PDataTf(_) => Event::Evt10,
        Pdu::ReleaseRq(_) => Event::Evt12,
        Pdu::ReleaseRp(_) => Event::Evt13,
        Pdu::Abort(_) => Event::Evt16,
    }
}

/// Aborts an association from another thread: sends A-ABORT (service user) and closes the socket,
/// which wakes up a thread blocked in `receive`.
pub struct AbortHandle(TcpStream);

impl AbortHandle {
    pub fn abort(&self) {
        let mut w = &self.0;
        let _ = w.write_all(
            &Pdu::Abort(Abort {
                source: 0,
                reason: 0,
                ..Default::default()
            })
            .encode(),
        );
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// Waits for input on an association's socket without reading it (see [`Association::watcher`]).
pub struct Watcher(TcpStream);

/// What ended a [`Watcher::wait_or`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// The socket is readable, closed or in error.
    Socket,
    /// The other descriptor is readable (someone woke the waiter).
    Woken,
    /// The time ran out.
    Timeout,
}

impl Watcher {
    /// Waits up to `timeout` (`None`: forever) until the socket is readable, closed or in error;
    /// returns false when the time ran out.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        self.wait_or(None, timeout).map(|r| r == Ready::Socket)
    }

    /// [`Watcher::wait`], also ending when `wake` (a descriptor another thread writes to) is
    /// readable.
    #[cfg(unix)]
    pub fn wait_or(
        &self,
        wake: Option<std::os::fd::RawFd>,
        timeout: Option<Duration>,
    ) -> io::Result<Ready> {
        use std::os::fd::AsRawFd;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let ms: libc::c_int = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    // Round up, so a wait never ends early and spins.
                    left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
                }
            };
            let mut fds = [
                libc::pollfd {
                    fd: self.0.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: wake.unwrap_or(-1),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let n_fds = if wake.is_some() { 2 } else { 1 };
            // SAFETY: `n_fds` valid pollfds for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), n_fds, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            return Ok(if n == 0 {
                Ready::Timeout
            } else if fds[0].revents != 0 {
                Ready::Socket
            } else {
                Ready::Woken
            });
        }
    }

    /// Without poll(2): the socket only, `wake` is not watched.
    #[cfg(not(unix))]
    pub fn wait_or(&self, _wake: Option<i32>, timeout: Option<Duration>) -> io::Result<Ready> {
        let mut b = [0u8; 1];
        self.0.set_read_timeout(timeout)?;
        match self.0.peek(&mut b) {
            Ok(_) => Ok(Ready::Socket),
            Err(e) if io_timeout(&e) => Ok(Ready::Timeout),
            Err(e) => Err(e),
        }
    }
}

/// Writes `head` then `data` with as few system calls as the socket allows.
fn write_all_vectored(w: &mut TcpStream, mut head: &[u8], mut data: &[u8]) -> io::Result<()> {
    while !head.is_empty() || !data.is_empty() {
        let r = if head.is_empty() {
            w.write(data)
        } else {
            w.write_vectored(&[io::IoSlice::new(head), io::IoSlice::new(data)])
        };
        let n = match r {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let from_head = n.min(head.len());
        head = &head[from_head..];
        data = &data[n - from_head..];
    }
    Ok(())
}

/// Streams one data set as P-DATA-TF fragments (see [`Association::send_command_with_writer`]).
/// One full fragment is held back so the final one can carry the "last" flag. The fragment
/// buffer belongs to the association and is reused from one message to the next.
pub struct PdvWriter<'a> {
    assoc: &'a mut Association,
    context_id: u8,
    /// Always `max` bytes long; `filled` of them are pending.
    buf: Vec<u8>,
    filled: usize,
    total: u64,
}

impl PdvWriter<'_> {
    fn send_full(&mut self) -> io::Result<()> {
        self.assoc
            .write_pdv(self.context_id, 0x00, &self.buf[..self.filled])
            .map_err(|e| match e {
                AssocError::Io(io) => io,
                other => io::Error::other(other.to_string()),
            })?;
        self.total += self.filled as u64;
        self.filled = 0;
        Ok(())
    }

    /// Reads `r` to its end straight into the fragment buffer (no intermediate copy).
    pub fn fill_from(&mut self, r: &mut dyn Read) -> io::Result<u64> {
        let mut n_total = 0u64;
        loop {
            if self.filled == self.buf.len() {
                self.send_full()?;
            }
            let n = match r.read(&mut self.buf[self.filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(n_total);
            }
            self.filled += n;
            n_total += n as u64;
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.total + self.filled as u64
    }

    /// Sends what remains as the last fragment; returns the data set's length.
    pub fn finish(mut self) -> Result<u64, AssocError> {
        let total = self.total + self.filled as u64;
        let buf = std::mem::take(&mut self.buf);
        let r = self
            .assoc
            .write_pdv(self.context_id, 0x02, &buf[..self.filled]);
        self.buf = buf;
        r.map(|_| total)
    }
}

impl Drop for PdvWriter<'_> {
    fn drop(&mut self) {
        self.assoc.pdv_buf = std::mem::take(&mut self.buf);
    }
}

impl Write for PdvWriter<'_> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            if self.filled == self.buf.len() {
                self.send_full()?;
            }
            let take = (self.buf.len() - self.filled).min(data.len());
            self.buf[self.filled..self.filled + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
