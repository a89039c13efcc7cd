//! DIMSE command sets (PS3.7 §6.3, §9.3, §10.3, Annex E): group 0000 elements, always encoded
//! Implicit VR Little Endian with a leading Command Group Length (0000,0000).
//!
//! A [`Command`] is an ordered map of element number → raw value bytes, so every C- and N-
//! command field (and retired ones a peer may still send) round-trips; typed accessors cover
//! the fields the services use.
use crate::error::DimseError;
use std::collections::BTreeMap;

/// Command Field values (PS3.7 Annex E.1).
pub mod command_field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_STORE_RSP: u16 = 0x8001;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_GET_RSP: u16 = 0x8010;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_FIND_RSP: u16 = 0x8020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_MOVE_RSP: u16 = 0x8021;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_ECHO_RSP: u16 = 0x8030;
    pub const N_EVENT_REPORT_RQ: u16 = 0x0100;
    pub const N_EVENT_REPORT_RSP: u16 = 0x8100;
    pub const N_GET_RQ: u16 = 0x0110;
    pub const N_GET_RSP: u16 = 0x8110;
    pub const N_SET_RQ: u16 = 0x0120;
    pub const N_SET_RSP: u16 = 0x8120;
    pub const N_ACTION_RQ: u16 = 0x0130;
    pub const N_ACTION_RSP: u16 = 0x8130;
    pub const N_CREATE_RQ: u16 = 0x0140;
    pub const N_CREATE_RSP: u16 = 0x8140;
    pub const N_DELETE_RQ: u16 = 0x0150;
    pub const N_DELETE_RSP: u16 = 0x8150;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;

    /// The message name (e.g. "C-STORE-RQ") of a command field, if it is one PS3.7 defines.
    pub fn name(field: u16) -> Option<&'static str> {
        Some(match field {
            C_STORE_RQ => "C-STORE-RQ",
            C_STORE_RSP => "C-STORE-RSP",
            C_GET_RQ => "C-GET-RQ",
            C_GET_RSP => "C-GET-RSP",
            C_FIND_RQ => "C-FIND-RQ",
            C_FIND_RSP => "C-FIND-RSP",
            C_MOVE_RQ => "C-MOVE-RQ",
            C_MOVE_RSP => "C-MOVE-RSP",
            C_ECHO_RQ => "C-ECHO-RQ",
            C_ECHO_RSP => "C-ECHO-RSP",
            N_EVENT_REPORT_RQ => "N-EVENT-REPORT-RQ",
            N_EVENT_REPORT_RSP => "N-EVENT-REPORT-RSP",
            N_GET_RQ => "N-GET-RQ",
            N_GET_RSP => "N-GET-RSP",
            N_SET_RQ => "N-SET-RQ",
            N_SET_RSP => "N-SET-RSP",
            N_ACTION_RQ => "N-ACTION-RQ",
            N_ACTION_RSP => "N-ACTION-RSP",
            N_CREATE_RQ => "N-CREATE-RQ",
            N_CREATE_RSP => "N-CREATE-RSP",
            N_DELETE_RQ => "N-DELETE-RQ",
            N_DELETE_RSP => "N-DELETE-RSP",
            C_CANCEL_RQ => "C-CANCEL-RQ",
            _ => return None,
        })
    }
}

/// Element numbers of group 0000 (PS3.7 Annex E.1, E.2 retired).
pub mod tag {
    pub const COMMAND_GROUP_LENGTH: u16 = 0x0000;
    pub const AFFECTED_SOP_CLASS_UID: u16 = 0x0002;
    pub const REQUESTED_SOP_CLASS_UID: u16 = 0x0003;
    pub const COMMAND_FIELD: u16 = 0x0100;
    pub const MESSAGE_ID: u16 = 0x0110;
    pub const MESSAGE_ID_BEING_RESPONDED_TO: u16 = 0x0120;
    pub const MOVE_DESTINATION: u16 = 0x0600;
    pub const PRIORITY: u16 = 0x0700;
    pub const COMMAND_DATA_SET_TYPE: u16 = 0x0800;
    pub const STATUS: u16 = 0x0900;
    pub const OFFENDING_ELEMENT: u16 = 0x0901;
    pub const ERROR_COMMENT: u16 = 0x0902;
    pub const ERROR_ID: u16 = 0x0903;
    pub const AFFECTED_SOP_INSTANCE_UID: u16 = 0x1000;
    pub const REQUESTED_SOP_INSTANCE_UID: u16 = 0x1001;
    pub const EVENT_TYPE_ID: u16 = 0x1002;
    pub const ATTRIBUTE_IDENTIFIER_LIST: u16 = 0x1005;
    pub const ACTION_TYPE_ID: u16 = 0x1008;
    pub const NUMBER_OF_REMAINING_SUBOPERATIONS: u16 = 0x1020;
    pub const NUMBER_OF_COMPLETED_SUBOPERATIONS: u16 = 0x1021;
    pub const NUMBER_OF_FAILED_SUBOPERATIONS: u16 = 0x1022;
    pub const NUMBER_OF_WARNING_SUBOPERATIONS: u16 = 0x1023;
    pub const MOVE_ORIGINATOR_AE_TITLE: u16 = 0x1030;
    pub const MOVE_ORIGINATOR_MESSAGE_ID: u16 = 0x1031;
}

