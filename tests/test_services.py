"""The service platform with pynetdicom as the peer in both roles: handlers written as pynetdicom's documentation
writes them run on ferrodicom's AE (pynetdicom SCU -> ferrodicom SCP), and every ``send_*`` call of ferrodicom's
Association works against pynetdicom's SCP (PS3.4 Annexes A, B, C, H, J; PS3.7 §9-10)."""

from __future__ import annotations

import threading
import time

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE as PynAE
from pynetdicom import build_role as pyn_build_role
from pynetdicom import evt as pyn_evt
from pynetdicom.sop_class import (
    BasicFilmSession,
    BasicGrayscalePrintManagementMeta,
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    Printer,
    PrinterInstance,
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
    Verification,
)

import ferrodicom
from ferrodicom import AE, evt

FIND = PatientRootQueryRetrieveInformationModelFind
GET = PatientRootQueryRetrieveInformationModelGet
MOVE = PatientRootQueryRetrieveInformationModelMove


def ct_instance(n: int = 0) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1.1"
    ds.PatientID = "PID1"
    ds.PatientName = f"Test^{n}"
    ds.InstanceNumber = n
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(8))
    ds.file_meta = Dataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def find_query() -> Dataset:
    q = Dataset()
    q.QueryRetrieveLevel = "PATIENT"
    q.PatientID = "*"
    q.PatientName = ""
    return q


@pytest.fixture
def scp():
    """A ferrodicom AE factory: start(handlers, contexts) -> port; every server is shut down after the test."""
    servers = []

    def start(handlers, contexts):
        ae = AE("FERRO")
        for c in contexts:
            if isinstance(c, tuple):
                ae.add_supported_context(c[0], scu_role=c[1], scp_role=c[2])
            else:
                ae.add_supported_context(c)
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        servers.append(server)
        return server.port

    yield start
    for s in servers:
        s.shutdown()


def pyn_scu(*contexts: str) -> PynAE:
    ae = PynAE(ae_title="PYNSCU")
    for c in contexts:
        ae.add_requested_context(c)
    return ae


# --- pynetdicom SCU -> ferrodicom SCP, handlers as pynetdicom documents them -------------------------------


def test_c_find_handler_yields_1000_pending_matches(scp):
    def handle_find(event):
        assert event.identifier.QueryRetrieveLevel == "PATIENT"
        for i in range(1000):
            if event.is_cancelled:
                yield (0xFE00, None)
                return
            ds = Dataset()
            ds.PatientID = f"P{i:04d}"
            ds.PatientName = f"Name^{i}"
            ds.QueryRetrieveLevel = "PATIENT"
            yield (0xFF00, ds)

    port = scp([(evt.EVT_C_FIND, handle_find)], [FIND])
    assoc = pyn_scu(FIND).associate("127.0.0.1", port, ae_title="FERRO")
    assert assoc.is_established
    results = list(assoc.send_c_find(find_query(), FIND))
    assoc.release()
    statuses = [s.Status for s, _ in results]
    assert statuses == [0xFF00] * 1000 + [0x0000]
    assert [ident.PatientID for _, ident in results[:-1]] == [f"P{i:04d}" for i in range(1000)]
    assert results[-1][1] is None


