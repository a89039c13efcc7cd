//! Turns data/dictionary.tsv (generated from pydicom by scripts/gen_dictionary.py) into a sorted
//! lookup table of exact tags plus a list of repeater masks, written to $OUT_DIR/dictionary.rs.
use std::fmt::Write as _;
use std::{env, fs, path::Path};

fn spec(vr: &str) -> String {
    match vr {
        "US/SS" => "DictVr::UsSs".into(),
        "OB/OW" => "DictVr::ObOw".into(),
        "US/SS/OW" => "DictVr::UsSsOw".into(),
        "US/OW" => "DictVr::UsOw".into(),
        v if v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase()) => {
            format!("DictVr::One(Vr::{v})")
        }
        other => panic!("dictionary.tsv: unsupported VR {other:?}"),
    }
}

fn main() {
    // Read at run time (not `env!`): a build script reused from another checkout of the same
    // source must still read this checkout's file.
    let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let src = Path::new(&dir).join("data/dictionary.tsv");
    println!("cargo:rerun-if-changed={}", src.display());
    let text = fs::read_to_string(&src).expect("read data/dictionary.tsv");
    let mut exact: Vec<(u32, String)> = Vec::new();
    let mut masks: Vec<(u32, u32, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (tag, vr) = line.split_once('\t').expect("tab-separated line");
        assert_eq!(tag.len(), 8, "bad tag {tag}");
        if tag.contains('x') {
            let mut mask = 0u32;
            let mut value = 0u32;
            for c in tag.chars() {
                mask <<= 4;
                value <<= 4;
                if c != 'x' {
                    mask |= 0xF;
                    value |= c.to_digit(16).expect("hex digit");
                }
            }
            masks.push((mask, value, spec(vr)));
        } else {
            exact.push((u32::from_str_radix(tag, 16).expect("hex tag"), spec(vr)));
        }
    }
    exact.sort_by_key(|e| e.0);
    exact.dedup_by_key(|e| e.0);
    // Most specific masks first (most fixed bits).
    masks.sort_by_key(|m| std::cmp::Reverse(m.0.count_ones()));
    let mut out = String::new();
    writeln!(
        out,
        "pub(crate) static STANDARD: [(u32, DictVr); {}] = [",
        exact.len()
    )
    .unwrap();
    for (t, s) in &exact {
        writeln!(out, "    (0x{t:08X}, {s}),").unwrap();
    }
    writeln!(out, "];").unwrap();
    writeln!(
        out,
        "pub(crate) static REPEATERS: [(u32, u32, DictVr); {}] = [",
        masks.len()
    )
    .unwrap();
    for (m, v, s) in &masks {
        writeln!(out, "    (0x{m:08X}, 0x{v:08X}, {s}),").unwrap();
    }
    writeln!(out, "];").unwrap();
    let dst = Path::new(&env::var("OUT_DIR").unwrap()).join("dictionary.rs");
    fs::write(dst, out).expect("write dictionary.rs");
}
