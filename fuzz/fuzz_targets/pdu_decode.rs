//! Fuzz target: arbitrary bytes into the PDU decoder (PS3.8 §9.3), the PDV iterator
//! (§9.3.5) and the DIMSE command-set decoder (PS3.7 §6.3). Nothing may panic; whatever
//! decodes must re-encode to bytes that decode to the same value (and, for PDUs whose
//! reserved fields were zero, to the same bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ul::dimse::Command;
use ul::pdu::{Pdu, PdvIter, ASSOCIATION_PDU_LIMIT};

fuzz_target!(|data: &[u8]| {
    if let Ok(pdu) = Pdu::decode(data, ASSOCIATION_PDU_LIMIT) {
        let enc = pdu.encode();
        let again = Pdu::decode(&enc, ASSOCIATION_PDU_LIMIT).expect("re-encoded PDU decodes");
        assert_eq!(again, pdu, "decode(encode(decode(x))) != decode(x)");
        assert_eq!(again.encode(), enc, "encoding is not stable");
    }
    // Treat the bytes as a P-DATA-TF body.
    let mut n = 0usize;
    for pdv in PdvIter::new(data) {
        match pdv {
            Ok(p) => {
                n += 6 + p.data.len();
                assert!(n <= data.len());
            }
            Err(_) => break,
        }
    }
    if let Ok(cmd) = Command::decode(data) {
        let enc = cmd.encode();
        let again = Command::decode(&enc).expect("re-encoded command set decodes");
        // The group length (0000,0000) is recomputed on encoding; every other element survives.
        assert!(
            again.elements().eq(cmd.elements()),
            "command set round trip"
        );
        assert_eq!(again.encode(), enc, "command encoding is not stable");
    }
});
