//! Storage SCU data path (PS3.4 B.2, PS3.7 §9.1.1): a Part 10 file (or data-set bytes)
//! streams from disk into the data-set PDVs of a C-STORE-RQ, converted on the fly when the peer
//! accepted another uncompressed transfer syntax. The response is awaited through the
//! [`Link`], so whatever else the peer sends meanwhile is routed (a C-CANCEL of the C-GET these
//! sub-operations serve, a request). Used by `store`, C-MOVE and C-GET.
use crate::link::{Link, LinkGuard};
use codec::part10::read_file_meta;
use codec::{Dictionary, StreamConverter, Tag, TransferSyntax};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;
use ul::dimse::{self, command_field, tag};
use ul::{AssocError, Command, NegotiatedContext};

/// Why a C-STORE could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Assoc(#[from] AssocError),
    #[error("{0}")]
    Codec(#[from] codec::CodecError),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("no accepted presentation context for SOP class {sop_class} in a usable transfer syntax (data is {transfer_syntax})")]
    NoContext {
        sop_class: String,
        transfer_syntax: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// What the peer answered.
#[derive(Debug)]
pub struct StoreResponse {
    pub status: u16,
    pub response: Command,
    /// Data-set bytes sent (after conversion).
    pub bytes: u64,
    /// The transfer syntax the data set was sent in.
    pub transfer_syntax: String,
}

/// Identification of one data set to send.
pub struct Outgoing<'a> {
    pub sop_class_uid: &'a str,
    pub sop_instance_uid: &'a str,
    pub transfer_syntax_uid: &'a str,
    pub priority: u16,
    /// (Move Originator AE title, Move Originator Message ID) for C-MOVE sub-operations.
    pub move_originator: Option<(&'a str, u16)>,
}

/// Picks the accepted context for the data: the same transfer syntax if accepted, else any
/// accepted uncompressed one the codec can convert to.
pub fn choose_context<'n>(
    negotiated: &'n ul::Negotiated,
    sop_class: &str,
    ts: &str,
) -> Option<&'n NegotiatedContext> {
    let ours = TransferSyntax::from_uid(ts);
    negotiated
        .contexts
        .iter()
        .find(|c| c.accepted() && c.abstract_syntax == sop_class && c.transfer_syntax == ours.uid)
        .or_else(|| {
            if !ours.native {
                return None;
            }
            negotiated.contexts.iter().find(|c| {
                c.accepted()
                    && c.abstract_syntax == sop_class
                    && TransferSyntax::from_uid(&c.transfer_syntax).native
            })
        })
}

/// Sends one data set read from `data` (already positioned at the data set) as a C-STORE-RQ on
/// `link` and waits for the C-STORE-RSP, routing whatever else the peer sends meanwhile. A data
/// set that cannot be read to its end (a truncated file, a codec error) aborts the association:
/// its command has gone out, and the peer cannot be told that the data set will not follow.
pub fn store_data_set<'l>(
    link: &'l Link,
    g: &mut LinkGuard<'l>,
    out: &Outgoing<'_>,
    data: &mut dyn Read,
    dict: &Dictionary,
    dimse_timeout: Option<Duration>,
) -> Result<StoreResponse, SendError> {
    ul::negotiate::check_uid(out.sop_instance_uid).map_err(SendError::Invalid)?;
    let ctx = choose_context(
        link.negotiated(),
        out.sop_class_uid,
        out.transfer_syntax_uid,
    )
    .cloned()
    .ok_or_else(|| SendError::NoContext {
        sop_class: out.sop_class_uid.to_string(),
        transfer_syntax: out.transfer_syntax_uid.to_string(),
    })?;
    let src = TransferSyntax::from_uid(out.transfer_syntax_uid);
    let dst = TransferSyntax::from_uid(&ctx.transfer_syntax);
    let message_id = link.next_message_id();
    let mut rq = dimse::request(
        command_field::C_STORE_RQ,
        message_id,
        out.sop_class_uid,
        true,
    );
    rq.set_str(tag::AFFECTED_SOP_INSTANCE_UID, out.sop_instance_uid);
    rq.set_us(tag::PRIORITY, out.priority);
    if let Some((ae, id)) = out.move_originator {
        rq.set_str(tag::MOVE_ORIGINATOR_AE_TITLE, ae);
        rq.set_us(tag::MOVE_ORIGINATOR_MESSAGE_ID, id);
    }
    link.expect_response(g, message_id);
    let sent = {
        let mut w = g.assoc.send_command_with_writer(ctx.id, &rq)?;
        let streamed = if src.uid == dst.uid {
            // Same syntax: read straight into the outgoing fragment buffer.
            w.fill_from(data).map(|_| ()).map_err(SendError::from)
        } else {
            convert_into(&src, &dst, dict, data, &mut w)
        };
        match streamed {
            // PS3.5 A.5: a Deflated data set of odd length is padded with one trailing NUL byte
            // (a file may carry it unpadded; DCMTK refuses an odd fragment).
            Ok(()) if dst.deflated && w.written() % 2 == 1 => w
                .write_all(&[0])
                .map_err(SendError::from)
                .and_then(|()| w.finish().map_err(SendError::from)),
            Ok(()) => w.finish().map_err(SendError::from),
            Err(e) => Err(e),
        }
    };
    let bytes = match sent {
        Ok(b) => b,
        Err(e) => {
            link.abort_locked(
                g,
                format!(
                    "C-STORE of {} could not be sent whole: {e}",
                    out.sop_instance_uid
                ),
            );
            return Err(e);
        }
    };
    let rsp = link.await_response(g, message_id, dimse_timeout)?;
    if rsp.command.command_field() != Some(command_field::C_STORE_RSP) {
        return Err(SendError::Invalid(format!(
            "expected C-STORE-RSP to message {message_id}, received {}",
            rsp.command
                .command_field()
                .and_then(command_field::name)
                .unwrap_or("an unknown message")
        )));
    }
    let status = rsp
        .command
        .status()
        .ok_or_else(|| SendError::Invalid("C-STORE-RSP without Status".into()))?;
    Ok(StoreResponse {
        status,
        response: rsp.command,
        bytes,
        transfer_syntax: dst.uid,
    })
}

