//! DICOM Part 10 files (PS3.10 §7.1): 128-byte preamble, "DICM", File Meta Information
//! (group 0002, always Explicit VR Little Endian, PS3.10 §7.1), then the data set in the
//! transfer syntax named by (0002,0010).
use crate::stream::{convert_dataset, StreamConverter};
use crate::{CodecError, Dictionary, Extracted, Tag, TransferSyntax, Vr};
use std::io::{Read, Write};
use std::path::Path;

/// Largest File Meta group accepted.
const MAX_META: usize = 1 << 20;

/// One File Meta element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaElement {
    pub tag: Tag,
    pub vr: Vr,
    pub value: Vec<u8>,
}

/// The preamble and File Meta elements of a Part 10 file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub preamble: [u8; 128],
    /// Elements in file order, without the group length (0002,0000), which is recomputed.
    pub elements: Vec<MetaElement>,
}

/// The File Meta values a writer supplies (PS3.10 §7.1, Table 7.1-1).
#[derive(Debug, Clone, Default)]
pub struct FileMetaInfo<'a> {
    pub sop_class_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub transfer_syntax_uid: &'a str,
    pub implementation_class_uid: &'a str,
    pub implementation_version_name: &'a str,
    pub source_ae_title: &'a str,
}

fn padded(value: &str, vr: Vr) -> Vec<u8> {
    let mut v = value.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(if vr == Vr::UI { 0 } else { b' ' });
    }
    v
}

impl FileMeta {
    /// A File Meta group built from `info`; empty optional values are left out.
    pub fn new(info: &FileMetaInfo<'_>) -> FileMeta {
        let mut elements = vec![MetaElement {
            tag: Tag::new(2, 1),
            vr: Vr::OB,
            value: vec![0, 1],
        }];
        let mut add = |el: u16, vr: Vr, value: &str, required: bool| {
            if required || !value.is_empty() {
                elements.push(MetaElement {
                    tag: Tag::new(2, el),
                    vr,
                    value: padded(value, vr),
                });
            }
        };
        add(0x0002, Vr::UI, info.sop_class_uid, true);
        add(0x0003, Vr::UI, info.sop_instance_uid, true);
        add(0x0010, Vr::UI, info.transfer_syntax_uid, true);
        add(0x0012, Vr::UI, info.implementation_class_uid, true);
        add(0x0013, Vr::SH, info.implementation_version_name, false);
        add(0x0016, Vr::AE, info.source_ae_title, false);
        FileMeta {
            preamble: [0; 128],
            elements,
        }
    }

    /// The value of a meta element as trimmed text.
    pub fn string(&self, tag: Tag) -> Option<String> {
        let e = self.elements.iter().find(|e| e.tag == tag)?;
        Some(
            String::from_utf8_lossy(&e.value)
                .trim_end_matches(['\0', ' '])
                .trim_start()
                .to_owned(),
        )
    }

    pub fn transfer_syntax_uid(&self) -> Option<String> {
        self.string(Tag::TRANSFER_SYNTAX_UID)
    }

    /// Sets (or adds, keeping tag order) a string element.
    pub fn set_string(&mut self, tag: Tag, vr: Vr, value: &str) {
        let value = padded(value, vr);
        match self.elements.iter_mut().find(|e| e.tag == tag) {
            Some(e) => {
                e.vr = vr;
                e.value = value;
            }
            None => {
                let at = self
                    .elements
                    .iter()
                    .position(|e| e.tag > tag)
                    .unwrap_or(self.elements.len());
                self.elements.insert(at, MetaElement { tag, vr, value });
            }
        }
    }

