//! PDU codec (PS3.8 §9.3): the seven PDU types with every item and sub-item.
//!
//! Decoding never panics and never allocates more than the PDU's own (limit-checked) length:
//! every length field is checked against the bytes that actually remain before anything is
//! read. Decoding a well-formed PDU and encoding it again gives back the same bytes (item order
//! is preserved; reserved fields are written as zero, as PS3.8 requires of senders).
use crate::error::PduError;

/// PDU type codes (PS3.8 §9.3.1).
pub mod pdu_type {
    pub const ASSOCIATE_RQ: u8 = 0x01;
    pub const ASSOCIATE_AC: u8 = 0x02;
    pub const ASSOCIATE_RJ: u8 = 0x03;
    pub const P_DATA_TF: u8 = 0x04;
    pub const RELEASE_RQ: u8 = 0x05;
    pub const RELEASE_RP: u8 = 0x06;
    pub const ABORT: u8 = 0x07;
}

/// Item and sub-item type codes (PS3.8 §9.3.2–9.3.3, PS3.7 Annex D.3.3).
pub mod item_type {
    pub const APPLICATION_CONTEXT: u8 = 0x10;
    pub const PRESENTATION_CONTEXT_RQ: u8 = 0x20;
    pub const PRESENTATION_CONTEXT_AC: u8 = 0x21;
    pub const ABSTRACT_SYNTAX: u8 = 0x30;
    pub const TRANSFER_SYNTAX: u8 = 0x40;
    pub const USER_INFORMATION: u8 = 0x50;
    pub const MAXIMUM_LENGTH: u8 = 0x51;
    pub const IMPLEMENTATION_CLASS_UID: u8 = 0x52;
    pub const ASYNC_OPERATIONS_WINDOW: u8 = 0x53;
    pub const ROLE_SELECTION: u8 = 0x54;
    pub const IMPLEMENTATION_VERSION_NAME: u8 = 0x55;
    pub const SOP_CLASS_EXTENDED: u8 = 0x56;
    pub const SOP_CLASS_COMMON_EXTENDED: u8 = 0x57;
    pub const USER_IDENTITY_RQ: u8 = 0x58;
    pub const USER_IDENTITY_AC: u8 = 0x59;
}

/// The DICOM Application Context Name (PS3.7 Annex A.2.1).
pub const DICOM_APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";
/// The only protocol version defined (PS3.8 §9.3.2): bit 0 set.
pub const PROTOCOL_VERSION: u16 = 0x0001;
/// Size of the fixed PDU header: type, reserved, 4-byte big-endian length.
pub const PDU_HEADER_LEN: usize = 6;
/// Default ceiling for the length of association-negotiation PDUs, which arrive before any
/// maximum length has been agreed. 128 presentation contexts with long UIDs fit easily.
pub const ASSOCIATION_PDU_LIMIT: usize = 1 << 20;

/// An AE title field: 16 bytes as sent, space padded (PS3.8 §9.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AeTitle(pub [u8; 16]);

impl AeTitle {
    /// Builds a space-padded title; errors if longer than 16 bytes, empty, or not printable ASCII
    /// without backslash (PS3.5 §6.2, AE value representation).
    pub fn new(title: &str) -> Result<Self, String> {
        let t = title.trim_matches(' ');
        if t.is_empty() {
            return Err("AE title is empty".into());
        }
        if title.len() > 16 {
            return Err(format!("AE title {title:?} is longer than 16 characters"));
        }
        if !title
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
        {
            return Err(format!(
                "AE title {title:?} has characters outside the AE repertoire"
            ));
        }
        let mut raw = [b' '; 16];
        raw[..title.len()].copy_from_slice(title.as_bytes());
        Ok(AeTitle(raw))
    }
    /// The title with leading and trailing spaces (and NUL padding) removed: PS3.8 §9.3.2 says
    /// they are not significant.
    pub fn trimmed(&self) -> String {
        String::from_utf8_lossy(&self.0)
            .trim_matches(|c| c == ' ' || c == '\0')
            .to_string()
    }
}

/// One PDU (PS3.8 §9.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    AssociateRq(AssociateRq),
    AssociateAc(AssociateAc),
    AssociateRj(AssociateRj),
    PDataTf(PDataTf),
    ReleaseRq,
    ReleaseRp,
    Abort(Abort),
}

