//! Conversion behaviour between the four transfer syntaxes.
mod common;
use codec::*;
use common::*;
use std::sync::Arc;

fn convert(src: &str, dst: &str, dict: &Dictionary, data: &[u8]) -> Vec<u8> {
    let (s, d) = (TransferSyntax::from_uid(src), TransferSyntax::from_uid(dst));
    convert_dataset(&s, &d, dict, &[], data).unwrap().0
}

fn acme() -> Dictionary {
    let mut private = PrivateDictionary::new();
    private.add("ACME 1.0", 0x0009, 0x01, Vr::UL);
    private.add("ACME 1.0", 0x0009, 0x02, Vr::LO);
    Dictionary::with_private(Arc::new(private))
}

fn stream(src: &str, dst: &str, data: &[u8], chunk: usize, tags: &[Tag]) -> (Vec<u8>, Extracted) {
    let mut conv = StreamConverter::from_uids(src, dst, &acme(), tags).unwrap();
    let mut out = Vec::new();
    for c in data.chunks(chunk) {
        conv.feed(c, &mut out).unwrap();
    }
    let ex = conv.finish(&mut out).unwrap();
    (out, ex)
}

#[test]
fn ele_to_ebe_matches_hand_built_big_endian() {
    let std = Dictionary::standard();
    assert_eq!(convert(ELE, EBE, &std, &sample(WELE)), sample(WEBE));
    assert_eq!(convert(EBE, ELE, &std, &sample(WEBE)), sample(WELE));
}

#[test]
fn implicit_to_explicit_looks_up_vrs() {
    // The private element (0009,1001) is unknown without a private dictionary: UN, unswapped.
    // Defined-length sequences and items become undefined length when sizes change, so
    // compare with the hand-built explicit sample taken to implicit VR.
    let std = Dictionary::standard();
    let ele = convert(ILE, ELE, &std, &sample(WILE));
    let want = convert(ELE, ILE, &std, &sample(WELE));
    assert_eq!(convert(ELE, ILE, &std, &ele), want);
    let un = [0x09, 0x00, 0x01, 0x10, b'U', b'N', 0, 0, 4, 0, 0, 0];
    assert!(
        ele.windows(12).any(|w| w == un),
        "unknown private element is UN"
    );
    // With the private dictionary the UL is known, so conversion to EBE swaps it.
    let dict = acme();
    let ebe = convert(ILE, EBE, &dict, &sample(WILE));
    assert_eq!(convert(EBE, ILE, &dict, &ebe), want);
    assert_eq!(
        convert(EBE, ELE, &dict, &ebe),
        convert(ILE, ELE, &dict, &sample(WILE))
    );
    let needle = [0xDE, 0xAD, 0xBE, 0xEF];
    assert!(
        ebe.windows(4).any(|w| w == needle),
        "UL swapped to big endian"
    );
    let needle_vr = [0x00, 0x09, 0x10, 0x01, b'U', b'L', 0x00, 0x04];
    assert!(
        ebe.windows(8).any(|w| w == needle_vr),
        "private VR from the dictionary"
    );
}

#[test]
fn explicit_vr_of_implicit_elements() {
    let mut d = Vec::new();
    WILE.us(&mut d, t(0x0028, 0x0100), 8);
    WILE.us(&mut d, t(0x0028, 0x0103), 1);
    WILE.el(&mut d, t(0x0028, 0x0106), Vr::SS, &[0xFB, 0xFF]);
    WILE.el(&mut d, t(0x0099, 0x1000), Vr::UN, b"ab");
    WILE.el(&mut d, Tag::PIXEL_DATA, Vr::OW, &[1, 2, 3, 4]);
    let out = convert(ILE, EBE, &Dictionary::standard(), &d);
    let mut want = Vec::new();
    WEBE.us(&mut want, t(0x0028, 0x0100), 8);
    WEBE.us(&mut want, t(0x0028, 0x0103), 1);
    // "US or SS" resolved by Pixel Representation = 1.
    WEBE.el(&mut want, t(0x0028, 0x0106), Vr::SS, &[0xFF, 0xFB]);
    // Unknown private element: UN, bytes untouched (PS3.5 §6.2.2).
    WEBE.el(&mut want, t(0x0099, 0x1000), Vr::UN, b"ab");
    // Bits Allocated 8: OB, byte order unchanged.
    WEBE.el(&mut want, Tag::PIXEL_DATA, Vr::OB, &[1, 2, 3, 4]);
    assert_eq!(out, want);
}

