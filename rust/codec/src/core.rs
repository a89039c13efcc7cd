//! The element-stream state machine (PS3.5 §7): parses a data set in arbitrary chunks and
//! re-encodes it in the target encoding into a [`Sink`]. It buffers at most one element
//! header (12 bytes), one partial swap unit (8 bytes) and the values it must look at
//! (Pixel Representation, Bits Allocated, Private Creators, extracted tags); every other
//! value streams through, whatever its length.
use crate::dict::{standard_vr, DictVr, Dictionary};
use crate::error::{CodecError, MaybeTag};
use crate::extract::{Extracted, ExtractedValue};
use crate::swap::{swap_in_place, Sink};
use crate::{Tag, Vr};

pub(crate) const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Maximum nesting of sequences and items.
pub const MAX_DEPTH: usize = 128;
/// Longest value kept for an extracted tag; longer values are cut and flagged `truncated`.
pub const MAX_EXTRACT_LEN: usize = 1 << 20;
/// Longest value kept for values the codec reads itself (creators, US values).
const MAX_CONTEXT_LEN: usize = 256;

/// Encoding of one nesting level: explicit or implicit VR, byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Enc {
    pub explicit: bool,
    pub big: bool,
}

/// Content of an undefined-length UN element stays Implicit VR Little Endian (PS3.5 §6.2.2).
const ILE: Enc = Enc {
    explicit: false,
    big: false,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dataset,
    Sequence,
    Item,
    Encapsulated,
}

#[derive(Debug)]
struct Level {
    kind: Kind,
    tag: Tag,
    /// Source offset where a defined-length level ends.
    end: Option<u64>,
    /// The source length was defined but the output uses undefined length (sizes change
    /// between implicit and explicit VR): a delimiter must be written when the level ends.
    out_undefined: bool,
    src: Enc,
    dst: Enc,
    pixel_rep: Option<u16>,
    bits_allocated: Option<u16>,
    /// Private creators seen in this data set: (group, block, creator).
    creators: Vec<(u16, u8, String)>,
}

impl Level {
    fn size_preserving(&self) -> bool {
        self.src.explicit == self.dst.explicit
    }
}

#[derive(Debug, Clone, Copy)]
struct ValueState {
    tag: Tag,
    vr: Vr,
    remaining: u64,
    unit: usize,
    emit: bool,
    capture_context: bool,
    extract: bool,
    offset: u64,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    Value(ValueState),
}

struct Header {
    tag: Tag,
    vr: Option<Vr>,
    len: u32,
    size: usize,
}

pub(crate) struct Core {
    dict: Dictionary,
    stack: Vec<Level>,
    state: State,
    /// Source offset of the next byte to consume.
    pos: u64,
    /// Total source length when known (whole-object form): lengths are checked against it.
    total: Option<u64>,
    hdr: [u8; 12],
    hdr_len: usize,
    carry: [u8; 8],
    carry_len: usize,
    cap: Vec<u8>,
    cap_truncated: bool,
    want: Vec<Tag>,
    /// A top-level data element beyond every wanted tag has begun.
    passed_wanted: bool,
    pub extracted: Extracted,
}

