"""C-STORE response statuses of the archive (PS3.4 B.2.3, PS3.7 C) and the seeds' private meanings.

ferrodicom's own codes sit inside the ranges PS3.4 B.2.3 gives the Storage SCP ("Refused: Out of
Resources" A7xx, "Error: Cannot understand" Cxxx) and avoid the codes the seed systems define
(A710-A780, C010-C012), so a device profile can map them to a system's own code without clashes.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "SUCCESS",
    "WARN_COERCED",
    "WARN_DISCARDED",
    "WARN_MISMATCH",
    "OUT_OF_RESOURCES_DISK",
    "OUT_OF_RESOURCES_INDEX",
    "OUT_OF_RESOURCES_IO",
    "OUT_OF_RESOURCES_CLOSED",
    "SOP_CLASS_MISMATCH",
    "CANNOT_UNDERSTAND",
    "INVALID_SOP_INSTANCE_UID",
    "RECEIVED_FILE_UNUSABLE",
    "DUPLICATE_REJECTED",
    "STORE_STATUSES",
    "PRIVATE_STORE_STATUSES",
    "store_status_meaning",
]

SUCCESS = 0x0000
#: Warning: Coercion of Data Elements (B.2.3) — the data path reported it changed element values.
WARN_COERCED = 0xB000
#: Warning: Elements Discarded (B.2.3) — the data path reported it dropped elements.
WARN_DISCARDED = 0xB006
#: Warning: Data Set does not match SOP Class (B.2.3) — stored anyway: a Type 1 UID the archive needs
#: (Study/Series Instance UID, data-set SOP Instance/Class UID) is missing or unusable.
WARN_MISMATCH = 0xB007
#: Refused: Out of Resources — no space/quota while placing the file (ENOSPC, EDQUOT). Nothing kept.
OUT_OF_RESOURCES_DISK = 0xA700
#: Refused: Out of Resources — the index row could not be committed (SQLITE_FULL, I/O error). Nothing kept.
OUT_OF_RESOURCES_INDEX = 0xA701
#: Refused: Out of Resources — another OS error while placing the file (EIO, EACCES, ...). Nothing kept.
OUT_OF_RESOURCES_IO = 0xA702
#: Refused: Out of Resources — the archive is closed (server shutting down). Nothing kept.
OUT_OF_RESOURCES_CLOSED = 0xA703
#: Error: Data Set does not match SOP Class (B.2.3) — the data set's SOP Class UID or SOP Instance UID
#: differs from the C-STORE-RQ's Affected SOP Class/Instance UID (as DCMTK's storescp answers). Nothing kept.
SOP_CLASS_MISMATCH = 0xA900
#: Error: Cannot understand — the data path could not parse the data set. Nothing kept.
CANNOT_UNDERSTAND = 0xC000
#: Error: Cannot understand — the Affected SOP Instance UID is not a usable UID (PS3.5 9.1). Nothing kept.
INVALID_SOP_INSTANCE_UID = 0xC001
#: Error: Cannot understand — the received temporary file is missing.
RECEIVED_FILE_UNUSABLE = 0xC002
#: Error: Cannot understand — duplicate SOP Instance UID refused by the "reject" policy. Nothing kept.
#: (0x0111 "Duplicate SOP Instance" is an N-service code, not listed for C-STORE in PS3.7 9.1.1.1.9.)
DUPLICATE_REJECTED = 0xC003

#: Every status the archive returns, with its meaning.
STORE_STATUSES: dict[int, str] = {
    SUCCESS: "Success (also a duplicate under the keep-first and replace policies)",
    WARN_COERCED: "Warning: coercion of data elements",
    WARN_DISCARDED: "Warning: elements discarded",
    WARN_MISMATCH: "Warning: data set does not match SOP Class (stored; missing/unusable UID)",
    OUT_OF_RESOURCES_DISK: "Refused: out of resources: disk full or quota exceeded",
    OUT_OF_RESOURCES_INDEX: "Refused: out of resources: index could not be written",
    OUT_OF_RESOURCES_IO: "Refused: out of resources: I/O error placing the file",
    OUT_OF_RESOURCES_CLOSED: "Refused: out of resources: archive closed",
    SOP_CLASS_MISMATCH: "Error: data set does not match SOP Class (SOP Class/Instance UID differ from command)",
    CANNOT_UNDERSTAND: "Error: cannot understand: data set cannot be parsed",
    INVALID_SOP_INSTANCE_UID: "Error: cannot understand: invalid SOP Instance UID",
    RECEIVED_FILE_UNUSABLE: "Error: cannot understand: received file missing",
    DUPLICATE_REJECTED: "Error: cannot understand: duplicate SOP Instance refused",
}

#: Private C-STORE status meanings of the seed systems (seed and line of the conformance statement).
#: eNTEGRA and Xeleris are also in profiles/data/systems.json; PACS-IW's codes are only here.
PRIVATE_STORE_STATUSES: dict[str, dict[int, str]] = {
    "entegra": {  # seed 000 L521-533
        0xA700: "Out of resources: DICOM Protocol Error",
        0xA710: "Out of resources: Remote Database could not write dataset",
        0xA720: "Out of resources: Internal Error on the Remote Station",
        0xA730: "Out of resources: Translation Failed, cannot send Dataset",
        0xA740: "Out of resources: Remote Station could not find Pixel Data",
    },
    "xeleris": {  # seed 002 L593-600
        0xA700: "Out of resources",
        0xA710: "Write to remote database failed",
        0xA720: "Remote DICOM toolkit problems",
        0xA730: "Remote cannot understand received DICOM message",
        0xA740: "Cannot find Pixel data",
        0xA750: "Remote cannot store data on the archive device",
        0xA760: "Default destination for PET RAW data re-direction is not defined",
        0xA780: "Sender is not defined on remote DICOM station",
    },
    "pacs-iw": {  # seed 003 Table 2.3.2-7, L3089-3156
        0xA710: "Refused: out of resources: not enough memory to process the image",
        **{c: "Refused: out of resources: not enough disk space" for c in range(0xA711, 0xA718)},
        0xA900: "Error: data set does not match SOP Class (mandatory or display elements lack values)",
        0xC010: "Error: cannot understand: cannot parse the data set (e.g. no pixel data)",
        0xC011: "Error: cannot understand: pixel data size does not match the expected length",
        0xC012: "Error: cannot understand: cannot read pixel data",
    },
}


def store_status_meaning(status: int, system: Optional[str] = None) -> str:
    """Meaning of a C-STORE status: the system's private meaning if ``system`` defines one
    ("entegra", "xeleris", "pacs-iw"), else ferrodicom's own, else the PS3.4 B.2.3 / PS3.7 C range name."""
    if system is not None:
        private = PRIVATE_STORE_STATUSES.get(system)
        if private is None:
            raise KeyError(f"unknown system {system!r}; known: {', '.join(PRIVATE_STORE_STATUSES)}")
        if status in private:
            return private[status]
    if status in STORE_STATUSES:
        return STORE_STATUSES[status]
    from ferrodicom.status import meaning

    return meaning(status)