#[test]
fn long_short_vr_value_becomes_un() {
    let mut d = Vec::new();
    let value = vec![b'A'; 70_000];
    WILE.el(&mut d, t(0x0008, 0x0070), Vr::LO, &value);
    let out = convert(ILE, ELE, &Dictionary::standard(), &d);
    let mut want = Vec::new();
    WELE.el(&mut want, t(0x0008, 0x0070), Vr::UN, &value);
    assert_eq!(out, want);
}

#[test]
fn group_lengths_dropped_only_when_sizes_change() {
    let mut d = Vec::new();
    WELE.el(&mut d, t(0x0008, 0x0000), Vr::UL, &10u32.to_le_bytes());
    WELE.el(&mut d, t(0x0008, 0x0060), Vr::CS, b"NM");
    assert_eq!(
        convert(ELE, EBE, &Dictionary::standard(), &d).len(),
        d.len()
    );
    let mut want = Vec::new();
    WILE.el(&mut want, t(0x0008, 0x0060), Vr::CS, b"NM");
    assert_eq!(convert(ELE, ILE, &Dictionary::standard(), &d), want);
}

#[test]
fn thirty_two_bit_pixels_swap_per_cell() {
    let mut d = Vec::new();
    WELE.us(&mut d, t(0x0028, 0x0100), 32);
    WELE.el(&mut d, Tag::PIXEL_DATA, Vr::OW, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let out = convert(ELE, EBE, &Dictionary::standard(), &d);
    assert_eq!(&out[out.len() - 8..], &[4, 3, 2, 1, 8, 7, 6, 5]);
}

#[test]
fn chunk_boundaries_do_not_matter() {
    for (src, w) in [(ILE, WILE), (ELE, WELE), (EBE, WEBE)] {
        let data = sample(w);
        for dst in [ILE, ELE, EBE, DEFL] {
            let whole = stream(src, dst, &data, data.len(), &[]).0;
            for chunk in [1, 2, 3, 5, 7, 11, 13] {
                assert_eq!(
                    stream(src, dst, &data, chunk, &[]).0,
                    whole,
                    "{src}->{dst} chunk {chunk}"
                );
            }
        }
    }
}

#[test]
fn every_pair_round_trips() {
    let data = sample(WELE);
    for a in ALL {
        let start = stream(ELE, a, &data, 64, &[]).0;
        for b in ALL {
            let there = stream(a, b, &start, 17, &[]).0;
            let back = stream(b, a, &there, 9, &[]).0;
            if a != ILE && b != ILE {
                // Explicit VR both ways (and deflate): every length is kept, bytes are identical.
                assert_eq!(back, start, "{a} -> {b} -> {a}");
            }
            // Through implicit VR, defined lengths become undefined: compare normalised forms.
            let norm = |x: &[u8], ts: &str| {
                stream(ILE, ELE, &stream(ts, ILE, x, 4096, &[]).0, 4096, &[]).0
            };
            assert_eq!(norm(&back, a), norm(&start, a), "{a} -> {b} -> {a}");
        }
    }
}

#[test]
fn deflate_round_trip() {
    let data = sample(WELE);
    let defl = stream(ELE, DEFL, &data, 100, &[]).0;
    assert_ne!(defl, data);
    assert_eq!(stream(DEFL, ELE, &defl, 3, &[]).0, data);
    // Passthrough of a deflated stream keeps its bytes and still extracts.
    let (same, ex) = stream(DEFL, DEFL, &defl, 5, &[t(0x0010, 0x0020)]);
    assert_eq!(same, defl);
    assert_eq!(ex.string(t(0x0010, 0x0020)).as_deref(), Some("PID-42"));
}

#[test]
fn passthrough_copies_and_extracts() {
    let data = sample(WEBE);
    let tags = [
        t(0x0010, 0x0020),
        t(0x0028, 0x0008),
        t(0x0028, 0x0010),
        t(0x0008, 0x0060),
        t(0x0018, 0x1072),
    ];
    let (out, ex) = stream(EBE, EBE, &data, 7, &tags);
    assert_eq!(out, data);
    assert_eq!(ex.string(tags[0]).as_deref(), Some("PID-42"));
    assert_eq!(ex.get(tags[1]).unwrap().as_u64(), Some(2));
    assert_eq!(
        ex.get(tags[2]).unwrap().as_u64(),
        Some(2),
        "US normalised to little endian"
    );
    assert_eq!(ex.get(tags[2]).unwrap().bytes, vec![2, 0]);
    assert_eq!(ex.string(tags[3]).as_deref(), Some("NM"));
    assert!(
        ex.get(tags[4]).is_none(),
        "nested elements are not top-level"
    );
}

#[test]
fn encapsulated_pixel_data_passes_through() {
    let jpeg = "1.2.840.10008.1.2.4.50";
    let mut d = Vec::new();
    WELE.el(&mut d, t(0x0008, 0x0060), Vr::CS, b"NM");
    WELE.header(&mut d, Tag::PIXEL_DATA, Vr::OB, UNDEF);
    WELE.item(&mut d, Tag::ITEM, 0);
    WELE.item(&mut d, Tag::ITEM, 4);
    d.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xD9]);
    WELE.item(&mut d, Tag::SEQUENCE_DELIMITATION, 0);
    assert_eq!(stream(jpeg, jpeg, &d, 3, &[]).0, d);
    assert!(matches!(
        StreamConverter::from_uids(jpeg, ELE, &Dictionary::standard(), &[]),
        Err(CodecError::UnsupportedConversion { .. })
    ));
    // The same fragments in an Explicit VR LE stream convert to big endian untouched.
    let ebe = stream(ELE, EBE, &d, 5, &[]).0;
    assert!(ebe.ends_with(&[0xFF, 0xD8, 0xFF, 0xD9, 0xFF, 0xFE, 0xE0, 0xDD, 0, 0, 0, 0]));
}

