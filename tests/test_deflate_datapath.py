"""The C-STORE data path against every uncompressed transfer syntax, whatever the PDV boundaries (issue 20).

Deflated data sets larger than one inflate buffer used to be refused with 0xC000 (the codec dropped input after a
full output buffer). Here the data set the archive stores is compared with what was sent, byte for byte where the
syntax is kept (after inflation where it is Deflated), through the real SCP:

* the issue's reproductions: a mammography-sized image (4096x3328, 16-bit, 500 rows of zeros then noise) saved
  Deflated by pydicom, sent by DCMTK's ``storescu -xd`` and by pynetdicom to ``ferrodicom serve``; 300 MiB of zeros
  sent Deflated by pynetdicom (``serve``'s peak memory stays bounded);
* a raw-socket sender that cuts the data set into PDVs at chosen offsets: every byte its own PDV, cuts inside
  element headers, at and just before the end of values, at and around deflate block boundaries and inside deflate
  blocks, and fixed PDV sizes from 7 bytes to the SCP's largest (2 MiB); for ILE, ELE, EBE and Deflated, data sets
  empty, tiny, with nested sequences of undefined length, with private blocks in odd groups, with 1 MiB of random
  pixels, with 2 MiB of compressible pixels, and 300 MiB of zeros (Deflated); stored as received (every syntax),
  converted to Explicit VR LE (from Deflated and EBE) and converted to Deflated (from ELE and EBE); 292 C-STOREs on
  44 associations;
* pynetdicom (PDVs of the SCP's maximum PDU: 16 KiB and 2 MiB) and DCMTK's ``storescu -xd`` (maximum send PDU 4 KiB
  to 128 KiB, deflate levels 1, 6 and 9) as senders of the same shapes.

Bad input stays first-class: truncated and corrupt deflate streams get 0xC000 and nothing is kept.
"""

from __future__ import annotations

import functools
import socket
import struct
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pydicom
import pytest
from pydicom import Dataset, Sequence
from pydicom.datadict import dictionary_VR
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom import AE as PynAE
from test_association import raw_associate_rq, read_pdu

from conftest import dcmtk, dcmtk_env, ferrodicom_cli, free_port, stop, wait_for_port
from ferrodicom import AE, Archive, _core, pdu
from ferrodicom.services.storage import StorageSCP

ILE, ELE, EBE, DEFL = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)
SYNTAXES = [ILE, ELE, EBE, DEFL]
SC = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
MG = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation
#: Largest PDU the sweep's SCPs receive: room for the 1 MiB PDVs.
SWEEP_MAX_PDU = 2 << 20
ZEROS = 300 << 20


# --- data sets -----------------------------------------------------------------------------------------------------


def base(sop_class: str = SC) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "ISSUE20"
    ds.Modality = "OT"
    return ds


def image(ds: Dataset, rows: int, cols: int) -> Dataset:
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def shape_tiny() -> Dataset:
    return base()


def shape_nested() -> Dataset:
    """Sequences of undefined length nested three deep, items of undefined and defined length, empty items."""
    ds = base()
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "C-111A1", "SRT", "Fluorine-18"
    inner = Dataset()
    inner.RadionuclideCodeSequence = Sequence([code])
    inner.RadionuclideCodeSequence.is_undefined_length = True
    inner.RadiopharmaceuticalStartTime = "101010.00"
    inner.add_new(0x00291010, "LO", "deep")  # orphan private element (no creator) inside an item
    outer = Dataset()
    outer.ReferencedSOPClassUID = SC
    outer.ReferencedSOPInstanceUID = generate_uid()
    outer.RadiopharmaceuticalInformationSequence = Sequence([inner, Dataset()])
    outer.RadiopharmaceuticalInformationSequence.is_undefined_length = True
    ds.ReferencedImageSequence = Sequence([outer, Dataset(), outer])
    ds.ReferencedImageSequence.is_undefined_length = True
    for item in ds.ReferencedImageSequence:
        item.is_undefined_length_sequence_item = True
    ds.ImageComments = "x" * 301  # odd length, padded to even by pydicom
    return ds


def shape_private() -> Dataset:
    """Private blocks in odd groups: several creators in one group, a high block (0xFF), UN/OB/UL/SQ values, an
    element whose creator is missing, the largest odd group."""
    ds = base()
    for group, block, creator in ((0x0009, 0x10, "ACME 1.0"), (0x0009, 0x11, "FERRO ISSUE 20"), (0x0029, 0xFF, "X")):
        ds.add_new((group << 16) | block, "LO", creator)
        ds.add_new((group << 16) | (block << 8) | 0x01, "UL", 0xDEADBEEF)
        ds.add_new((group << 16) | (block << 8) | 0x02, "UN", bytes(range(50)))
        ds.add_new((group << 16) | (block << 8) | 0x03, "OB", b"\x00\xff" * 999)
    item = Dataset()
    item.add_new(0x00110010, "LO", "INNER")
    item.add_new(0x00111001, "SH", "inside")
    seq = Sequence([item])
    seq.is_undefined_length = True
    ds.add_new(0x00111010, "SQ", seq)  # creator (0011,0010) missing at the top level
    ds.add_new(0x7FFF0010, "LO", "LAST GROUP")
    ds.add_new(0x7FFF1000, "OB", b"\x01" * 10)
    return ds


