//! Typed errors of the Upper Layer. Every decoding error names the byte offset where it was found.
use thiserror::Error;

/// A PDU could not be decoded (PS3.8 §9.3). `offset` counts from the first byte of the PDU.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PduError {
    #[error("truncated PDU at offset {offset}: needed {needed} more byte(s) for {what}")]
    Truncated {
        offset: usize,
        needed: usize,
        what: &'static str,
    },
    #[error("unknown PDU type 0x{pdu_type:02X} at offset {offset}")]
    UnknownPduType { offset: usize, pdu_type: u8 },
    #[error("PDU length {length} at offset {offset} exceeds the limit of {limit} bytes")]
    TooLong {
        offset: usize,
        length: u64,
        limit: usize,
    },
    #[error("item 0x{item_type:02X} at offset {offset}: length {length} runs past the end of its container ({available} bytes left)")]
    ItemOverrun {
        offset: usize,
        item_type: u8,
        length: usize,
        available: usize,
    },
    #[error("unexpected item type 0x{item_type:02X} at offset {offset} in {context}")]
    UnexpectedItem {
        offset: usize,
        item_type: u8,
        context: &'static str,
    },
    #[error("invalid {field} at offset {offset}: {reason}")]
    InvalidField {
        offset: usize,
        field: &'static str,
        reason: String,
    },
}

impl PduError {
    /// The byte offset (from the start of the PDU) where the error was found.
    pub fn offset(&self) -> usize {
        match self {
            PduError::Truncated { offset, .. }
            | PduError::UnknownPduType { offset, .. }
            | PduError::TooLong { offset, .. }
            | PduError::ItemOverrun { offset, .. }
            | PduError::UnexpectedItem { offset, .. }
            | PduError::InvalidField { offset, .. } => *offset,
        }
    }
}

/// A command set (group 0000, PS3.7 §9.3 and §10.3) could not be decoded or is incomplete.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DimseError {
    #[error("truncated command set at offset {offset}")]
    Truncated { offset: usize },
    #[error("element ({group:04X},{element:04X}) at offset {offset} is not in group 0000")]
    WrongGroup {
        offset: usize,
        group: u16,
        element: u16,
    },
    #[error("element (0000,{element:04X}) at offset {offset} has length {length} past the end of the command set")]
    LengthOverrun {
        offset: usize,
        element: u16,
        length: u32,
    },
    #[error("element (0000,{element:04X}) at offset {offset} is out of order")]
    OutOfOrder { offset: usize, element: u16 },
    #[error("command set lacks required element (0000,{element:04X}) {name}")]
    Missing { element: u16, name: &'static str },
    #[error("element (0000,{element:04X}) has an invalid value: {reason}")]
    InvalidValue { element: u16, reason: String },
    #[error("command set too large ({size} bytes, limit {limit})")]
    TooLarge { size: usize, limit: usize },
}
