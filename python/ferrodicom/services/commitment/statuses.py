"""The codes of Storage Commitment (PS3.4 Annex J, PS3.3 C.14.1.1), each with the seed lines it answers to.

Seeds: 001 = Philips GEMINI TF (commitment SCU), 002 = GE Xeleris (commitment SCU), 003 = GE Centricity
PACS-IW SCServer (commitment SCP). "Lnnn" is a line of ``/work/shared/seeds/<seed>_*.txt``.
"""

from __future__ import annotations

#: Action Type ID of a Storage Commitment Request (PS3.4 J.3.2.1.2).
ACTION_REQUEST_COMMITMENT = 1
#: Event Type IDs of the Storage Commitment Result (PS3.4 J.3.3.1; 001 T20 L696-700, 003 L3378-3419).
EVENT_SUCCESSFUL = 1
EVENT_FAILURES_EXIST = 2
EVENT_TYPES = (EVENT_SUCCESSFUL, EVENT_FAILURES_EXIST)

# --- N-ACTION-RSP statuses this SCP sends ----------------------------------------------------------------
#: The request is recorded (durably) and will be reported on (003 Table 2.3.3-10, L3623-3636).
ACTION_SUCCESS = 0x0000
#: The action information cannot be parsed, or recording the request failed (003 L3638-3643).
ACTION_PROCESSING_FAILURE = 0x0110
#: Transaction UID or Referenced SOP Sequence missing (003 L3645-3650).
ACTION_MISSING_ATTRIBUTE = 0x0120
#: A Type 1 attribute without a value: an empty Transaction UID, an empty sequence, an item without its
#: UIDs (003 L3652-3654).
ACTION_MISSING_ATTRIBUTE_VALUE = 0x0121
#: A Transaction UID or a referenced UID that is not a UID (PS3.7 10.1.4.1.10; 002 L780 handles it).
ACTION_INVALID_ARGUMENT_VALUE = 0x0115
#: The Requested SOP Instance UID is not the well-known instance (PS3.4 J.3.5; 002 L785 handles it).
ACTION_NO_SUCH_SOP_INSTANCE = 0x0112
#: Action Type ID other than 1 (PS3.4 J.3.2.1.2; 002 L783 handles it).
ACTION_NO_SUCH_ACTION_TYPE = 0x0123
#: The node is shutting down (PS3.7 C.5.2x resource limitation).
ACTION_RESOURCE_LIMITATION = 0x0213

# --- Failure Reason (0008,1197) of an item of the Failed SOP Sequence -------------------------------------
#: PS3.3 C.14.1.1; the six Xeleris processes (002 L3708-3714).
REASON_PROCESSING_FAILURE = 0x0110
REASON_NO_SUCH_OBJECT_INSTANCE = 0x0112
REASON_RESOURCE_LIMITATION = 0x0213
REASON_SOP_CLASS_NOT_SUPPORTED = 0x0122
REASON_CLASS_INSTANCE_CONFLICT = 0x0119
REASON_DUPLICATE_TRANSACTION_UID = 0x0131
FAILURE_REASONS = {
    REASON_PROCESSING_FAILURE: "processing failure",
    REASON_NO_SUCH_OBJECT_INSTANCE: "no such object instance",
    REASON_RESOURCE_LIMITATION: "resource limitation",
    REASON_SOP_CLASS_NOT_SUPPORTED: "referenced SOP Class not supported",
    REASON_CLASS_INSTANCE_CONFLICT: "class/instance conflict",
    REASON_DUPLICATE_TRANSACTION_UID: "duplicate transaction UID",
}

# --- N-EVENT-REPORT-RSP statuses the SCU sends ------------------------------------------------------------
#: The result is received (001 T21 L705; 002 L1055).
REPORT_SUCCESS = 0x0000
#: The Transaction UID is not one of ours (001 T21 L706).
REPORT_UNRECOGNIZED = 0x0211
#: The Transaction UID has expired: no report was awaited any more (001 T21 L707).
REPORT_EXPIRED = 0x0213
#: Event Type ID other than 1 and 2 (001 T21 L708; 002 L1053).
REPORT_NO_SUCH_EVENT_TYPE = 0x0113
#: The event information cannot be read (001 T21 L709; 002 L1054).
REPORT_PROCESSING_FAILURE = 0x0110
#: A SOP Instance in the Referenced or Failed SOP Sequence was not in the request (001 T21 L710, "0008.1199"
#: read as (0008,1199)).
REPORT_INVALID_ARGUMENT = 0x0115
#: The notification's SOP Class is not Storage Commitment Push Model (002 L1052).
REPORT_CLASS_INSTANCE_CONFLICT = 0x0119

# --- How the SCP takes the SCU's N-EVENT-REPORT-RSP status (003 Table 2.3.3-6, L3426-3457) ----------------
#: 0000 delivered; 0107 "attribute list error" counts as delivered, with a warning in the log (L3440-3444).
DELIVERED_STATUSES = (0x0000, 0x0107)
#: Any other status is a permanent failure, not sent again (L3445-3456); a connection that cannot be made is
#: tried again later (L3456-3457). On the requestor's own association a failure may only mean that reports are
#: not taken there: Xeleris takes none (002 L1025), pynetdicom answers 0110 without a handler bound on the
#: requesting association, a platform answers 0211. There the report goes on to a new association, whose answer
#: is final.


def failure_reason_meaning(reason: int) -> str:
    """``0x0112 no such object instance`` for a Failure Reason."""
    return f"0x{reason:04X} {FAILURE_REASONS.get(reason, 'unknown failure reason')}"
