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
        Self::at_offset(body, PDU_HEADER_LEN)
    }
    /// Like [`PdvIter::new`] for the part of a body that starts `offset` bytes into the PDU, so
    /// that errors still report offsets from the start of the PDU.
    pub fn at_offset(body: &'a [u8], offset: usize) -> Self {
        PdvIter {
            c: Cursor::new(body, offset),
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

#[cfg(test)]
mod tests {
    //! Round trips of every PDU, item and sub-item (PS3.8 §9.3, PS3.7 Annex D.3.3), and the
    //! typed error (with its offset) for each kind of malformed input.
    use super::*;

    const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
    const EXPLICIT: &str = "1.2.840.10008.1.2.1";
    const IMPLICIT: &str = "1.2.840.10008.1.2";
    /// Offset of the first item of an A-ASSOCIATE-RQ/AC (header 6 + fixed fields 68).
    const FIRST_ITEM: usize = 74;

    fn ae(s: &str) -> AeTitle {
        AeTitle::new(s).unwrap()
    }

    fn every_user_item() -> Vec<UserItem> {
        vec![
            UserItem::MaximumLength(16384),
            UserItem::ImplementationClassUid("1.2.3.4.5".into()),
            UserItem::AsyncOperationsWindow {
                invoked: 4,
                performed: 2,
            },
            UserItem::RoleSelection {
                sop_class_uid: CT.into(),
                scu_role: 1,
                scp_role: 0,
            },
            UserItem::ImplementationVersionName("FERRO_1".into()),
            UserItem::SopClassExtended {
                sop_class_uid: "1.2.840.10008.5.1.4.1.2.2.1".into(),
                info: vec![1, 0, 1, 1, 0, 1],
            },
            UserItem::SopClassCommonExtended {
                version: 0,
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2.1".into(),
                service_class_uid: "1.2.840.10008.4.2".into(),
                related_general_sop_classes: vec![CT.into(), "1.2.840.10008.5.1.4.1.1.2.2".into()],
            },
            UserItem::SopClassCommonExtended {
                version: 0,
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.20".into(),
                service_class_uid: "1.2.840.10008.4.2".into(),
                related_general_sop_classes: vec![],
            },
            UserItem::UserIdentityRq {
                identity_type: 2,
                positive_response_requested: 1,
                primary: b"alice".to_vec(),
                secondary: b"s3cret".to_vec(),
            },
            UserItem::UserIdentityAc {
                server_response: b"ticket".to_vec(),
            },
            UserItem::Unknown {
                item_type: 0x5F,
                data: vec![0xDE, 0xAD, 0xBE, 0xEF],
            },
            UserItem::Unknown {
                item_type: 0x60,
                data: vec![],
            },
        ]
    }

    fn full_rq() -> AssociateRq {
        AssociateRq {
            protocol_version: PROTOCOL_VERSION,
            called_ae: ae("ANY-SCP"),
            calling_ae: ae("FERRO"),
            application_context: DICOM_APPLICATION_CONTEXT.into(),
            presentation_contexts: vec![
                PresentationContextRq {
                    id: 1,
                    abstract_syntax: "1.2.840.10008.1.1".into(),
                    transfer_syntaxes: vec![IMPLICIT.into()],
                },
                PresentationContextRq {
                    id: 3,
                    abstract_syntax: CT.into(),
                    transfer_syntaxes: vec![EXPLICIT.into(), IMPLICIT.into()],
                },
            ],
            user_info: Some(UserInformation {
                items: every_user_item(),
            }),
        }
    }

    fn full_ac() -> AssociateAc {
        AssociateAc {
            protocol_version: PROTOCOL_VERSION,
            called_ae: ae("ANY-SCP"),
            calling_ae: ae("FERRO"),
            application_context: DICOM_APPLICATION_CONTEXT.into(),
            presentation_contexts: vec![
                PresentationContextAc {
                    id: 1,
                    result: 0,
                    transfer_syntax: Some(IMPLICIT.into()),
                },
                PresentationContextAc {
                    id: 3,
                    result: 4,
                    transfer_syntax: Some(EXPLICIT.into()),
                },
                PresentationContextAc {
                    id: 5,
                    result: 3,
                    transfer_syntax: None,
                },
            ],
            user_info: Some(UserInformation {
                items: vec![
                    UserItem::MaximumLength(0),
                    UserItem::ImplementationClassUid("1.2.3".into()),
                    UserItem::RoleSelection {
                        sop_class_uid: CT.into(),
                        scu_role: 0,
                        scp_role: 1,
                    },
                    UserItem::UserIdentityAc {
                        server_response: vec![],
                    },
                ],
            }),
        }
    }

    /// decode(encode(x)) == x and encode(decode(bytes)) == bytes.
    fn roundtrip(pdu: &Pdu) -> Vec<u8> {
        let bytes = pdu.encode();
        let len = u32::from_be_bytes(bytes[2..6].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - PDU_HEADER_LEN, "PDU length field");
        assert_eq!(bytes[0], pdu.pdu_type());
        let back = Pdu::decode(&bytes, ASSOCIATION_PDU_LIMIT).expect("decodes");
        assert_eq!(&back, pdu);
        assert_eq!(back.encode(), bytes);
        bytes
    }

    #[test]
    fn associate_rq_with_every_item_round_trips() {
        let bytes = roundtrip(&Pdu::AssociateRq(full_rq()));
        // Fixed fields (PS3.8 Table 9-11).
        assert_eq!(&bytes[6..8], &[0, 1]);
        assert_eq!(&bytes[10..26], b"ANY-SCP         ");
        assert_eq!(&bytes[26..42], b"FERRO           ");
        assert!(bytes[42..74].iter().all(|&b| b == 0));
        assert_eq!(bytes[FIRST_ITEM], item_type::APPLICATION_CONTEXT);
    }

    #[test]
    fn associate_ac_round_trips_with_and_without_transfer_syntax() {
        let bytes = roundtrip(&Pdu::AssociateAc(full_ac()));
        assert_eq!(bytes[0], 0x02);
    }

    #[test]
    fn associate_without_user_information_round_trips() {
        let mut rq = full_rq();
        rq.user_info = None;
        roundtrip(&Pdu::AssociateRq(rq));
        let mut rq = full_rq();
        rq.user_info = Some(UserInformation::default());
        roundtrip(&Pdu::AssociateRq(rq));
    }

    #[test]
    fn each_user_item_round_trips_alone() {
        for item in every_user_item() {
            let mut rq = full_rq();
            rq.user_info = Some(UserInformation {
                items: vec![item.clone()],
            });
            roundtrip(&Pdu::AssociateRq(rq));
        }
    }

    #[test]
    fn user_item_encodings_follow_ps3_7_annex_d() {
        let encode = |item: UserItem| {
            let mut v = Vec::new();
            encode_user_item(&mut v, &item);
            v
        };
        assert_eq!(
            encode(UserItem::MaximumLength(0x1234_5678)),
            [0x51, 0, 0, 4, 0x12, 0x34, 0x56, 0x78]
        );
        assert_eq!(
            encode(UserItem::AsyncOperationsWindow {
                invoked: 2,
                performed: 1
            }),
            [0x53, 0, 0, 4, 0, 2, 0, 1]
        );
        assert_eq!(
            encode(UserItem::RoleSelection {
                sop_class_uid: "1.2".into(),
                scu_role: 0,
                scp_role: 1
            }),
            [0x54, 0, 0, 7, 0, 3, b'1', b'.', b'2', 0, 1]
        );
        assert_eq!(
            encode(UserItem::SopClassCommonExtended {
                version: 0,
                sop_class_uid: "1".into(),
                service_class_uid: "2".into(),
                related_general_sop_classes: vec!["3".into(), "44".into()],
            }),
            [0x57, 0, 0, 15, 0, 1, b'1', 0, 1, b'2', 0, 7, 0, 1, b'3', 0, 2, b'4', b'4']
        );
        assert_eq!(
            encode(UserItem::UserIdentityRq {
                identity_type: 1,
                positive_response_requested: 0,
                primary: b"bob".to_vec(),
                secondary: vec![],
            }),
            [0x58, 0, 0, 9, 1, 0, 0, 3, b'b', b'o', b'b', 0, 0]
        );
        assert_eq!(
            encode(UserItem::UserIdentityAc {
                server_response: vec![9]
            }),
            [0x59, 0, 0, 3, 0, 1, 9]
        );
    }

    #[test]
    fn simple_pdus_round_trip() {
        assert_eq!(
            roundtrip(&Pdu::AssociateRj(AssociateRj {
                result: 2,
                source: 3,
                reason: 1
            })),
            [3, 0, 0, 0, 0, 4, 0, 2, 3, 1]
        );
        assert_eq!(roundtrip(&Pdu::ReleaseRq), [5, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
        assert_eq!(roundtrip(&Pdu::ReleaseRp), [6, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
        assert_eq!(
            roundtrip(&Pdu::Abort(Abort {
                source: 2,
                reason: 6
            })),
            [7, 0, 0, 0, 0, 4, 0, 0, 2, 6]
        );
    }

    #[test]
    fn p_data_tf_with_several_pdvs_round_trips() {
        let pdu = Pdu::PDataTf(PDataTf {
            pdvs: vec![
                Pdv {
                    context_id: 1,
                    control: 0x03,
                    data: vec![1, 2, 3],
                },
                Pdv {
                    context_id: 1,
                    control: 0x00,
                    data: vec![],
                },
                Pdv {
                    context_id: 255,
                    control: 0x02,
                    data: vec![7; 300],
                },
            ],
        });
        let bytes = roundtrip(&pdu);
        assert_eq!(&bytes[6..15], &[0, 0, 0, 5, 1, 3, 1, 2, 3]);
        let refs: Vec<PdvRef<'_>> = PdvIter::new(&bytes[6..]).map(|r| r.unwrap()).collect();
        assert_eq!(refs.len(), 3);
        assert!(refs[0].is_command() && refs[0].is_last());
        assert!(!refs[1].is_command() && !refs[1].is_last());
        assert!(refs[2].data.iter().all(|&b| b == 7) && refs[2].data.len() == 300);
    }

    #[test]
    fn ae_titles() {
        assert_eq!(ae("  AB ").trimmed(), "AB");
        assert!(AeTitle::new("").is_err());
        assert!(AeTitle::new("    ").is_err());
        assert!(AeTitle::new("ABCDEFGHIJKLMNOPQ").is_err());
        assert!(AeTitle::new("A\\B").is_err());
        assert!(AeTitle::new("A\u{e9}").is_err());
        assert_eq!(AeTitle(*b"NULPAD\0\0\0\0\0\0\0\0\0\0").trimmed(), "NULPAD");
        assert_eq!(trim_uid("1.2.3\0"), "1.2.3");
    }

    // -----------------------------------------------------------------------------------------
    // Malformed input
    // -----------------------------------------------------------------------------------------

    fn decode(bytes: &[u8]) -> Result<Pdu, PduError> {
        Pdu::decode(bytes, ASSOCIATION_PDU_LIMIT)
    }

    /// A PDU of `ty` with the given body and a correct length field.
    fn raw(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ty, 0];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// The fixed part of an A-ASSOCIATE-RQ followed by `items`.
    fn rq_with_items(items: &[u8]) -> Vec<u8> {
        let mut body = vec![0, 1, 0, 0];
        body.extend_from_slice(b"ANY-SCP         FERRO           ");
        body.extend_from_slice(&[0; 32]);
        body.extend_from_slice(items);
        raw(1, &body)
    }

    fn item(ty: u8, value: &[u8]) -> Vec<u8> {
        let mut v = vec![ty, 0];
        v.extend_from_slice(&(value.len() as u16).to_be_bytes());
        v.extend_from_slice(value);
        v
    }

    fn app_ctx() -> Vec<u8> {
        item(0x10, DICOM_APPLICATION_CONTEXT.as_bytes())
    }

    fn pc_rq(id: u8, abs: &[u8], ts: &[u8]) -> Vec<u8> {
        let mut v = vec![id, 0, 0, 0];
        v.extend(item(0x30, abs));
        v.extend(item(0x40, ts));
        item(0x20, &v)
    }

    #[test]
    fn hand_built_rq_decodes() {
        let mut items = app_ctx();
        items.extend(pc_rq(1, b"1.2.840.10008.1.1", IMPLICIT.as_bytes()));
        items.extend(item(0x50, &item(0x51, &[0, 0, 0x40, 0])));
        let bytes = rq_with_items(&items);
        let Pdu::AssociateRq(rq) = decode(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(
            rq.presentation_contexts[0].abstract_syntax,
            "1.2.840.10008.1.1"
        );
        assert_eq!(rq.user_info.as_ref().unwrap().max_length(), Some(16384));
        assert_eq!(Pdu::AssociateRq(rq).encode(), bytes);
    }

    #[test]
    fn pdu_length_shorter_than_the_data() {
        let mut b = Pdu::ReleaseRq.encode();
        b[5] = 2; // claims 2 bytes, 4 follow
        assert_eq!(
            decode(&b),
            Err(PduError::InvalidField {
                offset: 8,
                field: "PDU length",
                reason: "2 byte(s) follow the end of the PDU".into()
            })
        );
        // Decoding only the claimed body finds the A-RELEASE fields truncated.
        assert_eq!(
            decode(&b[..8]),
            Err(PduError::Truncated {
                offset: 6,
                needed: 2,
                what: "reserved"
            })
        );
    }

    #[test]
    fn pdu_length_longer_than_the_data() {
        let mut b = Pdu::Abort(Abort {
            source: 0,
            reason: 0,
        })
        .encode();
        b[5] = 9;
        assert_eq!(
            decode(&b),
            Err(PduError::Truncated {
                offset: 10,
                needed: 5,
                what: "PDU body"
            })
        );
        // Extra bytes inside a correctly counted A-ABORT body.
        let b = raw(7, &[0, 0, 0, 0, 0, 0]);
        assert_eq!(decode(&b).unwrap_err().offset(), 10);
        assert!(matches!(
            decode(&b),
            Err(PduError::InvalidField {
                field: "A-ABORT",
                ..
            })
        ));
    }

    #[test]
    fn truncated_header() {
        for n in 0..PDU_HEADER_LEN {
            let b = &Pdu::ReleaseRq.encode()[..n];
            assert_eq!(
                decode(b),
                Err(PduError::Truncated {
                    offset: n,
                    needed: PDU_HEADER_LEN - n,
                    what: "PDU header"
                })
            );
        }
    }

    #[test]
    fn unknown_pdu_types() {
        for ty in [0x00u8, 0x08, 0x10, 0x80, 0xFF] {
            assert_eq!(
                decode(&raw(ty, &[0, 0, 0, 0])),
                Err(PduError::UnknownPduType {
                    offset: 0,
                    pdu_type: ty
                })
            );
            assert_eq!(
                Pdu::decode_body(ty, &[]),
                Err(PduError::UnknownPduType {
                    offset: 0,
                    pdu_type: ty
                })
            );
        }
    }

    #[test]
    fn length_0xffffffff_is_too_long_without_allocating() {
        // Only the 6 header bytes exist: the error comes from the header, before any allocation.
        let b = [4u8, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        let e = PduError::TooLong {
            offset: 2,
            length: 0xFFFF_FFFF,
            limit: 16384,
        };
        assert_eq!(Pdu::decode(&b, 16384), Err(e.clone()));
        assert_eq!(parse_header(&b, 16384), Err(e));
        assert!(matches!(
            decode(&[1u8, 0, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(PduError::TooLong {
                length: 0xFFFF_FFFF,
                limit: ASSOCIATION_PDU_LIMIT,
                ..
            })
        ));
        // At the limit is fine; one more is not.
        assert_eq!(parse_header(&[4, 0, 0, 0, 0x40, 0], 16384), Ok((4, 16384)));
        assert!(parse_header(&[4, 0, 0, 0, 0x40, 1], 16384).is_err());
    }

    #[test]
    fn truncated_item_header() {
        let mut items = app_ctx();
        items.extend_from_slice(&[0x20, 0]); // item type and reserved, no length
        assert_eq!(
            decode(&rq_with_items(&items)),
            Err(PduError::Truncated {
                offset: FIRST_ITEM + 25 + 2,
                needed: 2,
                what: "item length"
            })
        );
    }

    #[test]
    fn item_length_past_the_pdu_end() {
        let mut items = app_ctx();
        items[3] += 1; // application context length one too long
        assert_eq!(
            decode(&rq_with_items(&items)),
            Err(PduError::ItemOverrun {
                offset: FIRST_ITEM,
                item_type: 0x10,
                length: 22,
                available: 21
            })
        );
        // A presentation context whose sub-item runs past the context item.
        let mut pc = pc_rq(1, b"1.2", b"1.2.840.10008.1.2");
        pc[4 + 4 + 3] = 200; // abstract syntax sub-item length
        let mut items = app_ctx();
        items.extend(&pc);
        let at = FIRST_ITEM + 25 + 8;
        assert_eq!(
            decode(&rq_with_items(&items)),
            Err(PduError::ItemOverrun {
                offset: at,
                item_type: 0x30,
                length: 200,
                available: pc.len() - 12
            })
        );
    }

    #[test]
    fn truncated_sub_items() {
        let ui_at = FIRST_ITEM + 25;
        let cases: Vec<(Vec<u8>, PduError)> = vec![
            (
                item(0x51, &[0, 0]),
                PduError::Truncated {
                    offset: ui_at + 8,
                    needed: 2,
                    what: "maximum length",
                },
            ),
            (
                item(0x53, &[0, 1]),
                PduError::Truncated {
                    offset: ui_at + 10,
                    needed: 2,
                    what: "maximum operations performed",
                },
            ),
            (
                item(0x54, &[0, 9, b'1']),
                PduError::Truncated {
                    offset: ui_at + 10,
                    needed: 8,
                    what: "SOP class UID",
                },
            ),
            (
                item(0x54, &[0, 1, b'1', 1]),
                PduError::Truncated {
                    offset: ui_at + 12,
                    needed: 1,
                    what: "SCP role",
                },
            ),
            (
                item(0x58, &[1, 0, 0, 3, b'b', b'o', b'b', 0]),
                PduError::Truncated {
                    offset: ui_at + 15,
                    needed: 1,
                    what: "secondary field",
                },
            ),
            (
                item(0x59, &[0]),
                PduError::Truncated {
                    offset: ui_at + 8,
                    needed: 1,
                    what: "server response",
                },
            ),
            (
                // Related general SOP class list whose inner UID runs past the list.
                item(0x57, &[0, 1, b'1', 0, 1, b'2', 0, 3, 0, 5, b'3']),
                PduError::Truncated {
                    offset: ui_at + 8 + 10,
                    needed: 4,
                    what: "related general SOP class UID",
                },
            ),
            (
                item(0x51, &[0, 0, 0, 0, 0]),
                PduError::InvalidField {
                    offset: ui_at + 12,
                    field: "maximum length sub-item",
                    reason: "1 unexpected trailing byte(s)".into(),
                },
            ),
        ];
        for (sub, want) in cases {
            let mut items = app_ctx();
            items.extend(item(0x50, &sub));
            assert_eq!(decode(&rq_with_items(&items)), Err(want));
        }
        // A sub-item running past the end of the user information item.
        let mut sub = item(0x52, b"1.2.3");
        sub[3] = 9;
        let mut items = app_ctx();
        items.extend(item(0x50, &sub));
        assert_eq!(
            decode(&rq_with_items(&items)),
            Err(PduError::ItemOverrun {
                offset: ui_at + 4,
                item_type: 0x52,
                length: 9,
                available: 5
            })
        );
    }

    #[test]
    fn items_in_the_wrong_place() {
        let ac_item = item(0x21, &[1, 0, 0, 0]);
        let mut items = app_ctx();
        items.extend(&ac_item);
        assert_eq!(
            decode(&rq_with_items(&items)),
            Err(PduError::UnexpectedItem {
                offset: FIRST_ITEM + 25,
                item_type: 0x21,
                context: "A-ASSOCIATE-RQ"
            })
        );
        // A request presentation context item inside an A-ASSOCIATE-AC.
        let mut b = rq_with_items(&{
            let mut i = app_ctx();
            i.extend(pc_rq(1, b"1.2", b"1.2"));
            i
        });
        b[0] = 2;
        assert_eq!(
            decode(&b),
            Err(PduError::UnexpectedItem {
                offset: FIRST_ITEM + 25,
                item_type: 0x20,
                context: "A-ASSOCIATE-AC"
            })
        );
        // Sub-item types at the top level, and unknown item types.
        for ty in [0x30u8, 0x40, 0x51, 0x00, 0xFF] {
            let mut items = app_ctx();
            items.extend(item(ty, b"1.2"));
            assert_eq!(
                decode(&rq_with_items(&items)),
                Err(PduError::UnexpectedItem {
                    offset: FIRST_ITEM + 25,
                    item_type: ty,
                    context: "A-ASSOCIATE-RQ"
                })
            );
        }
        // A user information sub-item inside a presentation context.
        let mut pc = vec![1, 0, 0, 0];
        pc.extend(item(0x30, b"1.2"));
        pc.extend(item(0x51, &[0, 0, 0, 0]));
        let mut items = app_ctx();
        items.extend(item(0x20, &pc));
        assert_eq!(
            decode(&rq_with_items(&items)),
            Err(PduError::UnexpectedItem {
                offset: FIRST_ITEM + 25 + 4 + 4 + 7,
                item_type: 0x51,
                context: "presentation context (request)"
            })
        );
        // Two abstract syntaxes in one context; two application contexts; two user infos.
        let mut pc = vec![1, 0, 0, 0];
        pc.extend(item(0x30, b"1.2"));
        pc.extend(item(0x30, b"1.3"));
        let mut items = app_ctx();
        items.extend(item(0x20, &pc));
        assert!(matches!(
            decode(&rq_with_items(&items)),
            Err(PduError::UnexpectedItem {
                item_type: 0x30,
                ..
            })
        ));
        let mut items = app_ctx();
        items.extend(app_ctx());
        assert!(matches!(
            decode(&rq_with_items(&items)),
            Err(PduError::UnexpectedItem {
                offset: 99,
                item_type: 0x10,
                ..
            })
        ));
        let mut items = app_ctx();
        items.extend(item(0x50, &[]));
        items.extend(item(0x50, &[]));
        assert!(matches!(
            decode(&rq_with_items(&items)),
            Err(PduError::UnexpectedItem {
                offset: 103,
                item_type: 0x50,
                ..
            })
        ));
    }

    #[test]
    fn missing_mandatory_items() {
        assert_eq!(
            decode(&rq_with_items(&[])),
            Err(PduError::InvalidField {
                offset: FIRST_ITEM,
                field: "application context",
                reason: "item missing".into()
            })
        );
        let mut pc = vec![1, 0, 0, 0];
        pc.extend(item(0x40, b"1.2"));
        let mut items = app_ctx();
        items.extend(item(0x20, &pc));
        assert!(matches!(
            decode(&rq_with_items(&items)),
            Err(PduError::InvalidField { offset: 99, field: "presentation context", reason })
                if reason.contains("no abstract syntax")
        ));
        let mut pc = vec![1, 0, 0, 0];
        pc.extend(item(0x30, b"1.2"));
        let mut items = app_ctx();
        items.extend(item(0x20, &pc));
        assert!(matches!(
            decode(&rq_with_items(&items)),
            Err(PduError::InvalidField { offset: 99, field: "presentation context", reason })
                if reason.contains("no transfer syntax")
        ));
    }

    #[test]
    fn non_ascii_uids() {
        let mut items = app_ctx();
        items.extend(pc_rq(1, "1.2.\u{e9}".as_bytes(), IMPLICIT.as_bytes()));
        assert!(matches!(
            decode(&rq_with_items(&items)),
            Err(PduError::InvalidField { offset, field: "abstract syntax name", .. })
                if offset == FIRST_ITEM + 25 + 8 + 4
        ));
        let mut items = app_ctx();
        items.extend(pc_rq(1, b"1.2", b"1.2.\xff"));
        assert!(matches!(
            decode(&rq_with_items(&items)),
            Err(PduError::InvalidField { offset, field: "transfer syntax name", .. })
                if offset == FIRST_ITEM + 25 + 8 + 7 + 4
        ));
        let items = item(0x10, b"1.2.\x80");
        assert!(matches!(
            decode(&rq_with_items(&items)),
            Err(PduError::InvalidField {
                offset: 78,
                field: "application context name",
                ..
            })
        ));
        let mut items = app_ctx();
        items.extend(item(0x50, &item(0x52, b"1.\xc3\xa9")));
        assert!(matches!(
            decode(&rq_with_items(&items)),
            Err(PduError::InvalidField {
                offset: 107,
                field: "implementation class UID",
                ..
            })
        ));
        let mut items = app_ctx();
        items.extend(item(0x50, &item(0x54, &[0, 2, b'1', 0x99, 1, 0])));
        assert!(matches!(
            decode(&rq_with_items(&items)),
            Err(PduError::InvalidField {
                offset: 109,
                field: "role selection SOP class UID",
                ..
            })
        ));
    }

    #[test]
    fn non_ascii_uids_in_common_extended_negotiation_report_their_offset() {
        // Sub-item value starts at 107: SOP class UID at 109, service class UID at 112.
        let ui = |value: &[u8]| {
            let mut items = app_ctx();
            items.extend(item(0x50, &item(0x57, value)));
            decode(&rq_with_items(&items))
        };
        assert!(matches!(
            ui(&[0, 1, 0xC0, 0, 1, b'2', 0, 0]),
            Err(PduError::InvalidField {
                offset: 109,
                field: "SOP class UID",
                ..
            })
        ));
        assert!(matches!(
            ui(&[0, 1, b'1', 0, 1, 0xC0, 0, 0]),
            Err(PduError::InvalidField {
                offset: 112,
                field: "service class UID",
                ..
            })
        ));
        assert!(matches!(
            ui(&[0, 1, b'1', 0, 1, b'2', 0, 3, 0, 1, 0xC0]),
            Err(PduError::InvalidField {
                offset: 117,
                field: "related general SOP class UID",
                ..
            })
        ));
    }

    fn pdata(body: &[u8]) -> Vec<u8> {
        raw(4, body)
    }

    #[test]
    fn pdv_length_shorter_than_its_header() {
        for len in [0u8, 1] {
            let b = pdata(&[0, 0, 0, len, 1, 3]);
            assert_eq!(
                decode(&b),
                Err(PduError::InvalidField {
                    offset: 6,
                    field: "PDV item length",
                    reason: format!("{len} is shorter than the context ID and control header")
                })
            );
        }
    }

    #[test]
    fn pdv_length_past_the_end() {
        assert_eq!(
            decode(&pdata(&[0, 0, 0, 5, 1, 3, 9])),
            Err(PduError::ItemOverrun {
                offset: 6,
                item_type: 0,
                length: 5,
                available: 3
            })
        );
        // Second PDV overruns; its offset is reported.
        assert_eq!(
            decode(&pdata(&[0, 0, 0, 2, 1, 3, 0xFF, 0xFF, 0xFF, 0xFF, 1, 0])),
            Err(PduError::ItemOverrun {
                offset: 12,
                item_type: 0,
                length: 0xFFFF_FFFF,
                available: 2
            })
        );
        // A PDV length field cut short.
        assert_eq!(
            decode(&pdata(&[0, 0, 0, 2, 1, 3, 0, 0])),
            Err(PduError::Truncated {
                offset: 12,
                needed: 2,
                what: "PDV item length"
            })
        );
    }

    #[test]
    fn pdv_even_context_id_and_reserved_control_bits() {
        assert_eq!(
            decode(&pdata(&[0, 0, 0, 2, 2, 3])),
            Err(PduError::InvalidField {
                offset: 10,
                field: "presentation context ID",
                reason: "2 is even; context IDs are odd (PS3.8 §9.3.2.2)".into()
            })
        );
        assert!(matches!(
            decode(&pdata(&[0, 0, 0, 2, 0, 0])),
            Err(PduError::InvalidField {
                offset: 10,
                field: "presentation context ID",
                ..
            })
        ));
        assert!(matches!(
            decode(&pdata(&[0, 0, 0, 2, 1, 0x04])),
            Err(PduError::InvalidField {
                offset: 11,
                field: "message control header",
                ..
            })
        ));
    }

    #[test]
    fn empty_p_data_tf() {
        assert_eq!(
            decode(&pdata(&[])),
            Err(PduError::InvalidField {
                offset: 6,
                field: "P-DATA-TF",
                reason: "contains no presentation data value item".into()
            })
        );
    }

    #[test]
    fn pdv_iter_stops_after_an_error() {
        let body = [0u8, 0, 0, 1, 1, 3, 0, 0, 0, 2, 1, 3];
        let mut it = PdvIter::new(&body);
        assert!(matches!(it.next(), Some(Err(_))));
        assert!(it.next().is_none());
        assert!(PdvIter::new(&[]).next().is_none());
    }

    /// Every prefix and every single-byte corruption of a rich PDU decodes or fails cleanly,
    /// and errors point inside the PDU.
    #[test]
    fn truncations_and_corruptions_never_panic() {
        let bytes = Pdu::AssociateRq(full_rq()).encode();
        for n in 0..bytes.len() {
            let mut b = bytes[..n].to_vec();
            if n >= PDU_HEADER_LEN {
                let len = (n - PDU_HEADER_LEN) as u32;
                b[2..6].copy_from_slice(&len.to_be_bytes());
            }
            // A cut exactly between items leaves a shorter, well-formed PDU.
            match decode(&b) {
                Ok(p) => assert_eq!(p.encode(), b),
                Err(e) => assert!(e.offset() <= n, "{e}"),
            }
        }
        for i in 0..bytes.len() {
            for x in [0x00u8, 0x01, 0x7F, 0x80, 0xFF] {
                let mut b = bytes.clone();
                b[i] = x;
                match decode(&b) {
                    Ok(p) => assert_eq!(decode(&p.encode()).unwrap(), p),
                    Err(e) => assert!(e.offset() <= b.len(), "{e}"),
                }
            }
        }
    }

    /// A small deterministic generator (xorshift64*) for structure-aware round trips.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn byte(&mut self) -> u8 {
            self.next() as u8
        }
        fn bytes(&mut self, max: usize) -> Vec<u8> {
            let n = self.below(max + 1);
            (0..n).map(|_| self.byte()).collect()
        }
        fn ascii(&mut self, max: usize) -> String {
            let n = self.below(max + 1);
            (0..n)
                .map(|_| (0x20 + self.below(0x5F)) as u8 as char)
                .collect()
        }
        fn uid(&mut self) -> String {
            let parts = 1 + self.below(8);
            (0..parts)
                .map(|_| self.below(100_000).to_string())
                .collect::<Vec<_>>()
                .join(".")
        }
        fn user_item(&mut self) -> UserItem {
            match self.below(11) {
                0 => UserItem::MaximumLength(self.next() as u32),
                1 => UserItem::ImplementationClassUid(self.uid()),
                2 => UserItem::AsyncOperationsWindow {
                    invoked: self.next() as u16,
                    performed: self.next() as u16,
                },
                3 => UserItem::RoleSelection {
                    sop_class_uid: self.uid(),
                    scu_role: self.byte(),
                    scp_role: self.byte(),
                },
                4 => UserItem::ImplementationVersionName(self.ascii(16)),
                5 => UserItem::SopClassExtended {
                    sop_class_uid: self.uid(),
                    info: self.bytes(40),
                },
                6 => UserItem::SopClassCommonExtended {
                    version: self.byte(),
                    sop_class_uid: self.uid(),
                    service_class_uid: self.uid(),
                    related_general_sop_classes: (0..self.below(4)).map(|_| self.uid()).collect(),
                },
                7 => UserItem::UserIdentityRq {
                    identity_type: self.byte(),
                    positive_response_requested: self.byte(),
                    primary: self.bytes(30),
                    secondary: self.bytes(30),
                },
                8 => UserItem::UserIdentityAc {
                    server_response: self.bytes(30),
                },
                _ => UserItem::Unknown {
                    // Any type the decoder does not know (0x51-0x59 are known).
                    item_type: [0x00, 0x10, 0x50, 0x5A, 0x5F, 0x99, 0xFF][self.below(7)],
                    data: self.bytes(40),
                },
            }
        }
        fn user_info(&mut self) -> Option<UserInformation> {
            (self.below(4) != 0).then(|| UserInformation {
                items: (0..self.below(12)).map(|_| self.user_item()).collect(),
            })
        }
        fn ae(&mut self) -> AeTitle {
            let mut a = [0u8; 16];
            a.iter_mut().for_each(|b| *b = self.byte());
            AeTitle(a)
        }
        fn pdu(&mut self) -> Pdu {
            match self.below(7) {
                0 => Pdu::AssociateRq(AssociateRq {
                    protocol_version: self.next() as u16,
                    called_ae: self.ae(),
                    calling_ae: self.ae(),
                    application_context: self.uid(),
                    presentation_contexts: (0..self.below(20))
                        .map(|_| PresentationContextRq {
                            id: self.byte(),
                            abstract_syntax: self.uid(),
                            transfer_syntaxes: (0..1 + self.below(5)).map(|_| self.uid()).collect(),
                        })
                        .collect(),
                    user_info: self.user_info(),
                }),
                1 => Pdu::AssociateAc(AssociateAc {
                    protocol_version: self.next() as u16,
                    called_ae: self.ae(),
                    calling_ae: self.ae(),
                    application_context: self.uid(),
                    presentation_contexts: (0..self.below(20))
                        .map(|_| PresentationContextAc {
                            id: self.byte(),
                            result: self.byte(),
                            transfer_syntax: (self.below(5) != 0).then(|| self.uid()),
                        })
                        .collect(),
                    user_info: self.user_info(),
                }),
                2 => Pdu::AssociateRj(AssociateRj {
                    result: self.byte(),
                    source: self.byte(),
                    reason: self.byte(),
                }),
                3 => Pdu::PDataTf(PDataTf {
                    pdvs: (0..1 + self.below(5))
                        .map(|_| Pdv {
                            context_id: self.byte() | 1,
                            control: self.byte() & 3,
                            data: self.bytes(100),
                        })
                        .collect(),
                }),
                4 => Pdu::ReleaseRq,
                5 => Pdu::ReleaseRp,
                _ => Pdu::Abort(Abort {
                    source: self.byte(),
                    reason: self.byte(),
                }),
            }
        }
    }

    /// Structure-aware round trips: 20 000 random well-formed PDUs (fixed seed).
    #[test]
    fn random_pdus_round_trip() {
        let mut rng = Rng(0x5EED_D1C0_0000_0001);
        for i in 0..20_000 {
            let pdu = rng.pdu();
            let bytes = pdu.encode();
            assert_eq!(
                Pdu::decode(&bytes, ASSOCIATION_PDU_LIMIT).as_ref(),
                Ok(&pdu),
                "case {i}"
            );
        }
    }
}
