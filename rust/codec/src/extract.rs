//! Values of chosen top-level attributes, captured while the data set streams past.
use crate::{Tag, Vr};

/// One extracted value: its VR and its bytes, converted to little endian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedValue {
    pub vr: Vr,
    pub bytes: Vec<u8>,
    /// The value was longer than [`crate::MAX_EXTRACT_LEN`] and has been cut.
    pub truncated: bool,
}

impl ExtractedValue {
    /// The value as text with the padding of PS3.5 §6.2 removed (trailing spaces and NULs,
    /// leading spaces). Multi-valued strings keep their backslashes.
    pub fn as_string(&self) -> String {
        String::from_utf8_lossy(&self.bytes)
            .trim_end_matches([' ', '\0'])
            .trim_start_matches(' ')
            .to_owned()
    }

    /// The first value as an unsigned integer, for US/UL/SS/SL/IS (e.g. Number of Frames).
    pub fn as_u64(&self) -> Option<u64> {
        let b = &self.bytes;
        match self.vr {
            Vr::US if b.len() >= 2 => Some(u16::from_le_bytes([b[0], b[1]]) as u64),
            Vr::UL if b.len() >= 4 => Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64),
            Vr::SS if b.len() >= 2 => u64::try_from(i16::from_le_bytes([b[0], b[1]])).ok(),
            Vr::SL if b.len() >= 4 => {
                u64::try_from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
            }
            Vr::IS => self.as_string().split('\\').next()?.trim().parse().ok(),
            _ => None,
        }
    }
}

/// Extracted values in the order met.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    values: Vec<(Tag, ExtractedValue)>,
}

impl Extracted {
    pub(crate) fn insert(&mut self, tag: Tag, value: ExtractedValue) {
        if let Some(slot) = self.values.iter_mut().find(|(t, _)| *t == tag) {
            slot.1 = value;
        } else {
            self.values.push((tag, value));
        }
    }
    pub fn get(&self, tag: Tag) -> Option<&ExtractedValue> {
        self.values.iter().find(|(t, _)| *t == tag).map(|(_, v)| v)
    }
    /// Trimmed string value of `tag`, if it was present.
    pub fn string(&self, tag: Tag) -> Option<String> {
        self.get(tag).map(ExtractedValue::as_string)
    }
    pub fn iter(&self) -> impl Iterator<Item = (Tag, &ExtractedValue)> {
        self.values.iter().map(|(t, v)| (*t, v))
    }
    pub fn len(&self) -> usize {
        self.values.len()
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}
