//! Property test (issue 20): whatever the chunking of the input (PDV boundaries) and the size of
//! the codec's buffers, streaming conversion gives what whole, one-shot conversion gives.
//!
//! Data sets are generated as trees (strings, numbers, runs of zeros, random bulk data, sequences
//! and items of defined and undefined length nested three deep, private blocks with odd groups,
//! an undefined-length UN holding Implicit VR items, the occasional odd length that must be
//! refused), encoded in Implicit VR LE, Explicit VR LE/BE, and Deflated (one-shot deflate of the
//! Explicit VR LE encoding at a random level). Each is streamed to each of the four syntaxes in
//! random chunks through buffers of random size (1 byte to the default 256 KiB), and compared:
//!
//! * plain to plain: with `convert_dataset` of the whole data set (no streaming);
//! * Deflated to plain: with `convert_dataset` of miniz_oxide's one-shot inflate of the input;
//! * Deflated to Deflated (passthrough): output equals input, validated as above;
//! * plain to Deflated: one-shot inflate of the output equals `convert_dataset` to Explicit LE;
//!
//! errors included (same message). `PROPTEST_CASES` sets the number of cases (default 256).
mod common;
use codec::*;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Conversions compared that succeeded / that both sides refused; bytes streamed.
static ACCEPTED: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
enum Node {
    /// A value of `len` bytes filled by `fill` (0: zeros, 1: random, 2: a ramp).
    Value {
        tag: Tag,
        vr: Vr,
        len: usize,
        fill: u8,
        seed: u64,
    },
    /// Bits Allocated (0028,0100): decides OB/OW of the Pixel Data when converting.
    BitsAllocated(u16),
    Seq {
        tag: Tag,
        undefined: bool,
        items: Vec<(bool, Vec<Node>)>,
    },
    /// A private block: creator (gggg,00bb) and elements (gggg,bbxx).
    Private {
        group: u16,
        block: u8,
        creator: &'static str,
        elements: Vec<(u8, Vr, usize, u64)>,
    },
    /// An undefined-length UN (Explicit VR) holding items in Implicit VR LE (PS3.5 §6.2.2); in
    /// Implicit VR it is an undefined-length sequence.
    UnSequence { tag: Tag, items: Vec<Vec<Node>> },
}

impl Node {
    fn tag(&self) -> Tag {
        match self {
            Node::Value { tag, .. } | Node::Seq { tag, .. } | Node::UnSequence { tag, .. } => *tag,
            Node::BitsAllocated(_) => t(0x0028, 0x0100),
            Node::Private { group, block, .. } => t(*group, *block as u16),
        }
    }
}

/// Leaf attributes whose dictionary VR is the one written, so Implicit VR reads them back.
const LEAVES: &[(u16, u16, Vr)] = &[
    (0x0008, 0x0005, Vr::CS),
    (0x0008, 0x0016, Vr::UI),
    (0x0008, 0x0018, Vr::UI),
    (0x0008, 0x0020, Vr::DA),
    (0x0008, 0x0060, Vr::CS),
    (0x0008, 0x0100, Vr::SH),
    (0x0008, 0x1150, Vr::UI),
    (0x0008, 0x1155, Vr::UI),
    (0x0010, 0x0010, Vr::PN),
    (0x0010, 0x0020, Vr::LO),
    (0x0018, 0x0050, Vr::DS),
    (0x0018, 0x1030, Vr::LO),
    (0x0018, 0x1072, Vr::TM),
    (0x0018, 0x9327, Vr::FD),
    (0x0020, 0x0013, Vr::IS),
    (0x0028, 0x0010, Vr::US),
    (0x0028, 0x0011, Vr::US),
    (0x0028, 0x0103, Vr::US),
    (0x0028, 0x1052, Vr::DS),
    (0x0040, 0x0007, Vr::LO),
];
const SEQUENCES: &[(u16, u16)] = &[(0x0008, 0x1140), (0x0040, 0x0275), (0x0054, 0x0016)];
const EXTRACT: &[(u16, u16)] = &[
    (0x0008, 0x0018),
    (0x0008, 0x0060),
    (0x0010, 0x0020),
    (0x0028, 0x0010),
    (0x0028, 0x0100),
];

fn leaf() -> impl Strategy<Value = Node> {
    let sizes = prop_oneof![
        40 => (0usize..40).prop_map(|n| n * 2),
        1 => (0usize..20).prop_map(|n| n * 2 + 1), // odd: refused by the codec
    ];
    (0..LEAVES.len(), sizes, 0u8..3, any::<u64>()).prop_map(|(i, len, fill, seed)| {
        let (g, e, vr) = LEAVES[i];
        let len = match vr {
            Vr::US => 2,
            Vr::FD => 8 * (len / 8 + 1),
            _ => len,
        };
        Node::Value {
            tag: t(g, e),
            vr,
            len,
            fill,
            seed,
        }
    })
}

