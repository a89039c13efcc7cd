//! DICOM Upper Layer (PS3.8) and DIMSE (PS3.7): PDU codec, association negotiation,
//! state machine and command sets. No Python and no data-set knowledge here.
