"""Association negotiation, rejection and hostile peers (PS3.8 §7, §9; PS3.7 Annex D)."""

from __future__ import annotations

import socket
import struct

import pytest
from pynetdicom import AE as PynAE
from pynetdicom import sop_class
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import build_context

import ferrodicom
from ferrodicom import AE, Archive, evt, pdu
from ferrodicom.services.storage import StorageSCP
from ferrodicom.uids import IMPLICIT_VR_LE, VERIFICATION


def raw_associate_rq(
    app_context: str = "1.2.840.10008.3.1.1.1",
    called: str = "FERRO-SCP",
    abstract_syntax: str = VERIFICATION,
    transfer_syntax: str = IMPLICIT_VR_LE,
) -> bytes:
    """An A-ASSOCIATE-RQ (one presentation context, ID 1) encoded by pynetdicom, not by us."""
    prim = A_ASSOCIATE()
    prim.application_context_name = app_context
    prim.calling_ae_title = "RAW"
    prim.called_ae_title = called
    ctx = build_context(abstract_syntax, [transfer_syntax])
    ctx.context_id = 1
    prim.presentation_context_definition_list = [ctx]
    ml = MaximumLengthNotification()
    ml.maximum_length_received = 16382
    ic = ImplementationClassUIDNotification()
    ic.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.2.0.0"
    prim.user_information = [ml, ic]
    rq = A_ASSOCIATE_RQ()
    rq.from_primitive(prim)
    return rq.encode()


def read_pdu(sock: socket.socket) -> bytes:
    """Reads one whole PDU (header + body) or returns b'' when the peer closed."""
    head = b""
    while len(head) < 6:
        chunk = sock.recv(6 - len(head))
        if not chunk:
            return b""
        head += chunk
    (length,) = struct.unpack(">I", head[2:6])
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    return head + body


def make_server(**attrs):
    ae = AE("FERRO-SCP")
    ae.add_supported_context(VERIFICATION)
    for k, v in attrs.items():
        setattr(ae, k, v)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    assert server is not None
    return server


def assert_serves_echo(server) -> None:
    ae = AE("CHECK")
    ae.add_requested_context(VERIFICATION)
    with ae.associate("127.0.0.1", server.port, ae_title="FERRO-SCP") as assoc:
        assert assoc.is_established
        assert assoc.send_c_echo() == 0


def test_rejects_unknown_called_ae_1_1_7():
    server = make_server(require_called_aet=True)
    try:
        scu = AE("SCU")
        scu.add_requested_context(VERIFICATION)
        assoc = scu.associate("127.0.0.1", server.port, ae_title="SOMEONE-ELSE")
        assert not assoc.is_established and assoc.is_rejected
        assert assoc.rejection == (1, 1, 7)
        # pynetdicom sees the same rejection.
        pae = PynAE(ae_title="PYN")
        pae.add_requested_context(sop_class.Verification)
        # pynetdicom's reactor thread can race its own request() and record neither acceptance nor
        # rejection (cf. pynetdicom #875); retry a few times, but it must end up seeing the rejection.
        for _ in range(3):
            passoc = pae.associate("127.0.0.1", server.port, ae_title="WRONG")
            assert not passoc.is_established
            if passoc.is_rejected:
                break
        assert passoc.is_rejected
        assert_serves_echo(server)
    finally:
        server.shutdown()


def test_rejects_unknown_calling_ae_1_1_3():
    server = make_server(require_calling_aet=["GOOD"])
    try:
        scu = AE("BAD")
        scu.add_requested_context(VERIFICATION)
        assoc = scu.associate("127.0.0.1", server.port, ae_title="FERRO-SCP")
        assert assoc.rejection == (1, 1, 3)
        good = AE("GOOD")
        good.add_requested_context(VERIFICATION)
        with good.associate("127.0.0.1", server.port, ae_title="FERRO-SCP") as assoc:
            assert assoc.send_c_echo() == 0
    finally:
        server.shutdown()


def test_rejects_foreign_application_context_1_1_2():
    server = make_server()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(raw_associate_rq(app_context="1.2.3.4.5"))
            rj = pdu.decode(read_pdu(s))
            assert rj.name == "A-ASSOCIATE-RJ"
            assert (rj.result, rj.source, rj.reason) == (1, 1, 2)
        assert_serves_echo(server)
    finally:
        server.shutdown()


def test_over_association_limit_rejects_2_3_2():
    server = make_server(maximum_associations=1)
    try:
        scu = AE("SCU")
        scu.add_requested_context(VERIFICATION)
        with scu.associate("127.0.0.1", server.port, ae_title="FERRO-SCP") as first:
            assert first.is_established
            second = scu.associate("127.0.0.1", server.port, ae_title="FERRO-SCP")
            # Transient, service provider (presentation), local limit exceeded (PS3.8 Table 9-21).
            assert second.rejection == (2, 3, 2)
            assert first.send_c_echo() == 0
        assert_serves_echo(server)
    finally:
        server.shutdown()


