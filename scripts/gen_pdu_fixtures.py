"""Generate PDU and DIMSE command-set fixtures with pynetdicom (software we did not write).

Writes ``tests/data/pdu/<name>.bin`` (raw bytes) and ``tests/data/pdu/MANIFEST.txt``.
The Rust tests in ``rust/ul/tests/fixtures.rs`` decode every file, check its fields against
the values used here, and re-encode it byte-identically (PS3.8 §9.3, PS3.7 Annex D, PS3.7 §9.3).

Run from the repository root: ``python scripts/gen_pdu_fixtures.py``. The output is checked in;
re-running with the same pynetdicom version gives the same bytes.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pynetdicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import dimse_messages, dimse_primitives
from pynetdicom.dsutils import encode
from pynetdicom.pdu import (
    A_ABORT_RQ,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    P_DATA_TF,
)
from pynetdicom.pdu_primitives import (
    A_ABORT,
    A_ASSOCIATE,
    A_P_ABORT,
    A_RELEASE,
    P_DATA,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import PresentationContext

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "pdu"

APP_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CT = "1.2.840.10008.5.1.4.1.1.2.2"
STORAGE_SERVICE = "1.2.840.10008.4.2"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
NM_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG = "1.2.840.10008.1.2.2"
IMPL_UID = "1.2.826.0.1.3680043.9.3811.2.1"
IMPL_VERSION = "PYNETDICOM_TEST"


def ctx(cid: int, abstract: str, ts: list[str], result: int | None = None) -> PresentationContext:
    """A presentation context (PS3.8 §9.3.2.2 / §9.3.3.2)."""
    c = PresentationContext()
    c.context_id = cid
    c.abstract_syntax = abstract
    c.transfer_syntax = ts
    if result is not None:
        c.result = result
    return c


def user_items(max_len: int, rq: bool) -> list:
    """User Information sub-items (PS3.7 Annex D.3.3) in a fixed order."""
    ml = MaximumLengthNotification()
    ml.maximum_length_received = max_len
    ic = ImplementationClassUIDNotification()
    ic.implementation_class_uid = IMPL_UID
    aw = AsynchronousOperationsWindowNegotiation()
    aw.maximum_number_operations_invoked = 5 if rq else 3
    aw.maximum_number_operations_performed = 3 if rq else 1
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = CT_STORAGE
    role.scu_role = rq  # the acceptor rejects the proposed SCU role
    role.scp_role = True
    iv = ImplementationVersionNameNotification()
    iv.implementation_version_name = IMPL_VERSION
    ext = SOPClassExtendedNegotiation()
    ext.sop_class_uid = STUDY_FIND
    ext.service_class_application_information = b"\x01\x01\x00\x01" if rq else b"\x01\x00"
    items = [ml, ic, aw, role, iv, ext]
    if rq:
        com = SOPClassCommonExtendedNegotiation()
        com.sop_class_uid = ENHANCED_CT
        com.service_class_uid = STORAGE_SERVICE
        com.related_general_sop_class_identification = [CT_STORAGE, LEGACY_CT]
        uid = UserIdentityNegotiation()
        uid.user_identity_type = 2
        uid.positive_response_requested = True
        uid.primary_field = b"alice"
        uid.secondary_field = b"s3cret"
        items += [com, uid]
    else:
        uid = UserIdentityNegotiation()
        uid.server_response = b"token-123"
        items.append(uid)
    return items


def associate(called: str = "ANY-SCP", calling: str = "ECHOSCU") -> A_ASSOCIATE:
    p = A_ASSOCIATE()
    p.application_context_name = APP_CONTEXT
    p.calling_ae_title = calling
    p.called_ae_title = called
    return p


def associate_rq_full() -> bytes:
    p = associate()
    p.presentation_context_definition_list = [
        ctx(1, VERIFICATION, [IMPLICIT]),
        ctx(3, CT_STORAGE, [EXPLICIT, IMPLICIT, BIG]),
        ctx(5, STUDY_FIND, [EXPLICIT, IMPLICIT]),
    ]
    p.user_information = user_items(16384, rq=True)
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(p)
    return pdu.encode()


def associate_ac_full() -> bytes:
    p = associate()
    p.result = 0
    p.presentation_context_definition_results_list = [
        ctx(1, VERIFICATION, [IMPLICIT], result=0),
        ctx(3, CT_STORAGE, [EXPLICIT], result=3),
        ctx(5, STUDY_FIND, [IMPLICIT], result=4),
    ]
    p.user_information = user_items(32768, rq=False)
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(p)
    return pdu.encode()


def big_uid(i: int) -> str:
    return f"1.2.826.0.1.3680043.9.3811.99.{i}"


def associate_rq_128(max_len: int) -> bytes:
    p = associate(called="STORESCP", calling="STORESCU")
    p.presentation_context_definition_list = [ctx(2 * i + 1, big_uid(i), [EXPLICIT, IMPLICIT]) for i in range(128)]
    ml = MaximumLengthNotification()
    ml.maximum_length_received = max_len
    ic = ImplementationClassUIDNotification()
    ic.implementation_class_uid = IMPL_UID
    p.user_information = [ml, ic]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(p)
    return pdu.encode()


def associate_ac_128(max_len: int) -> bytes:
    p = associate(called="STORESCP", calling="STORESCU")
    p.result = 0
    p.presentation_context_definition_results_list = [
        ctx(2 * i + 1, big_uid(i), [EXPLICIT], result=0 if i % 2 == 0 else 3) for i in range(128)
    ]
    ml = MaximumLengthNotification()
    ml.maximum_length_received = max_len
    ic = ImplementationClassUIDNotification()
    ic.implementation_class_uid = IMPL_UID
    p.user_information = [ml, ic]
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(p)
    return pdu.encode()


def associate_rj() -> bytes:
    p = associate()
    p.result = 0x01
    p.result_source = 0x01
    p.diagnostic = 0x07
    pdu = A_ASSOCIATE_RJ()
    pdu.from_primitive(p)
    return pdu.encode()


def release(rp: bool) -> bytes:
    pdu = A_RELEASE_RP() if rp else A_RELEASE_RQ()
    p = A_RELEASE()
    if rp:
        p.result = "affirmative"
    pdu.from_primitive(p)
    return pdu.encode()


def abort_user() -> bytes:
    p = A_ABORT()
    p.abort_source = 0x00
    pdu = A_ABORT_RQ()
    pdu.from_primitive(p)
    return pdu.encode()


def abort_provider() -> bytes:
    p = A_P_ABORT()
    p.provider_reason = 0x06
    pdu = A_ABORT_RQ()
    pdu.from_primitive(p)
    return pdu.encode()


def command_sets() -> dict[str, bytes]:
    """DIMSE command sets (PS3.7 §9.3, §10.3) encoded by pynetdicom's DIMSE layer."""
    out: dict[str, bytes] = {}

    def add(name: str, msg_cls, prim) -> None:
        msg = msg_cls()
        msg.primitive_to_message(prim)
        out[name] = encode(msg.command_set, True, True)

    echo = dimse_primitives.C_ECHO()
    echo.MessageID = 7
    echo.AffectedSOPClassUID = VERIFICATION
    add("cmd_c_echo_rq", dimse_messages.C_ECHO_RQ, echo)

    store = dimse_primitives.C_STORE()
    store.MessageID = 12
    store.AffectedSOPClassUID = NM_STORAGE
    store.AffectedSOPInstanceUID = "1.2.3.4.5.6.7"
    store.Priority = 2
    store.MoveOriginatorApplicationEntityTitle = "XELERIS"
    store.MoveOriginatorMessageID = 3
    store.DataSet = BytesIO(b"\x08\x00\x16\x00\x00\x00\x00\x00")
    add("cmd_c_store_rq", dimse_messages.C_STORE_RQ, store)

    move = dimse_primitives.C_MOVE()
    move.MessageIDBeingRespondedTo = 4
    move.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.2"
    move.Status = 0xFF00
    move.NumberOfRemainingSuboperations = 10
    move.NumberOfCompletedSuboperations = 5
    move.NumberOfFailedSuboperations = 1
    move.NumberOfWarningSuboperations = 2
    add("cmd_c_move_rsp", dimse_messages.C_MOVE_RSP, move)

    find = dimse_primitives.C_FIND()
    find.MessageIDBeingRespondedTo = 9
    find.AffectedSOPClassUID = STUDY_FIND
    find.Status = 0xA900
    find.OffendingElement = [0x00100010, 0x00100020]
    find.ErrorComment = "Bad key"
    add("cmd_c_find_rsp", dimse_messages.C_FIND_RSP, find)

    nget = dimse_primitives.N_GET()
    nget.MessageID = 21
    nget.RequestedSOPClassUID = "1.2.840.10008.5.1.1.16"
    nget.RequestedSOPInstanceUID = "1.2.840.10008.5.1.1.17"
    nget.AttributeIdentifierList = [0x21100010, 0x21100020]
    add("cmd_n_get_rq", dimse_messages.N_GET_RQ, nget)

    nevt = dimse_primitives.N_EVENT_REPORT()
    nevt.MessageID = 22
    nevt.AffectedSOPClassUID = "1.2.840.10008.1.20.1"
    nevt.AffectedSOPInstanceUID = "1.2.840.10008.1.20.1.1"
    nevt.EventTypeID = 1
    nevt.EventInformation = BytesIO(b"\x08\x00\x16\x00\x00\x00\x00\x00")
    add("cmd_n_event_report_rq", dimse_messages.N_EVENT_REPORT_RQ, nevt)
    return out


