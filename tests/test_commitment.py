"""Storage Commitment Push Model (PS3.4 Annex J), issue 22: our SCP over the archive and our SCU, against
pynetdicom in both roles and against each other; the report on the same association and on a new one; exact
Referenced and Failed sequences; persistence across a SIGKILL of ``serve`` and a restart of the SCU; bad input."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, generate_uid
from pynetdicom import AE as PynAE
from pynetdicom import build_role as pyn_build_role
from pynetdicom import evt as pyn_evt
from test_services import ct_instance

from conftest import ferrodicom_cli, free_port, wait_for_port
from ferrodicom import AE, Archive
from ferrodicom.association import (
    AFFECTED_SOP_CLASS_UID,
    AFFECTED_SOP_INSTANCE_UID,
    COMMAND_FIELD,
    EVENT_TYPE_ID,
    N_EVENT_REPORT,
)
from ferrodicom.services.commitment import CommitmentSCP, CommitmentSCU, commit, messages, resume
from ferrodicom.services.commitment.checks import check_instances
from ferrodicom.services.storage import StorageSCP, store
from ferrodicom.uids import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    STORAGE_COMMITMENT_PUSH_MODEL,
    STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
    VERIFICATION,
)

SC, SCI = STORAGE_COMMITMENT_PUSH_MODEL, STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


class Node:
    """An in-process node: archive, Storage SCP and Storage Commitment SCP ("FERRO")."""

    def __init__(self, root: Path, durability: str = "full", **commitment) -> None:
        self.archive = Archive(root, durability=durability)
        self.ae = AE("FERRO")
        self.ae.dimse_timeout = 5
        self.ae.add_supported_context(VERIFICATION)
        self.scp = CommitmentSCP(self.archive, self.ae, **commitment)
        self.ae.add_service(StorageSCP(self.archive, on_stored=self.scp.on_stored))
        self.ae.add_service(self.scp)
        self.server = self.ae.start_server(("127.0.0.1", 0), block=False)
        self.port = self.server.port

    def store(self, datasets: list[Dataset]) -> None:
        report = store("127.0.0.1", self.port, datasets, called_ae="FERRO")
        assert len(report.succeeded) == len(datasets)

    def rows(self) -> list[dict]:
        return self.scp.transactions()

    def wait_finished(self, count: int = 1, limit: float = 30.0) -> list[dict]:
        """The transaction rows once ``count`` of them are delivered or failed (bounded)."""
        until = time.monotonic() + limit
        while time.monotonic() < until:
            rows = self.rows()
            if sum(r["state"] in ("delivered", "failed") for r in rows) >= count:
                return rows
            time.sleep(0.05)
        raise AssertionError(f"transactions not finished: {self.rows()}")

    def close(self) -> None:
        self.server.shutdown()
        self.archive.close()


@pytest.fixture
def node(tmp_path):
    made: list[Node] = []

    def make(**kw) -> Node:
        n = Node(tmp_path / f"archive{len(made)}", **kw)
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()


def refs(datasets: list[Dataset]) -> list[tuple[str, str]]:
    return [(str(d.SOPClassUID), str(d.SOPInstanceUID)) for d in datasets]


def action(transaction_uid: str, references: list[tuple[str, str]]) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    items = []
    for cls, inst in references:
        item = Dataset()
        item.ReferencedSOPClassUID = cls
        item.ReferencedSOPInstanceUID = inst
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


def pairs(seq) -> list[tuple[str, str]]:
    return [(str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID)) for i in seq or []]


def failures(seq) -> list[tuple[str, str, int]]:
    return [(str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID), int(i.FailureReason)) for i in seq or []]


# --- pynetdicom SCU -> our SCP -------------------------------------------------------------------------------


def test_pynetdicom_scu_gets_the_report_on_the_same_association(node):
    n = node()
    stored = [ct_instance(i) for i in range(3)]
    n.store(stored)
    reports: list[tuple[int, Dataset]] = []
    got = threading.Event()

    def on_report(event):
        reports.append((event.event_type, event.event_information))
        got.set()
        return 0x0000, None

    pae = PynAE(ae_title="MODALITY")
    pae.add_requested_context(SC)
    assoc = pae.associate("127.0.0.1", n.port, ae_title="FERRO", evt_handlers=[(pyn_evt.EVT_N_EVENT_REPORT, on_report)])
    uid = generate_uid()
    status, _ = assoc.send_n_action(action(uid, refs(stored)), 1, SC, SCI)
    assert status.Status == 0x0000
    assert got.wait(20), "the report came on the requesting association"
    (row,) = n.wait_finished()  # our answer went out before the release
    assoc.release()
    ((event_type, info),) = reports
    assert event_type == 1
    assert info.TransactionUID == uid
    assert pairs(info.ReferencedSOPSequence) == refs(stored)
    assert "FailedSOPSequence" not in info
    assert (row["state"], row["via"], row["response_status"]) == ("delivered", "same", 0)


def test_pynetdicom_scu_gets_the_report_on_a_new_association_with_the_scp_role(node, port):
    """The SCU releases at once; our SCP opens an association to it (address book), proposing the SCP role."""
    n = node(delivery="new")
    n.ae.add_peer("MODALITY", "127.0.0.1", port)
    stored = [ct_instance(i) for i in range(2)]
    n.store(stored)
    reports: list[Dataset] = []
    roles: list[tuple[bool, bool]] = []
    got = threading.Event()

    def on_report(event):
        ctx = next(c for c in event.assoc.accepted_contexts if c.abstract_syntax == SC)
        roles.append((ctx.as_scu, ctx.as_scp))
        reports.append(event.event_information)
        got.set()
        return 0x0000, None

    listener = PynAE(ae_title="MODALITY")
    listener.add_supported_context(SC, scu_role=True, scp_role=True)
    server = listener.start_server(("127.0.0.1", port), block=False,
                                   evt_handlers=[(pyn_evt.EVT_N_EVENT_REPORT, on_report)])  # fmt: skip
    try:
        pae = PynAE(ae_title="MODALITY")
        pae.add_requested_context(SC)
        assoc = pae.associate("127.0.0.1", n.port, ae_title="FERRO")
        uid = generate_uid()
        status, _ = assoc.send_n_action(action(uid, refs(stored)), 1, SC, SCI)
        assoc.release()
        assert status.Status == 0x0000
        assert got.wait(20), "the report came on a new association"
        (row,) = n.wait_finished()
    finally:
        server.shutdown()
    (info,) = reports
    assert info.TransactionUID == uid and pairs(info.ReferencedSOPSequence) == refs(stored)
    assert roles == [(True, False)], "pynetdicom (the acceptor) is SCU: we proposed and got the SCP role"
    assert (row["state"], row["via"]) == ("delivered", "new")


# --- our SCU -> pynetdicom SCP, written as pynetdicom documents it --------------------------------------------


@pytest.mark.parametrize("where", ["same", "new"])
def test_our_scu_against_a_pynetdicom_scp(port, where):
    """pynetdicom's N-ACTION handler answers; the report goes on the requesting association (sent from another
    thread after the response) or on a new association to our listener, proposing the SCP role."""
    listen = free_port()
    failed_uid = generate_uid()

    def report(info):
        ds = Dataset()
        ds.TransactionUID = info.TransactionUID
        ok = [i for i in info.ReferencedSOPSequence if i.ReferencedSOPInstanceUID != failed_uid]
        bad = [i for i in info.ReferencedSOPSequence if i.ReferencedSOPInstanceUID == failed_uid]
        ds.ReferencedSOPSequence = ok
        for item in bad:
            item.FailureReason = 0x0112
        ds.FailedSOPSequence = bad
        return ds

    def on_action(event):
        info, assoc = event.action_information, event.assoc

        def later():
            time.sleep(0.2)
            ds = report(info)
            if where == "same":
                assoc.send_n_event_report(ds, 2, SC, SCI)
                return
            ae = PynAE(ae_title="PYNSCP")
            ae.add_requested_context(SC)
            new = ae.associate("127.0.0.1", listen, ae_title="MYSCU", ext_neg=[pyn_build_role(SC, scp_role=True)])
            new.send_n_event_report(ds, 2, SC, SCI)
            new.release()

        threading.Thread(target=later, daemon=True).start()
        return 0x0000, None

    pae = PynAE(ae_title="PYNSCP")
    pae.add_supported_context(SC)
    server = pae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(pyn_evt.EVT_N_ACTION, on_action)])
    try:
        wanted = [(CT, generate_uid()), (CT, failed_uid), (MR, generate_uid())]
        result = commit("127.0.0.1", port, wanted, calling_ae="MYSCU", called_ae="PYNSCP", wait=20, hold=0,
                        listen_port=listen if where == "new" else None)  # fmt: skip
    finally:
        server.shutdown()
    assert (result.event_type, result.via, result.state) == (2, where, "failures")
    assert result.committed == [wanted[0], wanted[2]]
    assert result.failed == [(CT, failed_uid, 0x0112)]
    assert result.unreported == []


def test_a_report_naming_nothing_commits_nothing(port):
    """An event type 1 with an empty Referenced SOP Sequence is not "everything committed" (PS3.4 J.3.3.1.2: every
    instance of the request is in the report): the instances count as not reported."""

    def on_action(event):
        info, assoc = event.action_information, event.assoc

        def later():
            time.sleep(0.2)
            ds = Dataset()
            ds.TransactionUID = info.TransactionUID
            ds.ReferencedSOPSequence = []
            assoc.send_n_event_report(ds, 1, SC, SCI)

        threading.Thread(target=later, daemon=True).start()
        return 0x0000, None

    pae = PynAE(ae_title="PYNSCP")
    pae.add_supported_context(SC)
    server = pae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(pyn_evt.EVT_N_ACTION, on_action)])
    try:
        wanted = [(CT, generate_uid()), (CT, generate_uid())]
        result = commit("127.0.0.1", port, wanted, called_ae="PYNSCP", wait=20)
    finally:
        server.shutdown()
    assert (result.event_type, result.committed, result.failed) == (1, [], [])
    assert result.unreported == wanted and result.state == "failures" and not result.ok


def test_an_n_action_failure_ends_the_job(port):
    """GEMINI T19 L694: a status other than Success fails the request (and the association is aborted)."""
    pae = PynAE(ae_title="PYNSCP")
    pae.add_supported_context(SC)
    server = pae.start_server(("127.0.0.1", port), block=False,
                              evt_handlers=[(pyn_evt.EVT_N_ACTION, lambda e: (0x0110, None))])  # fmt: skip
    try:
        result = commit("127.0.0.1", port, [(CT, generate_uid())], called_ae="PYNSCP", wait=20)
    finally:
        server.shutdown()
    assert result.state == "failed" and result.event_type is None
    assert int(result.action_status) == 0x0110 and "0x0110" in result.error


# --- our SCU -> our SCP --------------------------------------------------------------------------------------


def test_mixed_requests_give_exactly_the_right_sequences(node):
    """Stored, missing and wrong-SOP-class references; a C-STORE acknowledged just before is committable."""
    n = node(wait=0)
    stored = [ct_instance(i) for i in range(3)]
    n.store(stored)
    missing = (CT, generate_uid())
    wrong_class = (MR, str(stored[1].SOPInstanceUID))
    unsupported = ("1.2.3.4.5.6", generate_uid())
    asked = [refs(stored)[0], missing, wrong_class, refs(stored)[2], unsupported]
    result = commit("127.0.0.1", n.port, asked, calling_ae="MYSCU", called_ae="FERRO", wait=20)
    assert (result.event_type, result.via, result.state) == (2, "same", "failures")
    assert result.committed == [refs(stored)[0], refs(stored)[2]]
    assert result.failed == [(missing[0], missing[1], 0x0112), (MR, wrong_class[1], 0x0119),
                             (unsupported[0], unsupported[1], 0x0122)]  # fmt: skip
    assert result.unreported == []

    everything = commit("127.0.0.1", n.port, refs(stored), called_ae="FERRO", wait=20)
    assert (everything.state, everything.event_type, everything.committed) == ("committed", 1, refs(stored))


def test_an_instance_arriving_during_the_wait_is_committed(node):
    """PACS-IW L561-565, L3600-3606: the request waits for instances not yet received."""
    n = node(wait=20)
    late = ct_instance(7)
    timer = threading.Timer(0.5, lambda: n.store([late]))
    timer.start()
    try:
        result = commit("127.0.0.1", n.port, refs([late]), called_ae="FERRO", wait=30)
    finally:
        timer.join()
    assert (result.state, result.committed) == ("committed", refs([late]))


def test_a_released_association_gets_its_report_on_a_new_one(node, port):
    """delivery "same": the SCU released after the N-ACTION response (hold 0), so the report, ready when the
    missing instance arrives, goes on a new association to the SCU's listener (GEMINI L686)."""
    n = node(wait=20)
    n.ae.add_peer("MYSCU", "127.0.0.1", port)
    late = ct_instance(8)
    timer = threading.Timer(0.5, lambda: n.store([late]))
    timer.start()
    try:
        result = commit("127.0.0.1", n.port, refs([late]), calling_ae="MYSCU", called_ae="FERRO", listen_port=port,
                        hold=0, wait=30)  # fmt: skip
    finally:
        timer.join()
    assert (result.state, result.via) == ("committed", "new")


