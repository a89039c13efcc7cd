"""UIDs ferrodicom uses by name (PS3.6 Annex A)."""

from __future__ import annotations

VERIFICATION = "1.2.840.10008.1.1"
#: Media Storage Directory Storage (DICOMDIR, PS3.10): a file-set, never sent over the network.
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
#: Storage Commitment Push Model SOP Class and its well-known SOP Instance (PS3.4 J.3.5).
STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE = "1.2.840.10008.1.20.1.1"

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"

#: Uncompressed transfer syntaxes, in the order ferrodicom proposes them as SCU.
DEFAULT_TRANSFER_SYNTAXES: list[str] = [EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE]

#: The uncompressed transfer syntaxes, Deflated included (PS3.5 Annex A.1-A.5): what the codec converts
#: between, so what a storage SCP can store received data sets in (``store_transfer_syntax``).
UNCOMPRESSED: list[str] = [EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_EXPLICIT_VR_LE]


def default_storage_classes() -> list[str]:
    """The storage SOP classes proposed to a C-MOVE destination when the AE requests none of its own: the
    standard's storage classes pydicom knows (PS3.6 Annex A), at most 128 (one association, PS3.8 §9.3.2.2),
    the most used first."""
    from pydicom._uid_dict import UID_dictionary

    first = [
        "1.2.840.10008.5.1.4.1.1.2",  # CT Image
        "1.2.840.10008.5.1.4.1.1.20",  # NM Image
        "1.2.840.10008.5.1.4.1.1.128",  # PET Image
        "1.2.840.10008.5.1.4.1.1.4",  # MR Image
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    ]
    rest = sorted(
        uid
        for uid, (name, kind, _info, retired, _keyword) in UID_dictionary.items()
        if kind == "SOP Class"
        and name.endswith("Storage")
        and not retired
        and uid not in first + [MEDIA_STORAGE_DIRECTORY]
    )
    return (first + rest)[:128]