    /// Preamble, "DICM" and the group with a correct group length (0002,0000).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut group = Vec::new();
        for e in &self.elements {
            group.extend_from_slice(&e.tag.group().to_le_bytes());
            group.extend_from_slice(&e.tag.element().to_le_bytes());
            group.extend_from_slice(&e.vr.bytes());
            if e.vr.has_long_length() {
                group.extend_from_slice(&[0, 0]);
                group.extend_from_slice(&(e.value.len() as u32).to_le_bytes());
            } else {
                group.extend_from_slice(&(e.value.len() as u16).to_le_bytes());
            }
            group.extend_from_slice(&e.value);
        }
        let mut out = Vec::with_capacity(144 + group.len());
        out.extend_from_slice(&self.preamble);
        out.extend_from_slice(b"DICM");
        out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        out.extend_from_slice(&(group.len() as u32).to_le_bytes());
        out.extend_from_slice(&group);
        out
    }
}

/// Writes a preamble and File Meta group for a new file; returns the bytes written.
pub fn write_file_meta<W: Write + ?Sized>(
    out: &mut W,
    info: &FileMetaInfo<'_>,
) -> std::io::Result<usize> {
    let bytes = FileMeta::new(info).to_bytes();
    out.write_all(&bytes)?;
    Ok(bytes.len())
}

fn meta_err(offset: usize, what: impl Into<String>) -> CodecError {
    CodecError::NotPart10 {
        offset: offset as u64,
        what: what.into(),
    }
}

/// Parses the preamble and File Meta at the start of `buf`. Returns the meta and the offset
/// of the data set, or `None` when `buf` is too short to tell.
pub fn parse_file_meta(buf: &[u8]) -> Result<Option<(FileMeta, usize)>, CodecError> {
    if buf.len() < 132 {
        return Ok(None);
    }
    if &buf[128..132] != b"DICM" {
        return Err(meta_err(
            128,
            "no \"DICM\" prefix after the 128-byte preamble",
        ));
    }
    let mut preamble = [0u8; 128];
    preamble.copy_from_slice(&buf[..128]);
    let mut pos = 132;
    let mut end: Option<usize> = None;
    let mut elements = Vec::new();
    loop {
        if end == Some(pos) {
            break;
        }
        if buf.len() < pos + 8 {
            if end.is_none()
                && buf.len() >= pos + 2
                && u16::from_le_bytes([buf[pos], buf[pos + 1]]) != 2
            {
                break;
            }
            return Ok(None);
        }
        let tag = Tag::new(
            u16::from_le_bytes([buf[pos], buf[pos + 1]]),
            u16::from_le_bytes([buf[pos + 2], buf[pos + 3]]),
        );
        if tag.group() != 2 {
            if let Some(e) = end {
                return Err(meta_err(
                    pos,
                    format!("File Meta group ends before its group length says ({e})"),
                ));
            }
            break;
        }
        let vr = Vr::from_bytes([buf[pos + 4], buf[pos + 5]]).ok_or_else(|| {
            meta_err(
                pos,
                format!("File Meta element {tag} has no valid explicit VR"),
            )
        })?;
        let (len, hdr) = if vr.has_long_length() {
            if buf.len() < pos + 12 {
                return Ok(None);
            }
            (
                u32::from_le_bytes([buf[pos + 8], buf[pos + 9], buf[pos + 10], buf[pos + 11]])
                    as usize,
                12,
            )
        } else {
            (u16::from_le_bytes([buf[pos + 6], buf[pos + 7]]) as usize, 8)
        };
        if len > MAX_META {
            return Err(meta_err(
                pos,
                format!("File Meta element {tag} has length {len}"),
            ));
        }
        if buf.len() < pos + hdr + len {
            if pos + hdr + len > MAX_META {
                return Err(meta_err(pos, "File Meta group larger than 1 MiB"));
            }
            return Ok(None);
        }
        let value = buf[pos + hdr..pos + hdr + len].to_vec();
        if tag.element() == 0 {
            if len == 4 && end.is_none() {
                let glen = u32::from_le_bytes([value[0], value[1], value[2], value[3]]) as usize;
                end = Some(pos + hdr + len + glen);
                if glen > MAX_META {
                    return Err(meta_err(pos, "File Meta group length larger than 1 MiB"));
                }
            }
        } else {
            elements.push(MetaElement { tag, vr, value });
        }
        pos += hdr + len;
        if let Some(e) = end {
            if pos > e {
                return Err(meta_err(
                    pos,
                    format!("File Meta element {tag} runs past the group length"),
                ));
            }
        }
    }
    let meta = FileMeta { preamble, elements };
    if meta.transfer_syntax_uid().is_none() {
        return Err(meta_err(
            132,
            "File Meta has no Transfer Syntax UID (0002,0010)",
        ));
    }
    Ok(Some((meta, pos)))
}