def test_an_scu_taking_no_report_on_its_own_association_gets_it_on_a_new_one(node, port):
    """Xeleris takes no N-EVENT-REPORT on the association it opened (002 L1025): its refusal there (0211, no
    handler; here our requestor without handlers does not even answer, and the DIMSE timeout ends the wait)
    sends the report to a new association."""
    n = node(wait=0)
    n.ae.dimse_timeout = 1
    n.ae.add_peer("XELERIS", "127.0.0.1", port)
    stored = [ct_instance(9)]
    n.store(stored)
    scu = CommitmentSCU()
    listener = AE("XELERIS")
    listener.add_service(scu)
    server = listener.start_server(("127.0.0.1", port), block=False)
    try:
        ae = AE("XELERIS")
        ae.add_requested_context(SC)
        assoc = ae.associate("127.0.0.1", n.port, ae_title="FERRO")  # no handler for reports on it
        pending = scu.request(assoc, refs(stored))
        assert pending.wait(20)
        assoc.abort()  # the SCP aborted it already when its report went unanswered
        (row,) = n.wait_finished()
    finally:
        server.shutdown()
    assert (pending.result.state, pending.result.via) == ("committed", "new")
    assert (row["state"], row["via"]) == ("delivered", "new")


def test_a_failure_on_the_requesting_association_sends_the_report_to_a_new_one(node, port):
    """pynetdicom without a report handler on the association it opened answers 0110 there: the report goes on
    to a new association (whose answer would be final)."""
    n = node(wait=0)
    n.ae.add_peer("MODALITY", "127.0.0.1", port)
    stored = [ct_instance(6)]
    n.store(stored)
    got = threading.Event()

    def on_report(event):
        got.set()
        return 0x0000, None

    listener = PynAE(ae_title="MODALITY")
    listener.add_supported_context(SC, scu_role=True, scp_role=True)
    server = listener.start_server(("127.0.0.1", port), block=False,
                                   evt_handlers=[(pyn_evt.EVT_N_EVENT_REPORT, on_report)])  # fmt: skip
    try:
        pae = PynAE(ae_title="MODALITY")
        pae.add_requested_context(SC)
        assoc = pae.associate("127.0.0.1", n.port, ae_title="FERRO")  # no EVT_N_EVENT_REPORT handler
        status, _ = assoc.send_n_action(action(generate_uid(), refs(stored)), 1, SC, SCI)
        assert status.Status == 0x0000
        assert got.wait(20)
        (row,) = n.wait_finished()
        assoc.release()
    finally:
        server.shutdown()
    assert (row["state"], row["via"]) == ("delivered", "new")