impl Core {
    pub fn new(src: Enc, dst: Enc, dict: &Dictionary, tags: &[Tag]) -> Core {
        let mut want = tags.to_vec();
        want.sort();
        want.dedup();
        Core {
            dict: dict.clone(),
            stack: vec![Level {
                kind: Kind::Dataset,
                tag: Tag(0),
                end: None,
                out_undefined: false,
                src,
                dst,
                pixel_rep: None,
                bits_allocated: None,
                creators: Vec::new(),
            }],
            state: State::Header,
            pos: 0,
            total: None,
            hdr: [0; 12],
            hdr_len: 0,
            carry: [0; 8],
            carry_len: 0,
            cap: Vec::new(),
            cap_truncated: false,
            want,
            passed_wanted: false,
            extracted: Extracted::default(),
        }
    }

    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
    }

    /// True once a top-level element beyond every wanted tag has begun: in a data set with
    /// ascending tags (PS3.5 §7.1) no extracted value can change after that.
    pub fn keys_complete(&self) -> bool {
        self.passed_wanted
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    fn top(&self) -> &Level {
        self.stack.last().expect("stack never empty")
    }

    /// Consumes `input`, writing the converted bytes to `sink`.
    pub fn process<S: Sink>(&mut self, mut input: &[u8], sink: &mut S) -> Result<(), CodecError> {
        while !input.is_empty() {
            match self.state {
                State::Header => {
                    self.close_levels(sink)?;
                    let enc = self.top().src;
                    if self.hdr_len == 0 {
                        match parse_header(input, enc, self.pos)? {
                            Some(h) => {
                                input = &input[h.size..];
                                self.on_header(h, sink)?;
                            }
                            None => {
                                self.hdr[..input.len()].copy_from_slice(input);
                                self.hdr_len = input.len();
                                input = &[];
                            }
                        }
                    } else {
                        let take = (12 - self.hdr_len).min(input.len());
                        self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&input[..take]);
                        let avail = self.hdr_len + take;
                        let hdr = self.hdr;
                        match parse_header(&hdr[..avail], enc, self.pos)? {
                            Some(h) => {
                                input = &input[h.size - self.hdr_len..];
                                self.hdr_len = 0;
                                self.on_header(h, sink)?;
                            }
                            None => {
                                self.hdr_len = avail;
                                input = &input[take..];
                            }
                        }
                    }
                }
                State::Value(mut v) => {
                    let n = v.remaining.min(input.len() as u64) as usize;
                    let (chunk, rest) = input.split_at(n);
                    if v.capture_context || v.extract {
                        let limit = if v.extract {
                            MAX_EXTRACT_LEN
                        } else {
                            MAX_CONTEXT_LEN
                        };
                        let room = limit.saturating_sub(self.cap.len());
                        if chunk.len() > room {
                            self.cap_truncated = true;
                        }
                        self.cap.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                    if v.emit {
                        if v.unit < 2 {
                            sink.put(chunk);
                        } else {
                            self.put_swapped(chunk, v.unit, sink);
                        }
                    }
                    v.remaining -= n as u64;
                    self.pos += n as u64;
                    input = rest;
                    if v.remaining == 0 {
                        self.finish_value(v);
                    } else {
                        self.state = State::Value(v);
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends the stream: errors unless every element, item and sequence is complete.
    pub fn finish<S: Sink>(&mut self, sink: &mut S) -> Result<(), CodecError> {
        if self.hdr_len > 0 {
            return Err(CodecError::Truncated {
                offset: self.pos,
                tag: MaybeTag(None),
                what: "input ends inside an element header",
            });
        }
        if let State::Value(v) = self.state {
            return Err(CodecError::Truncated {
                offset: v.offset,
                tag: MaybeTag(Some(v.tag)),
                what: "input ends inside a value",
            });
        }
        self.close_levels(sink)?;
        if self.stack.len() > 1 {
            let top = self.top();
            let what = match top.kind {
                Kind::Item => "input ends inside an item (no item delimiter)",
                _ => "input ends inside a sequence (no sequence delimiter)",
            };
            return Err(CodecError::Truncated {
                offset: self.pos,
                tag: MaybeTag(Some(top.tag)),
                what,
            });
        }
        Ok(())
    }

    fn put_swapped<S: Sink>(&mut self, mut chunk: &[u8], unit: usize, sink: &mut S) {
        if self.carry_len > 0 {
            let take = (unit - self.carry_len).min(chunk.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&chunk[..take]);
            self.carry_len += take;
            chunk = &chunk[take..];
            if self.carry_len == unit {
                let mut c = self.carry;
                swap_in_place(&mut c[..unit], unit);
                sink.put(&c[..unit]);
                self.carry_len = 0;
            }
        }
        let whole = chunk.len() / unit * unit;
        sink.put_swapped(&chunk[..whole], unit);
        let rest = &chunk[whole..];
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carry_len += rest.len();
    }

    /// Pops every defined-length level that ends at the current position.
    fn close_levels<S: Sink>(&mut self, sink: &mut S) -> Result<(), CodecError> {
        while let Some(end) = self.top().end {
            if self.pos < end {
                break;
            }
            let level = self.stack.pop().expect("level");
            if self.pos > end {
                return Err(CodecError::LengthPastEnd {
                    offset: self.pos,
                    tag: level.tag,
                    length: 0,
                    end,
                    container: "its item or sequence",
                });
            }
            if level.out_undefined {
                let tag = if level.kind == Kind::Item {
                    Tag::ITEM_DELIMITATION
                } else {
                    Tag::SEQUENCE_DELIMITATION
                };
                write_item_header(sink, level.dst, tag, 0);
            }
        }
        Ok(())
    }

    /// Checks that a value or container of `len` bytes starting at the current position
    /// ends within its enclosing defined-length containers and within the input.
    fn check_end(&self, tag: Tag, offset: u64, len: u32) -> Result<u64, CodecError> {
        let end = self.pos + len as u64;
        if let Some(level) = self.stack.iter().rev().find(|l| l.end.is_some()) {
            let limit = level.end.unwrap_or(u64::MAX);
            if end > limit {
                return Err(CodecError::LengthPastEnd {
                    offset,
                    tag,
                    length: len,
                    end: limit,
                    container: "its item or sequence",
                });
            }
        }
        if let Some(total) = self.total {
            if end > total {
                return Err(CodecError::LengthPastEnd {
                    offset,
                    tag,
                    length: len,
                    end: total,
                    container: "the input",
                });
            }
        }
        Ok(end)
    }

    fn push(&mut self, level: Level, offset: u64) -> Result<(), CodecError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(CodecError::TooDeep {
                offset,
                tag: level.tag,
                limit: MAX_DEPTH,
            });
        }
        self.stack.push(level);
        Ok(())
    }

    fn on_header<S: Sink>(&mut self, h: Header, sink: &mut S) -> Result<(), CodecError> {
        let offset = self.pos;
        self.pos += h.size as u64;
        let top = self.top();
        let (src, dst, kind) = (top.src, top.dst, top.kind);
        if h.tag.group() == 0xFFFE {
            return self.on_delimiter(h, offset, sink);
        }
        if matches!(kind, Kind::Sequence | Kind::Encapsulated) {
            return Err(CodecError::Unexpected {
                offset,
                tag: h.tag,
                what: "data element where an item was expected",
            });
        }
        if self.stack.len() == 1 && self.want.last().is_some_and(|max| h.tag > *max) {
            self.passed_wanted = true;
        }
        let vr = match h.vr {
            Some(vr) => vr,
            None => self.lookup(h.tag, h.len),
        };
        let undefined = h.len == UNDEFINED;
        let un_sequence = undefined && src.explicit && vr == Vr::UN;
        let is_seq =
            vr == Vr::SQ || un_sequence || (undefined && !src.explicit && h.tag != Tag::PIXEL_DATA);
        if is_seq {
            let (end, out_len, out_undefined) = if undefined {
                (None, UNDEFINED, false)
            } else {
                let end = self.check_end(h.tag, offset, h.len)?;
                if self.top().size_preserving() {
                    (Some(end), h.len, false)
                } else {
                    (Some(end), UNDEFINED, true)
                }
            };
            let (child_src, child_dst, out_vr) = if un_sequence {
                (ILE, ILE, Vr::UN)
            } else {
                (src, dst, Vr::SQ)
            };
            write_element_header(sink, dst, h.tag, out_vr, out_len);
            let (pixel_rep, bits_allocated) = (self.top().pixel_rep, self.top().bits_allocated);
            return self.push(
                Level {
                    kind: Kind::Sequence,
                    tag: h.tag,
                    end,
                    out_undefined,
                    src: child_src,
                    dst: child_dst,
                    pixel_rep,
                    bits_allocated,
                    creators: Vec::new(),
                },
                offset,
            );
        }
        if undefined {
            if h.tag != Tag::PIXEL_DATA {
                return Err(CodecError::UndefinedLength { offset, tag: h.tag });
            }
            // Encapsulated Pixel Data (PS3.5 §A.4): fragments pass through untouched.
            write_element_header(sink, dst, h.tag, Vr::OB, UNDEFINED);
            return self.push(
                Level {
                    kind: Kind::Encapsulated,
                    tag: h.tag,
                    end: None,
                    out_undefined: false,
                    src,
                    dst,
                    pixel_rep: None,
                    bits_allocated: None,
                    creators: Vec::new(),
                },
                offset,
            );
        }
        if h.len % 2 == 1 {
            return Err(CodecError::OddLength {
                offset,
                tag: h.tag,
                length: h.len,
            });
        }
        self.check_end(h.tag, offset, h.len)?;
        // A value too long for a 16-bit length field is written as UN (PS3.5 §6.2.2).
        let out_vr = if dst.explicit && !vr.has_long_length() && h.len > 0xFFFE {
            Vr::UN
        } else {
            vr
        };
        let mut unit = if src.big != dst.big {
            out_vr.swap_unit()
        } else {
            0
        };
        if unit == 2 && h.tag == Tag::PIXEL_DATA {
            // Native OW Pixel Data swaps per pixel cell when cells are wider than a word
            // (Bits Allocated 32 or 64); 8- and 16-bit cells swap as 16-bit words (PS3.5 §A.3).
            unit = match self.top().bits_allocated {
                Some(32) => 4,
                Some(64) => 8,
                _ => 2,
            };
        }
        if unit > 2 && (h.len as usize / unit) * unit != h.len as usize {
            return Err(CodecError::BadValueLength {
                offset,
                tag: h.tag,
                length: h.len,
                unit,
                vr: out_vr,
            });
        }
        // Group lengths (gggg,0000) are retired (PS3.5 §7.2) and wrong once sizes change.
        let emit = h.tag.element() != 0 || self.top().size_preserving();
        let capture_context = (h.tag == Tag::PIXEL_REPRESENTATION || h.tag == Tag::BITS_ALLOCATED)
            || h.tag.is_private_creator();
        let extract = self.stack.len() == 1 && self.want.binary_search(&h.tag).is_ok();
        if emit {
            write_element_header(sink, dst, h.tag, out_vr, h.len);
        }
        let v = ValueState {
            tag: h.tag,
            vr,
            remaining: h.len as u64,
            unit,
            emit,
            capture_context,
            extract,
            offset,
        };
        self.cap.clear();
        self.cap_truncated = false;
        self.carry_len = 0;
        if h.len == 0 {
            self.finish_value(v);
        } else {
            self.state = State::Value(v);
        }
        Ok(())
    }

    fn on_delimiter<S: Sink>(
        &mut self,
        h: Header,
        offset: u64,
        sink: &mut S,
    ) -> Result<(), CodecError> {
        let top = self.top();
        let (kind, src, dst, top_end) = (top.kind, top.src, top.dst, top.end);
        match h.tag {
            Tag::ITEM => match kind {
                Kind::Sequence => {
                    let (end, out_len, out_undefined) = if h.len == UNDEFINED {
                        (None, UNDEFINED, false)
                    } else {
                        let end = self.check_end(h.tag, offset, h.len)?;
                        if self.top().size_preserving() {
                            (Some(end), h.len, false)
                        } else {
                            (Some(end), UNDEFINED, true)
                        }
                    };
                    write_item_header(sink, dst, Tag::ITEM, out_len);
                    let (pixel_rep, bits_allocated) =
                        (self.top().pixel_rep, self.top().bits_allocated);
                    self.push(
                        Level {
                            kind: Kind::Item,
                            tag: Tag::ITEM,
                            end,
                            out_undefined,
                            src,
                            dst,
                            pixel_rep,
                            bits_allocated,
                            creators: Vec::new(),
                        },
                        offset,
                    )
                }
                Kind::Encapsulated => {
                    if h.len == UNDEFINED {
                        return Err(CodecError::UndefinedLength { offset, tag: h.tag });
                    }
                    if h.len % 2 == 1 {
                        return Err(CodecError::OddLength {
                            offset,
                            tag: h.tag,
                            length: h.len,
                        });
                    }
                    self.check_end(h.tag, offset, h.len)?;
                    write_item_header(sink, dst, Tag::ITEM, h.len);
                    let v = ValueState {
                        tag: h.tag,
                        vr: Vr::OB,
                        remaining: h.len as u64,
                        unit: 0,
                        emit: true,
                        capture_context: false,
                        extract: false,
                        offset,
                    };
                    if h.len > 0 {
                        self.state = State::Value(v);
                    }
                    Ok(())
                }
                _ => Err(CodecError::Unexpected {
                    offset,
                    tag: h.tag,
                    what: "item outside a sequence",
                }),
            },
            Tag::ITEM_DELIMITATION => {
                if kind != Kind::Item || top_end.is_some() {
                    return Err(CodecError::Unexpected {
                        offset,
                        tag: h.tag,
                        what: "item delimiter outside an undefined-length item",
                    });
                }
                self.stack.pop();
                write_item_header(sink, dst, Tag::ITEM_DELIMITATION, 0);
                Ok(())
            }
            Tag::SEQUENCE_DELIMITATION => {
                if !matches!(kind, Kind::Sequence | Kind::Encapsulated) || top_end.is_some() {
                    return Err(CodecError::Unexpected {
                        offset,
                        tag: h.tag,
                        what: "sequence delimiter outside an undefined-length sequence",
                    });
                }
                // Parsed in the sequence's own encoding, so written in its output encoding.
                self.stack.pop();
                write_item_header(sink, dst, Tag::SEQUENCE_DELIMITATION, 0);
                Ok(())
            }
            _ => Err(CodecError::Unexpected {
                offset,
                tag: h.tag,
                what: "unknown item tag in group FFFE",
            }),
        }
    }

    /// VR of an implicit-VR element: standard dictionary, then the private dictionary through
    /// the creator that reserved the block (PS3.5 §7.8.1), else UN. Ambiguous VRs are resolved
    /// by Pixel Representation and Bits Allocated (PS3.5 §A.1, §8).
    fn lookup(&self, tag: Tag, len: u32) -> Vr {
        let top = self.top();
        let by_pixel_rep = || {
            if top.pixel_rep == Some(1) {
                Vr::SS
            } else {
                Vr::US
            }
        };
        match standard_vr(tag) {
            Some(DictVr::One(vr)) => vr,
            Some(DictVr::UsSs) => by_pixel_rep(),
            Some(DictVr::UsSsOw) => {
                if len > 0xFFFE && len != UNDEFINED {
                    Vr::OW
                } else {
                    by_pixel_rep()
                }
            }
            Some(DictVr::UsOw) => {
                if len > 0xFFFE && len != UNDEFINED {
                    Vr::OW
                } else {
                    Vr::US
                }
            }
            Some(DictVr::ObOw) => {
                if tag == Tag::PIXEL_DATA && top.bits_allocated.is_some_and(|b| b <= 8) {
                    Vr::OB
                } else {
                    Vr::OW
                }
            }
            None => {
                if tag.is_private() && tag.element() >= 0x1000 {
                    let block = (tag.element() >> 8) as u8;
                    let creator = top
                        .creators
                        .iter()
                        .rev()
                        .find(|(g, b, _)| *g == tag.group() && *b == block)
                        .map(|c| &c.2);
                    if let Some(creator) = creator {
                        if let Some(vr) =
                            self.dict
                                .private
                                .get(creator, tag.group(), tag.element() as u8)
                        {
                            return vr;
                        }
                    }
                }
                Vr::UN
            }
        }
    }

    fn finish_value(&mut self, v: ValueState) {
        self.state = State::Header;
        if !(v.capture_context || v.extract) {
            return;
        }
        let src_big = self.top().src.big;
        let mut bytes = std::mem::take(&mut self.cap);
        let unit = v.vr.swap_unit();
        if src_big && unit > 1 {
            let whole = bytes.len() / unit * unit;
            swap_in_place(&mut bytes[..whole], unit);
        }
        let level = self.stack.last_mut().expect("level");
        if v.capture_context {
            if v.tag.is_private_creator() {
                let creator = String::from_utf8_lossy(&bytes)
                    .trim_matches([' ', '\0'])
                    .to_owned();
                level
                    .creators
                    .push((v.tag.group(), v.tag.element() as u8, creator));
            } else if bytes.len() >= 2 {
                let value = u16::from_le_bytes([bytes[0], bytes[1]]);
                if v.tag == Tag::PIXEL_REPRESENTATION {
                    level.pixel_rep = Some(value);
                } else {
                    level.bits_allocated = Some(value);
                }
            }
        }
        if v.extract {
            self.extracted.insert(
                v.tag,
                ExtractedValue {
                    vr: v.vr,
                    bytes,
                    truncated: self.cap_truncated,
                },
            );
        } else {
            self.cap = bytes;
        }
    }
}

fn rd16(b: &[u8], big: bool) -> u16 {
    let a = [b[0], b[1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn rd32(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

/// Parses one element or item header, or returns `None` when `b` is too short.
fn parse_header(b: &[u8], enc: Enc, offset: u64) -> Result<Option<Header>, CodecError> {
    if b.len() < 8 {
        return Ok(None);
    }
    let tag = Tag::new(rd16(b, enc.big), rd16(&b[2..], enc.big));
    if tag.group() == 0xFFFE || !enc.explicit {
        return Ok(Some(Header {
            tag,
            vr: None,
            len: rd32(&b[4..], enc.big),
            size: 8,
        }));
    }
    let vr = match Vr::from_bytes([b[4], b[5]]) {
        Some(vr) => vr,
        None => {
            return Err(CodecError::UndefinedVr {
                offset,
                tag,
                vr: String::from_utf8_lossy(&b[4..6])
                    .escape_default()
                    .to_string(),
            })
        }
    };
    if vr.has_long_length() {
        if b.len() < 12 {
            return Ok(None);
        }
        Ok(Some(Header {
            tag,
            vr: Some(vr),
            len: rd32(&b[8..], enc.big),
            size: 12,
        }))
    } else {
        Ok(Some(Header {
            tag,
            vr: Some(vr),
            len: rd16(&b[6..], enc.big) as u32,
            size: 8,
        }))
    }
}

fn put_tag(buf: &mut [u8], tag: Tag, big: bool) {
    let (g, e) = (tag.group(), tag.element());
    if big {
        buf[..2].copy_from_slice(&g.to_be_bytes());
        buf[2..4].copy_from_slice(&e.to_be_bytes());
    } else {
        buf[..2].copy_from_slice(&g.to_le_bytes());
        buf[2..4].copy_from_slice(&e.to_le_bytes());
    }
}

fn u32_bytes(v: u32, big: bool) -> [u8; 4] {
    if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    }
}

pub(crate) fn write_item_header<S: Sink>(sink: &mut S, enc: Enc, tag: Tag, len: u32) {
    let mut b = [0u8; 8];
    put_tag(&mut b, tag, enc.big);
    b[4..8].copy_from_slice(&u32_bytes(len, enc.big));
    sink.put(&b);
}

pub(crate) fn write_element_header<S: Sink>(sink: &mut S, enc: Enc, tag: Tag, vr: Vr, len: u32) {
    let mut b = [0u8; 12];
    put_tag(&mut b, tag, enc.big);
    if !enc.explicit {
        b[4..8].copy_from_slice(&u32_bytes(len, enc.big));
        sink.put(&b[..8]);
    } else if vr.has_long_length() {
        b[4..6].copy_from_slice(&vr.bytes());
        b[8..12].copy_from_slice(&u32_bytes(len, enc.big));
        sink.put(&b);
    } else {
        b[4..6].copy_from_slice(&vr.bytes());
        let l = len as u16;
        b[6..8].copy_from_slice(&if enc.big {
            l.to_be_bytes()
        } else {
            l.to_le_bytes()
        });
        sink.put(&b[..8]);
    }
}