fn private() -> impl Strategy<Value = Node> {
    let element = (
        0u8..=255,
        prop_oneof![Just(Vr::UN), Just(Vr::OB), Just(Vr::LO), Just(Vr::UL)],
        0usize..64,
        any::<u64>(),
    );
    (
        prop_oneof![Just(0x0009u16), Just(0x0029), Just(0x0011), Just(0x7FD1)],
        prop_oneof![Just(0x10u8), Just(0x11), Just(0xFF)],
        prop_oneof![Just("ACME 1.0"), Just("SIEMENS CSA HEADER"), Just("GEMS_")],
        prop::collection::vec(element, 0..4),
    )
        .prop_map(|(group, block, creator, elements)| Node::Private {
            group,
            block,
            creator,
            elements,
        })
}

fn node() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (
                0..SEQUENCES.len(),
                any::<bool>(),
                prop::collection::vec(
                    (any::<bool>(), prop::collection::vec(inner.clone(), 0..4)),
                    0..3
                )
            )
                .prop_map(|(i, undefined, items)| Node::Seq {
                    tag: t(SEQUENCES[i].0, SEQUENCES[i].1),
                    undefined,
                    items,
                }),
            prop::collection::vec(prop::collection::vec(inner, 0..3), 0..3).prop_map(|items| {
                Node::UnSequence {
                    tag: t(0x0029, 0x1010),
                    items,
                }
            }),
        ]
    })
}

/// A top-level data set: nodes in tag order (one of each tag), possibly Pixel Data last.
fn dataset() -> impl Strategy<Value = Vec<Node>> {
    let pixels = prop_oneof![
        1 => Just(None),
        2 => (0usize..20_000).prop_map(|n| Some((n * 2, 1u8))),
        2 => (0usize..150_000).prop_map(|n| Some((n * 2, 0u8))),
        1 => (0usize..50_000).prop_map(|n| Some((n * 2, 2u8))),
    ];
    (
        prop::collection::vec(prop_oneof![4 => leaf(), 2 => node(), 1 => private()], 0..12),
        prop::option::of(prop_oneof![Just(8u16), Just(16)]),
        pixels,
        any::<u64>(),
    )
        .prop_map(|(mut nodes, bits, pixels, seed)| {
            if let Some(b) = bits {
                nodes.push(Node::BitsAllocated(b));
            }
            nodes.sort_by_key(Node::tag);
            nodes.dedup_by_key(|n| n.tag());
            if let Some((len, fill)) = pixels {
                nodes.push(Node::Value {
                    tag: Tag::PIXEL_DATA,
                    vr: Vr::OW,
                    len,
                    fill,
                    seed,
                });
            }
            nodes
        })
}

fn bytes(len: usize, fill: u8, mut seed: u64) -> Vec<u8> {
    match fill {
        0 => vec![0; len],
        1 => (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect(),
        _ => (0..len).map(|i| (i / 64) as u8).collect(),
    }
}

fn encode(nodes: &[Node], w: W, out: &mut Vec<u8>) {
    for n in nodes {
        match n {
            Node::Value {
                tag,
                vr,
                len,
                fill,
                seed,
            } => w.el(out, *tag, *vr, &bytes(*len, *fill, *seed)),
            Node::BitsAllocated(b) => w.us(out, n.tag(), *b),
            Node::Seq {
                tag,
                undefined,
                items,
            } => {
                let mut body = Vec::new();
                for (item_undefined, content) in items {
                    let mut c = Vec::new();
                    encode(content, w, &mut c);
                    if *item_undefined {
                        w.item(&mut body, Tag::ITEM, UNDEF);
                        body.extend_from_slice(&c);
                        w.item(&mut body, Tag::ITEM_DELIMITATION, 0);
                    } else {
                        w.item(&mut body, Tag::ITEM, c.len() as u32);
                        body.extend_from_slice(&c);
                    }
                }
                if *undefined {
                    w.header(out, *tag, Vr::SQ, UNDEF);
                    out.extend_from_slice(&body);
                    w.item(out, Tag::SEQUENCE_DELIMITATION, 0);
                } else {
                    w.header(out, *tag, Vr::SQ, body.len() as u32);
                    out.extend_from_slice(&body);
                }
            }
            Node::Private {
                group,
                block,
                creator,
                elements,
            } => {
                let mut name = creator.as_bytes().to_vec();
                if name.len() % 2 == 1 {
                    name.push(b' ');
                }
                w.el(out, t(*group, *block as u16), Vr::LO, &name);
                let mut elements = elements.clone();
                elements.sort_by_key(|e| e.0);
                elements.dedup_by_key(|e| e.0);
                for (el, vr, len, seed) in elements {
                    let len = match vr {
                        Vr::UL => 4,
                        _ => len * 2,
                    };
                    let tag = t(*group, ((*block as u16) << 8) | el as u16);
                    w.el(out, tag, vr, &bytes(len, 1, seed));
                }
            }
            Node::UnSequence { tag, items } => {
                let inner = if w.explicit { WILE } else { w };
                let mut body = Vec::new();
                for content in items {
                    inner.item(&mut body, Tag::ITEM, UNDEF);
                    encode(content, inner, &mut body);
                    inner.item(&mut body, Tag::ITEM_DELIMITATION, 0);
                }
                inner.item(&mut body, Tag::SEQUENCE_DELIMITATION, 0);
                w.header(out, *tag, if w.explicit { Vr::UN } else { Vr::SQ }, UNDEF);
                out.extend_from_slice(&body);
            }
        }
    }
}

fn one_shot_deflate(data: &[u8], level: u8) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(data, level)
}