/// The keywords of the group 0000 elements (PS3.6 Table E.1-1, as pydicom and pynetdicom name
/// them), by element number.
pub const KEYWORDS: &[(u16, &str)] = &[
    (tag::COMMAND_GROUP_LENGTH, "CommandGroupLength"),
    (tag::AFFECTED_SOP_CLASS_UID, "AffectedSOPClassUID"),
    (tag::REQUESTED_SOP_CLASS_UID, "RequestedSOPClassUID"),
    (tag::COMMAND_FIELD, "CommandField"),
    (tag::MESSAGE_ID, "MessageID"),
    (
        tag::MESSAGE_ID_BEING_RESPONDED_TO,
        "MessageIDBeingRespondedTo",
    ),
    (tag::MOVE_DESTINATION, "MoveDestination"),
    (tag::PRIORITY, "Priority"),
    (tag::COMMAND_DATA_SET_TYPE, "CommandDataSetType"),
    (tag::STATUS, "Status"),
    (tag::OFFENDING_ELEMENT, "OffendingElement"),
    (tag::ERROR_COMMENT, "ErrorComment"),
    (tag::ERROR_ID, "ErrorID"),
    (tag::AFFECTED_SOP_INSTANCE_UID, "AffectedSOPInstanceUID"),
    (tag::REQUESTED_SOP_INSTANCE_UID, "RequestedSOPInstanceUID"),
    (tag::EVENT_TYPE_ID, "EventTypeID"),
    (tag::ATTRIBUTE_IDENTIFIER_LIST, "AttributeIdentifierList"),
    (tag::ACTION_TYPE_ID, "ActionTypeID"),
    (
        tag::NUMBER_OF_REMAINING_SUBOPERATIONS,
        "NumberOfRemainingSuboperations",
    ),
    (
        tag::NUMBER_OF_COMPLETED_SUBOPERATIONS,
        "NumberOfCompletedSuboperations",
    ),
    (
        tag::NUMBER_OF_FAILED_SUBOPERATIONS,
        "NumberOfFailedSuboperations",
    ),
    (
        tag::NUMBER_OF_WARNING_SUBOPERATIONS,
        "NumberOfWarningSuboperations",
    ),
    (
        tag::MOVE_ORIGINATOR_AE_TITLE,
        "MoveOriginatorApplicationEntityTitle",
    ),
    (tag::MOVE_ORIGINATOR_MESSAGE_ID, "MoveOriginatorMessageID"),
];

/// The element number of a group 0000 keyword (see [`KEYWORDS`]).
pub fn element_for_keyword(keyword: &str) -> Option<u16> {
    KEYWORDS
        .iter()
        .find(|(_, k)| *k == keyword)
        .map(|(e, _)| *e)
}

/// Value representation of a command element, for padding and typed access (PS3.7 Annex E.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandVr {
    UI,
    US,
    UL,
    AE,
    AT,
    LO,
    /// Retired or unknown elements: kept as raw bytes.
    Other,
}

/// The VR of a group 0000 element.
pub fn command_vr(element: u16) -> CommandVr {
    use tag::*;
    match element {
        COMMAND_GROUP_LENGTH => CommandVr::UL,
        AFFECTED_SOP_CLASS_UID
        | REQUESTED_SOP_CLASS_UID
        | AFFECTED_SOP_INSTANCE_UID
        | REQUESTED_SOP_INSTANCE_UID => CommandVr::UI,
        COMMAND_FIELD
        | MESSAGE_ID
        | MESSAGE_ID_BEING_RESPONDED_TO
        | PRIORITY
        | COMMAND_DATA_SET_TYPE
        | STATUS
        | ERROR_ID
        | EVENT_TYPE_ID
        | ACTION_TYPE_ID
        | NUMBER_OF_REMAINING_SUBOPERATIONS
        | NUMBER_OF_COMPLETED_SUBOPERATIONS
        | NUMBER_OF_FAILED_SUBOPERATIONS
        | NUMBER_OF_WARNING_SUBOPERATIONS
        | MOVE_ORIGINATOR_MESSAGE_ID => CommandVr::US,
        MOVE_DESTINATION | MOVE_ORIGINATOR_AE_TITLE => CommandVr::AE,
        OFFENDING_ELEMENT | ATTRIBUTE_IDENTIFIER_LIST => CommandVr::AT,
        ERROR_COMMENT => CommandVr::LO,
        _ => CommandVr::Other,
    }
}

