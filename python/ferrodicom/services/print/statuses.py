"""Print Management statuses (PS3.4 H.4) with their meanings, and what a print job does on each: the standard's
categories (PS3.4 H.2.5), or a seed's documented behaviour.

The seeds: GEMINI TF's Print-Manager documents a behaviour for every status of every operation (seed 001,
Tables 45-55, L1188-1343); eNTEGRA's print SCU, the "ISG Hardcopy Server" (seed 000, Appendix B,
L6866-7999), documents none; Xeleris (seed 002) prints through the Cedara Hardcopy Server, described in a
separate document (L59, L312) that is not among the seeds, so it too follows the standard's categories here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

from ferrodicom.status import category
from ferrodicom.status import meaning as general_meaning


@dataclass(frozen=True)
class PrintStatus:
    code: int
    meaning: str
    #: Where the standard defines it (PS3.4 section) and the seed lines that list it.
    source: str


#: Every Print Management status PS3.4 Annex H defines (B600-B60A, C600-C616), with the seeds that list each.
PRINT_STATUSES: dict[int, PrintStatus] = {
    s.code: s
    for s in (
        PrintStatus(0xB600, "Memory Allocation not supported", "PS3.4 H.4.1.2.1.2; 001 L1194"),
        PrintStatus(0xB601, "Film session printing (collation) is not supported", "PS3.4 H.4.1.2.4.2"),
        PrintStatus(
            0xB602,
            "Film Session SOP Instance hierarchy does not contain Image Box SOP Instances (empty page)",
            "PS3.4 H.4.1.2.4.2",
        ),
        PrintStatus(
            0xB603,
            "Film Box SOP Instance hierarchy does not contain Image Box SOP Instances (empty page)",
            "PS3.4 H.4.2.2.4.2; 001 L1247",
        ),
        PrintStatus(
            0xB604,
            "Image size is larger than image box size, the image has been demagnified",
            "PS3.4 H.4.2.2.4.2, H.4.3.1.2.1.2; 001 L1248, L1295, L1337",
        ),
        PrintStatus(
            0xB605,
            "Requested Min Density or Max Density outside of printer's operating range; the printer uses its "
            "own minimum or maximum density instead",
            "PS3.4 H.4.2.2.1.2, H.4.3.1.2.1.2; 001 L1236, L1296, L1338",
        ),
        PrintStatus(
            0xB609,
            "Image size is larger than the Image Box size, the image has been cropped to fit",
            "PS3.4 H.4.2.2.4.2, H.4.3.1.2.1.2; 001 L1249, L1297, L1339",
        ),
        PrintStatus(
            0xB60A,
            "Image size or Combined Print Image size is larger than the Image Box size, the image or combined "
            "print image has been decimated to fit",
            "PS3.4 H.4.2.2.4.2, H.4.3.1.2.1.2; 001 L1250, L1298, L1340",
        ),
        PrintStatus(
            0xC600,
            "Film Session SOP Instance hierarchy does not contain Film Box SOP Instances",
            "PS3.4 H.4.1.2.4.2",
        ),
        PrintStatus(
            0xC601, "Unable to create Print Job SOP Instance; print queue is full (film session)", "PS3.4 H.4.1.2.4.2"
        ),
        PrintStatus(
            0xC602,
            "Unable to create Print Job SOP Instance; print queue is full (film box)",
            "PS3.4 H.4.2.2.4.2; 001 L1251",
        ),
        PrintStatus(
            0xC603,
            "Image size is larger than image box size",
            "PS3.4 H.4.2.2.4.2, H.4.3.1.2.1.2; 001 L1252, L1299, L1341",
        ),
        PrintStatus(
            0xC604,
            "Image position collision (retired: PS3.4 notes it cannot happen; older printers may still send it)",
            "PS3.4 H.4.1.2.4.2 note",
        ),
        PrintStatus(
            0xC605,
            "Insufficient memory in printer to store the image",
            "PS3.4 H.4.3.1.2.1.2; 001 L1300, L1342",
        ),
        PrintStatus(
            0xC613,
            "Combined Print Image size is larger than the Image Box size",
            "PS3.4 H.4.2.2.4.2, H.4.3.1.2.1.2; 001 L1253, L1301, L1343",
        ),
        PrintStatus(
            0xC616,
            "There is an existing Film Box that has not been printed and N-ACTION at the Film Session level is "
            "not supported; a new Film Box will not be created until it is printed",
            "PS3.4 H.4.2.2.1.2; 001 L1237",
        ),
    )
}


def meaning(status: int) -> str:
    """``Warning: ...`` / ``Failure: ...``: the print meaning of a B6xx/C6xx status, else the general one."""
    found = PRINT_STATUSES.get(int(status))
    if found is not None:
        return f"{category(found.code)}: {found.meaning}"
    if 0xC600 <= int(status) <= 0xC6FF:
        return f"Failure: 0x{int(status):04X} (a print failure PS3.4 Annex H does not define)"
    if 0xB600 <= int(status) <= 0xB6FF:
        return f"Warning: 0x{int(status):04X} (a print warning PS3.4 Annex H does not define)"
    return general_meaning(int(status))


# --- what the job does --------------------------------------------------------------------------------------


class Behaviour(enum.Enum):
    """What a print SCU does after a response."""

    CONTINUE = "continue"  # success
    WARN = "continue, warning logged"
    REPORT = "continue, warning logged and reported to the user"
    FAIL = "job failed, reason logged and reported"


#: Operations of a print job, as named in the rules below.
OPERATIONS = (
    "printer N-GET",
    "film session N-CREATE",
    "film session N-SET",
    "film session N-ACTION",
    "film session N-DELETE",
    "film box N-CREATE",
    "film box N-ACTION",
    "film box N-DELETE",
    "image box N-SET",
    "presentation LUT N-CREATE",
)

#: The print SCUs whose behaviour the seeds document; None is the standard's.
PRODUCTS = ("entegra", "gemini-tf", "xeleris")


@dataclass(frozen=True)
class Rule:
    behaviour: Behaviour
    #: The seed line that documents it, or the standard's section.
    source: str


def _standard(operation: str, status: int) -> Rule:
    kind = category(status)
    if kind == "Success":
        return Rule(Behaviour.CONTINUE, "PS3.4 H.2.5")
    if kind == "Warning":
        return Rule(Behaviour.REPORT, "PS3.4 H.2.5: the SCP processes the request")
    if operation.endswith("N-DELETE"):
        # The film was printed (or the session ends anyway: releasing deletes the hierarchy, H.4.1.2.1.3).
        return Rule(Behaviour.REPORT, "PS3.4 H.4.1.2.1.3: releasing the association deletes the hierarchy")
    if operation == "printer N-GET":
        # N-GET of the Printer is optional for the SCU (U/M, H.4.6.2): a printer that cannot answer may print.
        return Rule(Behaviour.REPORT, "PS3.4 H.4.6.2: Printer N-GET is optional")
    if operation == "presentation LUT N-CREATE":
        return Rule(Behaviour.REPORT, "PS3.4 H.4.9: the film prints without the Presentation LUT")
    return Rule(Behaviour.FAIL, "PS3.4 H.2.5: the SCP is unable to perform the request")


#: GEMINI TF Print-Manager (seed 001 Tables 45, 46, 49, 50, 51, 53, 55): (operation, status) -> rule. Its
#: N-DELETE rows cover every status but 0000 ("<> 0000", L1200, L1263); others fall back to the standard.
_GEMINI: dict[tuple[str, int], Rule] = {
    ("film session N-CREATE", 0xB600): Rule(Behaviour.WARN, "001 L1194 (Table 45)"),
    ("film box N-CREATE", 0xB605): Rule(Behaviour.WARN, "001 L1236 (Table 49)"),
    ("film box N-CREATE", 0xC616): Rule(Behaviour.FAIL, "001 L1237 (Table 49)"),
    **{("film box N-ACTION", c): Rule(Behaviour.REPORT, f"001 L{line} (Table 50)")
       for c, line in ((0xB603, 1247), (0xB604, 1248), (0xB609, 1249), (0xB60A, 1250))},
    **{("film box N-ACTION", c): Rule(Behaviour.FAIL, f"001 L{line} (Table 50)")
       for c, line in ((0xC602, 1251), (0xC603, 1252), (0xC613, 1253))},
    **{("image box N-SET", c): Rule(Behaviour.REPORT, f"001 L{line}, L{line + 42} (Tables 53, 55)")
       for c, line in ((0xB604, 1295), (0xB605, 1296), (0xB609, 1297), (0xB60A, 1298))},
    **{("image box N-SET", c): Rule(Behaviour.FAIL, f"001 L{line}, L{line + 42} (Tables 53, 55)")
       for c, line in ((0xC603, 1299), (0xC605, 1300), (0xC613, 1301))},
}  # fmt: skip
_GEMINI_DELETE = {"film session N-DELETE": "001 L1200 (Table 46)", "film box N-DELETE": "001 L1263 (Table 51)"}


def rule(operation: str, status: int, product: Optional[str] = None) -> Rule:
    """What the job does after ``status`` answered ``operation``, as ``product`` documents it (None, "entegra"
    and "xeleris": the standard's categories; "gemini-tf": seed 001's tables)."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown print operation {operation!r}")
    if product not in (None, *PRODUCTS):
        raise ValueError(f"unknown print SCU product {product!r}; known: {', '.join(PRODUCTS)}")
    status = int(status)
    if product == "gemini-tf":
        if operation in _GEMINI_DELETE and status != 0x0000:
            # "On any other status then success, the job remains in the queue manager, with status failed"
            return Rule(Behaviour.FAIL, _GEMINI_DELETE[operation])
        found = _GEMINI.get((operation, status))
        if found is not None:
            return found
    return _standard(operation, status)