@pytest.mark.parametrize("handler_checks", [True, False], ids=["handler-checks-cancel", "handler-ignores-cancel"])
def test_c_find_cancel_after_5_stops_the_handler(scp, handler_checks):
    """After 5 matches the SCU sends C-CANCEL; the final status is FE00 and the handler stops, whether it looks
    at ``event.is_cancelled`` itself or not (then the platform stops it between responses)."""
    yielded: list[int] = []
    closed = threading.Event()

    def handle_find(event):
        try:
            for i in range(1000):
                if handler_checks and event.is_cancelled:
                    yield (0xFE00, None)
                    return
                ds = Dataset()
                ds.PatientID = f"P{i:04d}"
                yielded.append(i)
                yield (0xFF00, ds)
                if i >= 4:
                    time.sleep(0.02)  # matches after the 5th come slowly: the cancel arrives among them
        finally:
            closed.set()

    port = scp([(evt.EVT_C_FIND, handle_find)], [FIND])
    assoc = pyn_scu(FIND).associate("127.0.0.1", port, ae_title="FERRO")
    statuses = []
    for i, (status, _ident) in enumerate(assoc.send_c_find(find_query(), FIND, msg_id=7)):
        statuses.append(status.Status)
        if i == 4:
            assoc.send_c_cancel(7, query_model=FIND)
    assoc.release()
    assert statuses[-1] == 0xFE00
    assert statuses[:5] == [0xFF00] * 5 and set(statuses[:-1]) == {0xFF00}
    assert closed.wait(5), "the handler's generator was closed"
    assert len(yielded) < 50, f"the handler went on after the cancel: {len(yielded)} matches"


def test_c_get_three_suboperations_over_role_selection(scp):
    sent = [ct_instance(i) for i in range(3)]
    received: list[Dataset] = []

    def handle_get(event):
        assert event.identifier.PatientID == "PID1"
        yield len(sent)
        for ds in sent:
            yield (0xFF00, ds)

    def handle_store(event):
        received.append(event.dataset)
        return 0x0000

    port = scp([(evt.EVT_C_GET, handle_get)], [GET, (CTImageStorage, True, True)])
    ae = pyn_scu(GET, CTImageStorage)
    role = pyn_build_role(CTImageStorage, scp_role=True)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="FERRO", ext_neg=[role], evt_handlers=[(pyn_evt.EVT_C_STORE, handle_store)]
    )
    assert assoc.is_established
    q = Dataset()
    q.QueryRetrieveLevel = "PATIENT"
    q.PatientID = "PID1"
    results = list(assoc.send_c_get(q, GET))
    assoc.release()
    final = results[-1][0]
    assert [s.Status for s, _ in results] == [0xFF00, 0xFF00, 0x0000]
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (3, 0)
    assert [r.SOPInstanceUID for r in received] == [s.SOPInstanceUID for s in sent]
    assert [r.PixelData for r in received] == [s.PixelData for s in sent]


def test_n_get_of_the_printer_sop_instance(scp):
    def handle_n_get(event):
        assert event.request.RequestedSOPInstanceUID == PrinterInstance
        assert [int(t) for t in event.attribute_identifiers] == [0x2110_0010, 0x2110_0020]
        ds = Dataset()
        ds.PrinterStatus = "NORMAL"
        ds.PrinterStatusInfo = "NORMAL"
        return 0x0000, ds

    port = scp([(evt.EVT_N_GET, handle_n_get)], [BasicGrayscalePrintManagementMeta])
    assoc = pyn_scu(BasicGrayscalePrintManagementMeta).associate("127.0.0.1", port, ae_title="FERRO")
    status, attrs = assoc.send_n_get(
        [0x2110_0010, 0x2110_0020], Printer, PrinterInstance, meta_uid=BasicGrayscalePrintManagementMeta
    )
    assoc.release()
    assert status.Status == 0x0000
    assert (attrs.PrinterStatus, attrs.PrinterStatusInfo) == ("NORMAL", "NORMAL")


def test_n_action_handler_sends_an_n_event_report_on_the_same_association(scp):
    """Storage commitment's shape (PS3.4 J.3): the N-ACTION handler reports on the requesting association."""
    uid = generate_uid()
    reports: list[tuple[int, str]] = []

    def handle_action(event):
        info = event.action_information
        report = Dataset()
        report.TransactionUID = info.TransactionUID
        report.ReferencedSOPSequence = info.ReferencedSOPSequence
        status, _ = event.assoc.send_n_event_report(
            report, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
        )
        assert status == 0x0000
        return 0x0000, None

    def handle_report(event):
        reports.append((event.event_type, event.event_information.TransactionUID))
        return 0x0000, None

    port = scp([(evt.EVT_N_ACTION, handle_action)], [StorageCommitmentPushModel])
    ae = pyn_scu(StorageCommitmentPushModel)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="FERRO", evt_handlers=[(pyn_evt.EVT_N_EVENT_REPORT, handle_report)]
    )
    action = Dataset()
    action.TransactionUID = uid
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = generate_uid()
    action.ReferencedSOPSequence = [item]
    status, _ = assoc.send_n_action(action, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance)
    assoc.release()
    assert status.Status == 0x0000
    assert reports == [(1, uid)]