def shape_random() -> Dataset:
    """1 MiB of random 16-bit pixels: deflate keeps them in stored blocks."""
    ds = image(base(), 512, 1024)
    ds.PixelData = np.random.default_rng(20).integers(0, 65536, (512, 1024), dtype=np.uint16).tobytes()
    return ds


def shape_compressible() -> Dataset:
    """2 MiB of pixels, a quarter zeros then 4-bit noise: deflates ~4:1, so a PDV of 256 KiB or more inflates to
    several of the codec's 256 KiB buffers (the shape that lost input before the fix)."""
    ds = image(base(), 1024, 1024)
    px = np.zeros((1024, 1024), np.uint16)
    px[256:] = np.random.default_rng(4).integers(0, 16, (768, 1024), dtype=np.uint16)
    ds.PixelData = px.tobytes()
    return ds


def shape_empty() -> Optional[Dataset]:
    return None


SHAPES: dict[str, Callable[[], Optional[Dataset]]] = {
    "empty": shape_empty,
    "tiny": shape_tiny,
    "nested": shape_nested,
    "private": shape_private,
    "random": shape_random,
    "compressible": shape_compressible,
}


def encode(ds: Optional[Dataset], ts: str) -> bytes:
    """The data set's bytes in ``ts`` (Deflated: raw deflate of the Explicit VR LE bytes, as PS3.5 A.5)."""
    if ds is None:
        plain = b""
    else:
        buf = DicomBytesIO()
        buf.is_implicit_VR, buf.is_little_endian = ts == ILE, ts != EBE
        write_dataset(buf, ds)
        plain = buf.getvalue()
    return deflate(plain) if ts == DEFL else plain


def meaning_in_ele(ds: Optional[Dataset], ts: str) -> bytes:
    """The Explicit VR LE encoding of what ``encode(ds, ts)`` means. pydicom writes Pixel Data bytes as they are, in
    any byte order, so 16-bit pixels written Big Endian mean their byte-swapped values."""
    if ts == EBE and ds is not None and "PixelData" in ds and ds.get("BitsAllocated") == 16:
        ds = Dataset(ds)
        ds.PixelData = np.frombuffer(ds.PixelData, np.uint16).byteswap().tobytes()
    return encode(ds, ELE)


def deflate(data: bytes, level: int = 6) -> bytes:
    """Raw deflate padded with a zero byte to an even length (PS3.5 A.5), as pynetdicom and pydicom do."""
    z = zlib.compressobj(level, zlib.DEFLATED, -15)
    out = z.compress(data) + z.flush()
    return out + b"\0" * (len(out) % 2)


