"""Seed corpus for fuzz_targets/deflate_stream.rs: small Explicit VR Little Endian data sets written by
pydicom (strings, numbers, nested sequences of undefined length, a private block, pixel data), each behind
the target's parameter header in a few modes, chunkings and buffer sizes. Usage:
``python make_deflate_seeds.py corpus/deflate_stream``."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

from pydicom import Dataset, Sequence
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset


def ele(ds: Dataset) -> bytes:
    buf = DicomBytesIO()
    buf.is_implicit_VR, buf.is_little_endian = False, True
    write_dataset(buf, ds)
    return buf.getvalue()


def datasets() -> list[bytes]:
    small = Dataset()
    small.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    small.SOPInstanceUID = "1.2.3.4"
    small.PatientID = "PID-20"
    nested = Dataset()
    nested.SOPInstanceUID = "1.2.3.5"
    inner = Dataset()
    inner.CodeValue = "C-111A1"
    seq_item = Dataset()
    seq_item.ReferencedSOPInstanceUID = "1.2.3.6"
    seq_item.ConceptNameCodeSequence = Sequence([inner])
    nested.ReferencedImageSequence = Sequence([seq_item, Dataset()])
    nested.ReferencedImageSequence.is_undefined_length = True
    nested.add_new(0x00091010, "LO", "ACME 1.0")
    nested.add_new(0x00091011, "UL", 0xDEADBEEF)
    nested.add_new(0x00091012, "OB", b"\x01\x02\x03\x04")
    image = Dataset()
    image.SOPInstanceUID = "1.2.3.7"
    image.Rows, image.Columns, image.BitsAllocated = 16, 16, 16
    image.add_new(0x7FE00010, "OW", bytes(256) + bytes(range(256)))
    return [b"", ele(small), ele(nested), ele(image)]


def header(mode: int, level: int, buffer: int, sizes: list[int], zeros: int = 0, damage=(0, 0)) -> bytes:
    out = struct.pack("<BBHB", mode, level, buffer, len(sizes) - 1)
    out += b"".join(struct.pack("<H", s) for s in sizes)
    return out + struct.pack("<HHB", zeros, damage[0], damage[1])


def main(where: str) -> None:
    out = Path(where)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for data in datasets():
        for head in (
            header(0, 6, 0, [16372]),
            header(0, 1, 7, [1, 3, 12]),
            header(2, 6, 64, [100, 7], zeros=4096),
            header(2, 9, 0, [16372], zeros=65535),
            header(3, 6, 5, [2, 9], damage=(40000, 0)),
            header(3, 6, 3, [5], damage=(30000, 0x40)),
        ):
            (out / f"seed-{n:03}").write_bytes(head + data)
            n += 1
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        raw = comp.compress(data) + comp.flush()
        (out / f"seed-{n:03}").write_bytes(header(1, 0, 16, [4, 11]) + raw)
        n += 1
    print(f"{n} seeds in {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "corpus/deflate_stream")
