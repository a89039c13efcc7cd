//! Transfer-syntax conversion of a data set, streaming ([`StreamConverter`]) or whole
//! ([`convert_dataset`]). Deflate (PS3.5 §A.5) is raw deflate (RFC 1951) via flate2.
use crate::core::Core;
use crate::error::{CodecError, MaybeTag};
use crate::swap::{NullSink, SliceSink};
use crate::{Dictionary, Extracted, Tag, TransferSyntax};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::io::Write;

/// Input is processed in pieces of this size, which bounds the staging buffers.
const STEP: usize = 256 * 1024;

/// Converts a data set from one transfer syntax to another as chunks arrive (e.g. PDVs),
/// extracting the requested top-level attributes on the way. Memory stays bounded by a few
/// 256 KiB buffers whatever the size of the data set; values stream through.
///
/// When source and target are the same syntax the input is copied verbatim to the output
/// and only parsed (headers, plus the values to extract) to validate it.
pub struct StreamConverter {
    core: Core,
    passthrough: bool,
    inflater: Option<Decompress>,
    inflate_done: bool,
    deflater: Option<Compress>,
    staging: Vec<u8>,
    zbuf: Vec<u8>,
    ibuf: Vec<u8>,
    /// Size of the pieces input is processed in and of the inflate/deflate output buffers.
    step: usize,
}

impl StreamConverter {
    /// `tags`: top-level attributes to extract. Errors when the pair of syntaxes cannot be
    /// converted (an encapsulated syntax to anything but itself).
    pub fn new(
        src: &TransferSyntax,
        dst: &TransferSyntax,
        dict: &Dictionary,
        tags: &[Tag],
    ) -> Result<StreamConverter, CodecError> {
        let passthrough = src.uid == dst.uid;
        if !(passthrough || src.native && dst.native) {
            return Err(CodecError::UnsupportedConversion {
                from: src.uid.clone(),
                to: dst.uid.clone(),
            });
        }
        let core = Core::new(
            src.enc(),
            if passthrough { src.enc() } else { dst.enc() },
            dict,
            tags,
        );
        Ok(StreamConverter {
            core,
            passthrough,
            inflater: src.deflated.then(|| Decompress::new(false)),
            inflate_done: false,
            deflater: (dst.deflated && !passthrough)
                .then(|| Compress::new(Compression::default(), false)),
            staging: Vec::new(),
            zbuf: Vec::new(),
            ibuf: Vec::new(),
            step: STEP,
        })
    }

    /// Processes input in pieces of `size` bytes (at least 1) and inflates and deflates through
    /// buffers of that size, instead of 256 KiB: tests and fuzz targets use tiny buffers to reach
    /// the cases a full buffer leads to with small data sets. Call before the first `feed`.
    #[doc(hidden)]
    pub fn with_buffer_size(mut self, size: usize) -> Self {
        self.step = size.max(1);
        self
    }

    /// Same as [`StreamConverter::new`] from transfer syntax UIDs.
    pub fn from_uids(
        src: &str,
        dst: &str,
        dict: &Dictionary,
        tags: &[Tag],
    ) -> Result<Self, CodecError> {
        Self::new(
            &TransferSyntax::from_uid(src),
            &TransferSyntax::from_uid(dst),
            dict,
            tags,
        )
    }

    /// Values extracted so far.
    pub fn extracted(&self) -> &Extracted {
        &self.core.extracted
    }

    /// True once the stream has passed every tag to extract (a later top-level element has
    /// begun), so [`StreamConverter::extracted`] is final for a data set in tag order.
    pub fn keys_complete(&self) -> bool {
        self.core.keys_complete()
    }

    /// Bytes of (inflated) data set consumed so far.
    pub fn position(&self) -> u64 {
        self.core.position()
    }

    /// Feeds the next chunk (any size, any boundary) and writes what it converts to `out`.
    pub fn feed<W: Write + ?Sized>(&mut self, chunk: &[u8], out: &mut W) -> Result<(), CodecError> {
        if self.passthrough {
            out.write_all(chunk)?;
        }
        for piece in chunk.chunks(self.step) {
            if self.inflater.is_some() {
                self.inflate(piece, out, false)?;
            } else {
                self.run_core(piece, out)?;
            }
        }
        Ok(())
    }

    /// Ends the stream: errors if the data set is truncated; flushes the deflater.
    pub fn finish<W: Write + ?Sized>(mut self, out: &mut W) -> Result<Extracted, CodecError> {
        if self.inflater.is_some() {
            self.inflate(&[], out, true)?;
            if !self.inflate_done {
                return Err(CodecError::Truncated {
                    offset: self.core.position(),
                    tag: MaybeTag(None),
                    what: "deflate stream ends early",
                });
            }
        }
        if self.passthrough {
            self.core.finish(&mut NullSink)?;
        } else {
            self.core.finish(&mut self.staging)?;
            self.flush(out, self.deflater.is_some())?;
        }
        out.flush()?;
        Ok(std::mem::take(&mut self.core.extracted))
    }