/// Streams `data` from `src` to `dst` through the codec into `out`.
fn convert_into(
    src: &TransferSyntax,
    dst: &TransferSyntax,
    dict: &Dictionary,
    data: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<(), SendError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut conv = StreamConverter::new(src, dst, dict, &[])?;
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            break;
        }
        conv.feed(&buf[..n], out)?;
    }
    conv.finish(out)?;
    Ok(())
}

/// SOP Class UID (0008,0016) and SOP Instance UID (0008,0018) from the start of a data set, which
/// the C-STORE-RQ must carry (PS3.4 B.2.2); group 0008 precedes bulk data, so a prefix suffices.
fn data_set_uids(prefix: &[u8], ts: &str, dict: &Dictionary) -> (Option<String>, Option<String>) {
    let class = Tag::new(0x0008, 0x0016);
    let inst = Tag::new(0x0008, 0x0018);
    let Ok(mut conv) = StreamConverter::from_uids(ts, ts, dict, &[class, inst]) else {
        return (None, None);
    };
    let mut sink = io::sink();
    let _ = conv.feed(prefix, &mut sink);
    let ex = conv.extracted();
    (ex.string(class), ex.string(inst))
}

/// What a Part 10 file holds, read from its File Meta and the start of its data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part10Head {
    /// SOP Class/Instance UID of the data set (falling back to the File Meta's).
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    /// Bytes of the data set already read past the File Meta.
    pub prefix: Vec<u8>,
}

/// Reads the File Meta and up to 64 KiB of the data set (enough for the group 0008 UIDs).
pub fn read_head(f: &mut dyn Read, dict: &Dictionary) -> Result<Part10Head, SendError> {
    let (meta, mut rest) = read_file_meta(f)?;
    let ts = meta.transfer_syntax_uid().unwrap_or_default();
    let deflated = TransferSyntax::from_uid(&ts).deflated;
    if rest.len() < 64 * 1024 && !deflated {
        let mut more = vec![0u8; 64 * 1024 - rest.len()];
        let mut filled = 0;
        while filled < more.len() {
            let n = f.read(&mut more[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        rest.extend_from_slice(&more[..filled]);
    }
    let (ds_class, ds_inst) = if deflated {
        (None, None)
    } else {
        data_set_uids(&rest, &ts, dict)
    };
    Ok(Part10Head {
        sop_class_uid: ds_class
            .or_else(|| meta.string(Tag::new(0x0002, 0x0002)))
            .unwrap_or_default(),
        sop_instance_uid: ds_inst
            .or_else(|| meta.string(Tag::new(0x0002, 0x0003)))
            .unwrap_or_default(),
        transfer_syntax_uid: ts,
        prefix: rest,
    })
}

/// [`read_head`] of a file by path.
pub fn peek_file(path: &Path, dict: &Dictionary) -> Result<Part10Head, SendError> {
    let mut f = File::open(path)?;
    read_head(&mut f, dict)
}

/// Sends a Part 10 file as a C-STORE-RQ on `link` (see [`store_data_set`]). The SOP Class and
/// Instance UIDs come from the data set (as DCMTK's storescu does), falling back to the File
/// Meta; the transfer syntax from the File Meta.
pub fn store_file<'l>(
    link: &'l Link,
    g: &mut LinkGuard<'l>,
    path: &Path,
    priority: u16,
    move_originator: Option<(&str, u16)>,
    dict: &Dictionary,
    dimse_timeout: Option<Duration>,
) -> Result<StoreResponse, SendError> {
    let mut f = File::open(path)?;
    let head = read_head(&mut f, dict)?;
    let out = Outgoing {
        sop_class_uid: &head.sop_class_uid,
        sop_instance_uid: &head.sop_instance_uid,
        transfer_syntax_uid: &head.transfer_syntax_uid,
        priority,
        move_originator,
    };
    let mut data = io::Cursor::new(&head.prefix[..]).chain(f);
    store_data_set(link, g, &out, &mut data, dict, dimse_timeout)
}
