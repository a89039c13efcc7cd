//! Data Element Tags (PS3.5 §7.1).

/// A Data Element Tag, `(group << 16) | element`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub u32);

impl Tag {
    pub const fn new(group: u16, element: u16) -> Tag {
        Tag(((group as u32) << 16) | element as u32)
    }
    pub const fn group(self) -> u16 {
        (self.0 >> 16) as u16
    }
    pub const fn element(self) -> u16 {
        self.0 as u16
    }
    /// Private tags have an odd group number (PS3.5 §7.8.1).
    pub const fn is_private(self) -> bool {
        self.group() & 1 == 1
    }
    /// A Private Creator element (gggg,0010-00FF) in an odd group (PS3.5 §7.8.1).
    pub const fn is_private_creator(self) -> bool {
        self.is_private() && self.element() >= 0x10 && self.element() <= 0xFF
    }

    pub const ITEM: Tag = Tag(0xFFFE_E000);
    pub const ITEM_DELIMITATION: Tag = Tag(0xFFFE_E00D);
    pub const SEQUENCE_DELIMITATION: Tag = Tag(0xFFFE_E0DD);
    pub const PIXEL_DATA: Tag = Tag(0x7FE0_0010);
    pub const BITS_ALLOCATED: Tag = Tag(0x0028_0100);
    pub const PIXEL_REPRESENTATION: Tag = Tag(0x0028_0103);
    pub const TRANSFER_SYNTAX_UID: Tag = Tag(0x0002_0010);
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({:04X},{:04X})", self.group(), self.element())
    }
}