def test_pynetdicom_encoded_request_is_accepted_and_decodes_identically():
    data = raw_associate_rq()
    rq = pdu.decode(data)
    assert rq.name == "A-ASSOCIATE-RQ"
    assert rq.calling_ae == "RAW" and rq.called_ae == "FERRO-SCP"
    pcs = rq.presentation_contexts
    assert pcs == [{"id": 1, "abstract_syntax": VERIFICATION, "transfer_syntaxes": [IMPLICIT_VR_LE]}]
    assert rq.max_length == 16382
    assert rq.encode() == data
    server = make_server()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(data)
            ac = pdu.decode(read_pdu(s))
            assert ac.name == "A-ASSOCIATE-AC"
            assert ac.presentation_contexts == [{"id": 1, "result": 0, "transfer_syntax": IMPLICIT_VR_LE}]
            ui = {item["type"]: item for item in ac.user_information}
            assert ui["implementation_class_uid"]["value"] == ferrodicom._core.IMPLEMENTATION_CLASS_UID
            assert ui["maximum_length"]["value"] == 262144
            s.sendall(bytes.fromhex("05000000000400000000"))  # A-RELEASE-RQ
            rp = pdu.decode(read_pdu(s))
            assert rp.name == "A-RELEASE-RP"
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x99\x00\x00\x00\x00\x04abcd",  # unknown PDU type
        b"\x01\x00\xff\xff\xff\xff",  # A-ASSOCIATE-RQ claiming 4 GB
        b"\x01\x00\x00\x00\x00\x10" + b"\x00" * 16,  # truncated A-ASSOCIATE-RQ body
        b"\x04\x00\x00\x00\x00\x06\x00\x00\x00\x02\x01\x03",  # P-DATA-TF before association
    ],
)
def test_hostile_bytes_get_abort_and_server_survives(garbage):
    server = make_server(artim_timeout=2.0)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(garbage)
            reply = read_pdu(s)
            # PS3.8 Table 9-10, Sta2 + Evt19/Evt10: AA-1, an A-ABORT, then the connection closes.
            abort = pdu.decode(reply)
            assert abort.name == "A-ABORT" and abort.source == 0
            assert read_pdu(s) == b""
        assert_serves_echo(server)
    finally:
        server.shutdown()


def test_silent_client_is_dropped_by_artim():
    server = make_server(artim_timeout=0.5)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as s:
            # Nothing sent: the ARTIM timer expires and the acceptor closes (Sta2 + Evt18: AA-2).
            assert s.recv(1) == b""
        assert_serves_echo(server)
    finally:
        server.shutdown()


def test_abort_mid_association_then_server_still_serves():
    events = []
    ae = AE("FERRO-SCP")
    ae.add_supported_context(VERIFICATION)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_ABORTED, events.append)])
    try:
        scu = AE("SCU")
        scu.add_requested_context(VERIFICATION)
        assoc = scu.associate("127.0.0.1", server.port, ae_title="FERRO-SCP")
        assert assoc.send_c_echo() == 0
        assoc.abort()
        assert assoc.is_aborted and not assoc.is_established
        assert_serves_echo(server)
    finally:
        server.shutdown()
    assert [e.event.name for e in events] == ["EVT_ABORTED"]


def test_peer_abort_is_reported_to_scu():
    server = make_server()
    scu = AE("SCU")
    scu.add_requested_context(VERIFICATION)
    assoc = scu.associate("127.0.0.1", server.port, ae_title="FERRO-SCP")
    server.shutdown()  # aborts open associations
    with pytest.raises(ferrodicom.AssociationError):
        assoc.send_c_echo()


def test_user_identity_positive_response_for_pynetdicom():
    seen = []
    ae = AE("FERRO-SCP")
    ae.add_supported_context(VERIFICATION)

    def on_echo(event):
        seen.append(event.assoc.user_identity)
        return 0

    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)])
    try:
        pae = PynAE(ae_title="PYN")
        pae.add_requested_context(sop_class.Verification)
        uid = UserIdentityNegotiation()
        uid.user_identity_type = 2
        uid.primary_field = b"alice"
        uid.secondary_field = b"secret"
        uid.positive_response_requested = True
        assoc = pae.associate("127.0.0.1", server.port, ae_title="FERRO-SCP", ext_neg=[uid])
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
    finally:
        server.shutdown()
    assert seen == [(2, b"alice", b"secret")]


def test_python_pdu_decode_errors_name_the_offset():
    data = bytearray(raw_associate_rq())
    data[2:6] = struct.pack(">I", len(data))  # claims 6 more bytes than present
    with pytest.raises(ferrodicom.PduError) as ei:
        pdu.decode(bytes(data))
    assert isinstance(ei.value, ferrodicom.DicomError)
    assert ei.value.offset == len(data)
    with pytest.raises(ferrodicom.PduError) as ei:
        pdu.decode(b"\x01\x00\xff\xff\xff\xff")
    assert ei.value.offset == 2 and "exceeds" in str(ei.value)


def test_a_server_with_an_invalid_configuration_refuses_to_start(tmp_path):
    """Checked once at start (AcceptorConfig::validate), not by rejecting every association later."""
    from ferrodicom._core import DicomError

    ae = AE("FERRO")
    ae.add_supported_context(VERIFICATION)
    ae.maximum_pdu_size = 3  # below a PDV header plus one byte (PS3.8 §9.3.5)
    with pytest.raises(DicomError, match="maximum PDU length 3"):
        ae.start_server(("127.0.0.1", 0), block=False)
    ae.maximum_pdu_size = 16384
    with pytest.raises(ValueError, match="not an uncompressed transfer syntax"):
        StorageSCP(Archive(tmp_path / "archive", durability="none"), store_transfer_syntax="1.2.840.10008.1.2.4.50")


def test_release_or_abort_releases_once_and_never_raises():
    server = make_server()
    try:
        ae = AE("CHECK")
        ae.add_requested_context(VERIFICATION)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="FERRO-SCP")
        assert assoc.is_established
        assert assoc.release_or_abort() is None
        assert assoc.is_released and not assoc.is_established
        assert assoc.release_or_abort() is None  # nothing left to end
    finally:
        server.shutdown()