    fn run_core<W: Write + ?Sized>(&mut self, data: &[u8], out: &mut W) -> Result<(), CodecError> {
        if self.passthrough {
            self.core.process(data, &mut NullSink)
        } else {
            self.core.process(data, &mut self.staging)?;
            self.flush(out, false)
        }
    }

    fn inflate<W: Write + ?Sized>(
        &mut self,
        input: &[u8],
        out: &mut W,
        last: bool,
    ) -> Result<(), CodecError> {
        let mut ibuf = std::mem::take(&mut self.ibuf);
        ibuf.resize(self.step, 0);
        let result = self.inflate_with(input, out, last, &mut ibuf);
        self.ibuf = ibuf;
        result
    }

    fn inflate_with<W: Write + ?Sized>(
        &mut self,
        mut input: &[u8],
        out: &mut W,
        last: bool,
        ibuf: &mut [u8],
    ) -> Result<(), CodecError> {
        let flush = if last {
            FlushDecompress::Finish
        } else {
            FlushDecompress::None
        };
        while !self.inflate_done {
            let inf = self.inflater.as_mut().expect("inflater");
            let (in0, out0) = (inf.total_in(), inf.total_out());
            let status = inf
                .decompress(input, ibuf, flush)
                .map_err(|e| CodecError::Deflate {
                    offset: self.core.position(),
                    message: e.to_string(),
                })?;
            let used = (inf.total_in() - in0) as usize;
            let produced = (inf.total_out() - out0) as usize;
            input = &input[used..];
            if produced > 0 {
                self.run_core(&ibuf[..produced], out)?;
            }
            if status == Status::StreamEnd {
                // Bytes after the end of the deflate stream are padding and are ignored.
                self.inflate_done = true;
                break;
            }
            if produced == ibuf.len() {
                // The output buffer is full: the inflater may hold decoded bytes it could not hand
                // out (zlib: the rest of a match; miniz_oxide: its window), which the next call
                // gives without consuming input; so call again, whatever input is left.
                continue;
            }
            if input.is_empty() {
                // Room was left in the output, so everything the input decodes to is out.
                break;
            }
            if used == 0 && produced == 0 {
                // Input left, room in the output, and the inflater takes none of it. The input
                // must never be dropped (the caller does not hand it again): fail instead.
                return Err(CodecError::Deflate {
                    offset: self.core.position(),
                    message: "the inflater makes no progress".into(),
                });
            }
        }
        Ok(())
    }

    fn flush<W: Write + ?Sized>(&mut self, out: &mut W, finish: bool) -> Result<(), CodecError> {
        match self.deflater.as_mut() {
            None => {
                out.write_all(&self.staging)?;
            }
            Some(def) => {
                if self.zbuf.len() != self.step {
                    self.zbuf.resize(self.step, 0);
                }
                let mut input: &[u8] = &self.staging;
                let flush = if finish {
                    FlushCompress::Finish
                } else {
                    FlushCompress::None
                };
                loop {
                    let (in0, out0) = (def.total_in(), def.total_out());
                    let status = def.compress(input, &mut self.zbuf, flush).map_err(|e| {
                        CodecError::Deflate {
                            offset: 0,
                            message: e.to_string(),
                        }
                    })?;
                    let used = (def.total_in() - in0) as usize;
                    let produced = (def.total_out() - out0) as usize;
                    input = &input[used..];
                    out.write_all(&self.zbuf[..produced])?;
                    // Each call takes input until the output is full (miniz_oxide and zlib
                    // alike), so: finishing, go on until the end of the stream; otherwise, until
                    // the input is gone and the output was not filled (nothing pending).
                    if finish {
                        if status == Status::StreamEnd {
                            break;
                        }
                    } else if input.is_empty() && produced < self.zbuf.len() {
                        break;
                    }
                    if used == 0 && produced == 0 {
                        // Never seen; fail rather than spin.
                        return Err(CodecError::Deflate {
                            offset: 0,
                            message: "the deflater makes no progress".into(),
                        });
                    }
                }
            }
        }
        self.staging.clear();
        Ok(())
    }
}

/// Length of the converted data set when it is known in advance: conversions that keep the
/// VR field (or its absence) and do not deflate preserve every length.
pub fn predicted_len(src: &TransferSyntax, dst: &TransferSyntax, len: usize) -> Option<usize> {
    let plain = !src.deflated && !dst.deflated;
    (plain && (src.uid == dst.uid || src.explicit_vr == dst.explicit_vr)).then_some(len)
}

/// Converts a whole data set (no File Meta) and returns the bytes and the extracted values.
pub fn convert_dataset(
    src: &TransferSyntax,
    dst: &TransferSyntax,
    dict: &Dictionary,
    tags: &[Tag],
    data: &[u8],
) -> Result<(Vec<u8>, Extracted), CodecError> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 8 + 1024);
    if src.deflated || dst.deflated {
        let mut conv = StreamConverter::new(src, dst, dict, tags)?;
        conv.feed(data, &mut out)?;
        let ex = conv.finish(&mut out)?;
        return Ok((out, ex));
    }
    let ex = convert_plain(src, dst, dict, tags, data, &mut out)?;
    Ok((out, ex))
}