/// Command Data Set Type value meaning "no data set" (PS3.7 §9.3.1).
pub const NO_DATA_SET: u16 = 0x0101;
/// Conventional value meaning "a data set follows" (any value other than 0x0101 does).
pub const DATA_SET_PRESENT: u16 = 0x0000;
/// Upper bound on an encoded command set; real ones are a few hundred bytes.
pub const MAX_COMMAND_SET: usize = 64 * 1024;

/// A DIMSE command set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Command {
    elements: BTreeMap<u16, Vec<u8>>,
}

impl Command {
    pub fn new() -> Self {
        Self::default()
    }

    /// Raw value bytes of element (0000,`element`), as encoded (with padding).
    pub fn get_raw(&self, element: u16) -> Option<&[u8]> {
        self.elements.get(&element).map(|v| v.as_slice())
    }
    /// Sets raw value bytes; odd lengths are padded as the VR requires (PS3.5 §7.1.1).
    pub fn set_raw(&mut self, element: u16, mut value: Vec<u8>) {
        if value.len() % 2 == 1 {
            value.push(match command_vr(element) {
                CommandVr::UI | CommandVr::Other => 0,
                _ => b' ',
            });
        }
        self.elements.insert(element, value);
    }
    pub fn remove(&mut self, element: u16) -> Option<Vec<u8>> {
        self.elements.remove(&element)
    }
    pub fn contains(&self, element: u16) -> bool {
        self.elements.contains_key(&element)
    }
    /// Element numbers present, in ascending order (group length excluded).
    pub fn elements(&self) -> impl Iterator<Item = (u16, &[u8])> {
        self.elements
            .iter()
            .filter(|(k, _)| **k != 0)
            .map(|(k, v)| (*k, v.as_slice()))
    }

