//! The DICOM Upper Layer state machine (PS3.8 §9.2, Tables 9-5 to 9-10).
//!
//! [`transition`] is the state transition table: for a state and an event it returns the action
//! to perform and the next state (where an action has two possible outcomes, AE-6 and AR-8, the
//! caller supplies the condition). The association driver fires every event through it, so a
//! PDU that may not arrive in the current state always leads to the action PS3.8 prescribes.

/// States Sta1–Sta13 (PS3.8 Table 9-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Idle.
    Sta1,
    /// Transport connection open (awaiting A-ASSOCIATE-RQ PDU).
    Sta2,
    /// Awaiting local A-ASSOCIATE response primitive.
    Sta3,
    /// Awaiting transport connection opening to complete.
    Sta4,
    /// Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU.
    Sta5,
    /// Association established and ready for data transfer.
    Sta6,
    /// Awaiting A-RELEASE-RP PDU.
    Sta7,
    /// Awaiting local A-RELEASE response primitive.
    Sta8,
    /// Release collision requestor side; awaiting A-RELEASE response primitive.
    Sta9,
    /// Release collision acceptor side; awaiting A-RELEASE-RP PDU.
    Sta10,
    /// Release collision requestor side; awaiting A-RELEASE-RP PDU.
    Sta11,
    /// Release collision acceptor side; awaiting A-RELEASE response primitive.
    Sta12,
    /// Awaiting transport connection close indication.
    Sta13,
}

/// Events Evt1–Evt19 (PS3.8 Table 9-6 header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A-ASSOCIATE request (local user).
    Evt1,
    /// Transport connection confirm (local transport service).
    Evt2,
    /// A-ASSOCIATE-AC PDU received.
    Evt3,
    /// A-ASSOCIATE-RJ PDU received.
    Evt4,
    /// Transport connection indication (an incoming connection).
    Evt5,
    /// A-ASSOCIATE-RQ PDU received.
    Evt6,
    /// A-ASSOCIATE response primitive (accept).
    Evt7,
    /// A-ASSOCIATE response primitive (reject).
    Evt8,
    /// P-DATA request primitive.
    Evt9,
    /// P-DATA-TF PDU received.
    Evt10,
    /// A-RELEASE request primitive.
    Evt11,
    /// A-RELEASE-RQ PDU received.
    Evt12,
    /// A-RELEASE-RP PDU received.
    Evt13,
    /// A-RELEASE response primitive.
    Evt14,
    /// A-ABORT request primitive.
    Evt15,
    /// A-ABORT PDU received.
    Evt16,
    /// Transport connection closed indication.
    Evt17,
    /// ARTIM timer expired.
    Evt18,
    /// Unrecognized or invalid PDU received.
    Evt19,
}

/// Actions (PS3.8 Tables 9-6 to 9-9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Issue TRANSPORT CONNECT request primitive.
    Ae1,
    /// Send A-ASSOCIATE-RQ PDU.
    Ae2,
    /// Issue A-ASSOCIATE confirmation (accept) primitive.
    Ae3,
    /// Issue A-ASSOCIATE confirmation (reject) primitive and close transport connection.
    Ae4,
    /// Issue transport connection response primitive; start ARTIM timer.
    Ae5,
    /// Stop ARTIM; if the A-ASSOCIATE-RQ is acceptable issue an indication, else send RJ and start ARTIM.
    Ae6,
    /// Send A-ASSOCIATE-AC PDU.
    Ae7,
    /// Send A-ASSOCIATE-RJ PDU and start ARTIM timer.
    Ae8,
    /// Send P-DATA-TF PDU.
    Dt1,
    /// Send P-DATA indication primitive.
    Dt2,
    /// Send A-RELEASE-RQ PDU.
    Ar1,
    /// Issue A-RELEASE indication primitive.
    Ar2,
    /// Issue A-RELEASE confirmation primitive and close transport connection.
    Ar3,
    /// Issue A-RELEASE-RP PDU and start ARTIM timer.
    Ar4,
    /// Stop ARTIM timer.
    Ar5,
    /// Issue P-DATA indication.
    Ar6,
    /// Issue P-DATA-TF PDU.
    Ar7,
    /// Issue A-RELEASE indication (release collision).
    Ar8,
    /// Send A-RELEASE-RP PDU.
    Ar9,
    /// Issue A-RELEASE confirmation primitive.
    Ar10,
    /// Send A-ABORT PDU (service-user source) and start (or restart) ARTIM timer.
    Aa1,
    /// Stop ARTIM timer if running; close transport connection.
    Aa2,
    /// Issue A-ABORT or A-P-ABORT indication and close transport connection.
    Aa3,
    /// Issue A-P-ABORT indication primitive.
    Aa4,
    /// Stop ARTIM timer.
    Aa5,
    /// Ignore PDU.
    Aa6,
    /// Send A-ABORT PDU.
    Aa7,
    /// Send A-ABORT PDU (service-provider source), issue A-P-ABORT indication, start ARTIM timer.
    Aa8,
}