fn convert_plain<S: crate::swap::Sink>(
    src: &TransferSyntax,
    dst: &TransferSyntax,
    dict: &Dictionary,
    tags: &[Tag],
    data: &[u8],
    sink: &mut S,
) -> Result<Extracted, CodecError> {
    if !(src.uid == dst.uid || src.native && dst.native) {
        return Err(CodecError::UnsupportedConversion {
            from: src.uid.clone(),
            to: dst.uid.clone(),
        });
    }
    let dst_enc = if src.uid == dst.uid {
        src.enc()
    } else {
        dst.enc()
    };
    let mut core = Core::new(src.enc(), dst_enc, dict, tags);
    core.set_total(data.len() as u64);
    core.process(data, sink)?;
    core.finish(sink)?;
    Ok(core.extracted)
}

/// Converts a whole data set into `out`, whose length must be [`predicted_len`].
pub fn convert_dataset_into(
    src: &TransferSyntax,
    dst: &TransferSyntax,
    dict: &Dictionary,
    tags: &[Tag],
    data: &[u8],
    out: &mut [u8],
) -> Result<Extracted, CodecError> {
    // SAFETY: viewing initialised bytes as MaybeUninit<u8> is sound; only initialised
    // values are written through the view.
    let uninit = unsafe { &mut *(out as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    convert_dataset_into_uninit(src, dst, dict, tags, data, uninit)
}

/// [`convert_dataset_into`] for an uninitialised buffer (e.g. a fresh Python `bytes`); on
/// `Ok` every byte of `out` has been written.
pub fn convert_dataset_into_uninit(
    src: &TransferSyntax,
    dst: &TransferSyntax,
    dict: &Dictionary,
    tags: &[Tag],
    data: &[u8],
    out: &mut [std::mem::MaybeUninit<u8>],
) -> Result<Extracted, CodecError> {
    if predicted_len(src, dst, data.len()) != Some(out.len()) {
        return Err(CodecError::UnsupportedConversion {
            from: src.uid.clone(),
            to: dst.uid.clone(),
        });
    }
    if src.uid == dst.uid {
        // Validate and extract without re-encoding, then copy.
        let ex = convert_plain(src, dst, dict, tags, data, &mut NullSink)?;
        crate::swap::copy_uninit(data, out);
        return Ok(ex);
    }
    let mut sink = SliceSink::new(out);
    let ex = convert_plain(src, dst, dict, tags, data, &mut sink)?;
    if sink.overflow || sink.pos != sink.buf.len() {
        return Err(CodecError::Truncated {
            offset: sink.pos as u64,
            tag: MaybeTag(None),
            what: "converted size differs from the predicted size",
        });
    }
    Ok(ex)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFL: &str = "1.2.840.10008.1.2.1.99";
    const ELE: &str = "1.2.840.10008.1.2.1";

    /// (7FE0,0010) OB of `len` zeros, Explicit VR Little Endian.
    fn zeros_element(len: u32) -> Vec<u8> {
        let mut d = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0];
        d.extend_from_slice(&len.to_le_bytes());
        d
    }

    struct Counter(u64);

    impl Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn assert_bounded(conv: &StreamConverter) {
        for (name, cap) in [
            ("staging", conv.staging.capacity()),
            ("ibuf", conv.ibuf.capacity()),
            ("zbuf", conv.zbuf.capacity()),
        ] {
            assert!(cap <= 2 * STEP, "{name} grew to {cap} bytes");
        }
    }

    /// 64 MiB of zeros deflate to ~64 KiB: each PDV of 16 KiB inflates to ~16 MiB, which must
    /// stream through the fixed buffers, never gather in them.
    #[test]
    fn buffers_stay_bounded_on_highly_compressible_streams() {
        const LEN: u32 = 64 << 20;
        let head = zeros_element(LEN);
        let zeros = vec![0u8; 1 << 20];
        let mut defl = Vec::new();
        let mut conv = StreamConverter::from_uids(ELE, DEFL, &Dictionary::standard(), &[]).unwrap();
        conv.feed(&head, &mut defl).unwrap();
        for _ in 0..LEN >> 20 {
            conv.feed(&zeros, &mut defl).unwrap();
            assert_bounded(&conv);
        }
        conv.finish(&mut defl).unwrap();
        assert!(defl.len() < 1 << 20);
        for (dst, want) in [
            (ELE, head.len() as u64 + u64::from(LEN)),
            (DEFL, defl.len() as u64),
        ] {
            let mut conv =
                StreamConverter::from_uids(DEFL, dst, &Dictionary::standard(), &[]).unwrap();
            let mut out = Counter(0);
            for c in defl.chunks(16372) {
                conv.feed(c, &mut out).unwrap();
                assert_bounded(&conv);
            }
            conv.finish(&mut out).unwrap();
            assert_eq!(out.0, want, "{dst}");
        }
    }
}