    pub fn get_us(&self, element: u16) -> Option<u16> {
        let v = self.elements.get(&element)?;
        (v.len() >= 2).then(|| u16::from_le_bytes([v[0], v[1]]))
    }
    pub fn set_us(&mut self, element: u16, value: u16) {
        self.elements.insert(element, value.to_le_bytes().to_vec());
    }
    pub fn get_ul(&self, element: u16) -> Option<u32> {
        let v = self.elements.get(&element)?;
        (v.len() >= 4).then(|| u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
    }
    /// A string value with its padding (trailing NUL or spaces, leading spaces for AE) removed.
    pub fn get_str(&self, element: u16) -> Option<String> {
        let v = self.elements.get(&element)?;
        let s = String::from_utf8_lossy(v);
        Some(
            s.trim_end_matches(['\0', ' '])
                .trim_start_matches(' ')
                .to_string(),
        )
    }
    pub fn set_str(&mut self, element: u16, value: &str) {
        self.set_raw(element, value.as_bytes().to_vec());
    }
    /// Attribute tags of an AT element (e.g. Offending Element), as (group << 16 | element).
    pub fn get_tags(&self, element: u16) -> Option<Vec<u32>> {
        let v = self.elements.get(&element)?;
        Some(
            v.chunks_exact(4)
                .map(|c| {
                    ((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)
                        | u16::from_le_bytes([c[2], c[3]]) as u32
                })
                .collect(),
        )
    }
    pub fn set_tags(&mut self, element: u16, tags: &[u32]) {
        let mut v = Vec::with_capacity(tags.len() * 4);
        for t in tags {
            v.extend_from_slice(&((t >> 16) as u16).to_le_bytes());
            v.extend_from_slice(&(*t as u16).to_le_bytes());
        }
        self.elements.insert(element, v);
    }

    pub fn command_field(&self) -> Option<u16> {
        self.get_us(tag::COMMAND_FIELD)
    }
    pub fn message_id(&self) -> Option<u16> {
        self.get_us(tag::MESSAGE_ID)
    }
    pub fn status(&self) -> Option<u16> {
        self.get_us(tag::STATUS)
    }
    /// True when a data set follows this command (Command Data Set Type ≠ 0x0101).
    pub fn has_data_set(&self) -> bool {
        self.get_us(tag::COMMAND_DATA_SET_TYPE)
            .is_some_and(|v| v != NO_DATA_SET)
    }
    pub fn is_request(&self) -> bool {
        self.command_field().is_some_and(|f| f & 0x8000 == 0)
    }

    /// Encodes the command set: (0000,0000) group length first, then elements in ascending order.
    pub fn encode(&self) -> Vec<u8> {
        let body_len: usize = self.elements().map(|(_, v)| 8 + v.len()).sum();
        let mut out = Vec::with_capacity(12 + body_len);
        out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        for (el, v) in self.elements() {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&el.to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
        out
    }

    /// Decodes a command set. Elements must be in group 0000, in ascending order, and lie within
    /// the buffer; Command Field must be present. A Command Group Length that disagrees with the
    /// buffer is tolerated (some peers miscount) but the elements themselves are bounds-checked.
    pub fn decode(bytes: &[u8]) -> Result<Command, DimseError> {
        if bytes.len() > MAX_COMMAND_SET {
            return Err(DimseError::TooLarge {
                size: bytes.len(),
                limit: MAX_COMMAND_SET,
            });
        }
        let mut elements = BTreeMap::new();
        let mut pos = 0usize;
        let mut last: Option<u16> = None;
        while pos < bytes.len() {
            if bytes.len() - pos < 8 {
                return Err(DimseError::Truncated { offset: pos });
            }
            let group = u16::from_le_bytes([bytes[pos], bytes[pos + 1]]);
            let element = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
            let length = u32::from_le_bytes([
                bytes[pos + 4],
                bytes[pos + 5],
                bytes[pos + 6],
                bytes[pos + 7],
            ]);
            if group != 0 {
                return Err(DimseError::WrongGroup {
                    offset: pos,
                    group,
                    element,
                });
            }
            if last.is_some_and(|l| element <= l) {
                return Err(DimseError::OutOfOrder {
                    offset: pos,
                    element,
                });
            }
            if length as usize > bytes.len() - pos - 8 {
                return Err(DimseError::LengthOverrun {
                    offset: pos,
                    element,
                    length,
                });
            }
            let value = &bytes[pos + 8..pos + 8 + length as usize];
            elements.insert(element, value.to_vec());
            last = Some(element);
            pos += 8 + length as usize;
        }
        let cmd = Command { elements };
        if cmd.command_field().is_none() {
            return Err(DimseError::Missing {
                element: tag::COMMAND_FIELD,
                name: "Command Field",
            });
        }
        Ok(cmd)
    }
}

// ---------------------------------------------------------------------------------------------
// Builders for the messages the services send (PS3.7 §9.3, §10.3).
// ---------------------------------------------------------------------------------------------

/// Builds a request command with the fields every request carries.
pub fn request(field: u16, message_id: u16, sop_class_uid: &str, has_data_set: bool) -> Command {
    let mut c = Command::new();
    let class_tag = match field {
        command_field::N_GET_RQ
        | command_field::N_SET_RQ
        | command_field::N_ACTION_RQ
        | command_field::N_DELETE_RQ => tag::REQUESTED_SOP_CLASS_UID,
        _ => tag::AFFECTED_SOP_CLASS_UID,
    };
    if !sop_class_uid.is_empty() {
        c.set_str(class_tag, sop_class_uid);
    }
    c.set_us(tag::COMMAND_FIELD, field);
    c.set_us(tag::MESSAGE_ID, message_id);
    c.set_us(
        tag::COMMAND_DATA_SET_TYPE,
        if has_data_set {
            DATA_SET_PRESENT
        } else {
            NO_DATA_SET
        },
    );
    c
}

/// Builds the response to `rq` with the given status: Command Field with bit 15 set, Message ID
/// Being Responded To, and the Affected SOP Class/Instance UIDs copied from the request.
pub fn response_to(rq: &Command, status: u16, has_data_set: bool) -> Command {
    let mut c = Command::new();
    let field = rq.command_field().unwrap_or(0) | 0x8000;
    let class = rq
        .get_raw(tag::AFFECTED_SOP_CLASS_UID)
        .or_else(|| rq.get_raw(tag::REQUESTED_SOP_CLASS_UID));
    if let Some(v) = class {
        c.set_raw(tag::AFFECTED_SOP_CLASS_UID, v.to_vec());
    }
    c.set_us(tag::COMMAND_FIELD, field);
    c.set_us(
        tag::MESSAGE_ID_BEING_RESPONDED_TO,
        rq.message_id().unwrap_or(0),
    );
    c.set_us(
        tag::COMMAND_DATA_SET_TYPE,
        if has_data_set {
            DATA_SET_PRESENT
        } else {
            NO_DATA_SET
        },
    );
    c.set_us(tag::STATUS, status);
    let inst = rq
        .get_raw(tag::AFFECTED_SOP_INSTANCE_UID)
        .or_else(|| rq.get_raw(tag::REQUESTED_SOP_INSTANCE_UID));
    if let Some(v) = inst {
        if field != command_field::C_FIND_RSP
            && field != command_field::C_GET_RSP
            && field != command_field::C_MOVE_RSP
        {
            c.set_raw(tag::AFFECTED_SOP_INSTANCE_UID, v.to_vec());
        }
    }
    c
}

#[cfg(test)]
mod tests {
    //! Command sets of every C- and N- message (PS3.7 §9.3, §10.3, Annex E) and the typed
    //! error for each kind of malformed command set.
    use super::*;

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const INSTANCE: &str = "1.2.3.4.5.6.7"; // odd length: padded with NUL

    /// Encodes, checks the group length, decodes and checks equality; returns the bytes.
    fn roundtrip(cmd: &Command) -> Vec<u8> {
        let bytes = cmd.encode();
        assert_eq!(
            &bytes[..8],
            &[0, 0, 0, 0, 4, 0, 0, 0],
            "group length header"
        );
        let gl = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(gl, bytes.len() - 12, "group length value");
        assert_eq!(bytes.len() % 2, 0, "every value has even length");
        let back = Command::decode(&bytes).expect("decodes");
        assert!(back.elements().eq(cmd.elements()));
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.get_ul(tag::COMMAND_GROUP_LENGTH), Some(gl as u32));
        bytes
    }

    #[test]
    fn c_echo_rq_bytes() {
        let c = request(command_field::C_ECHO_RQ, 1, "1.2.840.10008.1.1", false);
        let bytes = roundtrip(&c);
        let mut want = vec![0, 0, 0, 0, 4, 0, 0, 0, 56, 0, 0, 0];
        want.extend_from_slice(&[0, 0, 2, 0, 18, 0, 0, 0]);
        want.extend_from_slice(b"1.2.840.10008.1.1\0");
        want.extend_from_slice(&[0, 0, 0, 1, 2, 0, 0, 0, 0x30, 0]);
        want.extend_from_slice(&[0, 0, 0x10, 1, 2, 0, 0, 0, 1, 0]);
        want.extend_from_slice(&[0, 0, 0, 8, 2, 0, 0, 0, 1, 1]);
        assert_eq!(bytes, want);
        assert!(c.is_request() && !c.has_data_set());
        assert_eq!(command_field::name(0x0030), Some("C-ECHO-RQ"));
        assert_eq!(command_field::name(0x1234), None);
    }

    #[test]
    fn c_store_rq_and_rsp_with_every_field() {
        let mut rq = request(command_field::C_STORE_RQ, 17, CT, true);
        rq.set_str(tag::AFFECTED_SOP_INSTANCE_UID, INSTANCE);
        rq.set_us(tag::PRIORITY, 1);
        rq.set_str(tag::MOVE_ORIGINATOR_AE_TITLE, "XELERIS");
        rq.set_us(tag::MOVE_ORIGINATOR_MESSAGE_ID, 5);
        roundtrip(&rq);
        assert!(rq.has_data_set());
        assert_eq!(
            rq.get_raw(tag::AFFECTED_SOP_INSTANCE_UID),
            Some(&b"1.2.3.4.5.6.7\0"[..])
        );
        assert_eq!(
            rq.get_raw(tag::MOVE_ORIGINATOR_AE_TITLE),
            Some(&b"XELERIS "[..])
        );
        assert_eq!(
            rq.get_str(tag::AFFECTED_SOP_INSTANCE_UID).as_deref(),
            Some(INSTANCE)
        );
        assert_eq!(
            rq.get_str(tag::MOVE_ORIGINATOR_AE_TITLE).as_deref(),
            Some("XELERIS")
        );

        let mut rsp = response_to(&rq, 0xB000, false);
        rsp.set_tags(tag::OFFENDING_ELEMENT, &[0x0028_0010]);
        rsp.set_str(tag::ERROR_COMMENT, "Coercion of data elements");
        roundtrip(&rsp);
        assert_eq!(rsp.command_field(), Some(command_field::C_STORE_RSP));
        assert_eq!(rsp.get_us(tag::MESSAGE_ID_BEING_RESPONDED_TO), Some(17));
        assert_eq!(rsp.status(), Some(0xB000));
        assert!(!rsp.is_request() && !rsp.has_data_set());
        assert_eq!(
            rsp.get_str(tag::AFFECTED_SOP_CLASS_UID).as_deref(),
            Some(CT)
        );
        assert_eq!(
            rsp.get_str(tag::AFFECTED_SOP_INSTANCE_UID).as_deref(),
            Some(INSTANCE)
        );
        assert_eq!(
            rsp.get_tags(tag::OFFENDING_ELEMENT),
            Some(vec![0x0028_0010])
        );
        assert_eq!(
            rsp.get_raw(tag::OFFENDING_ELEMENT),
            Some(&[0x28, 0, 0x10, 0][..])
        );
        assert_eq!(
            rsp.get_str(tag::ERROR_COMMENT).as_deref(),
            Some("Coercion of data elements")
        );
        assert_eq!(rsp.get_raw(tag::ERROR_COMMENT).unwrap().len(), 26);
    }

    #[test]
    fn c_find_c_get_c_move_with_sub_operation_counts() {
        let qr = "1.2.840.10008.5.1.4.1.2.2.1";
        let mut find = request(command_field::C_FIND_RQ, 3, qr, true);
        find.set_us(tag::PRIORITY, 0);
        roundtrip(&find);
        let pending = response_to(&find, 0xFF00, true);
        roundtrip(&pending);
        assert_eq!(pending.command_field(), Some(command_field::C_FIND_RSP));
        assert!(pending.has_data_set());

        let mut mv = request(
            command_field::C_MOVE_RQ,
            4,
            "1.2.840.10008.5.1.4.1.2.2.2",
            true,
        );
        mv.set_us(tag::PRIORITY, 2);
        mv.set_str(tag::MOVE_DESTINATION, "PACS");
        roundtrip(&mv);
        assert_eq!(mv.get_raw(tag::MOVE_DESTINATION), Some(&b"PACS"[..]));

        let mut get = request(
            command_field::C_GET_RQ,
            5,
            "1.2.840.10008.5.1.4.1.2.2.3",
            true,
        );
        get.set_us(tag::PRIORITY, 0);
        roundtrip(&get);

        for (rq, field) in [
            (&mv, command_field::C_MOVE_RSP),
            (&get, command_field::C_GET_RSP),
        ] {
            let mut rsp = response_to(rq, 0xB000, false);
            rsp.set_us(tag::NUMBER_OF_REMAINING_SUBOPERATIONS, 0);
            rsp.set_us(tag::NUMBER_OF_COMPLETED_SUBOPERATIONS, 10);
            rsp.set_us(tag::NUMBER_OF_FAILED_SUBOPERATIONS, 2);
            rsp.set_us(tag::NUMBER_OF_WARNING_SUBOPERATIONS, 1);
            rsp.set_tags(tag::OFFENDING_ELEMENT, &[]);
            let bytes = roundtrip(&rsp);
            let back = Command::decode(&bytes).unwrap();
            assert_eq!(back.command_field(), Some(field));
            assert_eq!(
                back.get_us(tag::NUMBER_OF_COMPLETED_SUBOPERATIONS),
                Some(10)
            );
            assert_eq!(back.get_us(tag::NUMBER_OF_FAILED_SUBOPERATIONS), Some(2));
            assert_eq!(back.get_us(tag::NUMBER_OF_WARNING_SUBOPERATIONS), Some(1));
            assert_eq!(back.get_us(tag::NUMBER_OF_REMAINING_SUBOPERATIONS), Some(0));
            assert_eq!(back.get_tags(tag::OFFENDING_ELEMENT), Some(vec![]));
        }
        // C-CANCEL-RQ carries only the message ID being responded to.
        let mut cancel = Command::new();
        cancel.set_us(tag::COMMAND_FIELD, command_field::C_CANCEL_RQ);
        cancel.set_us(tag::MESSAGE_ID_BEING_RESPONDED_TO, 3);
        cancel.set_us(tag::COMMAND_DATA_SET_TYPE, NO_DATA_SET);
        roundtrip(&cancel);
    }

    #[test]
    fn responses_to_queries_carry_no_affected_instance() {
        for field in [
            command_field::C_FIND_RQ,
            command_field::C_GET_RQ,
            command_field::C_MOVE_RQ,
        ] {
            let mut rq = request(field, 9, "1.2.3", true);
            rq.set_str(tag::AFFECTED_SOP_INSTANCE_UID, INSTANCE);
            let rsp = response_to(&rq, 0, false);
            assert!(!rsp.contains(tag::AFFECTED_SOP_INSTANCE_UID), "{field:04X}");
            assert_eq!(rsp.command_field(), Some(field | 0x8000));
        }
    }

    #[test]
    fn n_services_with_every_field() {
        let printer = "1.2.840.10008.5.1.1.16";
        let inst = "1.2.840.10008.5.1.1.17";
        // Requests addressed to an existing instance use the Requested UIDs (PS3.7 §10.3).
        for (field, ds) in [
            (command_field::N_GET_RQ, false),
            (command_field::N_SET_RQ, true),
            (command_field::N_ACTION_RQ, true),
            (command_field::N_DELETE_RQ, false),
        ] {
            let mut rq = request(field, 30, printer, ds);
            rq.set_str(tag::REQUESTED_SOP_INSTANCE_UID, inst);
            match field {
                command_field::N_GET_RQ => {
                    rq.set_tags(tag::ATTRIBUTE_IDENTIFIER_LIST, &[0x2110_0010, 0x2110_0020])
                }
                command_field::N_ACTION_RQ => rq.set_us(tag::ACTION_TYPE_ID, 1),
                _ => {}
            }
            roundtrip(&rq);
            assert!(rq.contains(tag::REQUESTED_SOP_CLASS_UID));
            assert!(!rq.contains(tag::AFFECTED_SOP_CLASS_UID));
            assert_eq!(rq.has_data_set(), ds);
            // The response names the instance as Affected (PS3.7 §10.3.x.1.2).
            let mut rsp = response_to(&rq, 0x0000, field == command_field::N_GET_RQ);
            if field == command_field::N_ACTION_RQ {
                rsp.set_us(tag::ACTION_TYPE_ID, 1);
            }
            rsp.set_str(tag::ERROR_COMMENT, "ok");
            rsp.set_us(tag::ERROR_ID, 0x0001);
            roundtrip(&rsp);
            assert_eq!(rsp.command_field(), Some(field | 0x8000));
            assert_eq!(
                rsp.get_str(tag::AFFECTED_SOP_CLASS_UID).as_deref(),
                Some(printer)
            );
            assert_eq!(
                rsp.get_str(tag::AFFECTED_SOP_INSTANCE_UID).as_deref(),
                Some(inst)
            );
            assert_eq!(rsp.get_us(tag::ERROR_ID), Some(1));
        }
        let get = {
            let mut c = request(command_field::N_GET_RQ, 1, printer, false);
            c.set_tags(tag::ATTRIBUTE_IDENTIFIER_LIST, &[0x2110_0010, 0x2110_0020]);
            c
        };
        assert_eq!(
            get.get_tags(tag::ATTRIBUTE_IDENTIFIER_LIST),
            Some(vec![0x2110_0010, 0x2110_0020])
        );
        // Requests that create or report use the Affected UIDs.
        for field in [command_field::N_EVENT_REPORT_RQ, command_field::N_CREATE_RQ] {
            let mut rq = request(field, 31, "1.2.840.10008.1.20.1", true);
            rq.set_str(tag::AFFECTED_SOP_INSTANCE_UID, "1.2.840.10008.1.20.1.1");
            if field == command_field::N_EVENT_REPORT_RQ {
                rq.set_us(tag::EVENT_TYPE_ID, 2);
            }
            roundtrip(&rq);
            assert!(rq.contains(tag::AFFECTED_SOP_CLASS_UID));
            let mut rsp = response_to(&rq, 0, false);
            if field == command_field::N_EVENT_REPORT_RQ {
                rsp.set_us(tag::EVENT_TYPE_ID, 2);
            }
            roundtrip(&rsp);
            assert_eq!(
                rsp.get_us(tag::EVENT_TYPE_ID),
                rq.get_us(tag::EVENT_TYPE_ID)
            );
        }
    }

    #[test]
    fn retired_and_unknown_elements_survive() {
        let mut c = request(command_field::C_ECHO_RQ, 1, "1.2.840.10008.1.1", false);
        c.set_raw(0x0800 + 1, vec![1, 2, 3]); // odd: padded with NUL
        c.set_raw(0x5010, b"RETIRED".to_vec());
        let bytes = roundtrip(&c);
        let mut back = Command::decode(&bytes).unwrap();
        assert_eq!(back.get_raw(0x0801), Some(&[1, 2, 3, 0][..]));
        assert_eq!(back.get_raw(0x5010), Some(&b"RETIRED\0"[..]));
        assert!(back.remove(0x5010).is_some());
        assert!(!back.contains(0x5010));
        assert_eq!(command_vr(0x5010), CommandVr::Other);
        assert_eq!(command_vr(tag::ERROR_COMMENT), CommandVr::LO);
    }

    #[test]
    fn wrong_group_length_is_tolerated() {
        let mut bytes = request(command_field::C_ECHO_RQ, 1, "1.2", false).encode();
        bytes[8] = 0xFF;
        let c = Command::decode(&bytes).unwrap();
        assert_eq!(c.message_id(), Some(1));
        // Re-encoding writes the correct value.
        assert_eq!(
            u32::from_le_bytes(c.encode()[8..12].try_into().unwrap()) as usize,
            bytes.len() - 12
        );
        // A command set without a group length also decodes.
        let c = Command::decode(&bytes[12..]).unwrap();
        assert_eq!(c.command_field(), Some(command_field::C_ECHO_RQ));
    }

    fn element(group: u16, el: u16, value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&group.to_le_bytes());
        v.extend_from_slice(&el.to_le_bytes());
        v.extend_from_slice(&(value.len() as u32).to_le_bytes());
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn malformed_command_sets() {
        let field = element(0, 0x0100, &[0x30, 0]);
        // Wrong group.
        let mut b = field.clone();
        b.extend(element(8, 0x0016, b"1.2\0"));
        assert_eq!(
            Command::decode(&b),
            Err(DimseError::WrongGroup {
                offset: 10,
                group: 8,
                element: 0x0016
            })
        );
        // Out of order, and a repeated element.
        let mut b = element(0, 0x0110, &[1, 0]);
        b.extend(&field);
        assert_eq!(
            Command::decode(&b),
            Err(DimseError::OutOfOrder {
                offset: 10,
                element: 0x0100
            })
        );
        let mut b = field.clone();
        b.extend(&field);
        assert_eq!(
            Command::decode(&b),
            Err(DimseError::OutOfOrder {
                offset: 10,
                element: 0x0100
            })
        );
        // Element length past the end (including a huge one: no allocation of that size).
        for len in [3u32, 0xFFFF_FFFF] {
            let mut b = field.clone();
            b.extend_from_slice(&[0, 0, 0x10, 1]);
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&[1, 0]);
            assert_eq!(
                Command::decode(&b),
                Err(DimseError::LengthOverrun {
                    offset: 10,
                    element: 0x0110,
                    length: len
                })
            );
        }
        // Truncated element header.
        for cut in 1..8 {
            let mut b = field.clone();
            b.extend_from_slice(&element(0, 0x0110, &[1, 0])[..cut]);
            assert_eq!(
                Command::decode(&b),
                Err(DimseError::Truncated { offset: 10 })
            );
        }
        // Missing Command Field.
        let b = element(0, 0x0110, &[1, 0]);
        assert_eq!(
            Command::decode(&b),
            Err(DimseError::Missing {
                element: 0x0100,
                name: "Command Field"
            })
        );
        assert!(matches!(
            Command::decode(&[]),
            Err(DimseError::Missing { .. })
        ));
        // Larger than 64 KiB, refused before parsing.
        let mut b = field.clone();
        b.extend(element(0, 0x0902, &vec![b' '; MAX_COMMAND_SET]));
        assert_eq!(
            Command::decode(&b),
            Err(DimseError::TooLarge {
                size: b.len(),
                limit: MAX_COMMAND_SET
            })
        );
        // Just under the limit is accepted.
        let mut b = field.clone();
        b.extend(element(0, 0x0902, &vec![b' '; MAX_COMMAND_SET - 18]));
        assert_eq!(b.len(), MAX_COMMAND_SET);
        assert!(Command::decode(&b).is_ok());
    }

    #[test]
    fn short_values_give_none_not_panics() {
        let mut b = element(0, 0x0100, &[0x30]); // US of one byte
        b.extend(element(0, 0x0901, &[1, 2, 3, 4, 5])); // AT with a trailing partial tag
        let c = Command::decode(&b).unwrap_err();
        assert!(matches!(c, DimseError::Missing { .. }));
        let mut c = Command::new();
        c.set_raw(tag::COMMAND_FIELD, vec![0x30]);
        c.set_raw(tag::OFFENDING_ELEMENT, vec![0x10, 0, 0x10, 0, 9]);
        assert_eq!(c.get_raw(tag::COMMAND_FIELD), Some(&[0x30, b' '][..]));
        assert_eq!(c.get_tags(tag::OFFENDING_ELEMENT), Some(vec![0x0010_0010]));
        assert_eq!(c.get_ul(tag::COMMAND_FIELD), None);
        assert_eq!(Command::new().status(), None);
    }
}