# --- ferrodicom SCU -> pynetdicom SCP, every send_* call ---------------------------------------------------


@pytest.fixture
def pyn_scp(port):
    """pynetdicom SCP with a handler for every DIMSE service; returns (port, what its handlers saw)."""
    seen: dict[str, list] = {}
    stored_by_move: list[Dataset] = []
    instances = [ct_instance(i) for i in range(2)]

    def note(name, value):
        seen.setdefault(name, []).append(value)

    def on_echo(event):
        note("echo", event.request.MessageID)
        return 0x0000

    def on_store(event):
        note("store", event.dataset.SOPInstanceUID)
        return 0x0000

    def on_find(event):
        note("find", event.identifier.PatientID)
        for i in range(3):
            ds = Dataset()
            ds.PatientID = f"P{i}"
            ds.QueryRetrieveLevel = "PATIENT"
            yield 0xFF00, ds

    def on_find_slow(event):
        for i in range(200):
            if event.is_cancelled:
                note("cancelled", i)
                yield 0xFE00, None
                return
            ds = Dataset()
            ds.PatientID = f"S{i}"
            yield 0xFF00, ds
            time.sleep(0.01)

    def on_get(event):
        note("get", event.identifier.PatientID)
        yield len(instances)
        for ds in instances:
            yield 0xFF00, ds

    def on_move(event):
        note("move", event.move_destination)
        yield "127.0.0.1", dest_port
        yield len(instances)
        for ds in instances:
            yield 0xFF00, ds

    def on_n(name):
        def handler(event):
            ds = None
            if name in ("n_set",):
                ds = event.modification_list
            elif name == "n_create":
                ds = event.attribute_list
            elif name == "n_action":
                note("action_type", event.action_type)
                ds = Dataset()
                ds.TransactionUID = event.action_information.TransactionUID
            elif name == "n_event_report":
                note("event_type", event.event_type)
                ds = Dataset()
                ds.TransactionUID = event.event_information.TransactionUID
            elif name == "n_get":
                ds = Dataset()
                ds.PrinterStatus = "NORMAL"
            note(name, event.request.MessageID)
            return 0x0000, ds

        return handler

    def on_delete(event):
        note("n_delete", event.request.RequestedSOPInstanceUID)
        return 0x0000

    # The C-MOVE destination: a ferrodicom storage SCP (in-memory handler).
    dest = AE("DEST")
    dest.add_supported_context(CTImageStorage)
    dest_server = dest.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: stored_by_move.append(e.dataset) or 0)]
    )
    dest_port = dest_server.port

    pae = PynAE(ae_title="PYNSCP")
    for c in (Verification, CTImageStorage, FIND, GET, MOVE, StorageCommitmentPushModel,
              BasicGrayscalePrintManagementMeta):  # fmt: skip
        pae.add_supported_context(c)
    pae.add_supported_context(CTImageStorage, scu_role=True, scp_role=True)
    pae.add_requested_context(CTImageStorage)  # for the C-MOVE sub-operations
    handlers = [
        (pyn_evt.EVT_C_ECHO, on_echo),
        (pyn_evt.EVT_C_STORE, on_store),
        (pyn_evt.EVT_C_FIND, lambda e: on_find_slow(e) if e.identifier.PatientID == "SLOW" else on_find(e)),
        (pyn_evt.EVT_C_GET, on_get),
        (pyn_evt.EVT_C_MOVE, on_move),
        (pyn_evt.EVT_N_ACTION, on_n("n_action")),
        (pyn_evt.EVT_N_CREATE, on_n("n_create")),
        (pyn_evt.EVT_N_DELETE, on_delete),
        (pyn_evt.EVT_N_EVENT_REPORT, on_n("n_event_report")),
        (pyn_evt.EVT_N_GET, on_n("n_get")),
        (pyn_evt.EVT_N_SET, on_n("n_set")),
    ]
    server = pae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    try:
        yield port, seen, instances, stored_by_move
    finally:
        server.shutdown()
        dest_server.shutdown()