def test_a_file_that_does_not_check_out_is_not_committed(node):
    """Indexed, but the file changed size or vanished: 0110 / 0112, never committed."""
    n = node(wait=0)
    stored = [ct_instance(i) for i in range(3)]
    n.store(stored)
    rows = {r["SOPInstanceUID"]: r for r in n.archive.query("instance")}
    damaged = n.archive.root / rows[str(stored[0].SOPInstanceUID)]["path"]
    with open(damaged, "ab") as f:
        f.write(b"\0\0")
    (n.archive.root / rows[str(stored[1].SOPInstanceUID)]["path"]).unlink()
    outcomes = check_instances(n.archive, refs(stored))
    assert outcomes == [0x0110, 0x0112, 0]


def test_an_instance_being_stored_is_not_reported_missing(node):
    """Between the archive's decision and its index row (the C-STORE may be answered already) an instance is in
    flight: waited for, even with wait 0."""
    from ferrodicom.services.commitment.checks import IN_FLIGHT, MISSING

    n = node(wait=0)
    ds = ct_instance(5)
    plan = n.archive.prepare(CT, str(ds.SOPInstanceUID), {"SOPInstanceUID": str(ds.SOPInstanceUID)})
    try:
        assert check_instances(n.archive, refs([ds]) + [(CT, generate_uid())]) == [IN_FLIGHT, MISSING]
    finally:
        n.archive.abandon(plan)