#[test]
fn undefined_length_un_keeps_implicit_content() {
    // Explicit VR UN with undefined length: an implicit VR LE sequence (PS3.5 §6.2.2).
    let mut d = Vec::new();
    WEBE.header(&mut d, t(0x0009, 0x1010), Vr::UN, UNDEF);
    WILE.item(&mut d, Tag::ITEM, UNDEF);
    WILE.el(&mut d, t(0x0010, 0x0020), Vr::LO, b"ID");
    WILE.item(&mut d, Tag::ITEM_DELIMITATION, 0);
    WILE.item(&mut d, Tag::SEQUENCE_DELIMITATION, 0);
    WEBE.el(&mut d, t(0x0010, 0x0010), Vr::PN, b"X^Y ");
    let ele = stream(EBE, ELE, &d, 3, &[]).0;
    let mut want = Vec::new();
    WELE.header(&mut want, t(0x0009, 0x1010), Vr::UN, UNDEF);
    want.extend_from_slice(&d[12..12 + 8 + 8 + 2 + 8 + 8]);
    WELE.el(&mut want, t(0x0010, 0x0010), Vr::PN, b"X^Y ");
    assert_eq!(ele, want);
}

#[test]
fn file_meta_round_trip() {
    let info = FileMetaInfo {
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.20",
        sop_instance_uid: "1.2.3",
        transfer_syntax_uid: EBE,
        implementation_class_uid: "1.2.826.0.1.3680043.10.1",
        implementation_version_name: "FERRO_010",
        source_ae_title: "NMNODE",
    };
    let mut out = Vec::new();
    let n = write_file_meta(&mut out, &info).unwrap();
    assert_eq!(n, out.len());
    assert_eq!(&out[128..132], b"DICM");
    let glen = u32::from_le_bytes(out[140..144].try_into().unwrap()) as usize;
    assert_eq!(
        144 + glen,
        out.len(),
        "group length covers the rest of the group"
    );
    out.extend_from_slice(&sample(WEBE));
    let (meta, start) = parse_file_meta(&out).unwrap().unwrap();
    assert_eq!(start, n);
    assert_eq!(meta.transfer_syntax_uid().as_deref(), Some(EBE));
    assert_eq!(meta.string(Tag::new(2, 0x16)).as_deref(), Some("NMNODE"));
    assert_eq!(meta.string(Tag::new(2, 0x13)).as_deref(), Some("FERRO_010"));
    // Whole-file conversion keeps the meta and updates the transfer syntax.
    let (ele, _) = transcode_part10(&out, ELE, &Dictionary::standard(), &[]).unwrap();
    let (meta2, start2) = parse_file_meta(&ele).unwrap().unwrap();
    assert_eq!(meta2.transfer_syntax_uid().as_deref(), Some(ELE));
    assert_eq!(&ele[start2..], &sample(WELE)[..]);
}

#[test]
fn standard_dictionary_is_generated() {
    use codec::dict::{standard_vr, DictVr};
    assert!(codec::dict::standard_len() > 4000);
    assert_eq!(standard_vr(t(0x0010, 0x0020)), Some(DictVr::One(Vr::LO)));
    assert_eq!(standard_vr(Tag::PIXEL_DATA), Some(DictVr::ObOw));
    assert_eq!(standard_vr(t(0x0028, 0x0106)), Some(DictVr::UsSs));
    assert_eq!(
        standard_vr(t(0x6002, 0x3000)),
        Some(DictVr::ObOw),
        "repeater (60xx,3000)"
    );
    assert_eq!(
        standard_vr(t(0x5010, 0x0005)),
        Some(DictVr::One(Vr::US)),
        "repeater (50xx,0005)"
    );
    assert_eq!(
        standard_vr(t(0x0029, 0x0010)),
        Some(DictVr::One(Vr::LO)),
        "private creator"
    );
    assert_eq!(
        standard_vr(t(0x0029, 0x0000)),
        Some(DictVr::One(Vr::UL)),
        "group length"
    );
    assert_eq!(standard_vr(t(0x0029, 0x1010)), None);
}