def test_every_send_call_against_pynetdicom(pyn_scp):
    port, seen, instances, stored_by_move = pyn_scp
    ae = AE("FERRO")
    for c in (Verification, CTImageStorage, FIND, MOVE, StorageCommitmentPushModel, BasicGrayscalePrintManagementMeta):
        ae.add_requested_context(c)
    with ae.associate("127.0.0.1", port, ae_title="PYNSCP") as assoc:
        assert assoc.is_established
        assert assoc.send_c_echo() == 0x0000
        assert assoc.send_c_echo(msg_id=42) == 0x0000

        ds = ct_instance(7)
        assert assoc.send_c_store(ds) == 0x0000

        q = Dataset()
        q.QueryRetrieveLevel = "PATIENT"
        q.PatientID = "PID1"
        found = list(assoc.send_c_find(q, FIND))
        assert [s.Status for s, _ in found] == [0xFF00] * 3 + [0x0000]
        assert [i.PatientID for _, i in found[:3]] == ["P0", "P1", "P2"]

        slow = Dataset()
        slow.QueryRetrieveLevel = "PATIENT"
        slow.PatientID = "SLOW"
        statuses = []
        for i, (status, _) in enumerate(assoc.send_c_find(slow, FIND, msg_id=99)):
            statuses.append(status.Status)
            if i == 2:
                assoc.send_c_cancel(99, query_model=FIND)
        assert statuses[-1] == 0xFE00 and len(statuses) < 200

        moved = list(assoc.send_c_move(q, "DEST", MOVE))
        final = moved[-1][0]
        assert final.Status == 0x0000 and final.NumberOfCompletedSuboperations == 2

        action = Dataset()
        action.TransactionUID = generate_uid()
        status, reply = assoc.send_n_action(action, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance)
        assert status == 0x0000 and reply.TransactionUID == action.TransactionUID

        report = Dataset()
        report.TransactionUID = generate_uid()
        status, reply = assoc.send_n_event_report(
            report, 2, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
        )
        assert status == 0x0000 and reply.TransactionUID == report.TransactionUID

        session = Dataset()
        session.NumberOfCopies = 2
        session_uid = generate_uid()
        meta = BasicGrayscalePrintManagementMeta
        status, attrs = assoc.send_n_create(session, BasicFilmSession, session_uid, meta_uid=meta)
        assert status == 0x0000 and attrs.NumberOfCopies == 2
        change = Dataset()
        change.NumberOfCopies = 3
        status, attrs = assoc.send_n_set(change, BasicFilmSession, session_uid, meta_uid=meta)
        assert status == 0x0000 and attrs.NumberOfCopies == 3
        status, attrs = assoc.send_n_get([0x2110_0010], Printer, PrinterInstance, meta_uid=meta)
        assert status == 0x0000 and attrs.PrinterStatus == "NORMAL"
        assert assoc.send_n_delete(BasicFilmSession, session_uid, meta_uid=meta) == 0x0000
    assert assoc.is_released
    assert seen["echo"][1] == 42
    assert seen["store"] == [ds.SOPInstanceUID]
    assert seen["move"] == ["DEST"]
    assert sorted(d.SOPInstanceUID for d in stored_by_move) == sorted(d.SOPInstanceUID for d in instances)
    assert seen["action_type"] == [1] and seen["event_type"] == [2]
    assert seen["n_delete"] == [session_uid]
    assert seen["cancelled"] and seen["cancelled"][0] < 200