fn one_shot_inflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::inflate::decompress_to_vec(data).expect("a valid deflate stream")
}

/// Streams `data` in chunks whose sizes cycle through `chunks`, through buffers of `buffer` bytes.
fn streamed(
    src: &str,
    dst: &str,
    data: &[u8],
    chunks: &[usize],
    buffer: Option<usize>,
) -> Result<(Vec<u8>, Extracted), String> {
    let tags: Vec<Tag> = EXTRACT.iter().map(|&(g, e)| t(g, e)).collect();
    let mut conv = StreamConverter::from_uids(src, dst, &Dictionary::standard(), &tags).unwrap();
    if let Some(b) = buffer {
        conv = conv.with_buffer_size(b);
    }
    let mut out = Vec::new();
    let mut rest = data;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let (c, r) = rest.split_at((*sizes.next().unwrap()).min(rest.len()));
        conv.feed(c, &mut out).map_err(|e| e.to_string())?;
        rest = r;
    }
    let ex = conv.finish(&mut out).map_err(|e| e.to_string())?;
    Ok((out, ex))
}

fn whole(src: &str, dst: &str, data: &[u8]) -> Result<(Vec<u8>, Extracted), String> {
    let tags: Vec<Tag> = EXTRACT.iter().map(|&(g, e)| t(g, e)).collect();
    let (s, d) = (TransferSyntax::from_uid(src), TransferSyntax::from_uid(dst));
    convert_dataset(&s, &d, &Dictionary::standard(), &tags, data).map_err(|e| e.to_string())
}

/// Checks one data set in every pair of syntaxes.
fn check(
    nodes: &[Node],
    level: u8,
    chunks: &[usize],
    buffer: Option<usize>,
) -> Result<(), TestCaseError> {
    let enc = |w: W| {
        let mut d = Vec::new();
        encode(nodes, w, &mut d);
        d
    };
    let ele = enc(WELE);
    let inputs = [
        (ILE, enc(WILE)),
        (ELE, ele.clone()),
        (EBE, enc(WEBE)),
        (DEFL, one_shot_deflate(&ele, level)),
    ];
    for (src, input) in &inputs {
        for dst in ALL {
            let got = streamed(src, dst, input, chunks, buffer);
            BYTES.fetch_add(input.len() as u64, Relaxed);
            match &got {
                Ok(_) => ACCEPTED.fetch_add(1, Relaxed),
                Err(_) => REFUSED.fetch_add(1, Relaxed),
            };
            let what = format!("{src} -> {dst}, {} bytes", input.len());
            if *src == DEFL {
                let plain = one_shot_inflate(input);
                prop_assert!(plain == ele, "one-shot inflate");
                let want = whole(ELE, if dst == DEFL { ELE } else { dst }, &plain);
                match (got, want) {
                    (Ok((out, ex)), Ok((want_out, want_ex))) => {
                        let want_out = if dst == DEFL { input.clone() } else { want_out };
                        prop_assert!(out == want_out, "{}: bytes differ", what);
                        prop_assert_eq!(ex, want_ex, "{}", what);
                    }
                    (Err(g), Err(w)) => prop_assert_eq!(g, w, "{}", what),
                    (g, w) => prop_assert!(
                        false,
                        "{}: streamed {:?}, whole {:?}",
                        what,
                        g.err(),
                        w.err()
                    ),
                }
            } else if dst == DEFL {
                let want = whole(src, ELE, input);
                match (got, want) {
                    (Ok((out, ex)), Ok((want_out, want_ex))) => {
                        prop_assert!(one_shot_inflate(&out) == want_out, "{}: bytes differ", what);
                        prop_assert_eq!(ex, want_ex, "{}", what);
                    }
                    (Err(g), Err(w)) => prop_assert_eq!(g, w, "{}", what),
                    (g, w) => prop_assert!(
                        false,
                        "{}: streamed {:?}, whole {:?}",
                        what,
                        g.err(),
                        w.err()
                    ),
                }
            } else {
                let want = whole(src, dst, input);
                match (got, want) {
                    (Ok((out, ex)), Ok((want_out, want_ex))) => {
                        prop_assert!(out == want_out, "{}: bytes differ", what);
                        prop_assert_eq!(ex, want_ex, "{}", what);
                    }
                    (Err(g), Err(w)) => prop_assert_eq!(g, w, "{}", what),
                    (g, w) => prop_assert!(
                        false,
                        "{}: streamed {:?}, whole {:?}",
                        what,
                        g.err(),
                        w.err()
                    ),
                }
            }
        }
    }
    Ok(())
}

