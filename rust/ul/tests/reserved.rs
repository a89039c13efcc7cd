//! Property tests (proptest) of byte-exact PDUs (issue 19): whatever is put in the reserved
//! fields of a well-formed PDU (PS3.8 §9.3: "sent with a value 00H but not tested to this value
//! when received"), in the reserved bits of PDV message control headers (PS3.8 Annex E.2) or in
//! the order of its items, decoding then encoding gives back the same bytes, and the values
//! decoded are those of the PDU with zero reserved fields.
//!
//! The PDUs are the pynetdicom fixtures in tests/data/pdu (all seven PDU types, every user information
//! sub-item, 128 presentation contexts). Where the reserved bytes are is worked out here from the
//! layout tables of PS3.8, independently of the codec.
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::OnceLock;
use ul::pdu::*;

/// The PDU fixtures (not the cmd_* command sets), by name.
fn fixtures() -> &'static [(String, Vec<u8>)] {
    static F: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    F.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/pdu");
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "bin"))
            .map(|p| {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&p).unwrap())
            })
            .filter(|(name, _)| !name.starts_with("cmd_"))
            .collect();
        v.sort();
        assert_eq!(v.len(), 11, "PDU fixtures");
        v
    })
}

/// The A-ASSOCIATE-RQ/AC fixtures.
fn associate_fixtures() -> Vec<&'static Vec<u8>> {
    fixtures()
        .iter()
        .map(|(_, b)| b)
        .filter(|b| b[0] == 1 || b[0] == 2)
        .collect()
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_be_bytes([b[at], b[at + 1]]) as usize
}

/// The items in `b[from..to]`: (offset, item type, value offset, end).
fn items(b: &[u8], from: usize, to: usize) -> Vec<(usize, u8, usize, usize)> {
    let mut v = Vec::new();
    let mut at = from;
    while at < to {
        let end = at + 4 + u16_at(b, at + 2);
        v.push((at, b[at], at + 4, end));
        at = end;
    }
    assert_eq!(at, to, "items overrun");
    v
}

/// Offsets of the reserved bytes of a well-formed PDU (PS3.8 Tables 9-11 to 9-26, PS3.7 Annex
/// D.3.3), and of the message control headers of its PDVs, whose bits 2-7 are reserved.
fn reserved_offsets(b: &[u8]) -> (Vec<usize>, Vec<usize>) {
    let mut r = vec![1];
    let mut control = Vec::new();
    match b[0] {
        1 | 2 => {
            r.extend([8, 9]);
            r.extend(42..74);
            for (at, ty, value, end) in items(b, 74, b.len()) {
                r.push(at + 1);
                match ty {
                    // ID, 3 reserved bytes (RQ); ID, reserved, result, reserved (AC).
                    0x20 => r.extend(value + 1..value + 4),
                    0x21 => r.extend([value + 1, value + 3]),
                    _ => {}
                }
                let subs = match ty {
                    0x20 | 0x21 => items(b, value + 4, end),
                    0x50 => items(b, value, end),
                    _ => vec![],
                };
                // Byte 2 of SOP Class Common Extended Negotiation (57H) is its version.
                r.extend(subs.iter().filter(|s| s.1 != 0x57).map(|s| s.0 + 1));
            }
        }
        3 => r.push(6),
        4 => {
            let mut at = 6;
            while at < b.len() {
                control.push(at + 5);
                at += 4 + u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            }
        }
        5 | 6 => r.extend(6..10),
        7 => r.extend([6, 7]),
        t => panic!("PDU type {t}"),
    }
    (r, control)
}

/// The PDU with every reserved field zero and reserved control bits clear.
fn zero_reserved(mut p: Pdu) -> Pdu {
    p.set_reserved_header(0);
    match &mut p {
        Pdu::AssociateRq(rq) => {
            rq.reserved = AssociateReserved::default();
            for pc in &mut rq.presentation_contexts {
                pc.reserved = PresentationContextRqReserved::default();
            }
            if let Some(ui) = &mut rq.user_info {
                ui.reserved = UserInformationReserved::default();
            }
        }
        Pdu::AssociateAc(ac) => {
            ac.reserved = AssociateReserved::default();
            for pc in &mut ac.presentation_contexts {
                pc.reserved = PresentationContextAcReserved::default();
            }
            if let Some(ui) = &mut ac.user_info {
                ui.reserved = UserInformationReserved::default();
            }
        }
        Pdu::AssociateRj(rj) => rj.reserved = AssociateRjReserved::default(),
        Pdu::PDataTf(p) => {
            for pdv in &mut p.pdvs {
                pdv.control &= 0x03;
            }
        }
        Pdu::ReleaseRq(r) | Pdu::ReleaseRp(r) => *r = Release::ZERO,
        Pdu::Abort(a) => a.reserved = AbortReserved::default(),
    }
    p
}

fn decode(b: &[u8]) -> Pdu {
    Pdu::decode(b, ASSOCIATION_PDU_LIMIT).unwrap_or_else(|e| panic!("{e}"))
}

/// A reserved byte: zero half the time, as sent, anything otherwise.
fn reserved_byte() -> impl Strategy<Value = u8> {
    prop_oneof![Just(0u8), any::<u8>()]
}