def test_c_get_against_pynetdicom_stores_through_our_handler(pyn_scp):
    port, _seen, instances, _ = pyn_scp
    received: list[Dataset] = []

    def on_store(event):
        received.append(event.dataset)
        return 0x0000

    ae = AE("FERRO")
    ae.add_requested_context(GET)
    ae.add_requested_context(CTImageStorage)
    q = Dataset()
    q.QueryRetrieveLevel = "PATIENT"
    q.PatientID = "PID1"
    assoc = ae.associate(
        "127.0.0.1",
        port,
        ae_title="PYNSCP",
        ext_neg=[ferrodicom.build_role(CTImageStorage, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    with assoc:
        results = list(assoc.send_c_get(q, GET))
    assert results[-1][0].Status == 0x0000
    assert results[-1][0].NumberOfCompletedSuboperations == 2
    assert [r.SOPInstanceUID for r in received] == [i.SOPInstanceUID for i in instances]


def test_an_n_event_report_after_the_response_goes_to_our_handler(port):
    """pynetdicom's N-ACTION handler reports later from another thread: our requestor serves it in the
    background (the requestor's handlers, PS3.4 J.3.3 on the same association)."""
    reports = []
    got = threading.Event()

    def on_action(event):
        assoc, uid = event.assoc, event.action_information.TransactionUID

        def later():
            time.sleep(0.3)
            ds = Dataset()
            ds.TransactionUID = uid
            assoc.send_n_event_report(ds, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance)

        threading.Thread(target=later, daemon=True).start()
        return 0x0000, None

    def on_report(event):
        reports.append(event.event_information.TransactionUID)
        got.set()
        return 0x0000, None

    pae = PynAE(ae_title="PYNSCP")
    pae.add_supported_context(StorageCommitmentPushModel)
    server = pae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(pyn_evt.EVT_N_ACTION, on_action)])
    try:
        ae = AE("FERRO")
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate("127.0.0.1", port, ae_title="PYNSCP", evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
        action = Dataset()
        action.TransactionUID = generate_uid()
        status, _ = assoc.send_n_action(action, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance)
        assert status == 0x0000
        assert got.wait(10), "the report reached our handler"
        assoc.release()
    finally:
        server.shutdown()
    assert reports == [action.TransactionUID]


def test_a_rejection_is_typed_with_its_three_fields(port):
    pae = PynAE(ae_title="PYNSCP")
    pae.require_called_aet = True
    pae.add_supported_context(Verification)
    server = pae.start_server(("127.0.0.1", port), block=False)
    try:
        ae = AE("FERRO")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="SOMEONE")
        assert not assoc.is_established and assoc.is_rejected
        err = assoc.error
        assert isinstance(err, ferrodicom.AssociationRejected)
        assert isinstance(err, ferrodicom.DicomError)
        assert (err.result, err.source, err.reason) == (1, 1, 7)
        assert assoc.rejection == (1, 1, 7)
        with pytest.raises(ferrodicom.AssociationRejected) as raised:
            ferrodicom._core.associate(
                "127.0.0.1", port, "FERRO", "SOMEONE", [(Verification, ["1.2.840.10008.1.2"], None)]
            )
        assert (raised.value.result, raised.value.source, raised.value.reason) == (1, 1, 7)
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    "ts",
    ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"],
    ids=["ILE", "ELE", "EBE", "Deflated"],
)
def test_identifiers_go_in_the_negotiated_transfer_syntax(scp, ts):
    """The request's identifier is decoded, and each response's encoded, in the context's transfer syntax
    (Deflated and Explicit VR Big Endian through the Rust codec), as pynetdicom reads them."""
    seen = []

    def handle_find(event):
        seen.append((event.context.transfer_syntax, event.identifier.PatientName))
        for i in range(3):
            ds = Dataset()
            ds.PatientName = f"Müller^{i}"
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.PatientID = f"P{i}"
            yield (0xFF00, ds)

    ae = AE("FERRO")
    ae.add_supported_context(FIND, [ts])
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, handle_find)])
    try:
        pae = PynAE(ae_title="PYNSCU")
        pae.add_requested_context(FIND, [ts])
        assoc = pae.associate("127.0.0.1", server.port, ae_title="FERRO")
        assert assoc.is_established and assoc.accepted_contexts[0].transfer_syntax[0] == ts
        q = find_query()
        q.PatientName = "Mü*"
        q.SpecificCharacterSet = "ISO_IR 192"
        results = list(assoc.send_c_find(q, FIND))
        assoc.release()
    finally:
        server.shutdown()
    assert seen == [(ts, "Mü*")]
    assert [str(i.PatientName) for _, i in results[:-1]] == ["Müller^0", "Müller^1", "Müller^2"]
    assert results[-1][0].Status == 0


