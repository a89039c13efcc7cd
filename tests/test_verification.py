"""Verification (C-ECHO) against real peers: DCMTK, pynetdicom, and ferrodicom itself (PS3.4 Annex A)."""

from __future__ import annotations

import subprocess
import threading

import pytest
from pynetdicom import AE as PynAE
from pynetdicom import AllStoragePresentationContexts, sop_class
from pynetdicom import evt as pyn_evt

import ferrodicom
from conftest import dcmtk, dcmtk_env, ferrodicom_cli
from ferrodicom import AE, evt
from ferrodicom.uids import EXPLICIT_VR_BE, IMPLICIT_VR_LE, VERIFICATION


def test_dcmtk_echoscu_to_ferrodicom_serve(serve_process):
    port, _ = serve_process
    r = subprocess.run(
        [dcmtk("echoscu"), "-v", "--repeat", "3", "-aec", "FERRO", "127.0.0.1", str(port)],
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.count("Received Echo Response (Success)") == 3


@pytest.mark.parametrize("max_pdu", ["4096", "131072"])
def test_dcmtk_echoscu_max_pdu(serve_process, max_pdu):
    port, _ = serve_process
    r = subprocess.run(
        [dcmtk("echoscu"), "-v", "--max-pdu", max_pdu, "127.0.0.1", str(port)],
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Received Echo Response (Success)" in r.stderr


def test_ferrodicom_echo_cli_to_dcmtk_storescp(dcmtk_storescp):
    r = subprocess.run(
        [*ferrodicom_cli(), "echo", "--aec", "DCMTK", "--repeat", "5", "127.0.0.1", str(dcmtk_storescp)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 C-ECHO sent, 5 succeeded" in r.stdout


def test_ferrodicom_echo_cli_reports_refused_connection(port):
    r = subprocess.run([*ferrodicom_cli(), "echo", "127.0.0.1", str(port)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1  # as `store`; 2 is click's exit status for bad arguments
    # one line naming the cause and the fix, no traceback
    assert r.stderr.splitlines() == [
        f"Error: cannot reach ANY-SCP at 127.0.0.1:{port}: network error: Connection refused (os error 111); "
        "check the host and port, and that the peer is running"
    ]


def _pynetdicom_scu(n_contexts: int = 1) -> PynAE:
    ae = PynAE(ae_title="PYNSCU")
    ae.add_requested_context(sop_class.Verification)
    storage = [c.abstract_syntax for c in AllStoragePresentationContexts]
    for uid in storage[: n_contexts - 1]:
        ae.add_requested_context(uid)
    return ae


@pytest.mark.parametrize(("max_pdu", "n_contexts"), [(16382, 1), (0, 1), (4096, 1), (16382, 128)])
def test_pynetdicom_scu_to_ferrodicom_scp(max_pdu, n_contexts):
    seen = []

    def on_echo(event):
        info = event.assoc.info
        results = sorted(c.result for c in info.contexts)
        seen.append((event.assoc.requestor.ae_title, event.assoc.requestor.maximum_length, len(info.contexts), results))
        return 0x0000

    ae = AE("FERRO-SCP")
    ae.add_supported_context(VERIFICATION)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)])
    try:
        scu = _pynetdicom_scu(n_contexts)
        assoc = scu.associate("127.0.0.1", server.port, ae_title="FERRO-SCP", max_pdu=max_pdu)
        assert assoc.is_established
        # Only Verification is supported: every storage context is rejected (abstract syntax not supported).
        assert len(assoc.accepted_contexts) == 1
        assert assoc.acceptor.implementation_class_uid == ferrodicom._core.IMPLEMENTATION_CLASS_UID
        for _ in range(3):
            assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        assert assoc.is_released
    finally:
        server.shutdown()
    # Only Verification is supported: every storage context is rejected, abstract syntax not supported (3).
    assert seen == [("PYNSCU", max_pdu, n_contexts, [0] + [3] * (n_contexts - 1))] * 3


@pytest.mark.parametrize("max_pdu", [0, 4096, 262144])
def test_ferrodicom_scu_to_pynetdicom_scp(max_pdu, port):
    seen = []

    def on_echo(event):
        seen.append(
            (
                event.assoc.requestor.ae_title,
                event.assoc.requestor.maximum_length,
                event.assoc.requestor.implementation_class_uid,
            )
        )
        return 0x0000

    pae = PynAE(ae_title="PYNSCP")
    pae.add_supported_context(sop_class.Verification)
    server = pae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(pyn_evt.EVT_C_ECHO, on_echo)])
    try:
        ae = AE("FERRO-SCU")
        ae.add_requested_context(VERIFICATION)
        with ae.associate("127.0.0.1", port, ae_title="PYNSCP", max_pdu=max_pdu) as assoc:
            assert assoc.is_established
            assert assoc.acceptor.implementation_class_uid  # pynetdicom's own UID
            statuses = [assoc.send_c_echo() for _ in range(3)]
        assert assoc.is_released
    finally:
        server.shutdown()
    assert all(s == 0 and s.category == "Success" for s in statuses)
    assert seen == [("FERRO-SCU", max_pdu, ferrodicom._core.IMPLEMENTATION_CLASS_UID)] * 3


def test_ferrodicom_to_ferrodicom_with_handler_status_and_events():
    events = []

    def on_echo(event):
        assert event.request.name == "C-ECHO-RQ"
        return 0x0110  # processing failure, reported back to the SCU

    def note(event):
        events.append(event.event.name)

    ae = AE("FERRO-SCP")
    ae.add_supported_context(VERIFICATION, [IMPLICIT_VR_LE, EXPLICIT_VR_BE])
    handlers = [(evt.EVT_C_ECHO, on_echo), (evt.EVT_ESTABLISHED, note), (evt.EVT_RELEASED, note)]
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    try:
        scu = AE("FERRO-SCU")
        scu.add_requested_context(VERIFICATION, [EXPLICIT_VR_BE, IMPLICIT_VR_LE])
        with scu.associate("127.0.0.1", server.port, ae_title="FERRO-SCP") as assoc:
            # Acceptor policy: the first proposed transfer syntax the SCP supports.
            assert assoc.accepted_contexts[0].transfer_syntax == EXPLICIT_VR_BE
            status = assoc.send_c_echo()
            assert int(status) == 0x0110 and status.category == "Failure"
    finally:
        server.shutdown()
    assert events == ["EVT_ESTABLISHED", "EVT_RELEASED"]


def test_many_parallel_associations(echo_scp):
    errors: list[BaseException] = []
    counts = []

    def worker():
        try:
            ae = AE("PAR")
            ae.add_requested_context(VERIFICATION)
            for _ in range(5):
                with ae.associate("127.0.0.1", echo_scp.port, ae_title="FERRO-SCP") as assoc:
                    counts.append(sum(assoc.send_c_echo() == 0 for _ in range(20)))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert counts == [20] * 40