/// A fixture with arbitrary values in its reserved bytes and reserved control bits.
fn fixture_with_reserved() -> impl Strategy<Value = (usize, Vec<u8>, Vec<u8>)> {
    (0..fixtures().len()).prop_flat_map(|i| {
        let (r, c) = reserved_offsets(&fixtures()[i].1);
        (
            Just(i),
            proptest::collection::vec(reserved_byte(), r.len()),
            proptest::collection::vec(reserved_byte(), c.len()),
        )
    })
}

#[test]
fn the_oracle_finds_reserved_bytes_where_pynetdicom_wrote_zeros() {
    let mut total = 0;
    for (name, b) in fixtures() {
        let (r, c) = reserved_offsets(b);
        assert!(r.iter().all(|&i| b[i] == 0), "{name}");
        assert!(c.iter().all(|&i| b[i] & 0xFC == 0), "{name}");
        total += r.len();
    }
    // 128 contexts with 2 transfer syntaxes each in a request: 7 reserved bytes a context.
    let rq128 = &fixtures()
        .iter()
        .find(|(n, _)| n == "associate_rq_128ctx_maxpdu0")
        .unwrap()
        .1;
    assert!(reserved_offsets(rq128).0.len() > 128 * 7);
    assert!(total > 1500, "{total}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary reserved bytes come back as received, and change no value.
    #[test]
    fn reserved_bytes_round_trip((i, values, controls) in fixture_with_reserved()) {
        let (name, original) = &fixtures()[i];
        let (r, c) = reserved_offsets(original);
        let mut b = original.clone();
        for (&at, &v) in r.iter().zip(&values) {
            b[at] = v;
        }
        for (&at, &v) in c.iter().zip(&controls) {
            b[at] = (b[at] & 0x03) | (v & 0xFC);
        }
        let pdu = Pdu::decode(&b, ASSOCIATION_PDU_LIMIT);
        prop_assert!(pdu.is_ok(), "{}: {:?}", name, pdu);
        let pdu = pdu.unwrap();
        prop_assert_eq!(pdu.reserved_header(), b[1]);
        prop_assert!(pdu.encode() == b, "{}: re-encoding differs", name);
        prop_assert_eq!(zero_reserved(pdu), decode(original), "{}", name);
    }

    /// Variable items of an A-ASSOCIATE-RQ/AC in any order come back in that order.
    #[test]
    fn item_order_round_trips(
        (i, order) in (0..4usize).prop_flat_map(|i| {
            let b = associate_fixtures()[i];
            let n = items(b, 74, b.len()).len();
            (Just(i), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        })
    ) {
        let original = associate_fixtures()[i];
        let spans = items(original, 74, original.len());
        let mut b = original[..74].to_vec();
        for &k in &order {
            b.extend_from_slice(&original[spans[k].0..spans[k].3]);
        }
        let pdu = decode(&b);
        prop_assert!(pdu.encode() == b, "re-encoding differs");
        // The same values, in the standard order (contexts sorted back by ID).
        let normalise = |p: Pdu| match p {
            Pdu::AssociateRq(mut rq) => {
                rq.item_order = ItemOrder::default();
                rq.presentation_contexts.sort_by_key(|pc| pc.id);
                Pdu::AssociateRq(rq)
            }
            Pdu::AssociateAc(mut ac) => {
                ac.item_order = ItemOrder::default();
                ac.presentation_contexts.sort_by_key(|pc| pc.id);
                Pdu::AssociateAc(ac)
            }
            other => other,
        };
        prop_assert_eq!(normalise(pdu), decode(original));
    }

    /// The abstract syntax sub-item anywhere among the transfer syntax sub-items of a request's
    /// presentation contexts (rotated by a different amount in each context).
    #[test]
    fn sub_item_order_round_trips(
        (i, rotations) in (0..4usize)
            .prop_filter("a request", |&i| associate_fixtures()[i][0] == 1)
            .prop_flat_map(|i| (Just(i), proptest::collection::vec(0..8usize, 128)))
    ) {
        let original = associate_fixtures()[i];
        let mut b = original[..74].to_vec();
        for (n, (at, ty, value, end)) in items(original, 74, original.len()).into_iter().enumerate() {
            if ty != 0x20 {
                b.extend_from_slice(&original[at..end]);
                continue;
            }
            b.extend_from_slice(&original[at..value + 4]);
            let mut subs: Vec<&[u8]> = items(original, value + 4, end)
                .into_iter()
                .map(|s| &original[s.0..s.3])
                .collect();
            let k = rotations[n % rotations.len()] % subs.len();
            subs.rotate_left(k);
            subs.iter().for_each(|s| b.extend_from_slice(s));
        }
        let Pdu::AssociateRq(rq) = decode(&b) else { panic!("not a request") };
        prop_assert!(Pdu::AssociateRq(rq.clone()).encode() == b, "re-encoding differs");
        let Pdu::AssociateRq(want) = decode(original) else { panic!() };
        for (got, want) in rq.presentation_contexts.iter().zip(&want.presentation_contexts) {
            prop_assert_eq!(&got.abstract_syntax, &want.abstract_syntax);
            let mut g = got.transfer_syntaxes.clone();
            let mut w = want.transfer_syntaxes.clone();
            g.sort();
            w.sort();
            prop_assert_eq!(g, w);
        }
    }
}