def test_c_get_sub_operations_stream_into_an_archive(pyn_scp, tmp_path):
    """With the storage service added to the requesting AE, a C-GET's C-STOREs go through the Rust data path
    into the archive, as a server's would."""
    from ferrodicom import Archive
    from ferrodicom.services.storage import StorageSCP

    port, _seen, instances, _ = pyn_scp
    archive = Archive(tmp_path / "arc", durability="none")
    try:
        ae = AE("FERRO")
        ae.add_service(StorageSCP(archive))
        ae.add_requested_context(GET)
        ae.add_requested_context(CTImageStorage, roles=(False, True))
        q = Dataset()
        q.QueryRetrieveLevel = "PATIENT"
        q.PatientID = "PID1"
        with ae.associate("127.0.0.1", port, ae_title="PYNSCP") as assoc:
            results = list(assoc.send_c_get(q, GET))
        assert results[-1][0].Status == 0 and results[-1][0].NumberOfCompletedSuboperations == 2
        rows = archive.query("instance")
        assert sorted(r["SOPInstanceUID"] for r in rows) == sorted(str(i.SOPInstanceUID) for i in instances)
        for r in rows:
            assert (archive.root / r["path"]).read_bytes()[128:132] == b"DICM"
    finally:
        archive.close()


# --- handlers and status datasets --------------------------------------------------------------------------


class _ActionService:
    """A minimal service object (contexts + handlers) as ae.add_service takes it."""

    def __init__(self, sop_class: str, status: int):
        self.sop_class, self.status, self.calls = sop_class, status, 0

    def contexts(self):
        from ferrodicom.ae import ContextSpec

        return [ContextSpec(self.sop_class)]

    def handlers(self):
        def on_action(event):
            self.calls += 1
            return self.status, None

        return [(evt.EVT_N_ACTION, on_action)]


def test_two_services_handling_one_event_each_serve_their_own_sop_class():
    """Two services bound to EVT_N_ACTION: each request reaches the service whose SOP class it names."""
    commit, printer = _ActionService(StorageCommitmentPushModel, 0x0000), _ActionService(Printer, 0x0107)
    ae = AE("FERRO")
    ae.add_service(commit)
    ae.add_service(printer)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        scu = pyn_scu(StorageCommitmentPushModel, Printer)
        assoc = scu.associate("127.0.0.1", server.port, ae_title="FERRO")
        s1, _ = assoc.send_n_action(None, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance)
        s2, _ = assoc.send_n_action(None, 1, Printer, PrinterInstance)
        assoc.release()
    finally:
        server.shutdown()
    assert (s1.Status, s2.Status) == (0x0000, 0x0107)
    assert (commit.calls, printer.calls) == (1, 1)


def test_status_dataset_with_multi_valued_error_comment_and_offending_elements(scp):
    """A handler's status Dataset may carry ErrorComment as a list and OffendingElement as several tags."""

    def handle_set(event):
        status = Dataset()
        status.Status = 0x0106
        status.ErrorComment = ["bad", "value"]
        status.OffendingElement = [0x2000_0010, 0x2000_0030]
        return status, None

    port = scp([(evt.EVT_N_SET, handle_set)], [BasicFilmSession])
    mod = Dataset()
    mod.NumberOfCopies = 1
    ae = AE("FERROSCU")
    ae.add_requested_context(BasicFilmSession)
    with ae.associate("127.0.0.1", port, ae_title="FERRO") as assoc:
        status, _ = assoc.send_n_set(mod, BasicFilmSession, generate_uid())
    assert status.Status == 0x0106
    assert status.ErrorComment == "bad; value"  # VM 1 in the command set (PS3.7 Annex C)
    assert [int(t) for t in status.OffendingElement] == [0x2000_0010, 0x2000_0030]


