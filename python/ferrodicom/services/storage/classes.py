"""The storage SOP classes and transfer syntaxes this node accepts and offers (PS3.4 Annex B, PS3.6 Annex A)."""

from __future__ import annotations

from typing import Optional

from ferrodicom.ae import AE
from ferrodicom.uids import UNCOMPRESSED

#: Transfer syntaxes the storage SCP accepts: the uncompressed four, and the compressed ones the seeds
#: use (stored exactly as received; we do not transcode codecs): RLE, JPEG baseline/extended/lossless,
#: JPEG-LS, JPEG 2000 (PS3.5 §10, Annex A.4; seed 003's PACS-IW table).
STORAGE_TRANSFER_SYNTAXES = UNCOMPRESSED + [
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, First-Order Prediction (Process 14 SV1)
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
]

#: The seeds' private storage SOP classes (see profiles/data/systems.json for the lines they come from).
PRIVATE_STORAGE_CLASSES = {
    "1.2.840.113619.4.27": "GE eNTEGRA/Xeleris Protocol Data Object Storage (seed 000 L272, 002 L483)",
    "1.2.840.113619.4.26": "GE Private 3D Model Storage (seed 003 L1403)",
    "1.2.840.113619.4.17": "GE Xeleris/DaTQUANT Series Data Object (seed 004 L727; named as an SDO class)",
}


#: SOP classes with "Storage" in their name that are not storage over the network: the Media Storage
#: Directory (a DICOMDIR, PS3.10 8.6; PS3.4 B.5 does not list it) is a file-set's index, not an instance.
NOT_NETWORK_STORAGE = frozenset({"1.2.840.10008.1.3.10"})


def storage_sop_classes() -> list[str]:
    """Every storage SOP class pydicom knows (PS3.6 Annex A) plus the seeds' private ones; not the Media
    Storage Directory class (:data:`NOT_NETWORK_STORAGE`)."""
    from pydicom._uid_dict import UID_dictionary

    classes = [
        uid
        for uid, (name, kind, *_rest) in UID_dictionary.items()
        if kind == "SOP Class"
        and "Storage" in name
        and "Commitment" not in name
        and "Retrieve" not in name
        and uid not in NOT_NETWORK_STORAGE
    ]
    return sorted(set(classes)) + list(PRIVATE_STORAGE_CLASSES)


def add_storage_contexts(ae: AE, transfer_syntaxes: Optional[list[str]] = None) -> None:
    """Makes ``ae`` accept every storage SOP class in the given (default: all the seeds') transfer syntaxes."""
    for uid in storage_sop_classes():
        ae.add_supported_context(uid, transfer_syntaxes or STORAGE_TRANSFER_SYNTAXES)