/// A-ASSOCIATE-RQ (PS3.8 §9.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociateRq {
    pub protocol_version: u16,
    pub called_ae: AeTitle,
    pub calling_ae: AeTitle,
    pub application_context: String,
    pub presentation_contexts: Vec<PresentationContextRq>,
    pub user_info: Option<UserInformation>,
}

/// A-ASSOCIATE-AC (PS3.8 §9.3.3). The AE title fields are echoed from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociateAc {
    pub protocol_version: u16,
    pub called_ae: AeTitle,
    pub calling_ae: AeTitle,
    pub application_context: String,
    pub presentation_contexts: Vec<PresentationContextAc>,
    pub user_info: Option<UserInformation>,
}

/// A-ASSOCIATE-RJ (PS3.8 §9.3.4): result 1 permanent / 2 transient; source 1 service user,
/// 2 service provider (ACSE), 3 service provider (presentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssociateRj {
    pub result: u8,
    pub source: u8,
    pub reason: u8,
}

/// A-ABORT (PS3.8 §9.3.8): source 0 service user, 2 service provider; reason only for source 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort {
    pub source: u8,
    pub reason: u8,
}

/// P-DATA-TF (PS3.8 §9.3.5): one or more presentation data values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PDataTf {
    pub pdvs: Vec<Pdv>,
}

/// A presentation data value item (PS3.8 §9.3.5.1, message control header in Annex E.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdv {
    pub context_id: u8,
    /// Bit 0: 1 = command, 0 = data set. Bit 1: 1 = last fragment.
    pub control: u8,
    pub data: Vec<u8>,
}

impl Pdv {
    pub fn is_command(&self) -> bool {
        self.control & 0x01 != 0
    }
    pub fn is_last(&self) -> bool {
        self.control & 0x02 != 0
    }
}

/// Presentation context item of a request (PS3.8 §9.3.2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationContextRq {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntaxes: Vec<String>,
}

/// Presentation context item of an acceptance (PS3.8 §9.3.3.2). Result: 0 acceptance,
/// 1 user rejection, 2 no reason, 3 abstract syntax not supported, 4 transfer syntaxes not supported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationContextAc {
    pub id: u8,
    pub result: u8,
    /// Present in every well-formed item; "not significant" when the context is rejected.
    pub transfer_syntax: Option<String>,
}

/// User Information item (PS3.8 §9.3.2.3, Annex D): its sub-items, in the order received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInformation {
    pub items: Vec<UserItem>,
}

/// One sub-item of the User Information item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserItem {
    /// Maximum length received (PS3.8 Annex D.1); 0 means unlimited.
    MaximumLength(u32),
    /// Implementation Class UID (PS3.7 D.3.3.2).
    ImplementationClassUid(String),
    /// Asynchronous Operations Window (PS3.7 D.3.3.3).
    AsyncOperationsWindow { invoked: u16, performed: u16 },
    /// SCP/SCU Role Selection (PS3.7 D.3.3.4).
    RoleSelection {
        sop_class_uid: String,
        scu_role: u8,
        scp_role: u8,
    },
    /// Implementation Version Name (PS3.7 D.3.3.2).
    ImplementationVersionName(String),
    /// SOP Class Extended Negotiation (PS3.7 D.3.3.5).
    SopClassExtended {
        sop_class_uid: String,
        info: Vec<u8>,
    },
    /// SOP Class Common Extended Negotiation (PS3.7 D.3.3.6).
    SopClassCommonExtended {
        version: u8,
        sop_class_uid: String,
        service_class_uid: String,
        related_general_sop_classes: Vec<String>,
    },
    /// User Identity Negotiation request (PS3.7 D.3.3.7.1).
    UserIdentityRq {
        identity_type: u8,
        positive_response_requested: u8,
        primary: Vec<u8>,
        secondary: Vec<u8>,
    },
    /// User Identity Negotiation acceptance (PS3.7 D.3.3.7.2).
    UserIdentityAc { server_response: Vec<u8> },
    /// A sub-item type this implementation does not know; kept so it can be re-encoded.
    Unknown { item_type: u8, data: Vec<u8> },
}

