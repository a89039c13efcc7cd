"""Private dictionaries: registration with pydicom, implicit-VR decoding, product variants (PS3.5 7.8)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import get_private_entry
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

import ferrodicom  # noqa: F401  (registers the dictionaries)
from ferrodicom import dictionaries as fd

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT.parent / "shared" / "seeds"  # CI clones the repo with ../shared beside it


def _seed_entries():
    for seed in fd.PRODUCTS.values():
        doc = fd.seed_document(seed)
        for e in doc["entries"]:
            yield seed, doc, e


@pytest.fixture(autouse=True)
def _default_variant():
    fd.use_product(None)
    yield
    fd.use_product(None)


# ---------------------------------------------------------------------------- data and registration


def test_counts_per_seed_match_the_tables():
    counts = {seed: len(fd.seed_document(seed)["entries"]) for seed in fd.PRODUCTS.values()}
    # distinct (creator, group, offset) rows of the private tables of each seed
    assert counts == {"000": 276, "001": 11, "002": 348, "003": 105, "004": 294}
    assert set(fd.creators()) >= {
        "GEMS_GENIE_1", "GEMS_XELPRV_01", "GEMS_PETD_01", "GEMS_IMAG_01", "GEMS_ACQU_01", "GEMS_PARM_01",
        "GEMS_HELIOS_01", "GEHC_HYBRID_01", "GEHC_CT_ADVAPP_001", "GEIIS_IW", "GEIIS_RA1000", "INVIA_RESULTS",
        "Philips PET Private Group",
    }  # fmt: skip


def test_every_entry_points_at_its_seed_line():
    """The recorded line holds the tag (or is a listed correction), so provenance is checkable."""
    texts = {}
    for seed, doc, e in _seed_entries():
        if e["source"] == "inferred":
            continue
        lines = texts.setdefault(seed, (SEEDS / doc["file"]).read_text(encoding="utf-8").split("\n"))
        line = lines[e["line"] - 1].replace(" ", "").upper()
        g, el = e["group"], e["element"]
        corrected = {c["line"] for c in doc["corrections"] if c["kind"] == "tag"}
        assert f"{g},XX{el}" in line or f"{g},10{el}" in line or e["line"] in corrected, (seed, e)


def test_entry_fields():
    e = next(x for s, _, x in _seed_entries() if s == "002" and x["tag"] == "(0011,xx1C)")
    assert (e["creator"], e["vr"], e["vm"], e["keyword"]) == ("GEMS_GENIE_1", "SL", "4", "EnergyOffset")
    assert e["in_sequence"] == ["(0055,xx13)"]
    retired = next(x for s, _, x in _seed_entries() if s == "000" and x["tag"] == "(0009,xx34)")
    assert retired["retired"] and retired["name"] == "Gantry Motion Type"
    nested = next(x for s, _, x in _seed_entries() if s == "003" and x["tag"] == "(0075,xxE7)")
    assert nested["name"] == "3DA_MEAS_DIAMETER" and nested["in_sequence"] == ["(0075,xxDF)"]


def test_get_private_entry_uses_our_names_and_vrs():
    assert get_private_entry((0x0009, 0x1010), "GEMS_GENIE_1")[:3] == ("LO", "1", "Study Name")
    # any block, not only 0x10
    assert get_private_entry((0x0075, 0x42C0), "GEIIS_IW")[0] == "UI"
    assert get_private_entry((0x0009, 0x1138), "GEMS_PETD_01")[0] == "FL"
    assert get_private_entry((0x0009, 0x1038), "GEMS_GENIE_1")[0] == "SL"
    assert get_private_entry((0x7053, 0x1000), "Philips PET Private Group")[0] == "DS"


def _resolved(product):
    ok = n = 0
    for _seed, doc, e in _seed_entries():
        if product not in (None, doc["product"]):
            continue
        n += 1
        try:
            vr = get_private_entry((int(e["group"], 16), 0x1000 | int(e["element"], 16)), e["creator"])[0]
        except KeyError:
            continue
        ok += vr == e["vr"]
    return ok, n


def test_all_seed_elements_resolve_after_import():
    """Each seed's elements resolve with that seed's VR once its product's variant is chosen: 100%."""
    for product in fd.PRODUCTS:
        fd.use_product(product)
        ok, n = _resolved(product)
        assert ok == n, product
    fd.use_product(None)
    ok, n = _resolved(None)
    conflicting = sum(
        1 for (c, g, e), prods in fd.variants().items() if prods.get("entegra", ("",))[0] != fd.lookup(c, g, e).vr
    )
    assert n - ok == conflicting  # only eNTEGRA's VR variants differ from the default