@pytest.mark.parametrize("answer", [0x0000, 0x0116])
def test_n_create_success_or_warning_names_the_created_instance(scp, answer):
    """PS3.7 §10.1.5.1.4: the SCP gives the Affected SOP Instance UID it created, for Success and Warning."""
    created = generate_uid()

    def handle_create(event):
        ds = Dataset()
        ds.AffectedSOPInstanceUID = created
        ds.NumberOfCopies = 1
        return answer, ds

    port = scp([(evt.EVT_N_CREATE, handle_create)], [BasicFilmSession])
    ae = AE("FERROSCU")
    ae.add_requested_context(BasicFilmSession)
    attributes = Dataset()
    attributes.NumberOfCopies = 1
    with ae.associate("127.0.0.1", port, ae_title="FERRO") as assoc:
        status, attrs = assoc.send_n_create(attributes, BasicFilmSession)
    assert status.Status == answer
    assert status.AffectedSOPInstanceUID == created
    assert attrs.NumberOfCopies == 1 and "AffectedSOPInstanceUID" not in attrs


def test_a_requestor_exiting_at_once_does_not_panic_its_serving_thread(scp):
    """A requestor with handlers serves the peer's requests on a thread of its own; a script that exits as soon
    as it is associated (the thread not yet started, or starting while the interpreter shuts down) ends
    cleanly."""
    import subprocess
    import sys

    port = scp([], [StorageCommitmentPushModel])
    script = (
        "import sys\n"
        "from ferrodicom import AE, evt\n"
        "from pynetdicom.sop_class import StorageCommitmentPushModel as S\n"
        "ae = AE('EXITER'); ae.add_requested_context(S)\n"
        f"a = ae.associate('127.0.0.1', {port}, ae_title='FERRO',"
        " evt_handlers=[(evt.EVT_N_EVENT_REPORT, lambda e: (0, None))])\n"
        "sys.exit(0 if a.is_established else 3)\n"
    )
    runs = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True) for _ in range(12)]
    for p in runs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert "panicked" not in err, err


def test_a_handler_waits_the_dimse_timeout_for_a_silent_peer_not_the_network_timeout():
    """A server whose network timeout is off (None, as DCMTK's storescp): a handler's N-EVENT-REPORT to a peer
    that does not answer ends after the AE's DIMSE timeout with DimseTimeout, instead of waiting forever."""
    outcome: dict = {}
    release = threading.Event()

    def handle_action(event):
        report = Dataset()
        report.TransactionUID = generate_uid()
        started = time.monotonic()
        try:
            event.assoc.send_n_event_report(report, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance)
        except ferrodicom.DimseTimeout:
            outcome["timeout after"] = time.monotonic() - started
        return 0x0000, None

    def silent_report(event):
        release.wait(10)  # pynetdicom answers only when its handler returns
        return 0x0000, None

    ae = AE("FERRO")
    ae.add_supported_context(StorageCommitmentPushModel)
    ae.network_timeout = None
    ae.dimse_timeout = 1.0
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_N_ACTION, handle_action)])
    try:
        scu = pyn_scu(StorageCommitmentPushModel)
        scu.dimse_timeout = 10
        assoc = scu.associate(
            "127.0.0.1", server.port, ae_title="FERRO", evt_handlers=[(pyn_evt.EVT_N_EVENT_REPORT, silent_report)]
        )
        action = Dataset()
        action.TransactionUID = generate_uid()
        assoc.send_n_action(action, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance)
        deadline = time.monotonic() + 15
        while "timeout after" not in outcome and time.monotonic() < deadline:
            time.sleep(0.05)
        release.set()
        assoc.abort()
    finally:
        server.shutdown()
    assert 0.9 <= outcome["timeout after"] < 5