/// Counts bytes and checks that every 16-bit word arrives swapped, without keeping them.
struct CheckSwapped {
    n: u64,
    odd: Option<u8>,
}

impl std::io::Write for CheckSwapped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.n += buf.len() as u64;
        for &b in buf {
            match self.odd.take() {
                None => self.odd = Some(b),
                Some(first) => assert_eq!((first, b), (0x34, 0x12), "word swapped"),
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn long_values_stream_through() {
    // 64 MiB of Pixel Data fed in 1 MiB chunks: output arrives chunk by chunk, swapped.
    const LEN: u32 = 64 << 20;
    let mut head = Vec::new();
    WEBE.us(&mut head, t(0x0028, 0x0100), 16);
    WEBE.header(&mut head, Tag::PIXEL_DATA, Vr::OW, LEN);
    let chunk: Vec<u8> = [0x12u8, 0x34].repeat(1 << 19);
    let mut conv = StreamConverter::from_uids(EBE, ELE, &Dictionary::standard(), &[]).unwrap();
    let mut sink = Vec::new();
    conv.feed(&head, &mut sink).unwrap();
    let header_len = sink.len();
    let mut check = CheckSwapped { n: 0, odd: None };
    for _ in 0..(LEN as usize / chunk.len()) {
        conv.feed(&chunk, &mut check).unwrap();
        assert!(check.n > 0, "output is produced before the value ends");
    }
    conv.finish(&mut check).unwrap();
    assert_eq!(header_len, 10 + 12);
    assert_eq!(check.n, LEN as u64);
}

#[test]
fn process_wide_default_private_dictionary() {
    let mut d = Vec::new();
    WILE.el(&mut d, t(0x0009, 0x0010), Vr::LO, b"ACME 1.0");
    WILE.el(&mut d, t(0x0009, 0x1001), Vr::UL, &[1, 2, 3, 4]);
    let ebe = |dict: &Dictionary| convert(ILE, EBE, dict, &d);
    assert!(ebe(&Dictionary::with_default_private())
        .ends_with(&[b'U', b'N', 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]));
    codec::dict::set_default_private_dictionary(Some(acme().private));
    assert!(ebe(&Dictionary::with_default_private()).ends_with(&[b'U', b'L', 0, 4, 4, 3, 2, 1]));
    codec::dict::set_default_private_dictionary(None);
}

#[test]
fn keys_complete_once_a_later_top_level_element_begins() {
    // A tag beyond the wanted ones inside a sequence does not count; the Pixel Data header does.
    let w = WELE;
    let mut d = Vec::new();
    w.el(&mut d, t(0x0008, 0x0018), Vr::UI, b"1.2.3.4\0");
    let mut item = Vec::new();
    w.el(&mut item, t(0x0040, 0xA160), Vr::UT, b"deep");
    let mut seq = Vec::new();
    w.item(&mut seq, Tag::ITEM, item.len() as u32);
    seq.extend_from_slice(&item);
    w.header(&mut d, t(0x0010, 0x1002), Vr::SQ, seq.len() as u32);
    d.extend_from_slice(&seq);
    w.el(&mut d, t(0x0020, 0x000D), Vr::UI, b"1.2.5\0");
    let pixel_header_end = d.len() + 12;
    w.el(&mut d, Tag::PIXEL_DATA, Vr::OW, &[7u8; 64]);
    let tags = [t(0x0008, 0x0018), t(0x0020, 0x000D)];
    let mut conv = StreamConverter::from_uids(ELE, ELE, &Dictionary::standard(), &tags).unwrap();
    let mut out = Vec::new();
    let mut first_complete = None;
    for (i, b) in d.iter().enumerate() {
        conv.feed(std::slice::from_ref(b), &mut out).unwrap();
        if first_complete.is_none() && conv.keys_complete() {
            first_complete = Some(i + 1);
            assert_eq!(
                conv.extracted().string(t(0x0020, 0x000D)).as_deref(),
                Some("1.2.5")
            );
        }
    }
    assert_eq!(first_complete, Some(pixel_header_end));
    // Nothing wanted: never "complete" (there is nothing to wait for, and nothing to decide on).
    let mut none = StreamConverter::from_uids(ELE, ELE, &Dictionary::standard(), &[]).unwrap();
    none.feed(&d, &mut Vec::new()).unwrap();
    assert!(!none.keys_complete());
}
