//! Fuzz target: arbitrary bytes into the PDU decoder (PS3.8 §9.3), the PDV iterator
//! (§9.3.5), the DIMSE command-set decoder (PS3.7 §6.3) and, for what decodes as an
//! A-ASSOCIATE-RQ/AC, the negotiation functions. Nothing may panic; whatever decodes as a PDU
//! must re-encode to exactly the bytes it came from (reserved fields, item order and all), and
//! decoding the body alone (as the association does) must give the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ul::dimse::Command;
use ul::negotiate::accept_or_reject;
use ul::pdu::{Pdu, PdvIter, ASSOCIATION_PDU_LIMIT, PDU_HEADER_LEN};
use ul::{AcceptorConfig, ProposedContext, RequestorConfig, SupportedContext};

fn acceptor() -> AcceptorConfig {
    let mut cfg = AcceptorConfig::new("FUZZ");
    for abs in ["1.2.840.10008.1.1", "1.2.840.10008.5.1.4.1.1.2"] {
        cfg.contexts.push(SupportedContext {
            abstract_syntax: abs.into(),
            transfer_syntaxes: vec!["1.2.840.10008.1.2".into(), "1.2.840.10008.1.2.1".into()],
            scp_role: true,
            scu_role: true,
        });
    }
    cfg.extended_negotiation
        .insert("1.2.840.10008.1.1".into(), vec![1]);
    cfg
}

fn requestor() -> RequestorConfig {
    let mut cfg = RequestorConfig::new("FUZZ-SCU", "FUZZ");
    for abs in ["1.2.840.10008.1.1", "1.2.840.10008.5.1.4.1.1.2"] {
        cfg.contexts.push(ProposedContext {
            abstract_syntax: abs.into(),
            transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
            roles: Some((true, true)),
        });
    }
    cfg
}

fuzz_target!(|data: &[u8]| {
    if let Ok(pdu) = Pdu::decode(data, ASSOCIATION_PDU_LIMIT) {
        assert!(pdu.encode() == data, "encode(decode(x)) != x");
        let mut body_only = Pdu::decode_body(data[0], &data[PDU_HEADER_LEN..])
            .expect("the body of a PDU that decodes decodes");
        body_only.set_reserved_header(data[1]);
        assert_eq!(body_only, pdu, "decode_body differs from decode");
        match &pdu {
            Pdu::AssociateRq(rq) => {
                if let Ok((ac, n)) = accept_or_reject(&acceptor(), rq) {
                    assert_eq!(
                        ac.presentation_contexts.len(),
                        rq.presentation_contexts.len()
                    );
                    assert_eq!(n.contexts.len(), rq.presentation_contexts.len());
                    let ac = Pdu::AssociateAc(ac);
                    let bytes = ac.encode();
                    assert_eq!(
                        Pdu::decode(&bytes, ASSOCIATION_PDU_LIMIT).as_ref(),
                        Ok(&ac),
                        "our A-ASSOCIATE-AC does not decode"
                    );
                }
            }
            Pdu::AssociateAc(ac) => {
                let cfg = requestor();
                let rq = cfg.build_request().expect("fixed request builds");
                if let Ok(n) = cfg.interpret(&rq, ac) {
                    for c in &n.contexts {
                        assert!(rq.presentation_contexts.iter().any(|p| p.id == c.id));
                    }
                }
            }
            _ => {}
        }
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
