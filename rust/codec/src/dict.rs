//! Data dictionaries: the standard one (PS3.6, generated at build time from pydicom's
//! dictionary, see scripts/gen_dictionary.py) and private dictionaries fed at run time.
use crate::{Tag, Vr};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A dictionary VR, possibly ambiguous until the data set says more (PS3.5 §A.1, §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DictVr {
    One(Vr),
    /// "US or SS": SS when Pixel Representation is 1.
    UsSs,
    /// "OB or OW": OB when Bits Allocated ≤ 8 (Pixel Data), else OW.
    ObOw,
    /// "US or SS or OW": OW when the value is too long for a 16-bit length.
    UsSsOw,
    /// "US or OW": OW when the value is too long for a 16-bit length.
    UsOw,
}

include!(concat!(env!("OUT_DIR"), "/dictionary.rs"));

/// Looks a tag up in the standard dictionary (exact tags, then repeating groups such as
/// (60xx,3000)); group lengths (gggg,0000) are UL, private creators (gggg,0010-00FF) LO.
pub fn standard_vr(tag: Tag) -> Option<DictVr> {
    if tag.element() == 0 {
        return Some(DictVr::One(Vr::UL));
    }
    if tag.is_private() {
        return tag.is_private_creator().then_some(DictVr::One(Vr::LO));
    }
    if let Ok(i) = STANDARD.binary_search_by_key(&tag.0, |e| e.0) {
        return Some(STANDARD[i].1);
    }
    REPEATERS
        .iter()
        .find(|(mask, value, _)| tag.0 & mask == *value)
        .map(|e| e.2)
}

/// Number of entries in the generated standard dictionary.
pub fn standard_len() -> usize {
    STANDARD.len() + REPEATERS.len()
}

/// A private dictionary keyed by (Private Creator, group, low byte of the element)
/// (PS3.5 §7.8.1): element (gggg,xxEE) resolves through the creator that reserved block xx.
#[derive(Debug, Clone, Default)]
pub struct PrivateDictionary {
    entries: HashMap<String, HashMap<(u16, u8), Vr>>,
    len: usize,
}

impl PrivateDictionary {
    pub fn new() -> Self {
        Self::default()
    }
    /// Registers the VR of (group, xx`element_offset`) under `creator` (trailing spaces ignored).
    pub fn add(&mut self, creator: &str, group: u16, element_offset: u8, vr: Vr) {
        let block = self
            .entries
            .entry(normalise_creator(creator).to_owned())
            .or_default();
        if block.insert((group, element_offset), vr).is_none() {
            self.len += 1;
        }
    }
    pub fn get(&self, creator: &str, group: u16, element_offset: u8) -> Option<Vr> {
        self.entries
            .get(normalise_creator(creator))?
            .get(&(group, element_offset))
            .copied()
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn normalise_creator(s: &str) -> &str {
    s.trim_matches(|c: char| c == ' ' || c == '\0')
}

/// The dictionaries a conversion uses: the standard one (always) and a private one.
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    pub private: Arc<PrivateDictionary>,
}

impl Dictionary {
    /// Standard dictionary only: unknown private elements become UN.
    pub fn standard() -> Self {
        Self::default()
    }
    pub fn with_private(private: Arc<PrivateDictionary>) -> Self {
        Dictionary { private }
    }
}

/// The process-wide default private dictionary (set from Python by
/// `_core.set_default_private_dictionary`), used by [`Dictionary::with_default_private`].
static DEFAULT_PRIVATE: RwLock<Option<Arc<PrivateDictionary>>> = RwLock::new(None);

/// Replaces (or clears) the process-wide default private dictionary.
pub fn set_default_private_dictionary(d: Option<Arc<PrivateDictionary>>) {
    *DEFAULT_PRIVATE.write().unwrap_or_else(|e| e.into_inner()) = d;
}

impl Dictionary {
    /// Standard dictionary plus the current process-wide default private dictionary: what
    /// every conversion uses unless given another (e.g. the storage service's converters).
    pub fn with_default_private() -> Self {
        match DEFAULT_PRIVATE
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(d) => Dictionary::with_private(d.clone()),
            None => Dictionary::standard(),
        }
    }
}
