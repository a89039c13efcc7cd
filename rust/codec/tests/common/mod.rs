//! Tiny data-set builder for the tests: writes elements in a given encoding.
#![allow(dead_code)]
use codec::{Tag, Vr};

pub const ILE: &str = "1.2.840.10008.1.2";
pub const ELE: &str = "1.2.840.10008.1.2.1";
pub const EBE: &str = "1.2.840.10008.1.2.2";
pub const DEFL: &str = "1.2.840.10008.1.2.1.99";
pub const ALL: [&str; 4] = [ILE, ELE, EBE, DEFL];
pub const UNDEF: u32 = 0xFFFF_FFFF;

#[derive(Clone, Copy)]
pub struct W {
    pub explicit: bool,
    pub big: bool,
}

pub const WILE: W = W {
    explicit: false,
    big: false,
};
pub const WELE: W = W {
    explicit: true,
    big: false,
};
pub const WEBE: W = W {
    explicit: true,
    big: true,
};

impl W {
    pub fn u16(self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    pub fn u32(self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    pub fn tag(self, out: &mut Vec<u8>, t: Tag) {
        out.extend_from_slice(&self.u16(t.group()));
        out.extend_from_slice(&self.u16(t.element()));
    }
    /// Element header with an explicit length (`len`) — may differ from the value's size.
    pub fn header(self, out: &mut Vec<u8>, t: Tag, vr: Vr, len: u32) {
        self.tag(out, t);
        if !self.explicit {
            out.extend_from_slice(&self.u32(len));
        } else if vr.has_long_length() {
            out.extend_from_slice(&vr.bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&self.u32(len));
        } else {
            out.extend_from_slice(&vr.bytes());
            out.extend_from_slice(&self.u16(len as u16));
        }
    }
    pub fn el(self, out: &mut Vec<u8>, t: Tag, vr: Vr, value: &[u8]) {
        self.header(out, t, vr, value.len() as u32);
        out.extend_from_slice(value);
    }
    pub fn us(self, out: &mut Vec<u8>, t: Tag, v: u16) {
        let b = self.u16(v);
        self.el(out, t, Vr::US, &b);
    }
    pub fn item(self, out: &mut Vec<u8>, t: Tag, len: u32) {
        self.tag(out, t);
        out.extend_from_slice(&self.u32(len));
    }
}

pub fn t(g: u16, e: u16) -> Tag {
    Tag::new(g, e)
}

/// A data set exercising strings, numbers of every width, AT, nested undefined- and
/// defined-length sequences, a private block and 16-bit pixel data.
pub fn sample(w: W) -> Vec<u8> {
    let mut d = Vec::new();
    w.el(
        &mut d,
        t(0x0008, 0x0016),
        Vr::UI,
        b"1.2.840.10008.5.1.4.1.1.20",
    );
    w.el(&mut d, t(0x0008, 0x0018), Vr::UI, b"1.2.3.4\0");
    w.el(&mut d, t(0x0008, 0x0060), Vr::CS, b"NM");
    w.el(&mut d, t(0x0010, 0x0010), Vr::PN, b"Doe^John");
    w.el(&mut d, t(0x0010, 0x0020), Vr::LO, b"PID-42");
    // Sequence of undefined length with one undefined-length item holding a nested
    // defined-length sequence.
    w.header(&mut d, t(0x0054, 0x0016), Vr::SQ, UNDEF);
    w.item(&mut d, Tag::ITEM, UNDEF);
    w.el(&mut d, t(0x0018, 0x1072), Vr::TM, b"101010");
    let mut inner = Vec::new();
    let mut item = Vec::new();
    w.el(&mut item, t(0x0008, 0x0100), Vr::SH, b"C-111A1 ");
    w.item(&mut inner, Tag::ITEM, item.len() as u32);
    inner.extend_from_slice(&item);
    w.header(&mut d, t(0x0054, 0x0300), Vr::SQ, inner.len() as u32);
    d.extend_from_slice(&inner);
    w.item(&mut d, Tag::ITEM_DELIMITATION, 0);
    w.item(&mut d, Tag::SEQUENCE_DELIMITATION, 0);
    let at = [w.u16(0x0054), w.u16(0x0010)].concat();
    w.el(&mut d, t(0x0028, 0x0009), Vr::AT, &at);
    w.el(&mut d, t(0x0028, 0x0008), Vr::IS, b"2 ");
    w.us(&mut d, t(0x0028, 0x0010), 2);
    w.us(&mut d, t(0x0028, 0x0011), 2);
    w.us(&mut d, t(0x0028, 0x0100), 16);
    w.us(&mut d, t(0x0028, 0x0103), 1);
    w.el(&mut d, t(0x0028, 0x0106), Vr::SS, &w.u16((-5i16) as u16));
    let fd: Vec<u8> = [1.5f64, -2.25]
        .iter()
        .flat_map(|v| {
            if w.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        })
        .collect();
    w.el(&mut d, t(0x0018, 0x9327), Vr::FD, &fd);
    w.el(&mut d, t(0x0054, 0x1001), Vr::CS, b"CNTS");
    w.el(&mut d, t(0x0054, 0x1324), Vr::DS, b"1.5 ");
    w.el(&mut d, t(0x0009, 0x0010), Vr::LO, b"ACME 1.0");
    w.el(&mut d, t(0x0009, 0x1001), Vr::UL, &w.u32(0xDEADBEEF));
    w.el(&mut d, t(0x0009, 0x1002), Vr::LO, b"private ");
    let px: Vec<u8> = (0u16..8).flat_map(|v| w.u16(v * 1000 + 1)).collect();
    w.el(&mut d, Tag::PIXEL_DATA, Vr::OW, &px);
    d
}
