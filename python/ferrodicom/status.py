"""DIMSE status values and their meanings (PS3.7 Annex C; service-specific codes in PS3.4)."""

from __future__ import annotations

from typing import Any

#: General status codes (PS3.7 C.1–C.5) and common service codes (PS3.4 B.2.3, C.4).
MEANINGS: dict[int, str] = {
    0x0000: "Success",
    0x0001: "Warning: requested optional attributes are not supported",
    0x0105: "Failure: no such attribute",
    0x0106: "Failure: invalid attribute value",
    0x0107: "Warning: attribute list error",
    0x0110: "Failure: processing failure",
    0x0111: "Failure: duplicate SOP Instance",
    0x0112: "Failure: no such SOP Instance",
    0x0113: "Failure: no such event type",
    0x0114: "Failure: no such argument",
    0x0115: "Failure: invalid argument value",
    0x0116: "Warning: attribute value out of range",
    0x0117: "Failure: invalid object instance",
    0x0118: "Failure: no such SOP Class",
    0x0119: "Failure: class-instance conflict",
    0x0120: "Failure: missing attribute",
    0x0121: "Failure: missing attribute value",
    0x0122: "Failure: refused: SOP Class not supported",
    0x0123: "Failure: no such action type",
    0x0124: "Failure: refused: not authorized",
    0x0210: "Failure: duplicate invocation",
    0x0211: "Failure: unrecognized operation",
    0x0212: "Failure: mistyped argument",
    0x0213: "Failure: resource limitation",
    0xA700: "Failure: refused: out of resources",
    0xA900: "Failure: data set does not match SOP Class",
    0xB000: "Warning: coercion of data elements",
    0xB006: "Warning: elements discarded",
    0xB007: "Warning: data set does not match SOP Class",
    0xC000: "Failure: cannot understand",
    0xFE00: "Cancel",
    0xFF00: "Pending",
    0xFF01: "Pending: optional keys not supported",
}


def category(status: int) -> str:
    """Success, Warning, Failure, Cancel or Pending (PS3.7 C.1)."""
    if status == 0x0000:
        return "Success"
    if status in (0xFF00, 0xFF01):
        return "Pending"
    if status == 0xFE00:
        return "Cancel"
    if status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF:
        return "Warning"
    return "Failure"


def meaning(status: int) -> str:
    """A readable meaning; the range names of PS3.4 for service-specific codes not listed."""
    if status in MEANINGS:
        return MEANINGS[status]
    if 0xA700 <= status <= 0xA7FF:
        return "Failure: refused: out of resources"
    if 0xA900 <= status <= 0xA9FF:
        return "Failure: data set does not match SOP Class"
    if 0xC000 <= status <= 0xCFFF:
        return "Failure: cannot understand"
    return f"{category(status)}: 0x{status:04X}"


class Status(int):
    """A DIMSE status: an ``int`` that also knows its category and meaning.

    ``status.Status`` is the value itself, so code written for pynetdicom's response datasets
    (``rsp.Status == 0x0000``) works unchanged; the response's other command elements are attributes too
    (``status.ErrorComment``, ``status.NumberOfCompletedSuboperations``: None when absent).
    """

    _command: Any

    def __new__(cls, value: int, command: Any = None) -> Status:
        obj = super().__new__(cls, value)
        obj._command = command
        return obj

    @property
    def Status(self) -> int:  # noqa: N802 - pynetdicom/pydicom attribute name
        return int(self)

    @property
    def command(self) -> Any:
        """The response's command set (a ``ferrodicom._core.Command``), when the status came in one."""
        return self._command

    def __getattr__(self, keyword: str) -> Any:
        if keyword.startswith("_") or not keyword[:1].isupper():
            raise AttributeError(keyword)
        return None if self._command is None else getattr(self._command, keyword)

    def get(self, keyword: str, default: Any = None) -> Any:
        value = getattr(self, keyword, None)
        return default if value is None else value

    @property
    def category(self) -> str:
        return category(int(self))

    @property
    def meaning(self) -> str:
        return meaning(int(self))

    @property
    def is_success(self) -> bool:
        return int(self) == 0

    def __reduce__(self) -> Any:
        return (Status, (int(self),))

    def __repr__(self) -> str:
        return f"Status(0x{int(self):04X} {self.meaning})"
