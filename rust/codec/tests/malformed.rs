//! Malformed input: every case is a typed error with offset and tag, never a panic, hang or
//! unbounded allocation.
mod common;
use codec::*;
use common::*;

fn whole(src: &str, dst: &str, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let (s, d) = (TransferSyntax::from_uid(src), TransferSyntax::from_uid(dst));
    convert_dataset(&s, &d, &Dictionary::standard(), &[], data).map(|r| r.0)
}

fn streamed(src: &str, dst: &str, data: &[u8], tags: &[Tag]) -> Result<Vec<u8>, CodecError> {
    let mut conv = StreamConverter::from_uids(src, dst, &Dictionary::standard(), tags)?;
    let mut out = Vec::new();
    for c in data.chunks(100) {
        conv.feed(c, &mut out)?;
    }
    conv.finish(&mut out)?;
    Ok(out)
}

#[test]
fn truncated_value() {
    let data = sample(WELE);
    let cut = &data[..data.len() - 3];
    for dst in [ELE, EBE, ILE] {
        match streamed(ELE, dst, cut, &[]) {
            Err(CodecError::Truncated { tag, offset, .. }) => {
                assert_eq!(tag.0, Some(Tag::PIXEL_DATA));
                assert_eq!(offset, (data.len() - 16 - 12) as u64);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            whole(ELE, dst, cut),
            Err(CodecError::LengthPastEnd {
                tag: Tag::PIXEL_DATA,
                ..
            })
        ));
    }
}

#[test]
fn truncated_header_and_every_prefix() {
    let data = sample(WEBE);
    // Every strict prefix that does not end on an element boundary at top level must fail.
    let mut ok = 0;
    for n in 0..data.len() {
        for dst in [ELE, EBE] {
            match streamed(EBE, dst, &data[..n], &[]) {
                Ok(_) => ok += 1,
                Err(e) => assert!(e.offset().is_some(), "{e}"),
            }
            let _ = whole(EBE, dst, &data[..n]);
        }
    }
    assert!(
        ok < 60,
        "only top-level element boundaries are complete data sets"
    );
}