impl UserInformation {
    pub fn max_length(&self) -> Option<u32> {
        self.items.iter().find_map(|i| match i {
            UserItem::MaximumLength(v) => Some(*v),
            _ => None,
        })
    }
    pub fn implementation_class_uid(&self) -> Option<&str> {
        self.items.iter().find_map(|i| match i {
            UserItem::ImplementationClassUid(v) => Some(v.as_str()),
            _ => None,
        })
    }
    pub fn implementation_version_name(&self) -> Option<&str> {
        self.items.iter().find_map(|i| match i {
            UserItem::ImplementationVersionName(v) => Some(v.as_str()),
            _ => None,
        })
    }
    pub fn async_window(&self) -> Option<(u16, u16)> {
        self.items.iter().find_map(|i| match i {
            UserItem::AsyncOperationsWindow { invoked, performed } => Some((*invoked, *performed)),
            _ => None,
        })
    }
}

/// Removes the trailing NUL or space padding some implementations put on UIDs in items.
pub fn trim_uid(uid: &str) -> &str {
    uid.trim_end_matches(['\0', ' '])
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// A bounds-checked cursor over a byte slice that remembers its absolute offset in the PDU.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Cursor { buf, pos: 0, base }
    }
    fn offset(&self) -> usize {
        self.base + self.pos
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PduError> {
        if self.remaining() < n {
            return Err(PduError::Truncated {
                offset: self.offset(),
                needed: n - self.remaining(),
                what,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, PduError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, PduError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, PduError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Reads an item header (type, reserved, 2-byte length) and returns the item type, the
    /// reserved byte and a sub-cursor over exactly the item's value.
    fn item(&mut self) -> Result<(u8, u8, Cursor<'a>), PduError> {
        let start = self.offset();
        let item_type = self.u8("item type")?;
        let reserved = self.u8("item reserved byte")?;
        let len = self.u16("item length")? as usize;
        if len > self.remaining() {
            return Err(PduError::ItemOverrun {
                offset: start,
                item_type,
                length: len,
                available: self.remaining(),
            });
        }
        let base = self.offset();
        let body = self.take(len, "item value")?;
        Ok((item_type, reserved, Cursor::new(body, base)))
    }
    /// A field whose length is given by a preceding 2-byte big-endian count.
    fn u16_prefixed(&mut self, what: &'static str) -> Result<&'a [u8], PduError> {
        let n = self.u16(what)? as usize;
        self.take(n, what)
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

fn text(bytes: &[u8], offset: usize, field: &'static str) -> Result<String, PduError> {
    // UIDs, names and AE titles are ASCII (PS3.5 §6.1.2); anything else is rejected rather
    // than silently altered, so a decoded PDU always re-encodes to the same bytes.
    if !bytes.is_ascii() {
        return Err(PduError::InvalidField {
            offset,
            field,
            reason: "non-ASCII bytes".into(),
        });
    }
    Ok(String::from_utf8(bytes.to_vec()).expect("ASCII is UTF-8"))
}

/// Reads and checks a PDU header: returns (PDU type, body length). `limit` bounds the body length
/// (the negotiated maximum for P-DATA-TF, [`ASSOCIATION_PDU_LIMIT`] for others is typical).
pub fn parse_header(header: &[u8], limit: usize) -> Result<(u8, usize), PduError> {
    if header.len() < PDU_HEADER_LEN {
        return Err(PduError::Truncated {
            offset: header.len(),
            needed: PDU_HEADER_LEN - header.len(),
            what: "PDU header",
        });
    }
    let pdu_type = header[0];
    if !(pdu_type::ASSOCIATE_RQ..=pdu_type::ABORT).contains(&pdu_type) {
        return Err(PduError::UnknownPduType {
            offset: 0,
            pdu_type,
        });
    }
    let length = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as u64;
    if length > limit as u64 {
        return Err(PduError::TooLong {
            offset: 2,
            length,
            limit,
        });
    }
    Ok((pdu_type, length as usize))
}

impl Pdu {
    /// Decodes exactly one PDU occupying all of `bytes`. `limit` bounds the PDU's length field.
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Pdu, PduError> {
        let (pdu_type, length) = parse_header(bytes, limit)?;
        let avail = bytes.len() - PDU_HEADER_LEN;
        if length > avail {
            return Err(PduError::Truncated {
                offset: bytes.len(),
                needed: length - avail,
                what: "PDU body",
            });
        }
        if length < avail {
            return Err(PduError::InvalidField {
                offset: PDU_HEADER_LEN + length,
                field: "PDU length",
                reason: format!("{} byte(s) follow the end of the PDU", avail - length),
            });
        }
        Pdu::decode_body(pdu_type, &bytes[PDU_HEADER_LEN..])
    }

    /// Decodes a PDU body (the bytes after the 6-byte header) of the given type.
    pub fn decode_body(pdu_type: u8, body: &[u8]) -> Result<Pdu, PduError> {
        let mut c = Cursor::new(body, PDU_HEADER_LEN);
        match pdu_type {
            pdu_type::ASSOCIATE_RQ => decode_associate(&mut c, true).map(|a| match a {
                Assoc::Rq(rq) => Pdu::AssociateRq(rq),
                Assoc::Ac(_) => unreachable!("decode_associate(rq=true) returns Rq"),
            }),
            pdu_type::ASSOCIATE_AC => decode_associate(&mut c, false).map(|a| match a {
                Assoc::Ac(ac) => Pdu::AssociateAc(ac),
                Assoc::Rq(_) => unreachable!("decode_associate(rq=false) returns Ac"),
            }),
            pdu_type::ASSOCIATE_RJ => {
                c.take(1, "reserved")?;
                let result = c.u8("result")?;
                let source = c.u8("source")?;
                let reason = c.u8("reason")?;
                expect_end(&c, "A-ASSOCIATE-RJ")?;
                Ok(Pdu::AssociateRj(AssociateRj {
                    result,
                    source,
                    reason,
                }))
            }
            pdu_type::P_DATA_TF => {
                let mut pdvs = Vec::new();
                for pdv in PdvIter::new(body) {
                    let pdv = pdv?;
                    pdvs.push(Pdv {
                        context_id: pdv.context_id,
                        control: pdv.control,
                        data: pdv.data.to_vec(),
                    });
                }
                if pdvs.is_empty() {
                    return Err(PduError::InvalidField {
                        offset: PDU_HEADER_LEN,
                        field: "P-DATA-TF",
                        reason: "contains no presentation data value item".into(),
                    });
                }
                Ok(Pdu::PDataTf(PDataTf { pdvs }))
            }
            pdu_type::RELEASE_RQ | pdu_type::RELEASE_RP => {
                c.take(4, "reserved")?;
                expect_end(&c, "A-RELEASE")?;
                Ok(if pdu_type == pdu_type::RELEASE_RQ {
                    Pdu::ReleaseRq
                } else {
                    Pdu::ReleaseRp
                })
            }
            pdu_type::ABORT => {
                c.take(2, "reserved")?;
                let source = c.u8("source")?;
                let reason = c.u8("reason")?;
                expect_end(&c, "A-ABORT")?;
                Ok(Pdu::Abort(Abort { source, reason }))
            }
            other => Err(PduError::UnknownPduType {
                offset: 0,
                pdu_type: other,
            }),
        }
    }

    /// The PDU type code of this PDU.
    pub fn pdu_type(&self) -> u8 {
        match self {
            Pdu::AssociateRq(_) => pdu_type::ASSOCIATE_RQ,
            Pdu::AssociateAc(_) => pdu_type::ASSOCIATE_AC,
            Pdu::AssociateRj(_) => pdu_type::ASSOCIATE_RJ,
            Pdu::PDataTf(_) => pdu_type::P_DATA_TF,
            Pdu::ReleaseRq => pdu_type::RELEASE_RQ,
            Pdu::ReleaseRp => pdu_type::RELEASE_RP,
            Pdu::Abort(_) => pdu_type::ABORT,
        }
    }
}

fn expect_end(c: &Cursor<'_>, what: &'static str) -> Result<(), PduError> {
    if c.remaining() != 0 {
        return Err(PduError::InvalidField {
            offset: c.offset(),
            field: what,
            reason: format!("{} unexpected trailing byte(s)", c.remaining()),
        });
    }
    Ok(())
}

enum Assoc {
    Rq(AssociateRq),
    Ac(AssociateAc),
}

fn decode_associate(c: &mut Cursor<'_>, is_rq: bool) -> Result<Assoc, PduError> {
    let protocol_version = c.u16("protocol version")?;
    c.take(2, "reserved")?;
    let called_ae = AeTitle(c.take(16, "called AE title")?.try_into().expect("16 bytes"));
    let calling_ae = AeTitle(
        c.take(16, "calling AE title")?
            .try_into()
            .expect("16 bytes"),
    );
    c.take(32, "reserved")?;
    let mut application_context = None;
    let mut pcs_rq = Vec::new();
    let mut pcs_ac = Vec::new();
    let mut user_info = None;
    while c.remaining() > 0 {
        let start = c.offset();
        let (ty, _reserved, mut item) = c.item()?;
        match ty {
            item_type::APPLICATION_CONTEXT => {
                if application_context.is_some() {
                    return Err(PduError::UnexpectedItem {
                        offset: start,
                        item_type: ty,
                        context: "second application context item",
                    });
                }
                application_context =
                    Some(text(item.rest(), start + 4, "application context name")?);
            }
            item_type::PRESENTATION_CONTEXT_RQ if is_rq => {
                pcs_rq.push(decode_pc_rq(&mut item, start)?)
            }
            item_type::PRESENTATION_CONTEXT_AC if !is_rq => {
                pcs_ac.push(decode_pc_ac(&mut item, start)?)
            }
            item_type::USER_INFORMATION => {
                if user_info.is_some() {
                    return Err(PduError::UnexpectedItem {
                        offset: start,
                        item_type: ty,
                        context: "second user information item",
                    });
                }
                user_info = Some(decode_user_info(&mut item)?);
            }
            _ => {
                return Err(PduError::UnexpectedItem {
                    offset: start,
                    item_type: ty,
                    context: if is_rq {
                        "A-ASSOCIATE-RQ"
                    } else {
                        "A-ASSOCIATE-AC"
                    },
                })
            }
        }
    }
    let application_context = application_context.ok_or(PduError::InvalidField {
        offset: c.offset(),
        field: "application context",
        reason: "item missing".into(),
    })?;
    Ok(if is_rq {
        Assoc::Rq(AssociateRq {
            protocol_version,
            called_ae,
            calling_ae,
            application_context,
            presentation_contexts: pcs_rq,
            user_info,
        })
    } else {
        Assoc::Ac(AssociateAc {
            protocol_version,
            called_ae,
            calling_ae,
            application_context,
            presentation_contexts: pcs_ac,
            user_info,
        })
    })
}

fn decode_pc_rq(c: &mut Cursor<'_>, start: usize) -> Result<PresentationContextRq, PduError> {
    let id = c.u8("presentation context ID")?;
    c.take(3, "reserved")?;
    let mut abstract_syntax = None;
    let mut transfer_syntaxes = Vec::new();
    while c.remaining() > 0 {
        let sub = c.offset();
        let (ty, _, mut item) = c.item()?;
        match ty {
            item_type::ABSTRACT_SYNTAX if abstract_syntax.is_none() => {
                abstract_syntax = Some(text(item.rest(), sub + 4, "abstract syntax name")?)
            }
            item_type::TRANSFER_SYNTAX => {
                transfer_syntaxes.push(text(item.rest(), sub + 4, "transfer syntax name")?)
            }
            _ => {
                return Err(PduError::UnexpectedItem {
                    offset: sub,
                    item_type: ty,
                    context: "presentation context (request)",
                })
            }
        }
    }
    let abstract_syntax = abstract_syntax.ok_or(PduError::InvalidField {
        offset: start,
        field: "presentation context",
        reason: format!("context {id} has no abstract syntax sub-item"),
    })?;
    if transfer_syntaxes.is_empty() {
        return Err(PduError::InvalidField {
            offset: start,
            field: "presentation context",
            reason: format!("context {id} has no transfer syntax sub-item"),
        });
    }
    Ok(PresentationContextRq {
        id,
        abstract_syntax,
        transfer_syntaxes,
    })
}

fn decode_pc_ac(c: &mut Cursor<'_>, _start: usize) -> Result<PresentationContextAc, PduError> {
    let id = c.u8("presentation context ID")?;
    c.take(1, "reserved")?;
    let result = c.u8("result/reason")?;
    c.take(1, "reserved")?;
    let mut transfer_syntax = None;
    while c.remaining() > 0 {
        let sub = c.offset();
        let (ty, _, mut item) = c.item()?;
        match ty {
            item_type::TRANSFER_SYNTAX if transfer_syntax.is_none() => {
                transfer_syntax = Some(text(item.rest(), sub + 4, "transfer syntax name")?)
            }
            _ => {
                return Err(PduError::UnexpectedItem {
                    offset: sub,
                    item_type: ty,
                    context: "presentation context (acceptance)",
                })
            }
        }
    }
    Ok(PresentationContextAc {
        id,
        result,
        transfer_syntax,
    })
}

fn decode_user_info(c: &mut Cursor<'_>) -> Result<UserInformation, PduError> {
    let mut items = Vec::new();
    while c.remaining() > 0 {
        let sub = c.offset();
        let (ty, reserved, mut it) = c.item()?;
        let body_off = sub + 4;
        let item = match ty {
            item_type::MAXIMUM_LENGTH => {
                let v = it.u32("maximum length")?;
                expect_end(&it, "maximum length sub-item")?;
                UserItem::MaximumLength(v)
            }
            item_type::IMPLEMENTATION_CLASS_UID => UserItem::ImplementationClassUid(text(
                it.rest(),
                body_off,
                "implementation class UID",
            )?),
            item_type::ASYNC_OPERATIONS_WINDOW => {
                let invoked = it.u16("maximum operations invoked")?;
                let performed = it.u16("maximum operations performed")?;
                expect_end(&it, "asynchronous operations window sub-item")?;
                UserItem::AsyncOperationsWindow { invoked, performed }
            }
            item_type::ROLE_SELECTION => {
                let uid = it.u16_prefixed("SOP class UID")?;
                let sop_class_uid = text(uid, body_off + 2, "role selection SOP class UID")?;
                let scu_role = it.u8("SCU role")?;
                let scp_role = it.u8("SCP role")?;
                expect_end(&it, "role selection sub-item")?;
                UserItem::RoleSelection {
                    sop_class_uid,
                    scu_role,
                    scp_role,
                }
            }
            item_type::IMPLEMENTATION_VERSION_NAME => UserItem::ImplementationVersionName(text(
                it.rest(),
                body_off,
                "implementation version name",
            )?),
            item_type::SOP_CLASS_EXTENDED => {
                let uid = it.u16_prefixed("SOP class UID")?;
                let sop_class_uid = text(uid, body_off + 2, "extended negotiation SOP class UID")?;
                UserItem::SopClassExtended {
                    sop_class_uid,
                    info: it.rest().to_vec(),
                }
            }
            item_type::SOP_CLASS_COMMON_EXTENDED => {
                let sop_class_uid = text(
                    it.u16_prefixed("SOP class UID")?,
                    body_off + 2,
                    "SOP class UID",
                )?;
                let service_off = it.offset() + 2;
                let service_class_uid = text(
                    it.u16_prefixed("service class UID")?,
                    service_off,
                    "service class UID",
                )?;
                let related_off = it.offset();
                let related = it.u16_prefixed("related general SOP class identification")?;
                let mut rc = Cursor::new(related, related_off + 2);
                let mut related_general_sop_classes = Vec::new();
                while rc.remaining() > 0 {
                    let off = rc.offset();
                    let uid = rc.u16_prefixed("related general SOP class UID")?;
                    related_general_sop_classes.push(text(
                        uid,
                        off + 2,
                        "related general SOP class UID",
                    )?);
                }
                expect_end(&it, "SOP class common extended negotiation sub-item")?;
                UserItem::SopClassCommonExtended {
                    version: reserved,
                    sop_class_uid,
                    service_class_uid,
                    related_general_sop_classes,
                }
            }
            item_type::USER_IDENTITY_RQ => {
                let identity_type = it.u8("user identity type")?;
                let positive_response_requested = it.u8("positive response requested")?;
                let primary = it.u16_prefixed("primary field")?.to_vec();
                let secondary = it.u16_prefixed("secondary field")?.to_vec();
                expect_end(&it, "user identity sub-item")?;
                UserItem::UserIdentityRq {
                    identity_type,
                    positive_response_requested,
                    primary,
                    secondary,
                }
            }
            item_type::USER_IDENTITY_AC => {
                let server_response = it.u16_prefixed("server response")?.to_vec();
                expect_end(&it, "user identity acceptance sub-item")?;
                UserItem::UserIdentityAc { server_response }
            }
            other => UserItem::Unknown {
                item_type: other,
                data: it.rest().to_vec(),
            },
        };
        items.push(item);
    }
    Ok(UserInformation { items })
}

/// A borrowed PDV item inside a P-DATA-TF body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdvRef<'a> {
    pub context_id: u8,
    pub control: u8,
    pub data: &'a [u8],
}

impl PdvRef<'_> {
    pub fn is_command(&self) -> bool {
        self.control & 0x01 != 0
    }
    pub fn is_last(&self) -> bool {
        self.control & 0x02 != 0
    }
}

/// Iterates over the PDV items of a P-DATA-TF body without copying (PS3.8 §9.3.5).
pub struct PdvIter<'a> {
    c: Cursor<'a>,
    failed: bool,
}

impl<'a> PdvIter<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        PdvIter {
            c: Cursor::new(body, PDU_HEADER_LEN),
            failed: false,
        }
    }
}

impl<'a> Iterator for PdvIter<'a> {
    type Item = Result<PdvRef<'a>, PduError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.c.remaining() == 0 {
            return None;
        }
        let r = (|| {
            let start = self.c.offset();
            let len = self.c.u32("PDV item length")? as usize;
            if len < 2 {
                return Err(PduError::InvalidField {
                    offset: start,
                    field: "PDV item length",
                    reason: format!("{len} is shorter than the context ID and control header"),
                });
            }
            if len > self.c.remaining() {
                return Err(PduError::ItemOverrun {
                    offset: start,
                    item_type: 0,
                    length: len,
                    available: self.c.remaining(),
                });
            }
            let context_id = self.c.u8("presentation context ID")?;
            let control = self.c.u8("message control header")?;
            if control & 0xFC != 0 {
                return Err(PduError::InvalidField {
                    offset: start + 5,
                    field: "message control header",
                    reason: format!("reserved bits set in 0x{control:02X}"),
                });
            }
            if context_id % 2 == 0 {
                return Err(PduError::InvalidField {
                    offset: start + 4,
                    field: "presentation context ID",
                    reason: format!("{context_id} is even; context IDs are odd (PS3.8 §9.3.2.2)"),
                });
            }
            let data = self.c.take(len - 2, "PDV data")?;
            Ok(PdvRef {
                context_id,
                control,
                data,
            })
        })();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

fn put_item(out: &mut Vec<u8>, ty: u8, reserved: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(ty);
    out.push(reserved);
    let at = out.len();
    out.extend_from_slice(&[0, 0]);
    body(out);
    let len = out.len() - at - 2;
    debug_assert!(len <= u16::MAX as usize, "item longer than 65535 bytes");
    out[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
}

fn put_u16_prefixed(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

impl Pdu {
    /// Encodes this PDU, appending to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.push(self.pdu_type());
        out.push(0);
        out.extend_from_slice(&[0, 0, 0, 0]);
        match self {
            Pdu::AssociateRq(rq) => encode_associate(
                out,
                rq.protocol_version,
                &rq.called_ae,
                &rq.calling_ae,
                &rq.application_context,
                |out| {
                    for pc in &rq.presentation_contexts {
                        put_item(out, item_type::PRESENTATION_CONTEXT_RQ, 0, |o| {
                            o.extend_from_slice(&[pc.id, 0, 0, 0]);
                            put_item(o, item_type::ABSTRACT_SYNTAX, 0, |o| {
                                o.extend_from_slice(pc.abstract_syntax.as_bytes())
                            });
                            for ts in &pc.transfer_syntaxes {
                                put_item(o, item_type::TRANSFER_SYNTAX, 0, |o| {
                                    o.extend_from_slice(ts.as_bytes())
                                });
                            }
                        });
                    }
                },
                rq.user_info.as_ref(),
            ),
            Pdu::AssociateAc(ac) => encode_associate(
                out,
                ac.protocol_version,
                &ac.called_ae,
                &ac.calling_ae,
                &ac.application_context,
                |out| {
                    for pc in &ac.presentation_contexts {
                        put_item(out, item_type::PRESENTATION_CONTEXT_AC, 0, |o| {
                            o.extend_from_slice(&[pc.id, 0, pc.result, 0]);
                            if let Some(ts) = &pc.transfer_syntax {
                                put_item(o, item_type::TRANSFER_SYNTAX, 0, |o| {
                                    o.extend_from_slice(ts.as_bytes())
                                });
                            }
                        });
                    }
                },
                ac.user_info.as_ref(),
            ),
            Pdu::AssociateRj(rj) => out.extend_from_slice(&[0, rj.result, rj.source, rj.reason]),
            Pdu::PDataTf(p) => {
                for pdv in &p.pdvs {
                    out.extend_from_slice(&((pdv.data.len() + 2) as u32).to_be_bytes());
                    out.push(pdv.context_id);
                    out.push(pdv.control);
                    out.extend_from_slice(&pdv.data);
                }
            }
            Pdu::ReleaseRq | Pdu::ReleaseRp => out.extend_from_slice(&[0, 0, 0, 0]),
            Pdu::Abort(a) => out.extend_from_slice(&[0, 0, a.source, a.reason]),
        }
        let len = (out.len() - start - PDU_HEADER_LEN) as u32;
        out[start + 2..start + 6].copy_from_slice(&len.to_be_bytes());
    }

    /// Encodes this PDU into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode_into(&mut out);
        out
    }
}

fn encode_associate(
    out: &mut Vec<u8>,
    version: u16,
    called: &AeTitle,
    calling: &AeTitle,
    app_ctx: &str,
    contexts: impl FnOnce(&mut Vec<u8>),
    user_info: Option<&UserInformation>,
) {
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&called.0);
    out.extend_from_slice(&calling.0);
    out.extend_from_slice(&[0u8; 32]);
    put_item(out, item_type::APPLICATION_CONTEXT, 0, |o| {
        o.extend_from_slice(app_ctx.as_bytes())
    });
    contexts(out);
    if let Some(ui) = user_info {
        put_item(out, item_type::USER_INFORMATION, 0, |o| {
            for item in &ui.items {
                encode_user_item(o, item);
            }
        });
    }
}