def test_store_commit_in_one_command(node, tmp_path):
    n = node(wait=0)
    files = []
    for i in range(2):
        files.append(tmp_path / f"ct{i}.dcm")
        ct_instance(i).save_as(files[-1], enforce_file_format=True)
    r = subprocess.run([*ferrodicom_cli(), "store", "--commit", "--aec", "FERRO", "127.0.0.1", str(n.port),
                        *map(str, files)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "2 stored" in r.stdout and "commitment: 2 committed, 0 failed, 0 not reported" in r.stdout
    assert r.stderr.count("committed ") == 2  # one line per instance


def test_commit_command_exit_status_and_reasons(node):
    n = node(wait=0)
    stored = ct_instance(4)
    n.store([stored])
    missing = generate_uid()
    cli = [*ferrodicom_cli(), "commit", "--aec", "FERRO", "--uid", f"{CT}/{stored.SOPInstanceUID}"]
    ok = subprocess.run([*cli, "127.0.0.1", str(n.port)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "1 committed, 0 failed" in ok.stdout, ok.stderr
    bad = subprocess.run([*cli, "--uid", f"{CT}/{missing}", "127.0.0.1", str(n.port)], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 1 and "1 committed, 1 failed" in bad.stdout
    assert f"not committed {missing}: 0x0112 no such object instance" in bad.stderr
    usage = subprocess.run([*cli[:2], "--uid", "1.2/x", "127.0.0.1", "1"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and usage.stderr.startswith("Error: Invalid value for '--uid'")


def test_durability_none_commits_after_flushing(node):
    n = node(durability="none", wait=0)
    stored = [ct_instance(i) for i in range(2)]
    n.store(stored)
    result = commit("127.0.0.1", n.port, refs(stored), called_ae="FERRO", wait=20)
    assert result.state == "committed"


def test_a_reused_transaction_uid_is_refused(node):
    """PS3.3 C.14.1.1: 0131 for every instance of a request whose Transaction UID was used before."""
    n = node(wait=0)
    stored = [ct_instance(i) for i in range(2)]
    n.store(stored)
    uid = generate_uid()
    first = commit("127.0.0.1", n.port, refs(stored), called_ae="FERRO", transaction_uid=uid, wait=20)
    assert first.state == "committed"
    again = commit("127.0.0.1", n.port, refs(stored)[:1], called_ae="FERRO", transaction_uid=uid, wait=20)
    assert again.event_type == 2 and again.committed == []
    assert again.failed == [(*refs(stored)[0], 0x0131)]


def test_sigkill_of_serve_between_n_action_and_report_still_delivers(tmp_path):
    """The request is durable before its N-ACTION response: a killed serve, restarted, reports it on a new
    association once the missing instance arrives."""
    port, listen = free_port(), free_port()
    archive = tmp_path / "archive"
    argv = [*ferrodicom_cli(), "serve", "--aet", "FERRO", "--port", str(port), "--bind", "127.0.0.1", "--peer",
            f"MYSCU=127.0.0.1:{listen}", "--commit-wait", "60", "--commit-retry-interval", "0.5",
            "--stats-interval", "0", str(archive)]  # fmt: skip

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for_port(port, proc)
        return proc

    first, second = ct_instance(1), ct_instance(2)
    proc = start()
    try:
        assert len(store("127.0.0.1", port, [first], called_ae="FERRO").succeeded) == 1
        scu = CommitmentSCU()
        ae = AE("MYSCU")
        ae.add_requested_context(SC)
        assoc = ae.associate("127.0.0.1", port, ae_title="FERRO")
        pending = scu.request(assoc, refs([first, second]), wait=60)
        assert int(pending.result.action_status) == 0  # answered: the request is recorded
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assoc.abort()
        assert not pending.done.is_set()

        listener = AE("MYSCU")
        listener.add_service(scu)
        server = listener.start_server(("127.0.0.1", listen), block=False)
        try:
            proc = start()
            assert len(store("127.0.0.1", port, [second], called_ae="FERRO").succeeded) == 1
            assert pending.wait(30), "the restarted serve delivered the report"
        finally:
            server.shutdown()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    result = pending.result
    assert (result.state, result.via, result.committed) == ("committed", "new", refs([first, second]))


# --- delivery failures: role refused, no answer, unknown peer ------------------------------------------------


def _rows_when_failed(n: Node) -> dict:
    (row,) = n.wait_finished()
    return row


def test_a_peer_that_refuses_the_scp_role_gets_no_report_and_nothing_hangs(node, port):
    n = node(delivery="new", retries=1, retry_interval=0, wait=0)
    n.ae.add_peer("MODALITY", "127.0.0.1", port)
    seen: list[int] = []

    def on_report(event):
        seen.append(1)
        return 0x0000, None

    listener = PynAE(ae_title="MODALITY")
    listener.add_supported_context(SC)  # no role selection accepted: we would report as the SOP class's user
    server = listener.start_server(("127.0.0.1", port), block=False,
                                   evt_handlers=[(pyn_evt.EVT_N_EVENT_REPORT, on_report)])  # fmt: skip
    try:
        result = commit("127.0.0.1", n.port, [(CT, generate_uid())], calling_ae="MODALITY", called_ae="FERRO",
                        wait=0.5)  # fmt: skip
        row = _rows_when_failed(n)
    finally:
        server.shutdown()
    assert result.state == "timeout" and seen == []
    assert row["state"] == "failed" and row["attempts"] == 2 and "SCP role" in row["error"]


def test_a_peer_that_never_answers_the_report_times_out_and_is_retried(node, port):
    n = node(delivery="new", retries=1, retry_interval=0, wait=0)
    n.ae.dimse_timeout = 1
    n.ae.add_peer("MODALITY", "127.0.0.1", port)
    release = threading.Event()
    calls: list[int] = []

    def silent(event):
        calls.append(1)
        release.wait(10)  # longer than our DIMSE timeout
        return 0x0000, None

    listener = PynAE(ae_title="MODALITY")
    listener.add_supported_context(SC, scu_role=True, scp_role=True)
    server = listener.start_server(("127.0.0.1", port), block=False,
                                   evt_handlers=[(pyn_evt.EVT_N_EVENT_REPORT, silent)])  # fmt: skip
    try:
        commit("127.0.0.1", n.port, [(CT, generate_uid())], calling_ae="MODALITY", called_ae="FERRO", wait=0.5)
        row = _rows_when_failed(n)
    finally:
        release.set()
        server.shutdown()
    assert row["state"] == "failed" and row["attempts"] == 2 and len(calls) == 2


def test_a_status_refusing_the_report_is_final(node, port):
    """PACS-IW Table 2.3.3-6: 0107 counts as delivered; any other status is a permanent failure, not re-sent."""
    n = node(delivery="new", retries=3, retry_interval=0, wait=0)
    n.ae.add_peer("MODALITY", "127.0.0.1", port)
    answers = [0x0110]

    def on_report(event):
        return answers.pop(0), None

    listener = PynAE(ae_title="MODALITY")
    listener.add_supported_context(SC, scu_role=True, scp_role=True)
    server = listener.start_server(("127.0.0.1", port), block=False,
                                   evt_handlers=[(pyn_evt.EVT_N_EVENT_REPORT, on_report)])  # fmt: skip
    try:
        commit("127.0.0.1", n.port, [(CT, generate_uid())], calling_ae="MODALITY", called_ae="FERRO", wait=0.5)
        row = _rows_when_failed(n)
    finally:
        server.shutdown()
    assert (row["state"], row["attempts"], row["response_status"]) == ("failed", 0, 0x0110)


def test_a_requestor_missing_from_the_address_book_is_retried_then_given_up(node):
    n = node(delivery="new", retries=2, retry_interval=0, wait=0)
    commit("127.0.0.1", n.port, [(CT, generate_uid())], calling_ae="STRANGER", called_ae="FERRO", wait=0.3)
    row = _rows_when_failed(n)
    assert row["state"] == "failed" and row["attempts"] == 3 and "address book" in row["error"]


# --- bad requests: the N-ACTION-RSP says why, and nothing is reported ---------------------------------------


def _n_action(port: int, ds, action_type: int = 1, instance: str = SCI, raw: bytes | None = None):
    ae = AE("MYSCU")
    ae.add_requested_context(SC, [EXPLICIT_VR_LE])
    with ae.associate("127.0.0.1", port, ae_title="FERRO") as assoc:
        if raw is None:
            return assoc.send_n_action(ds, action_type, SC, instance)[0]
        ctx = assoc.context_for(SC)
        from ferrodicom.association import ACTION_TYPE_ID, N_ACTION, REQUESTED_SOP_CLASS_UID, REQUESTED_SOP_INSTANCE_UID

        command = {COMMAND_FIELD: N_ACTION, REQUESTED_SOP_CLASS_UID: SC, REQUESTED_SOP_INSTANCE_UID: instance,
                   ACTION_TYPE_ID: action_type}  # fmt: skip
        response, _ = assoc.core.request(ctx.context_id, command, raw)
        return response.status


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_bad_requests_get_a_failure_status_and_no_report(node):
    n = node(wait=0)
    no_sequence = Dataset()
    no_sequence.TransactionUID = generate_uid()
    no_uid = action("", [(CT, generate_uid())])
    del no_uid.TransactionUID
    empty = action(generate_uid(), [])
    malformed_item = action(generate_uid(), [(CT, "1.2.x.4")])
    malformed_uid = action("1..2", [(CT, generate_uid())])
    no_value = action(generate_uid(), [(CT, "")])
    good = action(generate_uid(), [(CT, generate_uid())])
    assert _n_action(n.port, no_sequence) == 0x0120
    assert _n_action(n.port, no_uid) == 0x0120
    assert _n_action(n.port, empty) == 0x0121
    assert _n_action(n.port, no_value) == 0x0121
    assert _n_action(n.port, malformed_item) == 0x0115
    assert _n_action(n.port, malformed_uid) == 0x0115
    assert _n_action(n.port, good, action_type=2) == 0x0123
    assert _n_action(n.port, good, instance="1.2.3") == 0x0112
    assert _n_action(n.port, None, raw=b"\x08\x00\x95\x11UI\xff\xff") == 0x0110  # truncated data set
    assert n.rows() == []


def test_a_request_for_100000_instances(node):
    """A large request is taken whole: every instance missing (wait 0) comes back failed with 0112."""
    n = node(wait=0)
    stored = [ct_instance(1)]
    n.store(stored)
    asked = refs(stored) + [(CT, f"1.2.826.0.1.3680043.8.498.9.{k}") for k in range(99_999)]
    result = commit("127.0.0.1", n.port, asked, called_ae="FERRO", wait=120, timeout=120)
    assert (result.event_type, len(result.committed), len(result.failed)) == (2, 1, 99_999)
    assert {reason for _, _, reason in result.failed} == {0x0112}


def test_an_scp_that_never_answers_the_n_action_does_not_hang_the_scu(port):
    release = threading.Event()

    def on_action(event):
        release.wait(10)
        return 0x0000, None

    pae = PynAE(ae_title="PYNSCP")
    pae.add_supported_context(SC)
    server = pae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(pyn_evt.EVT_N_ACTION, on_action)])
    try:
        result = commit("127.0.0.1", port, [(CT, generate_uid())], called_ae="PYNSCP", wait=5, timeout=1)
    finally:
        release.set()
        server.shutdown()
    assert result.state == "failed" and "N-ACTION failed" in result.error


# --- the SCU's answers to reports (GEMINI T21, Xeleris L1049-1055) -------------------------------------------


def _report(port: int, data: bytes, event_type: int = 1, sop_class: str = SC) -> int:
    ae = AE("PEERSCP")
    ae.add_requested_context(SC, [EXPLICIT_VR_LE])
    with ae.associate("127.0.0.1", port, ae_title="MYSCU") as assoc:
        ctx = assoc.context_for(SC, role=None)
        command = {COMMAND_FIELD: N_EVENT_REPORT, AFFECTED_SOP_CLASS_UID: sop_class,
                   AFFECTED_SOP_INSTANCE_UID: SCI, EVENT_TYPE_ID: event_type}  # fmt: skip
        response, _ = assoc.core.request(ctx.context_id, command, data)
        return response.status


def test_the_scu_answers_each_report_by_its_transaction(tmp_path):
    from ferrodicom.services.commitment.outstanding import Outstanding, RequestLog

    state = tmp_path / "scu.sqlite"
    wanted = [(CT, generate_uid()), (CT, generate_uid())]
    # Requests an earlier process sent (recorded as CommitmentSCU.request records them): one still awaited.
    awaited, expired = generate_uid(), generate_uid()
    log = RequestLog(state)
    log.add(Outstanding(awaited, "PEER", "127.0.0.1", 1, time.time() + 60, wanted))
    log.add(Outstanding(expired, "PEER", "127.0.0.1", 1, time.time() - 1, wanted))
    log.close()

    scu = CommitmentSCU(state)  # the restarted process
    listener = AE("MYSCU")
    listener.add_service(scu)
    server = listener.start_server(("127.0.0.1", 0), block=False)
    try:
        p = server.port
        ele = EXPLICIT_VR_LE
        assert _report(p, messages.encode_result(generate_uid(), wanted, [], ele)) == 0x0211
        assert _report(p, messages.encode_result(expired, wanted, [], ele)) == 0x0213
        assert _report(p, messages.encode_result(awaited, wanted, [], ele), event_type=3) == 0x0113
        assert _report(p, messages.encode_result(awaited, wanted, [], ele), sop_class=VERIFICATION) == 0x0119
        assert _report(p, b"\x08\x00\x95\x11UI\xff\x00") == 0x0110
        stray = [*wanted, (CT, generate_uid())]
        assert _report(p, messages.encode_result(awaited, stray, [], ele)) == 0x0115
        (pending,) = scu.outstanding()
        assert not pending.done.is_set()
        assert _report(p, messages.encode_result(awaited, wanted[:1], [(*wanted[1], 0x0112)], ele), 2) == 0x0000
        assert pending.done.is_set()
        assert _report(p, messages.encode_result(awaited, wanted, [], ele)) == 0x0000  # again: the first stands
    finally:
        server.shutdown()
        scu.close()
    result = pending.result
    assert (result.event_type, result.committed, result.failed) == (2, wanted[:1], [(*wanted[1], 0x0112)])
    assert CommitmentSCU(state).log.state_of(awaited) == "failures"


def test_commit_resume_waits_for_a_report_after_the_scu_restarts(node, tmp_path):
    """ferrodicom commit --state FILE, killed while it waits; commit --resume takes the report later."""
    n = node(wait=60, delivery="new", retry_interval=0.2)
    listen = free_port()
    n.ae.add_peer("MYSCU", "127.0.0.1", listen)
    late = ct_instance(3)
    path = tmp_path / "late.dcm"
    late.save_as(path, enforce_file_format=True)
    state = tmp_path / "scu-state.sqlite"
    cli = ferrodicom_cli()
    proc = subprocess.Popen([*cli, "commit", "--aet", "MYSCU", "--aec", "FERRO", "--state", str(state),
                             "--listen-port", str(listen), "--hold", "0", "127.0.0.1", str(n.port), str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        until = time.monotonic() + 20
        while not n.rows() and time.monotonic() < until:
            time.sleep(0.05)
        assert n.rows(), "the request reached the SCP"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    resumed = subprocess.Popen([*cli, "commit", "--aet", "MYSCU", "--state", str(state), "--resume",
                                "--listen-port", str(listen)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    try:
        wait_for_port(listen, resumed)
        n.store([late])
        out, err = resumed.communicate(timeout=60)
    finally:
        if resumed.poll() is None:
            resumed.kill()
            resumed.wait()
    assert resumed.returncode == 0, err
    assert "1 committed, 0 failed, 0 not reported" in out
    assert "reported on a new association" in out


def test_resume_with_nothing_outstanding_returns_at_once(tmp_path):
    assert resume(tmp_path / "empty.sqlite", listen_port=0) == []


# --- the data sets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ts", [IMPLICIT_VR_LE, EXPLICIT_VR_LE, ExplicitVRBigEndian, DEFLATED_EXPLICIT_VR_LE])
def test_our_data_sets_read_the_same_in_pydicom_and_back(ts):
    from ferrodicom import datasets

    committed = [(CT, generate_uid()), (MR, "1.2.3")]
    failed = [(CT, generate_uid(), 0x0112), (MR, "1.2.34", 0x0119)]
    uid = generate_uid()
    data = messages.encode_result(uid, committed, failed, ts)
    ds = datasets.decode(data, ts)
    assert ds.TransactionUID == uid
    assert pairs(ds.ReferencedSOPSequence) == committed
    assert failures(ds.FailedSOPSequence) == failed
    info = messages.event_info(data, ts)
    assert (info.transaction_uid, info.committed, info.failed) == (uid, committed, failed)
    # and what pydicom writes (undefined lengths included) reads back the same
    request = action(uid, committed)
    back = messages.action_info(datasets.encode(request, ts), ts)
    assert (back.transaction_uid, back.items) == (uid, committed)
    assert messages.action_info(messages.encode_action(uid, committed, ts), ts).items == committed


def test_undefined_lengths_are_read_and_a_truncated_data_set_is_refused():
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = action(generate_uid(), [(CT, "1.2.3")])
    ds.ReferencedSOPSequence.is_undefined_length = True
    for item in ds.ReferencedSOPSequence:
        item.is_undefined_length_sequence_item = True
    buf = DicomBytesIO()
    buf.is_implicit_VR, buf.is_little_endian = True, True
    write_dataset(buf, ds)
    assert messages.action_info(buf.getvalue(), IMPLICIT_VR_LE).items == [(CT, "1.2.3")]
    for truncated in (buf.getvalue()[:-9], b"\x08\x00\x95\x11\xff\x00\x00\x00"):
        with pytest.raises(messages.Unreadable):
            messages.action_info(truncated, IMPLICIT_VR_LE)


# --- configuration --------------------------------------------------------------------------------------------


def test_the_commitment_table_and_per_peer_delivery(tmp_path):
    from ferrodicom.config import ConfigError, load

    p = tmp_path / "node.toml"
    p.write_text('[commitment]\ndelivery = "new"\nwait = 5\nretries = 2\nretry_interval = 0.5\n\n'
                 '[[peers]]\nae_title = "XELERIS"\nhost = "h"\nport = 104\ncommit_delivery = "new"\n')  # fmt: skip
    cfg = load(p)
    assert (cfg.commit_delivery, cfg.commit_wait, cfg.commit_retries, cfg.commit_retry_interval) == ("new", 5.0, 2, 0.5)
    assert cfg.peers[0].commit_delivery == "new"
    for text, line, key in [
        ('[commitment]\ndelivery = "later"\n', 2, "[commitment] delivery"),
        ("[commitment]\n\nwait = -1\n", 3, "[commitment] wait"),
        ('[commitment]\nretries = "3"\n', 2, "[commitment] retries"),
        ("[commitment]\nhold = 3\n", 2, "[commitment] hold"),
        ('[[peers]]\nae_title = "A"\nhost = "h"\nport = 1\ncommit_delivery = "x"\n', 5, "[[peers]] #1 commit_delivery"),
    ]:
        p.write_text(text)
        with pytest.raises(ConfigError) as raised:
            load(p)
        assert (raised.value.line, raised.value.key) == (line, key)