def test_pydicom_alone_resolves_fewer(tmp_path):
    payload = [[e["creator"], e["group"], e["element"], e["vr"]] for _, _, e in _seed_entries()]
    code = (
        "import json,sys\nfrom pydicom.datadict import get_private_entry as g\nok=0\n"
        "for c,gr,el,vr in json.load(sys.stdin):\n"
        "    try: ok+=g((int(gr,16),0x1000|int(el,16)),c)[0]==vr\n"
        "    except KeyError: pass\nprint(ok)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(payload), capture_output=True, text=True)
    ok = int(out.stdout)
    assert 0 < ok < len(payload) * 0.8  # measured 791/1034 = 76.5 %


def test_codec_entries():
    rows = fd.codec_entries()
    assert len(rows) == len(set(rows)) == sum(1 for _ in fd.entries())
    assert ("GEMS_GENIE_1", 0x0009, 0x35, "UL") in rows
    assert ("GEMS_GENIE_1", 0x0009, 0x35, "SL") in fd.codec_entries("entegra")
    assert all(isinstance(c, str) and g % 2 == 1 and 0 <= e <= 0xFF and len(vr) == 2 for c, g, e, vr in rows)
    with pytest.raises(KeyError):
        fd.codec_entries("no-such-product")


def test_variants_documented():
    v = fd.variants()
    assert v[("GEMS_GENIE_1", 0x0009, 0x35)] == {
        "datquant": ("UL", "1"),
        "entegra": ("SL", "1"),
        "xeleris": ("UL", "1"),
    }
    assert v[("GEMS_GENIE_1", 0x0011, 0x11)]["entegra"][0] == "IS"
    assert v[("GEMS_GENIE_1", 0x0013, 0x12)]["entegra"][0] == "UL"
    assert v[("GEMS_GENIE_1", 0x0033, 0x07)]["entegra"][0] == "SQ"
    assert fd.lookup("GEMS_GENIE_1", 0x0011, 0x1011).vr == "SL"
    assert fd.lookup("GEMS_GENIE_1", 0x0011, 0x11, "entegra").vr == "IS"


def test_product_detection():
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.ImplementationClassUID = "1.2.840.113619.6.96"
    assert fd.product_for_dataset(ds) == "entegra"
    ds.file_meta.ImplementationClassUID = "1.2.840.113619.6.281"
    assert fd.product_for_dataset(ds) == "xeleris"
    ds.SoftwareVersions = ["DaTQUANT 1.0"]
    assert fd.product_for_dataset(ds) == "datquant"
    ds.SoftwareVersions = "eNTEGRA 2.0"
    assert fd.product_for_dataset(ds) is None  # Xeleris UID but eNTEGRA software: ambiguous
    assert fd.product_for_dataset(Dataset()) is None


# ---------------------------------------------------------------------------- decoding real values


def _build() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Test^Private"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.20"
    ds.SOPInstanceUID = "1.2.3.4"
    genie9 = ds.private_block(0x0009, "GEMS_GENIE_1", create=True)  # (0009,0010)
    petd9 = ds.private_block(0x0009, "GEMS_PETD_01", create=True)  # (0009,0011): same group, second creator
    genie9.add_new(0x2E, "FD", 1234.5)  # Distance Prescribed
    genie9.add_new(0x35, "UL", 4000000000)  # Gantry Locus Type (UL in Xeleris)
    genie9.add_new(0x38, "SL", -7)  # RR Window Width
    petd9.add_new(0x38, "FL", 370.25)  # RadioPharmaceuticalTotalDose
    genie33 = ds.private_block(0x0033, "GEMS_GENIE_1", create=True)
    xel33 = ds.private_block(0x0033, "GEMS_XELPRV_01", create=True)
    genie33.add_new(0x36, "OB", b"\x01\x02\x03\x04")  # Trigger Data
    xel33.add_new(0x1E, "FD", [1.5, -2.25, 3e10])  # DoubleData
    # (0055,xx12) > (0055,xx13) > (0011,xx1C) SL VM 4, (0013,xx16): nested across groups
    inner = Dataset()
    inner.private_block(0x0011, "GEMS_GENIE_1", create=True).add_new(0x1C, "SL", [-10, 10, -3, 3])
    inner.private_block(0x0013, "GEMS_GENIE_1", create=True).add_new(0x16, "SL", 140)
    outer = Dataset()
    outer.private_block(0x0055, "GEMS_GENIE_1", create=True).add_new(0x13, "SQ", Sequence([inner]))
    ds.private_block(0x0055, "GEMS_GENIE_1", create=True).add_new(0x12, "SQ", Sequence([outer]))
    ds.private_block(0x0075, "GEIIS_IW", create=True).add_new(0xAB, "FL", 0.5)  # GFT_OID_PETCT_SCALEX (003 L5314)
    return ds


def _write(ds: Dataset, ts) -> bytes:
    ds = ds.copy()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _read(data: bytes) -> Dataset:
    return pydicom.dcmread(BytesIO(data))


def _check_values(ds: Dataset) -> None:
    g9 = ds.private_block(0x0009, "GEMS_GENIE_1")
    p9 = ds.private_block(0x0009, "GEMS_PETD_01")
    assert (g9[0x2E].VR, g9[0x2E].value) == ("FD", 1234.5)
    assert (g9[0x35].VR, g9[0x35].value) == ("UL", 4000000000)
    assert (g9[0x38].VR, g9[0x38].value) == ("SL", -7)
    assert p9[0x38].VR == "FL" and p9[0x38].value == pytest.approx(370.25)
    assert ds.private_block(0x0033, "GEMS_GENIE_1")[0x36].value == b"\x01\x02\x03\x04"
    dd = ds.private_block(0x0033, "GEMS_XELPRV_01")[0x1E]
    assert dd.VR == "FD" and list(dd.value) == [1.5, -2.25, 3e10]
    seq = ds.private_block(0x0055, "GEMS_GENIE_1")[0x12]
    assert seq.VR == "SQ" and len(seq.value) == 1
    seq2 = seq.value[0].private_block(0x0055, "GEMS_GENIE_1")[0x13]
    assert seq2.VR == "SQ"
    item = seq2.value[0]
    off = item.private_block(0x0011, "GEMS_GENIE_1")[0x1C]
    assert off.VR == "SL" and list(off.value) == [-10, 10, -3, 3]
    assert item.private_block(0x0013, "GEMS_GENIE_1")[0x16].value == 140
    assert ds.private_block(0x0075, "GEIIS_IW")[0xAB].value == pytest.approx(0.5)


def test_implicit_vr_decodes_typed_values():
    data = _write(_build(), ImplicitVRLittleEndian)
    ds = _read(data)
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    _check_values(ds)


def test_implicit_vr_without_our_dictionary_is_untyped():
    """The same bytes in a fresh interpreter with pydicom only: GEIIS_IW and the nesting come out as UN."""
    data = _write(_build(), ImplicitVRLittleEndian)
    code = (
        "import sys, io, pydicom\nds = pydicom.dcmread(io.BytesIO(sys.stdin.buffer.read()))\n"
        "print(ds.private_block(0x0075, 'GEIIS_IW')[0xAB].VR)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, check=True)
    assert out.stdout.decode().strip() == "UN"


def test_big_endian_roundtrip_with_pydicom_writer():
    """Implicit LE -> Explicit VR Big Endian -> Implicit LE keeps every private value (pydicom's writer).

    The Rust codec variant of this check is added when the codec lands on main.
    """
    ds = _read(_write(_build(), ImplicitVRLittleEndian))
    big = _write(ds, ExplicitVRBigEndian)
    ds_be = _read(big)
    assert ds_be.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    _check_values(ds_be)
    # the FD really is byte-swapped in the big-endian stream
    assert struct.pack(">d", 1234.5) in big and struct.pack("<d", 1234.5) not in big
    back = _read(_write(ds_be, ImplicitVRLittleEndian))
    _check_values(back)


def test_product_variant_changes_decoding():
    """eNTEGRA writes Gantry Locus Type as SL: with its variant a negative value decodes as such."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.20"
    ds.SOPInstanceUID = "1.2.3.5"
    ds.private_block(0x0009, "GEMS_GENIE_1", create=True).add_new(0x35, "SL", -1)
    data = _write(ds, ImplicitVRLittleEndian)
    assert _read(data).private_block(0x0009, "GEMS_GENIE_1")[0x35].value == 0xFFFFFFFF
    fd.use_product("entegra")
    assert _read(data).private_block(0x0009, "GEMS_GENIE_1")[0x35].value == -1
    ds2 = _read(data)
    ds2.file_meta.ImplementationClassUID = "1.2.840.113619.6.96"
    fd.use_product(None)
    assert fd.use_product_for(ds2) == "entegra" and fd.registered_product() == "entegra"


def test_extraction_script_data_up_to_date():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "extract_private_dicts.py"), "--check", "--no-measure"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "data files are up to date" in out.stdout


def test_profiles_catalog_matches_dictionary_detection():
    from ferrodicom.profiles import catalog

    assert set(catalog.systems()) == set(fd.PRODUCTS)
    for product, rec in catalog.systems().items():
        uid = rec["implementation_class_uid"]["value"]
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.ImplementationClassUID = uid
        assert fd.product_for_dataset(ds) == product
    assert catalog.status_meaning("xeleris", 0xA780) == "Sender is not defined on remote DICOM station"
    assert catalog.status_meaning("entegra", 0xA770) is None
    assert catalog.system("entegra")["private_sop_classes"][0]["uid"] == "1.2.840.113619.4.27"
    with pytest.raises(KeyError):
        catalog.system("orthanc")