/// Converts a whole Part 10 file to `dst_uid`, updating (0002,0010) and the group length.
pub fn transcode_part10(
    data: &[u8],
    dst_uid: &str,
    dict: &Dictionary,
    tags: &[Tag],
) -> Result<(Vec<u8>, Extracted), CodecError> {
    let (mut meta, start) = parse_file_meta(data)?
        .ok_or_else(|| meta_err(data.len(), "file ends inside the File Meta group"))?;
    let src = TransferSyntax::from_uid(&meta.transfer_syntax_uid().unwrap_or_default());
    let dst = TransferSyntax::from_uid(dst_uid);
    meta.set_string(Tag::TRANSFER_SYNTAX_UID, Vr::UI, &dst.uid);
    let mut out = meta.to_bytes();
    let (body, ex) = convert_dataset(&src, &dst, dict, tags, &data[start..])?;
    out.extend_from_slice(&body);
    Ok((out, ex))
}

/// Reads the File Meta from the start of a reader; returns it with the bytes read past it.
pub fn read_file_meta<R: Read + ?Sized>(input: &mut R) -> Result<(FileMeta, Vec<u8>), CodecError> {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        if let Some((meta, start)) = parse_file_meta(&buf)? {
            return Ok((meta, buf.split_off(start)));
        }
        let n = input.read(&mut chunk)?;
        if n == 0 {
            return Err(meta_err(buf.len(), "file ends inside the File Meta group"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Streams a Part 10 file to another in `dst_uid` with bounded memory (1 MiB reads).
/// Passing `None` as `dst` only validates and extracts.
pub fn transcode_part10_stream<R: Read + ?Sized, W: Write + ?Sized>(
    input: &mut R,
    out: &mut W,
    dst_uid: Option<&str>,
    dict: &Dictionary,
    tags: &[Tag],
) -> Result<Extracted, CodecError> {
    let (mut meta, rest) = read_file_meta(input)?;
    let src_uid = meta.transfer_syntax_uid().unwrap_or_default();
    let dst_uid = dst_uid.unwrap_or(&src_uid).to_owned();
    let mut conv = StreamConverter::from_uids(&src_uid, &dst_uid, dict, tags)?;
    meta.set_string(
        Tag::TRANSFER_SYNTAX_UID,
        Vr::UI,
        &TransferSyntax::from_uid(&dst_uid).uid,
    );
    out.write_all(&meta.to_bytes())?;
    conv.feed(&rest, out)?;
    drop(rest);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        conv.feed(&chunk[..n], out)?;
    }
    conv.finish(out)
}

/// File-to-file form of [`transcode_part10_stream`]. The output is written to a temporary
/// file beside `dst` and renamed into place on success.
pub fn transcode_file(
    src: &Path,
    dst: &Path,
    dst_uid: &str,
    dict: &Dictionary,
    tags: &[Tag],
) -> Result<Extracted, CodecError> {
    let mut input = std::fs::File::open(src)?;
    let mut tmp_name = dst
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(".part");
    let tmp = dst.with_file_name(tmp_name);
    let result = (|| {
        // The converter writes in pieces of up to 256 KiB: no extra buffering needed.
        let mut out = std::fs::File::create(&tmp)?;
        let ex = transcode_part10_stream(&mut input, &mut out, Some(dst_uid), dict, tags)?;
        drop(out);
        std::fs::rename(&tmp, dst)?;
        Ok(ex)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
