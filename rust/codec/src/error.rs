//! Typed codec errors; each carries the byte offset (in the data set stream, after
//! inflation for Deflated syntaxes) and, where known, the tag.
use crate::Tag;

/// Tag shown in messages, or "-" when the error is not about one element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaybeTag(pub Option<Tag>);

impl std::fmt::Display for MaybeTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(t) => write!(f, "{t}"),
            None => f.write_str("-"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("truncated data set at byte {offset} (inside {tag}): {what}")]
    Truncated {
        offset: u64,
        tag: MaybeTag,
        what: &'static str,
    },
    #[error("element {tag} at byte {offset}: length {length} runs past the end of {container} (byte {end})")]
    LengthPastEnd {
        offset: u64,
        tag: Tag,
        length: u32,
        end: u64,
        container: &'static str,
    },
    #[error(
        "element {tag} at byte {offset}: odd length {length} (PS3.5 §7.1.1 requires even lengths)"
    )]
    OddLength { offset: u64, tag: Tag, length: u32 },
    #[error(
        "element {tag} at byte {offset}: length {length} is not a multiple of {unit} for VR {vr}"
    )]
    BadValueLength {
        offset: u64,
        tag: Tag,
        length: u32,
        unit: usize,
        vr: crate::Vr,
    },
    #[error("element {tag} at byte {offset}: VR {vr:?} is not defined by PS3.5 §6.2")]
    UndefinedVr { offset: u64, tag: Tag, vr: String },
    #[error("element {tag} at byte {offset}: undefined length is only allowed for SQ, UN and Pixel Data")]
    UndefinedLength { offset: u64, tag: Tag },
    #[error("unexpected {tag} at byte {offset}: {what}")]
    Unexpected {
        offset: u64,
        tag: Tag,
        what: &'static str,
    },
    #[error("element {tag} at byte {offset}: nesting deeper than {limit} levels")]
    TooDeep { offset: u64, tag: Tag, limit: usize },
    #[error("deflate stream error at byte {offset}: {message}")]
    Deflate { offset: u64, message: String },
    #[error("cannot convert {from} to {to}: only Implicit VR LE, Explicit VR LE/BE and Deflated Explicit VR LE are converted (encapsulated syntaxes pass through unchanged)")]
    UnsupportedConversion { from: String, to: String },
    #[error("not a DICOM Part 10 file at byte {offset}: {what}")]
    NotPart10 { offset: u64, what: String },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl CodecError {
    /// Byte offset of the problem, where one applies.
    pub fn offset(&self) -> Option<u64> {
        use CodecError::*;
        match self {
            Truncated { offset, .. }
            | LengthPastEnd { offset, .. }
            | OddLength { offset, .. }
            | BadValueLength { offset, .. }
            | UndefinedVr { offset, .. }
            | UndefinedLength { offset, .. }
            | Unexpected { offset, .. }
            | TooDeep { offset, .. }
            | Deflate { offset, .. }
            | NotPart10 { offset, .. } => Some(*offset),
            UnsupportedConversion { .. } | Io(_) => None,
        }
    }
    /// Tag of the offending element, where one applies.
    pub fn tag(&self) -> Option<Tag> {
        use CodecError::*;
        match self {
            Truncated { tag, .. } => tag.0,
            LengthPastEnd { tag, .. }
            | OddLength { tag, .. }
            | BadValueLength { tag, .. }
            | UndefinedVr { tag, .. }
            | UndefinedLength { tag, .. }
            | Unexpected { tag, .. }
            | TooDeep { tag, .. } => Some(*tag),
            _ => None,
        }
    }
}