def deflate_in_blocks(data: bytes, points: list[int]) -> tuple[bytes, list[int]]:
    """Raw deflate of ``data`` with a full flush (a byte-aligned block boundary) at each of ``points``; returns the
    stream (not padded) and the compressed offsets of the flushes."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    out, marks, prev = b"", [], 0
    for p in sorted(set(points)):
        out += z.compress(data[prev:p]) + z.flush(zlib.Z_FULL_FLUSH)
        marks.append(len(out))
        prev = p
    return out + z.compress(data[prev:]) + z.flush(), marks


def element_spans(data: bytes, ts: str) -> list[tuple[int, int, int]]:
    """(header start, value start, value end) of every element and item, nested ones included, of a plain data set
    (an undefined-length value ends at its delimiter's end)."""
    explicit, fmt = ts != ILE, "<" if ts != EBE else ">"
    spans: list[tuple[int, int, int]] = []

    def walk(pos: int, end: Optional[int], implicit_inside: bool = False) -> int:
        while pos < len(data) and (end is None or pos < end):
            group, elem = struct.unpack_from(fmt + "HH", data, pos)
            tag = (group << 16) | elem
            if group == 0xFFFE:
                (length,) = struct.unpack_from(fmt + "I", data, pos + 4)
                start = pos
                pos += 8
                if elem == 0xE000:  # item
                    if length == 0xFFFFFFFF:
                        pos = walk(pos, None, implicit_inside)
                    else:
                        walk(pos, pos + length, implicit_inside)
                        pos += length
                spans.append((start, start + 8, pos))
                if elem in (0xE00D, 0xE0DD):  # delimiters
                    return pos
                continue
            start = pos
            if explicit and not implicit_inside:
                vr = data[pos + 4 : pos + 6].decode()
                if vr in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"):
                    (length,) = struct.unpack_from(fmt + "I", data, pos + 8)
                    pos += 12
                else:
                    (length,) = struct.unpack_from(fmt + "H", data, pos + 6)
                    pos += 8
            else:
                (length,) = struct.unpack_from(fmt + "I", data, pos + 4)
                pos += 8
                try:
                    vr = dictionary_VR(tag)
                except KeyError:
                    vr = "UN"
            value = pos
            if length == 0xFFFFFFFF:
                pos = walk(pos, None, implicit_inside or vr == "UN")
            elif vr == "SQ":
                walk(pos, pos + length, implicit_inside)
                pos += length
            else:
                pos += length
            spans.append((start, value, pos))
        return pos

    walk(0, None)
    return sorted(spans)


# --- PDV plans: where the data set is cut -----------------------------------------------------------------------


def fixed(size: int) -> Callable[[bytes, str, dict], list[int]]:
    return lambda data, ts, info: list(range(size, len(data), size))


def every_byte(data: bytes, ts: str, info: dict) -> list[int]:
    return list(range(1, len(data)))


def inside_headers(data: bytes, ts: str, info: dict) -> list[int]:
    """Two cuts inside every element and item header (8 or 12 bytes): one in its first half (tag, VR), one in its second
    (length), at offsets that vary from header to header."""
    cuts = []
    for i, (s, v, _) in enumerate(info["spans"]):
        half = (v - s) // 2
        cuts += [s + 1 + i % half, s + half + 1 + i % (half - 1)]
    return cuts


def value_ends(data: bytes, ts: str, info: dict) -> list[int]:
    """Cuts at the end of every value, and one byte before it."""
    cuts = []
    for _, v, e in info["spans"]:
        cuts.append(e)
        if e - 1 > v:
            cuts.append(e - 1)
    return cuts


def block_edges(data: bytes, ts: str, info: dict) -> list[int]:
    """Deflated: cuts at each deflate block boundary (a full flush), one byte either side, and in the middle of
    each block."""
    marks = [0, *info["flushes"], len(data)]
    cuts = []
    for a, b in zip(marks, marks[1:]):
        cuts += [b - 1, b, b + 1, (a + b) // 2]
    return cuts


PLAIN_PLANS = {
    "every-byte": every_byte,
    "in-headers": inside_headers,
    "value-ends": value_ends,
    "7": fixed(7),
    "16372": fixed(16372),
    "1MiB": fixed(1 << 20),
    "max-pdu": fixed(SWEEP_MAX_PDU - 6),  # the largest PDV the SCP takes (PDV item header: 6 bytes)
}
DEFLATED_PLANS = {
    "every-byte": every_byte,
    "block-edges": block_edges,
    "7": fixed(7),
    "16372": fixed(16372),
    "262138": fixed(262138),
    "1MiB": fixed(1 << 20),
    "max-pdu": fixed(SWEEP_MAX_PDU - 6),  # the largest PDV the SCP takes (PDV item header: 6 bytes)
}


def pdvs(data: bytes, cuts: list[int], largest: int = SWEEP_MAX_PDU - 6) -> list[bytes]:
    """``data`` cut at ``cuts``, and wherever a piece would exceed the SCP's largest PDV."""
    edges = {c for c in cuts if 0 < c < len(data)}
    marks = sorted({0, *edges, len(data)})
    for a, b in zip(marks, marks[1:]):
        edges.update(range(a + largest, b, largest))
    edges_sorted = sorted(edges)
    return [data[a:b] for a, b in zip([0, *edges_sorted], [*edges_sorted, len(data)])] or [b""]


# --- a raw sender -------------------------------------------------------------------------------------------------


class RawSender:
    """An association opened by hand (pynetdicom encodes the A-ASSOCIATE-RQ) with one presentation context (ID 1),
    sending C-STORE data sets in the PDVs it is given, packed several to a P-DATA-TF up to 64 KiB (never beyond the
    SCP's maximum PDU)."""

    def __init__(self, port: int, sop_class: str, ts: str, max_pdu: int = SWEEP_MAX_PDU) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.sendall(raw_associate_rq(called="FERRO", abstract_syntax=sop_class, transfer_syntax=ts))
        ac = pdu.decode(read_pdu(self.sock))
        assert ac.name == "A-ASSOCIATE-AC" and ac.presentation_contexts[0]["result"] == 0, ac
        self.sop_class = sop_class
        self.message_id = 0
        self.max_pdu = max_pdu

    @staticmethod
    def _pdv(control: int, data: bytes) -> bytes:
        return struct.pack(">IBB", len(data) + 2, 1, control) + data

    def store(self, sop_instance_uid: str, fragments: list[bytes]) -> _core.Command:
        self.message_id += 1
        cmd = _core.Command(
            {0x0002: self.sop_class, 0x0100: 0x0001, 0x0110: self.message_id, 0x0700: 0, 0x0800: 0x0000}
            | {0x1000: sop_instance_uid}
        ).encode()
        out = [self._pdu([self._pdv(0x03, cmd)])]
        batch: list[bytes] = []
        size = 0
        for i, frag in enumerate(fragments):
            item = self._pdv(0x02 if i == len(fragments) - 1 else 0x00, frag)
            if batch and size + len(item) > 64 << 10:
                out.append(self._pdu(batch))
                batch, size = [], 0
            batch.append(item)
            size += len(item)
        out.append(self._pdu(batch))
        self.sock.sendall(b"".join(out))
        got = pdu.decode(read_pdu(self.sock))
        assert got.name == "P-DATA-TF", got
        return _core.Command.decode(b"".join(d for _, is_cmd, _, d in got.pdvs if is_cmd))

    def _pdu(self, items: list[bytes]) -> bytes:
        body = b"".join(items)
        assert len(body) <= self.max_pdu, "the sender must respect the SCP's maximum PDU"
        return struct.pack(">BBI", 4, 0, len(body)) + body

    def release(self) -> None:
        self.sock.sendall(struct.pack(">BBII", 5, 0, 4, 0))
        assert pdu.decode(read_pdu(self.sock)).name == "A-RELEASE-RP"
        self.sock.close()


# --- what the archive stored ----------------------------------------------------------------------------------------


def stored_file(root: Path, sop_instance_uid: str) -> Path:
    found = list(root.rglob(f"{sop_instance_uid}.dcm"))
    assert len(found) == 1, (sop_instance_uid, found)
    return found[0]


def split_part10(raw: bytes) -> tuple[str, bytes]:
    """(Transfer Syntax UID, data-set bytes as stored) of a Part 10 file."""
    assert raw[128:132] == b"DICM"
    pos, ts = 132, ""
    while pos + 8 <= len(raw):
        group, elem = struct.unpack_from("<HH", raw, pos)
        if group != 0x0002:
            break
        if raw[pos + 4 : pos + 6] in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            (length,) = struct.unpack_from("<I", raw, pos + 8)
            head = 12
        else:
            (length,) = struct.unpack_from("<H", raw, pos + 6)
            head = 8
        if elem == 0x0010:
            ts = raw[pos + head : pos + head + length].rstrip(b"\0 ").decode()
        pos += head + length
    return ts, raw[pos:]


def inflate(data: bytes) -> bytes:
    z = zlib.decompressobj(-15)
    out = z.decompress(data)
    assert z.eof, "the stored deflate stream is complete"
    return out


def assert_stored(root: Path, uid: str, sent_ts: str, sent: bytes, stored_ts: str, ele: Optional[bytes] = None) -> None:
    """The archive's file holds ``sent`` (a data set in ``sent_ts``) in ``stored_ts``: byte for byte when the syntax
    is kept (and the same after inflation when Deflated); converted between explicit-VR syntaxes, its bytes (inflated
    if Deflated) are ``ele``, the data set's Explicit VR LE encoding (by pydicom)."""
    ts, data = split_part10(stored_file(root, uid).read_bytes())
    assert ts == stored_ts
    plain = inflate(data) if stored_ts == DEFL else data
    if sent_ts == stored_ts:
        assert data == sent, f"stored data set differs from what was sent ({len(data)} vs {len(sent)} bytes)"
        if sent_ts == DEFL:
            assert plain == inflate(sent)
    else:
        assert ILE not in (sent_ts, stored_ts), "lengths change between implicit and explicit VR: not compared here"
        assert ele is not None
        assert plain == ele, f"stored data set differs from the sent one after conversion ({len(plain)} bytes)"


# --- SCPs -----------------------------------------------------------------------------------------------------------


class Scp:
    def __init__(self, root: Path, store_ts: Optional[str] = None, max_pdu: int = SWEEP_MAX_PDU) -> None:
        self.archive = Archive(root, durability="none")
        ae = AE("FERRO")
        ae.maximum_pdu_size = max_pdu
        ae.add_service(StorageSCP(self.archive, store_transfer_syntax=store_ts))
        self.server = ae.start_server(("127.0.0.1", 0), block=False)
        self.port = self.server.port
        self.root = self.archive.root
        self.store_ts = store_ts

    def stored_ts(self, sent_ts: str) -> str:
        return self.store_ts or sent_ts

    def close(self) -> None:
        self.server.shutdown()
        self.archive.close()


@pytest.fixture(scope="module")
def scps(tmp_path_factory) -> Iterator[dict[str, Scp]]:
    """In-process SCPs: storing as received, converting to Explicit VR LE, converting to Deflated; and two with small
    and large maximum PDUs for pynetdicom (it sends PDVs of the SCP's maximum)."""
    root = tmp_path_factory.mktemp("scps")
    made = {
        "as-received": Scp(root / "as-received"),
        "to-ele": Scp(root / "to-ele", ELE),
        "to-deflated": Scp(root / "to-deflated", DEFL),
        "pdu-16k": Scp(root / "pdu-16k", max_pdu=16384),
    }
    yield made
    for s in made.values():
        s.close()


# --- the sweep: raw sender ----------------------------------------------------------------------------------------

SWEEP = [
    (scp, ts, shape, plan)
    for scp, syntaxes in (("as-received", SYNTAXES), ("to-ele", [DEFL, EBE]), ("to-deflated", [ELE, EBE]))
    for ts in syntaxes
    for shape in SHAPES
    for plan in (DEFLATED_PLANS if ts == DEFL else PLAIN_PLANS)
    # Every byte its own PDV for the small shapes only.
    if not (plan == "every-byte" and shape in ("random", "compressible"))
    # Conversions: the shapes with structure, each plan once.
    if scp == "as-received" or shape != "empty"
]


SHORT = {ILE: "ile", ELE: "ele", EBE: "ebe", DEFL: "defl"}
ASSOCIATIONS = sorted({c[:3] for c in SWEEP})


@pytest.mark.parametrize("scp_name,ts,shape", ASSOCIATIONS, ids=[f"{a}-{SHORT[t]}-{s}" for a, t, s in ASSOCIATIONS])
def test_raw_pdv_sweep_stores_what_was_sent(scps, scp_name, ts, shape):
    """One association per (SCP, syntax, shape); one C-STORE per PDV plan, each a fresh instance."""
    scp = scps[scp_name]
    plans = [p for (s, t, sh, p) in SWEEP if (s, t, sh) == (scp_name, ts, shape)]
    table = DEFLATED_PLANS if ts == DEFL else PLAIN_PLANS
    sender = RawSender(scp.port, SC, ts)
    try:
        for plan in plans:
            ds = SHAPES[shape]()
            uid = ds.SOPInstanceUID if ds is not None else generate_uid()
            ele = encode(ds, ELE)
            if plan == "block-edges":
                # Full flushes after every third element: byte-aligned deflate block boundaries to cut at.
                spans = element_spans(ele, ELE)
                data, flushes = deflate_in_blocks(ele, [e for _, _, e in spans if e < len(ele)][::3])
                info = {"flushes": flushes}
            else:
                data = encode(ds, ts)
                info = {"spans": element_spans(data, ts)} if ts != DEFL else {}
            fragments = pdvs(data, table[plan](data, ts, info))
            rsp = sender.store(uid, fragments)
            # The empty data set lacks its SOP Class/Instance UIDs: kept, with warning B007 (archive/DESIGN.md).
            want = 0xB007 if ds is None else 0x0000
            assert rsp.status == want, (plan, len(fragments), hex(rsp.status or 0), rsp.get(0x0902))
            assert_stored(scp.root, uid, ts, data, scp.stored_ts(ts), meaning_in_ele(ds, ts))
    finally:
        sender.release()


def test_sweep_covers_the_combinations():
    """The sweep's own shape: every syntax, shape and plan kind is in it (guards against a filter that empties it)."""
    assert {c[1] for c in SWEEP} == set(SYNTAXES)
    assert {c[2] for c in SWEEP} == set(SHAPES)
    assert {c[3] for c in SWEEP} >= set(PLAIN_PLANS) | set(DEFLATED_PLANS)
    assert len(SWEEP) >= 150


def test_deflated_zeros_are_one_valid_stream():
    """The 300 MiB test data itself: one complete raw deflate stream, header then zeros (a check on the harness)."""
    head = zeros_head(zeros_dataset())
    assert_inflates_to_zeros(deflated_zeros(head), head)


def test_cut_points_land_where_they_claim():
    """The plans' cuts do fall inside headers and at value ends of the data set (a check on the harness)."""
    data = encode(shape_nested(), EBE)
    spans = element_spans(data, EBE)
    assert spans[0][0] == 0 and max(e for _, _, e in spans) == len(data)
    cuts = inside_headers(data, EBE, {"spans": spans})
    heads = [(s, v) for s, v, _ in spans]
    assert cuts and all(any(s < c < v for s, v in heads) for c in cuts)
    assert {v - s for s, v in heads} == {8, 12}  # short and long explicit-VR headers, items
    assert {c - s for c, (s, v) in zip(cuts[1::2], heads) if v - s == 12} >= {8, 9, 10}  # a long header's length
    ends = set(value_ends(data, EBE, {"spans": spans}))
    assert {e for *_, e in spans} <= ends
    plain = encode(shape_nested(), ELE)
    stream, flushes = deflate_in_blocks(plain, [300, 100, 200, 100])
    assert inflate(stream) == plain and len(flushes) == 3
    # A full flush ends with an empty stored block: 00 00 FF FF.
    assert all(stream[f - 4 : f] == b"\x00\x00\xff\xff" for f in flushes)


# --- 300 MiB of zeros ---------------------------------------------------------------------------------------------


def zeros_head(ds: Dataset) -> bytes:
    """The data set's bytes (Explicit VR LE) up to and including the header of its 300 MiB Pixel Data."""
    return encode(ds, ELE) + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, ZEROS)


def zeros_dataset() -> Dataset:
    return image(base(), 10240, 15360)  # 10240 x 15360 x 2 bytes = 300 MiB


@functools.lru_cache(maxsize=1)
def deflated_zero_blocks() -> bytes:
    """300 MiB of zeros, raw deflate (~300 KB): made once, it takes seconds."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    block = bytes(1 << 20)
    return b"".join(z.compress(block) for _ in range(ZEROS >> 20)) + z.flush()


def deflated_zeros(head: bytes) -> bytes:
    """``head`` then 300 MiB of zeros, raw deflate: ``head``'s blocks end with a full flush (byte-aligned, no
    reference across it), so the zeros' stream made once follows them as one valid stream."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    return z.compress(head) + z.flush(zlib.Z_FULL_FLUSH) + deflated_zero_blocks()


