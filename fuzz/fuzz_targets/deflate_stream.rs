//! Differential fuzz target for the codec's Deflated streams (PS3.5 §A.5, issue 20): the
//! streaming inflate and conversion of `codec::StreamConverter`, fed in chunks of fuzzed sizes
//! through buffers of fuzzed size, against miniz_oxide's one-shot inflate of the same bytes
//! followed by whole conversion (`codec::convert_dataset`); and the streaming deflate against a
//! one-shot inflate of what it produced.
//!
//! Input: `[mode, level, buf_lo, buf_hi, n, n x (size_lo, size_hi), zeros_lo, zeros_hi, dmg_lo,
//! dmg_hi, dmg_xor, data...]`. Mode (low 2 bits): 0: `data` is an Explicit VR LE data set,
//! deflated one-shot at `level`; 1: `data` is the deflate stream itself; 2: as 0 with a Pixel
//! Data element of `zeros` x 16 zero bytes appended (highly compressible); 3: as 0, then the
//! stream is damaged (`dmg` picks a byte to xor with `dmg_xor`, or a cut when `dmg_xor` is 0).
//! Bits 2-5 pick the target syntaxes. Buffer size 0 is the default 256 KiB.
#![no_main]
use codec::{convert_dataset, Dictionary, Extracted, StreamConverter, Tag, TransferSyntax};
use libfuzzer_sys::fuzz_target;

const ILE: &str = "1.2.840.10008.1.2";
const ELE: &str = "1.2.840.10008.1.2.1";
const EBE: &str = "1.2.840.10008.1.2.2";
const DEFL: &str = "1.2.840.10008.1.2.1.99";
const TAGS: [Tag; 3] = [
    Tag::new(0x0008, 0x0018),
    Tag::new(0x0010, 0x0020),
    Tag::new(0x0028, 0x0010),
];
/// One-shot inflate output limit (a 4 KiB input inflates to at most ~4 MiB anyway).
const LIMIT: usize = 64 << 20;

struct Input<'a> {
    mode: u8,
    level: u8,
    buffer: Option<usize>,
    chunks: Vec<usize>,
    zeros: usize,
    damage: (u16, u8),
    data: &'a [u8],
}

fn parse(b: &[u8]) -> Option<Input<'_>> {
    let (&mode, b) = b.split_first()?;
    let (&level, b) = b.split_first()?;
    let (buf, b) = b.split_at_checked(2)?;
    let (&n, b) = b.split_first()?;
    let n = (n as usize % 8) + 1;
    let (sizes, b) = b.split_at_checked(2 * n)?;
    let (zeros, b) = b.split_at_checked(2)?;
    let (dmg, b) = b.split_at_checked(3)?;
    let u16_at = |s: &[u8]| u16::from_le_bytes([s[0], s[1]]);
    let buffer = u16_at(buf) as usize;
    Some(Input {
        mode,
        level: level % 10,
        buffer: (buffer != 0).then_some(buffer),
        chunks: sizes
            .chunks(2)
            .map(|c| (u16_at(c) as usize).max(1))
            .collect(),
        zeros: u16_at(zeros) as usize * 16,
        damage: (u16_at(dmg), dmg[2]),
        data: b,
    })
}

type Outcome = Result<(Vec<u8>, Extracted), String>;

fn streamed(src: &str, dst: &str, data: &[u8], input: &Input<'_>) -> Outcome {
    let mut conv = StreamConverter::from_uids(src, dst, &Dictionary::standard(), &TAGS)
        .map_err(|e| e.to_string())?;
    if let Some(b) = input.buffer {
        conv = conv.with_buffer_size(b);
    }
    let mut out = Vec::new();
    let mut rest = data;
    let mut sizes = input.chunks.iter().cycle();
    while !rest.is_empty() {
        let (c, r) = rest.split_at((*sizes.next().unwrap()).min(rest.len()));
        conv.feed(c, &mut out).map_err(|e| e.to_string())?;
        rest = r;
    }
    let ex = conv.finish(&mut out).map_err(|e| e.to_string())?;
    Ok((out, ex))
}

fn whole(src: &str, dst: &str, data: &[u8]) -> Outcome {
    let (s, d) = (TransferSyntax::from_uid(src), TransferSyntax::from_uid(dst));
    convert_dataset(&s, &d, &Dictionary::standard(), &TAGS, data).map_err(|e| e.to_string())
}

/// Both accept with the same bytes and values, or both refuse. Error messages are not compared:
/// whole conversion knows where the input ends (a value "runs past the end of the input"), the
/// streaming converter learns it at `finish` ("input ends inside a value"), and the two
/// inflaters word their errors differently.
fn compare(what: &str, got: Outcome, want: Outcome) {
    match (got, want) {
        (Ok(g), Ok(w)) => assert!(g == w, "{what}: streamed and one-shot results differ"),
        (Err(_), Err(_)) => {}
        (g, w) => panic!("{what}: streamed {:?}, one-shot {:?}", g.err(), w.err()),
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Some(input) = parse(bytes) else { return };
    let mut plain = input.data.to_vec();
    if input.mode & 3 == 2 {
        // (7FE0,0010) OB of zeros: a long run that inflates to many full output buffers.
        plain.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
        plain.extend_from_slice(&(input.zeros as u32).to_le_bytes());
        plain.resize(plain.len() + input.zeros, 0);
    }
    let mut defl = match input.mode & 3 {
        1 => input.data.to_vec(),
        _ => miniz_oxide::deflate::compress_to_vec(&plain, input.level),
    };
    if input.mode & 3 == 3 && !defl.is_empty() {
        let at = (defl.len() * input.damage.0 as usize) >> 16;
        match input.damage.1 {
            0 => defl.truncate(at),
            x => defl[at] ^= x,
        }
    }

    // Inflate direction: streaming inflate + conversion against one-shot inflate + whole
    // conversion.
    let reference = miniz_oxide::inflate::decompress_to_vec_with_limit(&defl, LIMIT);
    if matches!(reference, Err(ref e) if e.status == miniz_oxide::inflate::TINFLStatus::HasMoreOutput)
    {
        return; // beyond the limit: nothing to compare with
    }
    let targets: Vec<&str> = [DEFL, ELE, ILE, EBE]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| input.mode >> (2 + i) & 1 == 0)
        .map(|(_, t)| t)
        .collect();
    for dst in targets.iter().copied() {
        let got = streamed(DEFL, dst, &defl, &input);
        let want = match &reference {
            Ok(p) => whole(ELE, if dst == DEFL { ELE } else { dst }, p)
                .map(|(out, ex)| (if dst == DEFL { defl.clone() } else { out }, ex)),
            Err(e) => Err(format!("one-shot inflate: {:?}", e.status)),
        };
        compare(&format!("Deflated -> {dst}"), got, want);
    }

    // Deflate direction: streaming deflate of the plain data set, inflated one-shot, against
    // whole conversion to Explicit VR LE.
    if input.mode & 3 != 1 {
        let got = streamed(ELE, DEFL, &plain, &input).map(|(out, ex)| {
            let back = miniz_oxide::inflate::decompress_to_vec_with_limit(&out, LIMIT)
                .expect("the streaming deflater wrote an invalid stream");
            (back, ex)
        });
        compare("ELE -> Deflated", got, whole(ELE, ELE, &plain));
    }
});
