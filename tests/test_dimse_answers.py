"""Every request gets an answer, at once (PS3.7 §9.3, §10.3, C.4/C.5), from a raw socket: a request with a
command field nobody knows gets 0211 (unrecognized operation); a response nobody asked for, or a command field
that is neither a request nor a response, an A-ABORT; a data set where none belongs (or none where one must be)
0212 (mistyped argument); a C-CANCEL with nothing to cancel is ignored as PS3.7 §9.3.2.3 says (it has no
response). Each is logged with the calling AE, the address and the reason, as are rejected and malformed
association requests."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from test_association import raw_associate_rq, read_pdu
from test_storage_faults import pdata, read_command

from ferrodicom import AE, _core, pdu
from ferrodicom.uids import IMPLICIT_VR_LE, VERIFICATION

ANSWER_WITHIN = 1.0  # seconds


@pytest.fixture
def echo_node():
    ae = AE("FERRO")
    ae.add_supported_context(VERIFICATION, IMPLICIT_VR_LE)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    yield server
    server.shutdown()


def associate(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(raw_associate_rq(called="FERRO"))
    ac = pdu.decode(read_pdu(s))
    assert ac.name == "A-ASSOCIATE-AC" and ac.presentation_contexts[0]["result"] == 0
    return s


def command(fields: dict[int, object]) -> bytes:
    return _core.Command(fields).encode()


def echo_rq(message_id: int = 1, data_set: bool = False) -> bytes:
    return command({0x0002: VERIFICATION, 0x0100: 0x0030, 0x0110: message_id, 0x0800: 0x0000 if data_set else 0x0101})


def timed_reply(s: socket.socket) -> tuple[object, float]:
    t0 = time.monotonic()
    got = pdu.decode(read_pdu(s))
    return got, time.monotonic() - t0


def assert_still_serves(s: socket.socket, message_id: int = 50) -> None:
    s.sendall(pdata(1, 0x03, echo_rq(message_id)))
    rsp = read_command(s)
    assert (rsp.command_field, rsp.message_id_being_responded_to, rsp.status) == (0x8030, message_id, 0)


@pytest.mark.parametrize("field", [0x0002, 0x0FF0, 0x7FFF])
def test_an_unknown_request_is_answered_0211(echo_node, caplog, field):
    caplog.set_level(logging.INFO, logger="ferrodicom")
    with associate(echo_node.port) as s:
        s.sendall(pdata(1, 0x03, command({0x0002: VERIFICATION, 0x0100: field, 0x0110: 9, 0x0800: 0x0101})))
        got, took = timed_reply(s)
        rsp = _core.Command.decode(b"".join(d for _, is_cmd, _, d in got.pdvs if is_cmd))
        assert took < ANSWER_WITHIN
        assert (rsp.command_field, rsp.message_id_being_responded_to, rsp.status) == (field | 0x8000, 9, 0x0211)
        assert "unrecognized operation" in rsp.get(0x0902)
        assert_still_serves(s)
    assert any("RAW at 127.0.0.1" in r.message and "0x0211" in r.message for r in caplog.records)


@pytest.mark.parametrize(
    "cmd",
    [
        pytest.param({0x0002: VERIFICATION, 0x0100: 0x8001, 0x0120: 3, 0x0900: 0, 0x0800: 0x0101}, id="C-STORE-RSP"),
        pytest.param({0x0002: VERIFICATION, 0x0100: 0x8030, 0x0120: 3, 0x0900: 0, 0x0800: 0x0101}, id="C-ECHO-RSP"),
        pytest.param({0x0002: VERIFICATION, 0x0100: 0xFFFF, 0x0110: 3, 0x0800: 0x0101}, id="field-FFFF"),
    ],
)
def test_a_response_nobody_asked_for_is_aborted_at_once(echo_node, caplog, cmd):
    caplog.set_level(logging.INFO, logger="ferrodicom")
    with associate(echo_node.port) as s:
        s.sendall(pdata(1, 0x03, command(cmd)))
        got, took = timed_reply(s)
        assert took < ANSWER_WITHIN
        assert got.name == "A-ABORT"
        assert s.recv(1) == b""  # and the connection is closed
    assert any("RAW at 127.0.0.1" in r.message and "aborted" in r.message for r in caplog.records)


def test_a_c_echo_with_a_data_set_is_answered_0212(echo_node, caplog):
    caplog.set_level(logging.INFO, logger="ferrodicom")
    with associate(echo_node.port) as s:
        junk = bytes.fromhex("10001000 04000000") + b"ABCD"  # (0010,0010) "ABCD", implicit VR
        s.sendall(pdata(1, 0x03, echo_rq(4, data_set=True)) + pdata(1, 0x02, junk))
        rsp = read_command(s)
        assert (rsp.command_field, rsp.message_id_being_responded_to, rsp.status) == (0x8030, 4, 0x0212)
        assert "must not carry" in rsp.get(0x0902)
        assert_still_serves(s)
    assert any("RAW at 127.0.0.1" in r.message and "0x0212" in r.message for r in caplog.records)


def test_a_c_store_without_its_data_set_is_answered_0212(tmp_path, caplog):
    from pydicom.uid import CTImageStorage

    caplog.set_level(logging.INFO, logger="ferrodicom")
    ae = AE("FERRO")
    ae.add_supported_context(CTImageStorage, IMPLICIT_VR_LE)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(raw_associate_rq(called="FERRO", abstract_syntax=CTImageStorage))
            assert pdu.decode(read_pdu(s)).name == "A-ASSOCIATE-AC"
            store = command({0x0002: CTImageStorage, 0x0100: 0x0001, 0x0110: 5, 0x0700: 0, 0x0800: 0x0101,
                             0x1000: "1.2.3.4"})  # fmt: skip
            s.sendall(pdata(1, 0x03, store))
            rsp = read_command(s)
            assert (rsp.command_field, rsp.status) == (0x8001, 0x0212)
            assert "without a data set" in rsp.get(0x0902)
    finally:
        server.shutdown()


def test_a_cancel_with_nothing_to_cancel_is_ignored(echo_node, caplog):
    caplog.set_level(logging.INFO, logger="ferrodicom")
    with associate(echo_node.port) as s:
        s.sendall(pdata(1, 0x03, command({0x0100: 0x0FFF, 0x0120: 77, 0x0800: 0x0101})))
        t0 = time.monotonic()
        assert_still_serves(s, 51)  # no answer to the cancel: the next reply is the echo's, at once
        assert time.monotonic() - t0 < ANSWER_WITHIN
    assert any("C-CANCEL-RQ for message 77" in r.message for r in caplog.records)


def test_rejected_and_malformed_association_requests_are_logged(caplog):
    caplog.set_level(logging.INFO, logger="ferrodicom")
    ae = AE("FERRO")
    ae.add_supported_context(VERIFICATION)
    ae.require_called_aet = True
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(raw_associate_rq(called="SOMEONE"))
            assert pdu.decode(read_pdu(s)).name == "A-ASSOCIATE-RJ"
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"\x01\x00\x00\x00\x00\x04garb")  # an A-ASSOCIATE-RQ of 4 bytes
            assert pdu.decode(read_pdu(s)).name == "A-ABORT"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any("malformed" in r.message for r in caplog.records):
            time.sleep(0.05)
    finally:
        server.shutdown()
    messages = [r.message for r in caplog.records]
    assert any(
        "association request from RAW at 127.0.0.1:" in m and "rejected (1/1/7): called AE title not recognized" in m
        for m in messages
    ), messages
    assert any("connection from 127.0.0.1:" in m and "(malformed)" in m for m in messages), messages
