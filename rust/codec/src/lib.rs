//! Streaming DICOM element codec (PS3.5): reads and writes data sets in Implicit VR Little
//! Endian, Explicit VR Little/Big Endian and Deflated Explicit VR Little Endian, converts
//! between them while streaming (byte swapping by VR, VR lookup from a dictionary generated
//! at build time from pydicom's, private dictionaries at run time), extracts chosen
//! top-level attributes on the way, and reads/writes Part 10 File Meta (PS3.10 §7.1).
//!
//! ```
//! use codec::{Dictionary, StreamConverter, Tag};
//! let ds = [0x10, 0x00, 0x20, 0x00, 4, 0, 0, 0, b'1', b'2', b'3', b' ']; // (0010,0020) "123 " ILE
//! let tags = [Tag::new(0x0010, 0x0020)];
//! let mut conv = StreamConverter::from_uids(
//!     "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", &Dictionary::standard(), &tags).unwrap();
//! let mut out = Vec::new();
//! for chunk in ds.chunks(5) {
//!     conv.feed(chunk, &mut out).unwrap();
//! }
//! let ex = conv.finish(&mut out).unwrap();
//! assert_eq!(out, [0x00, 0x10, 0x00, 0x20, b'L', b'O', 0, 4, b'1', b'2', b'3', b' ']);
//! assert_eq!(ex.string(tags[0]).as_deref(), Some("123"));
//! ```
mod core;
pub mod dict;
mod error;
mod extract;
pub mod part10;
mod stream;
pub mod swap;
mod tag;
pub mod ts;
mod vr;

pub use crate::core::{MAX_DEPTH, MAX_EXTRACT_LEN};
pub use dict::{Dictionary, PrivateDictionary};
pub use error::{CodecError, MaybeTag};
pub use extract::{Extracted, ExtractedValue};
pub use part10::{
    parse_file_meta, read_file_meta, transcode_file, transcode_part10, transcode_part10_stream,
    write_file_meta, FileMeta, FileMetaInfo, MetaElement,
};
pub use stream::{
    convert_dataset, convert_dataset_into, convert_dataset_into_uninit, predicted_len,
    StreamConverter,
};
pub use tag::Tag;
pub use ts::TransferSyntax;
pub use vr::Vr;