def assert_inflates_to_zeros(data: bytes, head: bytes, deflated: bool = True) -> None:
    """``data`` (raw deflate, or plain) is ``head`` followed by 300 MiB of zeros; checked piece by piece."""
    z = zlib.decompressobj(-15)
    pieces: Iterator[bytes]
    if deflated:

        def gen() -> Iterator[bytes]:
            rest = data
            while not z.eof:
                out = z.decompress(rest, 1 << 20)
                if not out and rest == z.unconsumed_tail:
                    break  # no progress: the stream is cut short (z.eof stays False)
                rest = z.unconsumed_tail
                yield out
            # After the end of the stream (Python's zlib reports it in either): at most a zero byte of padding.
            assert (z.unused_data or z.unconsumed_tail) in (b"", b"\0")

        pieces = gen()
    else:
        pieces = iter([data])
    seen = bytearray()
    count = 0
    for out in pieces:
        if len(seen) < len(head):
            take = min(len(head) - len(seen), len(out))
            seen += out[:take]
            out = out[take:]
        assert out.count(0) == len(out), f"non-zero byte in the pixel data near offset {count}"
        count += len(out)
    assert bytes(seen) == head
    assert count == ZEROS
    if deflated:
        assert z.eof


def test_raw_300_mib_of_zeros_deflated_in_several_pdv_sizes(scps):
    """300 MiB of zeros deflate to ~300 KB: each 16 KiB PDV inflates to ~16 MiB, which must stream through."""
    scp = scps["as-received"]
    sender = RawSender(scp.port, SC, DEFL)
    try:
        for size in (16372, 262138):
            ds = zeros_dataset()
            head = zeros_head(ds)
            data = deflated_zeros(head)
            rsp = sender.store(ds.SOPInstanceUID, pdvs(data, list(range(size, len(data), size))))
            assert rsp.status == 0, (size, hex(rsp.status or 0), rsp.get(0x0902))
            ts, stored = split_part10(stored_file(scp.root, ds.SOPInstanceUID).read_bytes())
            assert ts == DEFL and stored == data  # kept as received
    finally:
        sender.release()