fn chunking() -> impl Strategy<Value = Vec<usize>> {
    let size = prop_oneof![
        3 => 1usize..=16,
        3 => 1usize..=600,
        2 => 1usize..=20_000,
        1 => 16_000usize..=300_000,
    ];
    prop::collection::vec(size, 1..12)
}

fn buffer() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![
        1 => Just(None),
        2 => (1usize..=64).prop_map(Some),
        2 => (1usize..=8192).prop_map(Some),
    ]
}

#[test]
fn streaming_equals_one_shot_whatever_the_chunking() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let run = std::cell::Cell::new(0u64);
    let result = runner.run(
        &(dataset(), 0u8..=9, chunking(), buffer()),
        |(nodes, level, chunks, buffer)| {
            run.set(run.get() + 1);
            check(&nodes, level, &chunks, buffer)
        },
    );
    eprintln!(
        "chunking property: {} executions (cases asked: {cases}); conversions accepted {}, refused {}; {} MB streamed",
        run.get(),
        ACCEPTED.load(Relaxed),
        REFUSED.load(Relaxed),
        BYTES.load(Relaxed) / 1_000_000
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A damaged deflate stream: cut at a point, or one byte changed.
#[derive(Debug, Clone)]
enum Damage {
    Cut(u16),
    Flip(u16, u8),
}

/// Deflated input cut short or with a byte changed: the streaming converter, whatever the
/// chunking, accepts exactly what one-shot inflate plus whole conversion accepts, with the same
/// bytes, and refuses the rest (an error, never a panic).
#[test]
fn damaged_deflate_streams_fail_as_one_shot_inflate_does() {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let damage = prop_oneof![
        any::<u16>().prop_map(Damage::Cut),
        (any::<u16>(), 1u8..=255).prop_map(|(at, x)| Damage::Flip(at, x)),
    ];
    let (run, accepted, refused) = (
        std::cell::Cell::new(0u64),
        std::cell::Cell::new(0u64),
        std::cell::Cell::new(0u64),
    );
    let result = runner.run(
        &(dataset(), 0u8..=9, damage, chunking(), buffer()),
        |(nodes, level, damage, chunks, buffer)| {
            run.set(run.get() + 1);
            let mut ele = Vec::new();
            encode(&nodes, WELE, &mut ele);
            let mut defl = one_shot_deflate(&ele, level);
            let at = |f: u16| (defl.len() * f as usize) >> 16;
            match damage {
                Damage::Cut(f) => defl.truncate(at(f)),
                Damage::Flip(f, x) => {
                    let i = at(f);
                    defl[i] ^= x;
                }
            }
            let reference = miniz_oxide::inflate::decompress_to_vec_with_limit(&defl, 64 << 20);
            for dst in ALL {
                let got = streamed(DEFL, dst, &defl, &chunks, buffer);
                let want = match &reference {
                    Ok(plain) => whole(ELE, if dst == DEFL { ELE } else { dst }, plain)
                        .map(|(out, ex)| (if dst == DEFL { defl.clone() } else { out }, ex)),
                    Err(e) => Err(format!("one-shot inflate: {e:?}")),
                };
                match (got, want) {
                    (Ok(g), Ok(w)) => {
                        accepted.set(accepted.get() + 1);
                        prop_assert!(g == w, "{} bytes to {}: results differ", defl.len(), dst);
                    }
                    (Err(_), Err(_)) => refused.set(refused.get() + 1),
                    (g, w) => prop_assert!(
                        false,
                        "to {}: streamed {:?}, one-shot {:?}",
                        dst,
                        g.err(),
                        w.err()
                    ),
                }
            }
            Ok(())
        },
    );
    eprintln!(
        "damaged deflate property: {} executions (cases asked: {cases}); conversions accepted {}, refused {}",
        run.get(),
        accepted.get(),
        refused.get()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
