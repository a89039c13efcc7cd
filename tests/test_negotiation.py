"""Negotiation hooks, asked once per association request (PS3.8 §7.1, PS3.7 D.3.3): access control that
accepts or rejects with a chosen reason, user identity verification (``EVT_USER_ID``, with its server
response), and SOP Class Extended Negotiation answered per association (``EVT_SOP_EXTENDED``) -- each with
pynetdicom as the requestor and with ferrodicom's own SCU."""

from __future__ import annotations

from pynetdicom import AE as PynAE
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation, UserIdentityNegotiation
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind, Verification

from ferrodicom import AE, evt

FIND = PatientRootQueryRetrieveInformationModelFind


def start(**attrs):
    handlers = attrs.pop("handlers", [])
    ae = AE("FERRO")
    ae.add_supported_context(Verification)
    ae.add_supported_context(FIND)
    for k, v in attrs.items():
        setattr(ae, k, v)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    return server


def pyn(title: str = "PYNSCU") -> PynAE:
    ae = PynAE(ae_title=title)
    ae.add_requested_context(Verification)
    ae.add_requested_context(FIND)
    return ae


def pyn_rejected(ae: PynAE, port: int, **kw) -> bool:
    """Whether pynetdicom sees the association rejected. Its reactor thread can race its own request() and record
    neither acceptance nor rejection (pynetdicom #875): a few tries, each must end unestablished."""
    for _ in range(3):
        assoc = ae.associate("127.0.0.1", port, ae_title="FERRO", **kw)
        assert not assoc.is_established
        if assoc.is_rejected:
            return True
    return False


def test_access_control_rejects_with_its_own_reason():
    seen = []

    def access(request):
        seen.append((request.calling_ae, request.called_ae, request.peer_address[0], request.abstract_syntaxes[0]))
        if request.calling_ae == "INTRUDER":
            return (1, 1, 3)  # calling AE title not recognised
        if request.calling_ae == "BUSY":
            return (2, 3, 1)  # transient: temporary congestion
        return None

    server = start(access_control=access)
    try:
        for title, expected in (("INTRUDER", (1, 1, 3)), ("BUSY", (2, 3, 1))):
            scu = AE(title)
            scu.add_requested_context(Verification)
            assoc = scu.associate("127.0.0.1", server.port, ae_title="FERRO")
            assert assoc.rejection == expected
        # pynetdicom sees the rejection too, and a known caller gets in.
        assert pyn_rejected(pyn("INTRUDER"), server.port)
        ok = pyn("FRIEND").associate("127.0.0.1", server.port, ae_title="FERRO")
        assert ok.is_established and ok.send_c_echo().Status == 0
        ok.release()
    finally:
        server.shutdown()
    assert seen[0] == ("INTRUDER", "FERRO", "127.0.0.1", Verification)
    assert [s[0] for s in seen][:3] == ["INTRUDER", "BUSY", "INTRUDER"] and seen[-1][0] == "FRIEND"


def test_user_identity_is_verified_and_answered():
    def verify(event):
        if event.user_id_type == 2:  # username and passcode (PS3.7 D.3.3.7.1)
            return (event.primary_field == b"alice" and event.secondary_field == b"secret", None)
        if event.user_id_type == 5:  # JSON Web Token: the server response carries the answer
            return (event.primary_field == b"jwt-token", b"welcome")
        return (False, None)

    server = start(handlers=[(evt.EVT_USER_ID, verify)])
    try:

        def identity(kind, primary, secondary=b"", positive=True):
            item = UserIdentityNegotiation()
            item.user_identity_type = kind
            item.positive_response_requested = positive
            item.primary_field = primary
            if kind == 2:
                item.secondary_field = secondary
            return item

        good = pyn().associate("127.0.0.1", server.port, ae_title="FERRO", ext_neg=[identity(2, b"alice", b"secret")])
        assert good.is_established
        good.release()
        assert pyn_rejected(pyn(), server.port, ext_neg=[identity(2, b"alice", b"wrong")])
        jwt = pyn().associate("127.0.0.1", server.port, ae_title="FERRO", ext_neg=[identity(5, b"jwt-token")])
        assert jwt.is_established
        assert jwt.acceptor.user_identity.server_response == b"welcome"
        jwt.release()
        # ferrodicom's SCU: the same rules.
        scu = AE("SCU")
        scu.add_requested_context(Verification)
        assoc = scu.associate("127.0.0.1", server.port, ae_title="FERRO", user_identity=(2, True, b"alice", b"wrong"))
        assert assoc.rejection == (1, 1, 1)
        with scu.associate(
            "127.0.0.1", server.port, ae_title="FERRO", user_identity=(2, True, b"alice", b"secret")
        ) as a:
            assert a.is_established and a.send_c_echo() == 0
    finally:
        server.shutdown()


