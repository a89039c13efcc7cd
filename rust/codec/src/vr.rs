//! Value Representations (PS3.5 §6.2).

/// A Value Representation (PS3.5 Table 6.2-1).
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vr {
    AE,
    AS,
    AT,
    CS,
    DA,
    DS,
    DT,
    FD,
    FL,
    IS,
    LO,
    LT,
    OB,
    OD,
    OF,
    OL,
    OV,
    OW,
    PN,
    SH,
    SL,
    SQ,
    SS,
    ST,
    SV,
    TM,
    UC,
    UI,
    UL,
    UN,
    UR,
    US,
    UT,
    UV,
}

impl Vr {
    /// Parses the two-character VR field of an explicit-VR element.
    pub fn from_bytes(b: [u8; 2]) -> Option<Vr> {
        use Vr::*;
        Some(match &b {
            b"AE" => AE,
            b"AS" => AS,
            b"AT" => AT,
            b"CS" => CS,
            b"DA" => DA,
            b"DS" => DS,
            b"DT" => DT,
            b"FD" => FD,
            b"FL" => FL,
            b"IS" => IS,
            b"LO" => LO,
            b"LT" => LT,
            b"OB" => OB,
            b"OD" => OD,
            b"OF" => OF,
            b"OL" => OL,
            b"OV" => OV,
            b"OW" => OW,
            b"PN" => PN,
            b"SH" => SH,
            b"SL" => SL,
            b"SQ" => SQ,
            b"SS" => SS,
            b"ST" => ST,
            b"SV" => SV,
            b"TM" => TM,
            b"UC" => UC,
            b"UI" => UI,
            b"UL" => UL,
            b"UN" => UN,
            b"UR" => UR,
            b"US" => US,
            b"UT" => UT,
            b"UV" => UV,
            _ => return None,
        })
    }

    /// Parses a VR name such as `"US"`.
    pub fn parse(s: &str) -> Option<Vr> {
        let b = s.as_bytes();
        if b.len() != 2 {
            return None;
        }
        Vr::from_bytes([b[0], b[1]])
    }

    /// The two ASCII characters of the VR.
    pub fn bytes(self) -> [u8; 2] {
        let s = self.as_str().as_bytes();
        [s[0], s[1]]
    }

    pub fn as_str(self) -> &'static str {
        use Vr::*;
        match self {
            AE => "AE",
            AS => "AS",
            AT => "AT",
            CS => "CS",
            DA => "DA",
            DS => "DS",
            DT => "DT",
            FD => "FD",
            FL => "FL",
            IS => "IS",
            LO => "LO",
            LT => "LT",
            OB => "OB",
            OD => "OD",
            OF => "OF",
            OL => "OL",
            OV => "OV",
            OW => "OW",
            PN => "PN",
            SH => "SH",
            SL => "SL",
            SQ => "SQ",
            SS => "SS",
            ST => "ST",
            SV => "SV",
            TM => "TM",
            UC => "UC",
            UI => "UI",
            UL => "UL",
            UN => "UN",
            UR => "UR",
            US => "US",
            UT => "UT",
            UV => "UV",
        }
    }

    /// True when the explicit-VR header uses 2 reserved bytes and a 32-bit length
    /// (PS3.5 §7.1.2, Table 7.1-1).
    pub fn has_long_length(self) -> bool {
        use Vr::*;
        matches!(
            self,
            OB | OD | OF | OL | OV | OW | SQ | SV | UC | UN | UR | UT | UV
        )
    }

    /// Size in bytes of the unit that is byte-swapped between little and big endian
    /// (PS3.5 §7.3); 0 for byte strings, character strings, UN and SQ. AT is a pair of
    /// 16-bit numbers, so it swaps in 2-byte units.
    pub fn swap_unit(self) -> usize {
        use Vr::*;
        match self {
            US | SS | OW | AT => 2,
            UL | SL | FL | OF | OL => 4,
            FD | OD | SV | UV | OV => 8,
            _ => 0,
        }
    }
}

impl std::fmt::Display for Vr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