fn encode_user_item(o: &mut Vec<u8>, item: &UserItem) {
    match item {
        UserItem::MaximumLength(v) => put_item(o, item_type::MAXIMUM_LENGTH, 0, |o| {
            o.extend_from_slice(&v.to_be_bytes())
        }),
        UserItem::ImplementationClassUid(u) => {
            put_item(o, item_type::IMPLEMENTATION_CLASS_UID, 0, |o| {
                o.extend_from_slice(u.as_bytes())
            })
        }
        UserItem::AsyncOperationsWindow { invoked, performed } => {
            put_item(o, item_type::ASYNC_OPERATIONS_WINDOW, 0, |o| {
                o.extend_from_slice(&invoked.to_be_bytes());
                o.extend_from_slice(&performed.to_be_bytes());
            })
        }
        UserItem::RoleSelection {
            sop_class_uid,
            scu_role,
            scp_role,
        } => put_item(o, item_type::ROLE_SELECTION, 0, |o| {
            put_u16_prefixed(o, sop_class_uid.as_bytes());
            o.push(*scu_role);
            o.push(*scp_role);
        }),
        UserItem::ImplementationVersionName(n) => {
            put_item(o, item_type::IMPLEMENTATION_VERSION_NAME, 0, |o| {
                o.extend_from_slice(n.as_bytes())
            })
        }
        UserItem::SopClassExtended {
            sop_class_uid,
            info,
        } => put_item(o, item_type::SOP_CLASS_EXTENDED, 0, |o| {
            put_u16_prefixed(o, sop_class_uid.as_bytes());
            o.extend_from_slice(info);
        }),
        UserItem::SopClassCommonExtended {
            version,
            sop_class_uid,
            service_class_uid,
            related_general_sop_classes,
        } => put_item(o, item_type::SOP_CLASS_COMMON_EXTENDED, *version, |o| {
            put_u16_prefixed(o, sop_class_uid.as_bytes());
            put_u16_prefixed(o, service_class_uid.as_bytes());
            let mut rel = Vec::new();
            for r in related_general_sop_classes {
                put_u16_prefixed(&mut rel, r.as_bytes());
            }
            put_u16_prefixed(o, &rel);
        }),
        UserItem::UserIdentityRq {
            identity_type,
            positive_response_requested,
            primary,
            secondary,
        } => put_item(o, item_type::USER_IDENTITY_RQ, 0, |o| {
            o.push(*identity_type);
            o.push(*positive_response_requested);
            put_u16_prefixed(o, primary);
            put_u16_prefixed(o, secondary);
        }),
        UserItem::UserIdentityAc { server_response } => {
            put_item(o, item_type::USER_IDENTITY_AC, 0, |o| {
                put_u16_prefixed(o, server_response)
            })
        }
        UserItem::Unknown { item_type, data } => {
            put_item(o, *item_type, 0, |o| o.extend_from_slice(data))
        }
    }
}
