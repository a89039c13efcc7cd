"""UID checks before a UID becomes a file or directory name (PS3.5 §9.1).

Strict about anything that could leave the archive or break a file name: only digits and dots, 1-64
characters, no empty component (so no "", ".", "..", "/", "\\", NUL, drive letters or absolute paths).
Lenient about one PS3.5 rule some vendors break: a component with a leading zero ("1.2.03") is accepted
and reported, because refusing it would lose the image.
"""

from __future__ import annotations

import re

__all__ = ["UID_MAX_LEN", "check_uid", "clean_uid"]

UID_MAX_LEN = 64
_UID_RE = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_LEADING_ZERO_RE = re.compile(r"(?:^|\.)0[0-9]")


def clean_uid(value: object) -> str:
    """The UID as a string without the trailing NUL/space padding of the UI VR (PS3.5 6.2)."""
    if not isinstance(value, str):
        return "" if value is None else str(value)
    return value.rstrip("\x00 ").lstrip(" ")


def check_uid(uid: str) -> tuple[bool, str | None]:
    """``(usable, problem)``: usable means it may be used as a path component.

    ``problem`` explains a refusal, or (with ``usable`` True) names a tolerated deviation.
    """
    if not uid:
        return False, "empty UID"
    if len(uid) > UID_MAX_LEN:
        return False, f"UID longer than {UID_MAX_LEN} characters"
    if _UID_RE.fullmatch(uid) is None:
        return False, "UID has characters other than digits and single dots"
    if _LEADING_ZERO_RE.search(uid) is not None:
        return True, "UID component with a leading zero (PS3.5 9.1)"
    return True, None