def test_300_mib_of_zeros_deflated_stored_inflated(scps):
    """Converted on receive: the archive's Explicit VR LE file holds the 300 MiB, byte for byte."""
    scp = scps["to-ele"]
    ds = zeros_dataset()
    head = zeros_head(ds)
    data = deflated_zeros(head)
    sender = RawSender(scp.port, SC, DEFL)
    try:
        rsp = sender.store(ds.SOPInstanceUID, pdvs(data, list(range(16372, len(data), 16372))))
        assert rsp.status == 0, (hex(rsp.status or 0), rsp.get(0x0902))
    finally:
        sender.release()
    path = stored_file(scp.root, ds.SOPInstanceUID)
    with open(path, "rb") as f:
        start = f.read(64 << 10)
        ts, first = split_part10(start)
        assert ts == ELE
        assert first[: len(head)] == head
        f.seek(len(start) - len(first) + len(head))
        count = 0
        while block := f.read(8 << 20):
            assert block.count(0) == len(block), f"non-zero byte near {count}"
            count += len(block)
    assert count == ZEROS
    path.unlink()  # 300 MiB: not kept until the end of the session


# --- bad input ----------------------------------------------------------------------------------------------------


def broken_stream(damage: str) -> bytes:
    """A deflate stream zlib refuses (or finds incomplete), for a data set of 1 MiB of random pixels."""
    ds = shape_random()
    ds.SOPInstanceUID = ds.StudyInstanceUID = ds.SeriesInstanceUID = "1.2.3.4"  # the same stream every run
    data = encode(ds, DEFL)
    if damage == "cut-early":
        return data[: len(data) // 3]
    if damage == "cut-last-byte":
        return data[:-1]
    if damage == "junk":
        return b"\xff" * 4096
    if damage == "too-far-back":
        # (0010,0020) LO, then a 4-byte match at distance 300 after 8 bytes of output (RFC 1951 3.2.5).
        return bytes.fromhex("13605060f0f1676100851500")
    # "flipped": the first byte of the first block's Huffman-coded part whose flip zlib refuses.
    for i in range(10, len(data)):
        bad = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        try:
            zlib.decompress(bad, -15)
        except zlib.error:
            return bad
    raise AssertionError("no flip refused")  # pragma: no cover


@pytest.mark.parametrize("damage", ["cut-early", "cut-last-byte", "flipped", "junk", "too-far-back"])
def test_broken_deflate_streams_are_refused_and_nothing_kept(scps, damage):
    """0xC000 (cannot understand), whatever the PDVs; nothing kept; the association goes on."""
    scp = scps["as-received"]
    data = broken_stream(damage)
    z = zlib.decompressobj(-15)
    try:
        z.decompress(data)
        assert not z.eof, "the stream is incomplete"
    except zlib.error:
        pass
    sender = RawSender(scp.port, SC, DEFL)
    try:
        for size in (16372, 7):
            uid = "1.2.3.4"  # the data set's own (a mismatch would be refused first, with A900)
            rsp = sender.store(uid, pdvs(data, list(range(size, len(data), size))))
            assert 0xC000 <= (rsp.status or 0) <= 0xCFFF, (damage, size, hex(rsp.status or 0), rsp.get(0x0902))
            assert "cannot understand" in (rsp.get(0x0902) or "")
            assert not list(scp.root.rglob(f"{uid}.dcm"))
        good = shape_tiny()
        assert sender.store(good.SOPInstanceUID, [encode(good, DEFL)]).status == 0
    finally:
        sender.release()
    assert [p for p in scp.archive.incoming_dir.iterdir() if p.stat().st_size > 0] == []


# --- pynetdicom and DCMTK as senders ---------------------------------------------------------------------------------


def pyn_send(port: int, items: list[tuple[Dataset, str]]) -> list[int]:
    ae = PynAE(ae_title="PYN")
    ae.dimse_timeout = 120
    for sop_class, ts in sorted({(ds.SOPClassUID, ts) for ds, ts in items}):
        ae.add_requested_context(sop_class, [ts])
    assoc = ae.associate("127.0.0.1", port, ae_title="FERRO")
    assert assoc.is_established
    statuses = []
    try:
        for ds, ts in items:
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ts
            rsp = assoc.send_c_store(ds)
            statuses.append(int(rsp.Status))
    finally:
        assoc.release()
    return statuses


@pytest.mark.parametrize("scp_name", ["as-received", "pdu-16k", "to-ele"])
def test_pynetdicom_sender(scps, scp_name):
    """pynetdicom sends each shape in each syntax; it fragments at the SCP's maximum PDU (2 MiB or 16 KiB)."""
    scp = scps[scp_name]
    items = [(SHAPES[shape](), ts) for ts in SYNTAXES for shape in SHAPES if shape != "empty"]
    assert pyn_send(scp.port, items) == [0] * len(items)
    for ds, ts in items:
        if ILE in (ts, scp.stored_ts(ts)) and ts != scp.stored_ts(ts):
            continue  # implicit to explicit VR changes lengths: compared in test_storage.py
        # pynetdicom encodes with pydicom and deflates with zlib at its default level, as encode() does.
        assert_stored(scp.root, ds.SOPInstanceUID, ts, encode(ds, ts), scp.stored_ts(ts), meaning_in_ele(ds, ts))


def write_part10(path: Path, ds: Dataset, ts: str) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


def storescu(port: int, files: list[Path], *opts: str) -> None:
    r = subprocess.run(
        [dcmtk("storescu"), *opts, "-aec", "FERRO", "127.0.0.1", str(port), *map(str, files)],
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "E:" not in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("max_send_pdu,level", [("4096", "9"), ("16384", "1"), ("131072", "6")])
def test_dcmtk_storescu_deflated(scps, tmp_path, max_send_pdu, level):
    """``storescu -xd`` proposes Deflated first; it deflates each file itself, in PDVs of its maximum send PDU."""
    scp = scps["as-received"]
    files = []
    for shape in SHAPES:
        if shape == "empty":
            continue
        ds = SHAPES[shape]()
        path = tmp_path / f"{shape}.dcm"
        write_part10(path, ds, ELE)
        files.append((path, ds))
    storescu(scp.port, [p for p, _ in files], "-xd", "--max-send-pdu", max_send_pdu, "+cl", level)
    for path, ds in files:
        ts, data = split_part10(stored_file(scp.root, ds.SOPInstanceUID).read_bytes())
        assert ts == DEFL
        # DCMTK re-encodes what it sends (sequences and items with explicit lengths): its own Explicit VR LE
        # encoding of the file, by dcmconv, is what it deflated.
        dcmtk_ele = tmp_path / f"{path.stem}-ele.dcm"
        subprocess.run([dcmtk("dcmconv"), "+te", str(path), str(dcmtk_ele)], env=dcmtk_env(), check=True, timeout=60)
        assert inflate(data) == split_part10(dcmtk_ele.read_bytes())[1], path.name
        assert pydicom.dcmread(stored_file(scp.root, ds.SOPInstanceUID)) == pydicom.dcmread(path)


# --- the issue's reproductions, against `ferrodicom serve` -----------------------------------------------------------


@pytest.fixture(scope="module")
def serve(tmp_path_factory) -> Iterator[tuple[int, Path, subprocess.Popen]]:
    where = tmp_path_factory.mktemp("serve")
    root = where / "archive"
    port = free_port()
    log = open(where / "serve.log", "w")  # a file, not a pipe nobody reads
    proc = subprocess.Popen(
        [*ferrodicom_cli(), "serve", "--aet", "FERRO", "--port", str(port), "--bind", "127.0.0.1", str(root)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, proc)
        yield port, root, proc
    finally:
        stop(proc)
        log.close()


@pytest.fixture(scope="module")
def mg_dataset() -> Dataset:
    """The issue's image: MG, 4096x3328, 16-bit, 500 rows of zeros then noise. Noise of 4 bits deflates ~3.6:1, so
    storescu's PDVs (131060 bytes) each inflate to more than the codec's 256 KiB buffer: before the fix, "deflate stream
    error at byte 4751360" from storescu, as in the issue (12-bit noise, ~1.4:1, went through)."""
    ds = image(base(MG), 3328, 4096)
    ds.Modality = "MG"
    px = np.zeros((3328, 4096), np.uint16)
    px[500:] = np.random.default_rng(3328).integers(0, 16, (3328 - 500, 4096), dtype=np.uint16)
    ds.PixelData = px.tobytes()
    return ds


def test_issue_mg_image_deflated_from_storescu(serve, tmp_path, mg_dataset):
    port, root, _ = serve
    path = tmp_path / "mg.dcm"
    write_part10(path, mg_dataset, DEFL)  # saved by pydicom in Deflated Explicit VR Little Endian
    storescu(port, [path], "-xd")
    ts, data = split_part10(stored_file(root, mg_dataset.SOPInstanceUID).read_bytes())
    assert ts == DEFL
    _, sent = split_part10(path.read_bytes())
    assert inflate(data) == inflate(sent) == encode(mg_dataset, ELE)


def test_issue_mg_image_deflated_from_pynetdicom(serve, mg_dataset):
    port, root, _ = serve
    ds = pydicom.Dataset(mg_dataset)
    ds.SOPInstanceUID = generate_uid()
    assert pyn_send(port, [(ds, DEFL)]) == [0]
    ts, data = split_part10(stored_file(root, ds.SOPInstanceUID).read_bytes())
    assert ts == DEFL
    assert data == encode(ds, DEFL)  # pynetdicom deflates with zlib's default level, as encode() does
    assert inflate(data) == encode(ds, ELE)


def test_issue_300_mib_of_zeros_deflated_from_pynetdicom(serve, tmp_path):
    """Sent by pynetdicom from a Deflated file (~300 KB). ``serve`` keeps the stream as received and inflates it
    only to validate it: its peak memory stays far below the 300 MiB it inflates to."""
    port, root, proc = serve
    ds = zeros_dataset()
    head = zeros_head(ds)
    path = tmp_path / "zeros.dcm"
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = DEFL
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = DicomBytesIO()
    buf.is_implicit_VR, buf.is_little_endian = False, True
    write_file_meta_info(buf, meta, enforce_standard=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + buf.getvalue() + deflated_zeros(head))
    ae = PynAE(ae_title="PYN")
    ae.dimse_timeout = 120
    ae.add_requested_context(SC, [DEFL])
    assoc = ae.associate("127.0.0.1", port, ae_title="FERRO")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(path)
    finally:
        assoc.release()
    assert int(status.Status) == 0, status
    ts, data = split_part10(stored_file(root, ds.SOPInstanceUID).read_bytes())
    assert ts == DEFL
    assert_inflates_to_zeros(data, head)
    with open(f"/proc/{proc.pid}/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) << 10
    assert peak < 200 << 20, f"serve's peak RSS {peak >> 20} MiB"
