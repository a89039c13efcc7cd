//! Deflated data sets streamed in PDV-sized chunks (issue 20): large and highly compressible
//! streams, in both directions (inflate on receive, deflate on send), against flate2's one-shot
//! inflate and deflate of the same bytes.
mod common;
use codec::*;
use common::*;
use flate2::write::{DeflateDecoder, DeflateEncoder};
use flate2::Compression;
use std::io::Write;

/// PDV data sizes of the senders in the issue: DCMTK's storescu (16372 with a 16 KiB maximum PDU,
/// 131060 against our 256 KiB one), pynetdicom against our 256 KiB maximum PDU, and a few others.
const PDV_SIZES: [usize; 7] = [16372, 16378, 65536, 131_060, 262_138, 262_144, 1 << 20];

/// Data-set elements before the Pixel Data of an image (Explicit VR Little Endian).
fn image_header(rows: u16, cols: u16, pixel_len: u32) -> Vec<u8> {
    let mut d = Vec::new();
    WELE.el(
        &mut d,
        t(0x0008, 0x0016),
        Vr::UI,
        b"1.2.840.10008.5.1.4.1.1.1.2\0",
    );
    WELE.el(&mut d, t(0x0008, 0x0018), Vr::UI, b"1.2.3.4.5.6.7\0");
    WELE.el(&mut d, t(0x0008, 0x0060), Vr::CS, b"MG");
    WELE.el(&mut d, t(0x0010, 0x0020), Vr::LO, b"PID-20");
    WELE.us(&mut d, t(0x0028, 0x0002), 1);
    WELE.el(&mut d, t(0x0028, 0x0004), Vr::CS, b"MONOCHROME2 ");
    WELE.us(&mut d, t(0x0028, 0x0010), rows);
    WELE.us(&mut d, t(0x0028, 0x0011), cols);
    WELE.us(&mut d, t(0x0028, 0x0100), 16);
    WELE.us(&mut d, t(0x0028, 0x0101), 16);
    WELE.us(&mut d, t(0x0028, 0x0102), 15);
    WELE.us(&mut d, t(0x0028, 0x0103), 0);
    WELE.header(&mut d, Tag::PIXEL_DATA, Vr::OW, pixel_len);
    d
}

/// The mammography image: 4096 columns x 3328 rows, 16 bits, 500 rows of zeros then
/// noise of `bits` bits (xorshift). 12-bit noise deflates ~1.4:1, 4-bit noise ~3.6:1 (then each
/// of storescu's 131060-byte PDVs inflates to more than the codec's 256 KiB buffer).
fn mg_dataset(bits: u32) -> Vec<u8> {
    let (rows, cols) = (3328usize, 4096usize);
    let mut d = image_header(rows as u16, cols as u16, (rows * cols * 2) as u32);
    d.resize(d.len() + 500 * cols * 2, 0);
    let mut s: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 500 * cols..rows * cols {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        d.extend_from_slice(&(((s >> 20) as u16) & ((1 << bits) - 1)).to_le_bytes());
    }
    d
}

fn deflate(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = DeflateDecoder::new(Vec::new());
    d.write_all(data).unwrap();
    d.finish().unwrap()
}

fn stream(src: &str, dst: &str, data: &[u8], chunk: usize) -> Result<Vec<u8>, CodecError> {
    let mut conv = StreamConverter::from_uids(src, dst, &Dictionary::standard(), &[])?;
    let mut out = Vec::new();
    for c in data.chunks(chunk) {
        conv.feed(c, &mut out)?;
    }
    conv.finish(&mut out)?;
    Ok(out)
}

#[test]
fn mammography_image_in_pdv_chunks() {
    for bits in [12, 4] {
        let plain = mg_dataset(bits);
        let defl = deflate(&plain, 6);
        for chunk in PDV_SIZES {
            let what = format!("{bits}-bit noise, PDVs of {chunk}");
            // Stored as received (the SCP's default): the bytes pass through and are validated.
            let same = stream(DEFL, DEFL, &defl, chunk).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(same == defl, "DEFL->DEFL, {what}: bytes differ");
            // Stored inflated.
            let ele = stream(DEFL, ELE, &defl, chunk).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(ele == plain, "DEFL->ELE, {what}: bytes differ");
        }
        // Deflating on the way (send, or store Deflated): one-shot inflate gives it back.
        for chunk in [16372, 1 << 20] {
            let out = stream(ELE, DEFL, &plain, chunk).unwrap();
            assert!(
                inflate(&out) == plain,
                "ELE->DEFL, {bits}-bit noise, chunks of {chunk}"
            );
        }
    }
}

/// Checks, as it is written, that a stream is `prefix` followed by `zeros` zero bytes.
struct Expect<'a> {
    prefix: &'a [u8],
    zeros: u64,
    pos: u64,
}

