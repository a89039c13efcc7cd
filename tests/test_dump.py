"""``ferrodicom dump``: dcmdump-style listing with private elements named by our dictionaries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from ferrodicom.cli.main import main


def _file(tmp_path: Path, impl_uid: str = "1.2.3.999") -> Path:
    ds = Dataset()
    ds.PatientName = "Dump^Test"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.20"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.private_block(0x0009, "GEMS_GENIE_1", create=True).add_new(0x35, "UL", 1)
    ds.private_block(0x0009, "GEMS_PETD_01", create=True).add_new(0x38, "FL", 370.0)
    inner = Dataset()
    inner.private_block(0x0011, "GEMS_GENIE_1", create=True).add_new(0x1C, "SL", [-10, 10, -3, 3])
    ds.private_block(0x0055, "GEMS_GENIE_1", create=True).add_new(0x13, "SQ", Sequence([inner]))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.ImplementationClassUID = impl_uid
    path = tmp_path / "nm.dcm"
    dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_dump_names_private_elements_and_nesting(tmp_path):
    res = CliRunner().invoke(main, ["dump", str(_file(tmp_path))])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    gantry = next(line for line in lines if line.startswith("(0009,1035)"))
    assert " UL [1]" in gantry and gantry.endswith("Gantry Locus Type")
    dose = next(line for line in lines if line.startswith("(0009,1138)"))
    assert " FL [370.0]" in dose and dose.endswith("RadioPharmaceuticalTotalDose")
    seq = next(line for line in lines if line.startswith("(0055,1013)"))
    assert "SQ (Sequence with 1 item)" in seq and "Xeleris Energy Window Range Sequence" in seq
    nested = next(line for line in lines if "(0011,101c)" in line)
    assert nested.startswith("    (0011,101c) SL [-10\\10\\-3\\3]") and nested.endswith(", 4 Energy Offset")
    assert any(line.startswith("(0010,0010) PN [Dump^Test]") for line in lines)
    assert "variant: default" in res.output


def test_dump_chooses_product_variant(tmp_path):
    path = _file(tmp_path, impl_uid="1.2.840.113619.6.96")  # eNTEGRA
    res = CliRunner().invoke(main, ["dump", str(path)])
    assert res.exit_code == 0, res.output
    assert "variant: entegra" in res.output
    assert any(line.startswith("(0009,1035) SL [1]") for line in res.output.splitlines())
    res = CliRunner().invoke(main, ["dump", "--product", "xeleris", str(path)])
    assert any(line.startswith("(0009,1035) UL [1]") for line in res.output.splitlines())


def test_dump_rejects_non_dicom(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 10 + b"not dicom at all")
    res = CliRunner().invoke(main, ["dump", str(bad)])
    assert res.exit_code != 0
    assert "not a readable DICOM file" in res.output
    res = CliRunner().invoke(main, ["dump", str(tmp_path / "missing.dcm")])
    assert res.exit_code != 0


def test_dump_through_installed_script(tmp_path):
    exe = shutil.which("ferrodicom", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert exe, "the ferrodicom console script is not installed"
    out = subprocess.run([exe, "dump", str(_file(tmp_path))], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Gantry Locus Type" in out.stdout and "(0011,101c) SL" in out.stdout