def p_data_tf() -> bytes:
    """Two PDVs: a C-ECHO-RQ command (last fragment) and a small data set fragment."""
    cmd = command_sets()["cmd_c_echo_rq"]
    p = P_DATA()
    p.presentation_data_value_list = [[1, b"\x03" + cmd], [3, b"\x00" + bytes(range(32))]]
    pdu = P_DATA_TF()
    pdu.from_primitive(p)
    return pdu.encode()


def p_data_tf_from_dimse() -> bytes:
    """The P-DATA-TF pynetdicom's DIMSE layer sends for a C-ECHO-RQ (context 1)."""
    echo = dimse_primitives.C_ECHO()
    echo.MessageID = 7
    echo.AffectedSOPClassUID = VERIFICATION
    msg = dimse_messages.C_ECHO_RQ()
    msg.primitive_to_message(echo)
    (prim,) = list(msg.encode_msg(1, 16384))
    pdu = P_DATA_TF()
    pdu.from_primitive(prim)
    return pdu.encode()


def nm_image() -> bytes:
    """A small NM Image (PS3.3 A.5) as a Part 10 file, Explicit VR Little Endian, for the
    DCMTK interoperability tests (rust/ul/tests/interop_dcmtk.rs)."""
    ds = Dataset()
    ds.SOPClassUID = NM_STORAGE
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.9.3811.7.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.3811.7.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.3811.7.3"
    ds.Modality = "NM"
    ds.PatientName = "Interop^Test"
    ds.PatientID = "FERRO-1"
    ds.Rows = 128
    ds.Columns = 128
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = 1
    ds.PixelData = bytes((i * 7) % 256 for i in range(128 * 128 * 2))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = NM_STORAGE
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPL_UID
    fds = FileDataset("nm_image.dcm", ds, file_meta=meta, preamble=b"\0" * 128)
    out = BytesIO()
    fds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    fixtures: dict[str, bytes] = {
        "associate_rq_full": associate_rq_full(),
        "associate_ac_full": associate_ac_full(),
        "associate_rq_128ctx_maxpdu0": associate_rq_128(0),
        "associate_ac_128ctx_maxpdu4096": associate_ac_128(4096),
        "associate_rj_1_1_7": associate_rj(),
        "p_data_tf_two_pdvs": p_data_tf(),
        "p_data_tf_c_echo": p_data_tf_from_dimse(),
        "release_rq": release(False),
        "release_rp": release(True),
        "abort_user": abort_user(),
        "abort_provider_6": abort_provider(),
    }
    fixtures.update(command_sets())
    (OUT / "nm_image.dcm").write_bytes(nm_image())
    lines = [f"# Generated by scripts/gen_pdu_fixtures.py with pynetdicom {pynetdicom.__version__}"]
    for name, data in sorted(fixtures.items()):
        (OUT / f"{name}.bin").write_bytes(data)
        lines.append(f"{name}.bin {len(data)} bytes")
    (OUT / "MANIFEST.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(fixtures)} fixtures to {OUT}")


if __name__ == "__main__":
    main()