def test_sop_class_extended_negotiation_is_answered_per_association():
    """Relational queries (PS3.4 C.3.4, byte 0 of the C-FIND application information) are agreed only for the
    callers the handler chooses."""
    asked = []

    def extended(event):
        asked.append(dict(event.app_info))
        if event.association_request.calling_ae == "RELATIONAL":
            return {FIND: b"\x01"}
        return {FIND: b"\x00"}

    server = start(handlers=[(evt.EVT_SOP_EXTENDED, extended)])
    try:
        item = SOPClassExtendedNegotiation()
        item.sop_class_uid = FIND
        item.service_class_application_information = b"\x01"
        for title, reply in (("RELATIONAL", b"\x01"), ("PLAIN", b"\x00")):
            assoc = pyn(title).associate("127.0.0.1", server.port, ae_title="FERRO", ext_neg=[item])
            assert assoc.is_established
            assert assoc.acceptor.sop_class_extended == {FIND: reply}
            assoc.release()
        scu = AE("RELATIONAL")
        scu.add_requested_context(FIND)
        with scu.associate("127.0.0.1", server.port, ae_title="FERRO", ext_neg=[item]) as a:
            assert a.info.extended_negotiation == [(FIND, b"\x01")]
    finally:
        server.shutdown()
    assert asked == [{FIND: b"\x01"}] * 3


def test_each_service_answers_extended_negotiation_for_its_own_sop_classes():
    """Two bound EVT_SOP_EXTENDED handlers: a service's for its own SOP class, the evt_handlers one for the
    rest (pynetdicom has one handler; with services each answers what it serves, PS3.7 D.3.3.5)."""
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as STUDY_FIND

    from ferrodicom.ae import ContextSpec

    class RelationalFind:
        def contexts(self):
            return [ContextSpec(FIND)]

        def handlers(self):
            return [(evt.EVT_SOP_EXTENDED, lambda event: {k: b"\x01" for k in event.app_info})]

    seen = []

    def user_handler(event):
        seen.append(sorted(event.app_info))
        return {k: b"\x00" for k in event.app_info}

    ae = AE("FERRO")
    ae.add_service(RelationalFind())
    ae.add_supported_context(STUDY_FIND)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_SOP_EXTENDED, user_handler)])
    try:
        items = []
        for uid in (FIND, STUDY_FIND):
            item = SOPClassExtendedNegotiation()
            item.sop_class_uid = uid
            item.service_class_application_information = b"\x01"
            items.append(item)
        scu = PynAE(ae_title="PYNSCU")
        scu.add_requested_context(FIND)
        scu.add_requested_context(STUDY_FIND)
        assoc = scu.associate("127.0.0.1", server.port, ae_title="FERRO", ext_neg=items)
        assert assoc.is_established
        assert assoc.acceptor.sop_class_extended == {FIND: b"\x01", STUDY_FIND: b"\x00"}
        assoc.release()
    finally:
        server.shutdown()
    assert seen == [[STUDY_FIND]]