impl Write for Expect<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        static ZEROS: [u8; 4096] = [0; 4096];
        let end = self.pos + buf.len() as u64;
        let head = (self.prefix.len() as u64).clamp(self.pos, end) - self.pos;
        let (a, b) = buf.split_at(head as usize);
        let from = (self.pos as usize).min(self.prefix.len());
        let same = a == &self.prefix[from..from + a.len()]
            && b.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
            && end <= self.prefix.len() as u64 + self.zeros;
        if !same {
            return Err(std::io::Error::other(format!(
                "bytes {}..{end} differ",
                self.pos
            )));
        }
        self.pos = end;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn three_hundred_mib_of_zeros() {
    const ZEROS: u64 = 300 << 20;
    let head = image_header(10240, 15360, ZEROS as u32);
    let zeros = vec![0u8; 1 << 20];
    // One-shot deflate of the whole data set, written without holding it.
    let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
    e.write_all(&head).unwrap();
    for _ in 0..ZEROS >> 20 {
        e.write_all(&zeros).unwrap();
    }
    let defl = e.finish().unwrap();
    for chunk in [16372, 262_138] {
        let mut conv = StreamConverter::from_uids(DEFL, ELE, &Dictionary::standard(), &[]).unwrap();
        let mut out = Expect {
            prefix: &head,
            zeros: ZEROS,
            pos: 0,
        };
        for c in defl.chunks(chunk) {
            conv.feed(c, &mut out)
                .unwrap_or_else(|e| panic!("{chunk}: {e}"));
        }
        conv.finish(&mut out).unwrap();
        assert_eq!(out.pos, head.len() as u64 + ZEROS, "PDVs of {chunk}");
    }
    // The other way: deflated while streaming, inflated in one go.
    let mut conv = StreamConverter::from_uids(ELE, DEFL, &Dictionary::standard(), &[]).unwrap();
    let mut defl = Vec::new();
    conv.feed(&head, &mut defl).unwrap();
    for _ in 0..ZEROS >> 20 {
        for c in zeros.chunks(16372) {
            conv.feed(c, &mut defl).unwrap();
        }
    }
    conv.finish(&mut defl).unwrap();
    let mut check = DeflateDecoder::new(Expect {
        prefix: &head,
        zeros: ZEROS,
        pos: 0,
    });
    check.write_all(&defl).unwrap();
    assert_eq!(check.finish().unwrap().pos, head.len() as u64 + ZEROS);
}

#[test]
fn truncated_or_corrupt_large_stream_fails_cleanly() {
    let plain = mg_dataset(12);
    let defl = deflate(&plain, 6);
    // Cut short: an error, not a panic, whatever the chunking.
    for cut in [defl.len() / 3, defl.len() - 1] {
        for chunk in [16372, 1 << 20] {
            let err = stream(DEFL, ELE, &defl[..cut], chunk).unwrap_err();
            assert!(
                matches!(
                    err,
                    CodecError::Truncated { .. } | CodecError::Deflate { .. }
                ),
                "{err}"
            );
        }
    }
    // A corrupt byte: either the deflate stream or the data set it gives is refused, or (a
    // flip that keeps the stream valid) the inflated bytes differ from the original only where
    // one-shot inflate says they do.
    let mut bad = defl.clone();
    bad[defl.len() / 2] ^= 0xFF;
    let streamed = stream(DEFL, ELE, &bad, 16372);
    let mut one_shot = DeflateDecoder::new(Vec::new());
    let reference = one_shot
        .write_all(&bad)
        .and_then(|_| one_shot.finish())
        .ok();
    match (streamed, reference) {
        (Ok(s), Some(r)) => assert!(s == r),
        (Ok(_), None) => panic!("a stream one-shot inflate refuses was accepted"),
        (Err(_), _) => {}
    }
}

/// A deflate stream whose match reaches back before its first byte (RFC 1951 §3.2.5: distances
/// go back into the output only) must be refused, as zlib refuses it ("invalid distance too far
/// back"), even when the bytes it would give make a valid data set: here (0010,0020) LO, then a
/// 4-byte match at distance 300 after 8 bytes of output. miniz_oxide's streaming inflate (flate2's
/// default backend) copies zeros from its blank window instead, so a corrupt stream was stored
/// as received with Success (found by fuzz_targets/deflate_stream.rs).
#[test]
fn match_before_the_start_of_the_stream_is_refused() {
    let too_far = [
        0x13, 0x60, 0x50, 0x60, 0xf0, 0xf1, 0x67, 0x61, 0x00, 0x85, 0x15, 0x00,
    ];
    // The same with distance 8 (copies the element's first 4 bytes): valid.
    let valid = [
        0x13, 0x60, 0x50, 0x60, 0xf0, 0xf1, 0x67, 0x61, 0x00, 0xd1, 0x00,
    ];
    let mut want = Vec::new();
    WELE.el(&mut want, t(0x0010, 0x0020), Vr::LO, &[0x10, 0, 0x20, 0]);
    for chunk in [1, 3, 100] {
        assert_eq!(stream(DEFL, ELE, &valid, chunk).unwrap(), want);
        for dst in [DEFL, ELE] {
            let err = stream(DEFL, dst, &too_far, chunk).unwrap_err();
            assert!(matches!(err, CodecError::Deflate { .. }), "{err}");
        }
    }
}
