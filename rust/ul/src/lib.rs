//! DICOM Upper Layer (PS3.8) and DIMSE (PS3.7): PDU codec, association negotiation,
//! state machine and command sets. No Python and no data-set knowledge here.
pub mod assoc;
pub mod dimse;
pub mod error;
pub mod fsm;
pub mod negotiate;
pub mod pdu;

pub use assoc::{
    AbortHandle, AssocError, Association, Incoming, PdvWriter, Ready, Role, Timeouts, Watcher,
};
pub use dimse::Command;
pub use error::{DimseError, PduError};
pub use negotiate::{
    AcceptorConfig, Decision, Negotiated, NegotiatedContext, ProposedContext, RequestorConfig,
    SupportedContext,
};
pub use pdu::Pdu;
