//! PDUs and command sets encoded by pynetdicom (tests/data/pdu, made by
//! scripts/gen_pdu_fixtures.py): each is decoded, its fields checked against the values the
//! script used, and re-encoded byte-identically (PS3.8 §9.3, PS3.7 Annex D, PS3.7 §9.3).
use std::path::PathBuf;
use ul::dimse::{command_field, tag, Command};
use ul::pdu::*;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/pdu")
        .join(format!("{name}.bin"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Decodes a fixture, checks that it re-encodes to the same bytes, and returns it.
fn decode_roundtrip(name: &str) -> Pdu {
    let bytes = fixture(name);
    let pdu = Pdu::decode(&bytes, ASSOCIATION_PDU_LIMIT).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(pdu.encode(), bytes, "{name}: re-encoding differs");
    pdu
}

const IMPL_UID: &str = "1.2.826.0.1.3680043.9.3811.2.1";
const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";

#[test]
fn associate_rq_with_every_user_sub_item() {
    let Pdu::AssociateRq(rq) = decode_roundtrip("associate_rq_full") else {
        panic!("not an A-ASSOCIATE-RQ")
    };
    assert_eq!(rq.protocol_version, 1);
    assert_eq!(rq.called_ae.trimmed(), "ANY-SCP");
    assert_eq!(rq.calling_ae.trimmed(), "ECHOSCU");
    assert_eq!(rq.application_context, DICOM_APPLICATION_CONTEXT);
    let pcs: Vec<(u8, &str, Vec<&str>)> = rq
        .presentation_contexts
        .iter()
        .map(|p| {
            (
                p.id,
                p.abstract_syntax.as_str(),
                p.transfer_syntaxes.iter().map(|s| s.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        pcs,
        vec![
            (1, "1.2.840.10008.1.1", vec!["1.2.840.10008.1.2"]),
            (
                3,
                CT,
                vec![
                    "1.2.840.10008.1.2.1",
                    "1.2.840.10008.1.2",
                    "1.2.840.10008.1.2.2"
                ]
            ),
            (5, FIND, vec!["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]),
        ]
    );
    let ui = rq.user_info.expect("user information");
    assert_eq!(
        ui.items,
        vec![
            UserItem::MaximumLength(16384),
            UserItem::ImplementationClassUid(IMPL_UID.into()),
            UserItem::AsyncOperationsWindow {
                invoked: 5,
                performed: 3
            },
            UserItem::RoleSelection {
                sop_class_uid: CT.into(),
                scu_role: 1,
                scp_role: 1
            },
            UserItem::ImplementationVersionName("PYNETDICOM_TEST".into()),
            UserItem::SopClassExtended {
                sop_class_uid: FIND.into(),
                info: vec![1, 1, 0, 1]
            },
            UserItem::SopClassCommonExtended {
                version: 0,
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2.1".into(),
                service_class_uid: "1.2.840.10008.4.2".into(),
                related_general_sop_classes: vec![CT.into(), "1.2.840.10008.5.1.4.1.1.2.2".into()],
            },
            UserItem::UserIdentityRq {
                identity_type: 2,
                positive_response_requested: 1,
                primary: b"alice".to_vec(),
                secondary: b"s3cret".to_vec()
            },
        ]
    );
    assert_eq!(ui.max_length(), Some(16384));
    assert_eq!(ui.implementation_class_uid(), Some(IMPL_UID));
    assert_eq!(ui.implementation_version_name(), Some("PYNETDICOM_TEST"));
    assert_eq!(ui.async_window(), Some((5, 3)));
}

#[test]
fn associate_ac_with_results_and_replies() {
    let Pdu::AssociateAc(ac) = decode_roundtrip("associate_ac_full") else {
        panic!("not an A-ASSOCIATE-AC")
    };
    assert_eq!(ac.called_ae.trimmed(), "ANY-SCP");
    assert_eq!(ac.calling_ae.trimmed(), "ECHOSCU");
    let pcs: Vec<(u8, u8, Option<&str>)> = ac
        .presentation_contexts
        .iter()
        .map(|p| (p.id, p.result, p.transfer_syntax.as_deref()))
        .collect();
    assert_eq!(
        pcs,
        vec![
            (1, 0, Some("1.2.840.10008.1.2")),
            (3, 3, Some("1.2.840.10008.1.2.1")),
            (5, 4, Some("1.2.840.10008.1.2")),
        ]
    );
    let ui = ac.user_info.expect("user information");
    assert_eq!(
        ui.items,
        vec![
            UserItem::MaximumLength(32768),
            UserItem::ImplementationClassUid(IMPL_UID.into()),
            UserItem::AsyncOperationsWindow {
                invoked: 3,
                performed: 1
            },
            UserItem::RoleSelection {
                sop_class_uid: CT.into(),
                scu_role: 0,
                scp_role: 1
            },
            UserItem::ImplementationVersionName("PYNETDICOM_TEST".into()),
            UserItem::SopClassExtended {
                sop_class_uid: FIND.into(),
                info: vec![1, 0]
            },
            UserItem::UserIdentityAc {
                server_response: b"token-123".to_vec()
            },
        ]
    );
}

#[test]
fn associate_rq_with_128_contexts_and_unlimited_max_pdu() {
    let Pdu::AssociateRq(rq) = decode_roundtrip("associate_rq_128ctx_maxpdu0") else {
        panic!("not an A-ASSOCIATE-RQ")
    };
    assert_eq!(rq.presentation_contexts.len(), 128);
    for (i, pc) in rq.presentation_contexts.iter().enumerate() {
        assert_eq!(pc.id as usize, 2 * i + 1);
        assert_eq!(
            pc.abstract_syntax,
            format!("1.2.826.0.1.3680043.9.3811.99.{i}")
        );
        assert_eq!(pc.transfer_syntaxes.len(), 2);
    }
    assert_eq!(rq.presentation_contexts[127].id, 255);
    assert_eq!(rq.user_info.unwrap().max_length(), Some(0));
}

#[test]
fn associate_ac_with_128_contexts_and_max_pdu_4096() {
    let Pdu::AssociateAc(ac) = decode_roundtrip("associate_ac_128ctx_maxpdu4096") else {
        panic!("not an A-ASSOCIATE-AC")
    };
    assert_eq!(ac.presentation_contexts.len(), 128);
    for (i, pc) in ac.presentation_contexts.iter().enumerate() {
        assert_eq!(pc.id as usize, 2 * i + 1);
        assert_eq!(pc.result, if i % 2 == 0 { 0 } else { 3 });
    }
    assert_eq!(ac.user_info.unwrap().max_length(), Some(4096));
}

#[test]
fn associate_rj_release_and_abort() {
    assert_eq!(
        decode_roundtrip("associate_rj_1_1_7"),
        Pdu::AssociateRj(AssociateRj {
            result: 1,
            source: 1,
            reason: 7,
            ..Default::default()
        })
    );
    assert_eq!(decode_roundtrip("release_rq"), Pdu::RELEASE_RQ);
    assert_eq!(decode_roundtrip("release_rp"), Pdu::RELEASE_RP);
    assert_eq!(
        decode_roundtrip("abort_user"),
        Pdu::Abort(Abort {
            source: 0,
            reason: 0,
            ..Default::default()
        })
    );
    assert_eq!(
        decode_roundtrip("abort_provider_6"),
        Pdu::Abort(Abort {
            source: 2,
            reason: 6,
            ..Default::default()
        })
    );
}

#[test]
fn p_data_tf_with_two_pdvs() {
    let Pdu::PDataTf(p) = decode_roundtrip("p_data_tf_two_pdvs") else {
        panic!("not a P-DATA-TF")
    };
    assert_eq!(p.pdvs.len(), 2);
    assert_eq!(p.pdvs[0].context_id, 1);
    assert!(p.pdvs[0].is_command() && p.pdvs[0].is_last());
    assert_eq!(p.pdvs[0].data, fixture("cmd_c_echo_rq"));
    assert_eq!(p.pdvs[1].context_id, 3);
    assert!(!p.pdvs[1].is_command() && !p.pdvs[1].is_last());
    assert_eq!(p.pdvs[1].data, (0u8..32).collect::<Vec<_>>());
    // The zero-copy iterator sees the same PDVs.
    let bytes = fixture("p_data_tf_two_pdvs");
    let refs: Vec<_> = PdvIter::new(&bytes[6..]).map(|r| r.unwrap()).collect();
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[1].data, &p.pdvs[1].data[..]);
}

#[test]
fn p_data_tf_from_pynetdicom_dimse_layer() {
    let Pdu::PDataTf(p) = decode_roundtrip("p_data_tf_c_echo") else {
        panic!("not a P-DATA-TF")
    };
    assert_eq!(p.pdvs.len(), 1);
    assert_eq!(p.pdvs[0].control, 0x03);
    let cmd = Command::decode(&p.pdvs[0].data).unwrap();
    assert_eq!(cmd.command_field(), Some(command_field::C_ECHO_RQ));
    assert_eq!(cmd.message_id(), Some(7));
}

/// Decodes a command-set fixture and checks that it re-encodes byte-identically.
fn command(name: &str) -> Command {
    let bytes = fixture(name);
    let cmd = Command::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(cmd.encode(), bytes, "{name}: re-encoding differs");
    // The group length pynetdicom wrote is the one we compute.
    assert_eq!(
        cmd.get_ul(tag::COMMAND_GROUP_LENGTH),
        Some(bytes.len() as u32 - 12)
    );
    cmd
}

#[test]
fn command_sets_from_pynetdicom() {
    let echo = command("cmd_c_echo_rq");
    assert_eq!(echo.command_field(), Some(command_field::C_ECHO_RQ));
    assert_eq!(
        echo.get_str(tag::AFFECTED_SOP_CLASS_UID).as_deref(),
        Some("1.2.840.10008.1.1")
    );
    assert!(!echo.has_data_set());
    assert!(echo.is_request());

    let store = command("cmd_c_store_rq");
    assert_eq!(store.command_field(), Some(command_field::C_STORE_RQ));
    assert_eq!(store.message_id(), Some(12));
    assert_eq!(store.get_us(tag::PRIORITY), Some(2));
    assert_eq!(
        store.get_str(tag::AFFECTED_SOP_INSTANCE_UID).as_deref(),
        Some("1.2.3.4.5.6.7")
    );
    assert_eq!(
        store.get_str(tag::MOVE_ORIGINATOR_AE_TITLE).as_deref(),
        Some("XELERIS")
    );
    assert_eq!(store.get_us(tag::MOVE_ORIGINATOR_MESSAGE_ID), Some(3));
    assert!(store.has_data_set());

    let mv = command("cmd_c_move_rsp");
    assert_eq!(mv.command_field(), Some(command_field::C_MOVE_RSP));
    assert_eq!(mv.status(), Some(0xFF00));
    assert_eq!(mv.get_us(tag::MESSAGE_ID_BEING_RESPONDED_TO), Some(4));
    assert_eq!(
        [
            tag::NUMBER_OF_REMAINING_SUBOPERATIONS,
            tag::NUMBER_OF_COMPLETED_SUBOPERATIONS,
            tag::NUMBER_OF_FAILED_SUBOPERATIONS,
            tag::NUMBER_OF_WARNING_SUBOPERATIONS
        ]
        .map(|t| mv.get_us(t)),
        [Some(10), Some(5), Some(1), Some(2)]
    );
    assert!(!mv.is_request());

    let find = command("cmd_c_find_rsp");
    assert_eq!(find.status(), Some(0xA900));
    assert_eq!(
        find.get_tags(tag::OFFENDING_ELEMENT),
        Some(vec![0x0010_0010, 0x0010_0020])
    );
    assert_eq!(find.get_str(tag::ERROR_COMMENT).as_deref(), Some("Bad key"));

    let nget = command("cmd_n_get_rq");
    assert_eq!(nget.command_field(), Some(command_field::N_GET_RQ));
    assert_eq!(
        nget.get_str(tag::REQUESTED_SOP_CLASS_UID).as_deref(),
        Some("1.2.840.10008.5.1.1.16")
    );
    assert_eq!(
        nget.get_str(tag::REQUESTED_SOP_INSTANCE_UID).as_deref(),
        Some("1.2.840.10008.5.1.1.17")
    );
    assert_eq!(
        nget.get_tags(tag::ATTRIBUTE_IDENTIFIER_LIST),
        Some(vec![0x2110_0010, 0x2110_0020])
    );

    let evt = command("cmd_n_event_report_rq");
    assert_eq!(evt.command_field(), Some(command_field::N_EVENT_REPORT_RQ));
    assert_eq!(evt.get_us(tag::EVENT_TYPE_ID), Some(1));
    assert!(evt.has_data_set());
}

/// Our own encoder builds the same bytes pynetdicom did from the same values.
#[test]
fn our_encoding_matches_pynetdicom() {
    let rj = Pdu::AssociateRj(AssociateRj {
        result: 1,
        source: 1,
        reason: 7,
        ..Default::default()
    });
    assert_eq!(rj.encode(), fixture("associate_rj_1_1_7"));
    let mut echo = ul::dimse::request(command_field::C_ECHO_RQ, 7, "1.2.840.10008.1.1", false);
    assert_eq!(echo.encode(), fixture("cmd_c_echo_rq"));
    echo.set_us(tag::MESSAGE_ID, 8);
    assert_ne!(echo.encode(), fixture("cmd_c_echo_rq"));
}

/// Every fixture comes back byte for byte: the PDUs (all seven types) through `Pdu`, the command
/// sets (cmd_*.bin) through `Command`.
#[test]
fn every_fixture_round_trips_byte_exact() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/pdu");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    paths.sort();
    let mut pdu_types = Vec::new();
    let mut commands = 0;
    for p in &paths {
        let name = p.file_name().unwrap().to_string_lossy();
        let bytes = std::fs::read(p).unwrap();
        if name.starts_with("cmd_") {
            let cmd = Command::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(cmd.encode(), bytes, "{name}");
            commands += 1;
        } else {
            let pdu = Pdu::decode(&bytes, ASSOCIATION_PDU_LIMIT)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(pdu.encode(), bytes, "{name}");
            pdu_types.push(pdu.pdu_type());
        }
    }
    assert_eq!(pdu_types.len(), 11);
    assert_eq!(commands, 6);
    pdu_types.sort();
    pdu_types.dedup();
    assert_eq!(pdu_types, [1, 2, 3, 4, 5, 6, 7]);
}