#[test]
fn length_past_end_of_item() {
    let mut d = Vec::new();
    WELE.header(&mut d, t(0x0054, 0x0016), Vr::SQ, UNDEF);
    WELE.item(&mut d, Tag::ITEM, 10);
    WELE.header(&mut d, t(0x0018, 0x1072), Vr::TM, 20);
    d.extend_from_slice(&[b'1'; 20]);
    WELE.item(&mut d, Tag::SEQUENCE_DELIMITATION, 0);
    match streamed(ELE, EBE, &d, &[]) {
        Err(CodecError::LengthPastEnd {
            tag,
            offset,
            length,
            ..
        }) => {
            assert_eq!(tag, t(0x0018, 0x1072));
            assert_eq!(offset, 20);
            assert_eq!(length, 20);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn odd_length() {
    let mut d = Vec::new();
    WELE.el(&mut d, t(0x0010, 0x0010), Vr::PN, b"Doe");
    let e = streamed(ELE, EBE, &d, &[]).unwrap_err();
    assert!(
        matches!(
            e,
            CodecError::OddLength {
                length: 3,
                offset: 0,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.tag(), Some(t(0x0010, 0x0010)));
    // FD whose length is not a multiple of 8.
    let mut d = Vec::new();
    WELE.el(&mut d, t(0x0018, 0x9327), Vr::FD, &[0; 6]);
    assert!(matches!(
        streamed(ELE, EBE, &d, &[]),
        Err(CodecError::BadValueLength { unit: 8, .. })
    ));
}

#[test]
fn endless_sequence() {
    let mut d = Vec::new();
    WELE.header(&mut d, t(0x0054, 0x0016), Vr::SQ, UNDEF);
    for _ in 0..50 {
        WELE.item(&mut d, Tag::ITEM, UNDEF);
        WELE.el(&mut d, t(0x0018, 0x1072), Vr::TM, b"101010");
        WELE.item(&mut d, Tag::ITEM_DELIMITATION, 0);
    }
    for dst in [ELE, ILE] {
        match streamed(ELE, dst, &d, &[]) {
            Err(CodecError::Truncated { tag, .. }) => assert_eq!(tag.0, Some(t(0x0054, 0x0016))),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            whole(ELE, dst, &d),
            Err(CodecError::Truncated { .. })
        ));
    }
}

#[test]
fn nesting_is_bounded() {
    let mut d = Vec::new();
    for _ in 0..10_000 {
        WELE.header(&mut d, t(0x0054, 0x0016), Vr::SQ, UNDEF);
        WELE.item(&mut d, Tag::ITEM, UNDEF);
    }
    assert!(matches!(
        streamed(ELE, EBE, &d, &[]),
        Err(CodecError::TooDeep {
            limit: MAX_DEPTH,
            ..
        })
    ));
}

#[test]
fn undefined_vr() {
    let mut d = Vec::new();
    WELE.el(&mut d, t(0x0008, 0x0060), Vr::CS, b"NM");
    d.extend_from_slice(&[0x10, 0x00, 0x10, 0x00, b'Z', b'Z', 2, 0, b'A', b'B']);
    match streamed(ELE, ILE, &d, &[]) {
        Err(CodecError::UndefinedVr { tag, offset, vr }) => {
            assert_eq!(tag, t(0x0010, 0x0010));
            assert_eq!(offset, 10);
            assert_eq!(vr, "ZZ");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn four_gigabyte_length_on_small_input() {
    let mut d = Vec::new();
    WELE.el(&mut d, t(0x0008, 0x0060), Vr::CS, b"NM");
    WELE.header(&mut d, t(0x0009, 0x1010), Vr::OB, 0xFFFF_FFF0);
    d.resize(1024, 0xAB);
    // Requesting the huge element for extraction must not allocate by its length either.
    let tags = [t(0x0009, 0x1010)];
    for dst in [ELE, EBE, ILE, DEFL] {
        assert!(matches!(
            streamed(ELE, dst, &d, &tags),
            Err(CodecError::Truncated { .. })
        ));
        match whole(ELE, dst, &d) {
            // Deflating output goes through the streaming path, which only sees the end.
            Err(CodecError::Truncated { .. }) if dst == DEFL => {}
            Err(CodecError::LengthPastEnd {
                length: 0xFFFF_FFF0,
                offset: 10,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
    // Same in implicit VR, where the header has a 32-bit length for every element.
    let mut d = Vec::new();
    WILE.header(&mut d, t(0x0010, 0x0010), Vr::PN, 0xFFFF_FFFE);
    d.resize(1024, b'A');
    assert!(matches!(
        whole(ILE, ELE, &d),
        Err(CodecError::LengthPastEnd { .. })
    ));
    assert!(matches!(
        streamed(ILE, ELE, &d, &[t(0x0010, 0x0010)]),
        Err(CodecError::Truncated { .. })
    ));
}

#[test]
fn extraction_is_capped() {
    let mut d = Vec::new();
    let big = vec![b'x'; MAX_EXTRACT_LEN + 1000];
    WELE.el(&mut d, t(0x0009, 0x1010), Vr::OB, &big);
    let mut conv =
        StreamConverter::from_uids(ELE, ELE, &Dictionary::standard(), &[t(0x0009, 0x1010)])
            .unwrap();
    conv.feed(&d, &mut std::io::sink()).unwrap();
    let ex = conv.finish(&mut std::io::sink()).unwrap();
    let v = ex.get(t(0x0009, 0x1010)).unwrap();
    assert!(v.truncated);
    assert_eq!(v.bytes.len(), MAX_EXTRACT_LEN);
}

#[test]
fn stray_delimiters_and_items() {
    let mut d = Vec::new();
    WELE.item(&mut d, Tag::SEQUENCE_DELIMITATION, 0);
    assert!(matches!(
        streamed(ELE, EBE, &d, &[]),
        Err(CodecError::Unexpected { offset: 0, .. })
    ));
    let mut d = Vec::new();
    WELE.item(&mut d, Tag::ITEM, 0);
    assert!(matches!(
        streamed(ELE, EBE, &d, &[]),
        Err(CodecError::Unexpected { .. })
    ));
    // A data element directly inside a sequence (no item).
    let mut d = Vec::new();
    WELE.header(&mut d, t(0x0054, 0x0016), Vr::SQ, UNDEF);
    WELE.el(&mut d, t(0x0008, 0x0060), Vr::CS, b"NM");
    assert!(matches!(
        streamed(ELE, EBE, &d, &[]),
        Err(CodecError::Unexpected { offset: 12, .. })
    ));
    // Undefined length on a non-sequence, non-pixel element.
    let mut d = Vec::new();
    WELE.header(&mut d, t(0x0009, 0x1010), Vr::OB, UNDEF);
    assert!(matches!(
        streamed(ELE, EBE, &d, &[]),
        Err(CodecError::UndefinedLength { .. })
    ));
}

#[test]
fn bad_deflate_stream() {
    let junk = [0xFFu8; 64];
    assert!(matches!(
        streamed(DEFL, ELE, &junk, &[]),
        Err(CodecError::Deflate { .. })
    ));
    let data = sample(WELE);
    let mut conv = StreamConverter::from_uids(ELE, DEFL, &Dictionary::standard(), &[]).unwrap();
    let mut defl = Vec::new();
    conv.feed(&data, &mut defl).unwrap();
    conv.finish(&mut defl).unwrap();
    let cut = &defl[..defl.len() / 2];
    assert!(streamed(DEFL, ELE, cut, &[]).is_err());
}

#[test]
fn not_part10() {
    assert!(parse_file_meta(&[0u8; 100]).unwrap().is_none());
    assert!(matches!(
        parse_file_meta(&[0u8; 200]),
        Err(CodecError::NotPart10 { offset: 128, .. })
    ));
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    f.extend_from_slice(&[2, 0, 0x10, 0, b'U', b'I', 0xFF, 0xFF]);
    f.resize(2000, 0);
    assert!(matches!(parse_file_meta(&f), Ok(None)), "needs more bytes");
    assert!(transcode_part10(&f, ELE, &Dictionary::standard(), &[]).is_err());
}

#[test]
fn random_bytes_never_panic() {
    // A cheap deterministic fuzz: xorshift bytes and mutations of a valid data set.
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let base = sample(WELE);
    for i in 0..3000 {
        let mut d = base.clone();
        for _ in 0..(1 + i % 4) {
            let at = (next() as usize) % d.len();
            d[at] = next() as u8;
        }
        if i % 3 == 0 {
            let n = (next() as usize) % d.len();
            d.truncate(n);
        }
        for (src, dst) in [(ELE, EBE), (ELE, ILE), (ILE, ELE), (EBE, ELE), (ELE, DEFL)] {
            let _ = streamed(src, dst, &d, &[t(0x0010, 0x0020)]);
            let _ = whole(src, dst, &d);
        }
    }
}