/// Outcome conditions for the two actions whose next state depends on more than the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditions {
    /// AE-6: the received A-ASSOCIATE-RQ is acceptable to the service provider (e.g. protocol version).
    pub rq_acceptable: bool,
    /// AR-8: this side is the association requestor.
    pub is_requestor: bool,
}

/// The state transition table (PS3.8 Table 9-10). `None` means the event is not defined in that
/// state (a local primitive issued in the wrong state; the caller reports an error).
pub fn transition(state: State, event: Event, cond: Conditions) -> Option<(Action, State)> {
    use Action::*;
    use Event::*;
    use State::*;
    // States in which an association exists or is being released: most PDUs there are handled alike.
    let established_or_releasing =
        matches!(state, Sta6 | Sta7 | Sta8 | Sta9 | Sta10 | Sta11 | Sta12);
    let r = match (event, state) {
        (Evt1, Sta1) => (Ae1, Sta4),
        (Evt2, Sta4) => (Ae2, Sta5),

        (Evt3, Sta5) => (Ae3, Sta6),
        (Evt4, Sta5) => (Ae4, Sta1),
        (Evt3 | Evt4 | Evt10 | Evt12 | Evt13 | Evt19, Sta2) => (Aa1, Sta13),
        (Evt3 | Evt4 | Evt10 | Evt12 | Evt13, Sta13) => (Aa6, Sta13),
        (Evt6 | Evt19, Sta13) => (Aa7, Sta13),

        (Evt5, Sta1) => (Ae5, Sta2),
        (Evt6, Sta2) => (Ae6, if cond.rq_acceptable { Sta3 } else { Sta13 }),
        (Evt7, Sta3) => (Ae7, Sta6),
        (Evt8, Sta3) => (Ae8, Sta13),

        (Evt9, Sta6) => (Dt1, Sta6),
        (Evt9, Sta8) => (Ar7, Sta8),
        (Evt10, Sta6) => (Dt2, Sta6),
        (Evt10, Sta7) => (Ar6, Sta7),

        (Evt11, Sta6) => (Ar1, Sta7),
        (Evt12, Sta6) => (Ar2, Sta8),
        (Evt12, Sta7) => (Ar8, if cond.is_requestor { Sta9 } else { Sta10 }),
        (Evt13, Sta7) => (Ar3, Sta1),
        (Evt13, Sta10) => (Ar10, Sta12),
        (Evt13, Sta11) => (Ar3, Sta1),
        (Evt14, Sta8) => (Ar4, Sta13),
        (Evt14, Sta9) => (Ar9, Sta11),
        (Evt14, Sta12) => (Ar4, Sta13),

        (Evt15, Sta4) => (Aa2, Sta1),
        (Evt15, Sta3 | Sta5) => (Aa1, Sta13),
        (Evt15, Sta6 | Sta7 | Sta8 | Sta9 | Sta10 | Sta11 | Sta12) => (Aa1, Sta13),
        (Evt16, Sta2 | Sta13) => (Aa2, Sta1),
        (Evt16, Sta3 | Sta5) => (Aa3, Sta1),
        (Evt16, _) if established_or_releasing => (Aa3, Sta1),
        (Evt17, Sta2) => (Aa5, Sta1),
        (Evt17, Sta13) => (Ar5, Sta1),
        (Evt17, Sta3 | Sta4 | Sta5) => (Aa4, Sta1),
        (Evt17, _) if established_or_releasing => (Aa4, Sta1),
        (Evt18, Sta2 | Sta13) => (Aa2, Sta1),

        // Any other PDU, or an invalid one, while negotiating or associated: abort (AA-8).
        (Evt3 | Evt4 | Evt6 | Evt10 | Evt12 | Evt13 | Evt19, Sta3 | Sta5) => (Aa8, Sta13),
        (Evt3 | Evt4 | Evt6 | Evt10 | Evt12 | Evt13 | Evt19, _) if established_or_releasing => {
            (Aa8, Sta13)
        }
        _ => return None,
    };
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use Event::*;
    use State::*;

    const C: Conditions = Conditions {
        rq_acceptable: true,
        is_requestor: true,
    };

    #[test]
    fn establishment_paths() {
        assert_eq!(transition(Sta1, Evt1, C), Some((Ae1, Sta4)));
        assert_eq!(transition(Sta4, Evt2, C), Some((Ae2, Sta5)));
        assert_eq!(transition(Sta5, Evt3, C), Some((Ae3, Sta6)));
        assert_eq!(transition(Sta5, Evt4, C), Some((Ae4, Sta1)));
        assert_eq!(transition(Sta1, Evt5, C), Some((Ae5, Sta2)));
        assert_eq!(transition(Sta2, Evt6, C), Some((Ae6, Sta3)));
        let bad = Conditions {
            rq_acceptable: false,
            ..C
        };
        assert_eq!(transition(Sta2, Evt6, bad), Some((Ae6, Sta13)));
        assert_eq!(transition(Sta3, Evt7, C), Some((Ae7, Sta6)));
        assert_eq!(transition(Sta3, Evt8, C), Some((Ae8, Sta13)));
    }

    #[test]
    fn release_and_collision() {
        assert_eq!(transition(Sta6, Evt11, C), Some((Ar1, Sta7)));
        assert_eq!(transition(Sta7, Evt13, C), Some((Ar3, Sta1)));
        assert_eq!(transition(Sta6, Evt12, C), Some((Ar2, Sta8)));
        assert_eq!(transition(Sta8, Evt14, C), Some((Ar4, Sta13)));
        // Collision, requestor side: Sta7 -> Sta9 -> Sta11 -> Sta1.
        assert_eq!(transition(Sta7, Evt12, C), Some((Ar8, Sta9)));
        assert_eq!(transition(Sta9, Evt14, C), Some((Ar9, Sta11)));
        assert_eq!(transition(Sta11, Evt13, C), Some((Ar3, Sta1)));
        // Collision, acceptor side: Sta7 -> Sta10 -> Sta12 -> Sta13.
        let acc = Conditions {
            is_requestor: false,
            ..C
        };
        assert_eq!(transition(Sta7, Evt12, acc), Some((Ar8, Sta10)));
        assert_eq!(transition(Sta10, Evt13, acc), Some((Ar10, Sta12)));
        assert_eq!(transition(Sta12, Evt14, acc), Some((Ar4, Sta13)));
        assert_eq!(transition(Sta13, Evt17, C), Some((Ar5, Sta1)));
    }

    #[test]
    fn unexpected_pdus_abort() {
        for s in [Sta6, Sta7, Sta8, Sta9, Sta10, Sta11, Sta12] {
            for e in [Evt3, Evt4, Evt6, Evt19] {
                assert_eq!(transition(s, e, C), Some((Aa8, Sta13)), "{s:?} {e:?}");
            }
            assert_eq!(transition(s, Evt16, C), Some((Aa3, Sta1)));
            assert_eq!(transition(s, Evt17, C), Some((Aa4, Sta1)));
            assert_eq!(transition(s, Evt15, C), Some((Aa1, Sta13)));
        }
        assert_eq!(transition(Sta2, Evt10, C), Some((Aa1, Sta13)));
        assert_eq!(transition(Sta13, Evt10, C), Some((Aa6, Sta13)));
        assert_eq!(transition(Sta13, Evt6, C), Some((Aa7, Sta13)));
        assert_eq!(transition(Sta13, Evt18, C), Some((Aa2, Sta1)));
        assert_eq!(transition(Sta2, Evt18, C), Some((Aa2, Sta1)));
        assert_eq!(transition(Sta2, Evt17, C), Some((Aa5, Sta1)));
        assert_eq!(transition(Sta8, Evt13, C), Some((Aa8, Sta13)));
        assert_eq!(transition(Sta6, Evt13, C), Some((Aa8, Sta13)));
        assert_eq!(transition(Sta10, Evt10, C), Some((Aa8, Sta13)));
        assert_eq!(transition(Sta7, Evt10, C), Some((Ar6, Sta7)));
    }

    #[test]
    fn local_primitives_in_wrong_state_are_undefined() {
        assert_eq!(transition(Sta6, Evt1, C), None);
        assert_eq!(transition(Sta1, Evt9, C), None);
        assert_eq!(transition(Sta7, Evt9, C), None);
        assert_eq!(transition(Sta1, Evt11, C), None);
        assert_eq!(transition(Sta6, Evt14, C), None);
    }
}
