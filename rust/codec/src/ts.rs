//! Transfer syntaxes (PS3.5 §10, Annex A).

pub const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
pub const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
pub const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1.99";
/// JPIP Referenced Deflate: a deflated Explicit VR LE data set (PS3.5 §A.6).
const JPIP_REFERENCED_DEFLATE: &str = "1.2.840.10008.1.2.4.95";

/// How a transfer syntax encodes the data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferSyntax {
    pub uid: String,
    pub explicit_vr: bool,
    pub big_endian: bool,
    pub deflated: bool,
    /// One of the four native syntaxes this codec converts between.
    pub native: bool,
}

impl TransferSyntax {
    /// Any UID is accepted: the four native syntaxes are known; every other (encapsulated)
    /// syntax is Explicit VR Little Endian per PS3.5 §A.4 and may only pass through.
    pub fn from_uid(uid: &str) -> TransferSyntax {
        let uid = uid.trim_end_matches(['\0', ' ']);
        let (explicit_vr, big_endian, deflated, native) = match uid {
            IMPLICIT_VR_LITTLE_ENDIAN => (false, false, false, true),
            EXPLICIT_VR_LITTLE_ENDIAN => (true, false, false, true),
            EXPLICIT_VR_BIG_ENDIAN => (true, true, false, true),
            DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN => (true, false, true, true),
            JPIP_REFERENCED_DEFLATE => (true, false, true, false),
            _ => (true, false, false, false),
        };
        TransferSyntax {
            uid: uid.to_owned(),
            explicit_vr,
            big_endian,
            deflated,
            native,
        }
    }

    pub(crate) fn enc(&self) -> crate::core::Enc {
        crate::core::Enc {
            explicit: self.explicit_vr,
            big: self.big_endian,
        }
    }
}
