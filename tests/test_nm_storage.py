"""NM volumes through the network (issue 6): ``to_dataset`` output sent through ferrodicom's storage SCP and
read back from the archive gives the identical volume, for every image type and both byte orders."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

from ferrodicom import nm
from ferrodicom.services.storage import store
from nm_factory import IMAGE_TYPES, make_nm, to_bytes


@pytest.mark.parametrize("image_type", IMAGE_TYPES)
@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_to_dataset_through_storage_scp_reads_back_identical(archive_node, tmp_path, image_type, ts):
    server, archive = archive_node
    ds, expected = make_nm(image_type, bits=16, transfer_syntax=ts, seed=7)
    vol = nm.volume(ds)
    out = nm.to_dataset(vol, template=ds)
    path = tmp_path / "nm.dcm"
    path.write_bytes(to_bytes(out, ts))
    report = store("127.0.0.1", server.port, [path], called_ae="FERRO")
    assert [int(r.status) for r in report.results] == [0], [r.error for r in report.results]
    (row,) = archive.query(SOPInstanceUID=str(out.SOPInstanceUID))
    back = pydicom.dcmread(archive.root / row["path"])
    assert back.file_meta.TransferSyntaxUID == ts  # stored as sent
    again = nm.volume(back)
    assert again.axes == vol.axes
    np.testing.assert_array_equal(again.array, expected)
    np.testing.assert_array_equal(again.array, vol.array)
