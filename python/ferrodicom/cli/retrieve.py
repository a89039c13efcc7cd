"""What ``ferrodicom move`` and ``ferrodicom get`` share: following a retrieve's responses with a progress bar
fed by their sub-operation counts, and the final report (the SCU's reading of pending and final responses:
PS3.4 C.4.2.2.1, C.4.3.2.1)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, Optional

import click

from ferrodicom.cli.errors import CommandError
from ferrodicom.cli.qr_common import check_context, status_line


def _count(status: Any, kind: str) -> int:
    return int(getattr(status, f"NumberOf{kind}Suboperations", 0) or 0)


class Progress:
    """A tqdm bar fed by the pending responses' sub-operation counts (PS3.7 9.1.3.1, 9.1.4.1)."""

    def __init__(self, show: bool, what: str) -> None:
        self.show = show
        self.what = what
        self.bar: Any = None

    def update(self, status: Any) -> None:
        done = sum(_count(status, k) for k in ("Completed", "Failed", "Warning"))
        remaining = getattr(status, "NumberOfRemainingSuboperations", None)
        if not self.show:
            return
        if self.bar is None:
            from tqdm import tqdm  # type: ignore[import-untyped]

            total = done + int(remaining or 0) if remaining is not None else None
            self.bar = tqdm(total=total, unit="inst", desc=self.what, file=sys.stderr, leave=False)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def report(final: Any, what: str, failed: Any = None) -> bool:
    """Prints the final counts and the failed instances; True when every sub-operation completed."""
    if final is None:
        raise CommandError(f"the association ended before the final {what} response", "see the peer's log")
    counts = {k: _count(final, k) for k in ("Completed", "Failed", "Warning")}
    click.echo(
        f"{what} status {status_line(final)}: {counts['Completed']} completed, {counts['Failed']} failed, "
        f"{counts['Warning']} warning(s)"
    )
    if failed is not None and "FailedSOPInstanceUIDList" in failed:
        uids = failed.FailedSOPInstanceUIDList
        for uid in uids if isinstance(uids, (list, tuple)) or type(uids).__name__ == "MultiValue" else [uids]:
            click.echo(f"failed: {uid}")
    return int(final.Status) == 0x0000


def follow(
    assoc: Any, uid: str, aec: str, what: str, progress: Optional[bool], send: Callable[[], Iterable[tuple[Any, Any]]]
) -> bool:
    """Sends the retrieve (``send()`` yields its responses), feeds the pending ones to a progress bar (default:
    when stderr is a terminal), releases, and reports the final response; aborts on any error."""
    bar = Progress(sys.stderr.isatty() if progress is None else progress, what)
    final: Any = None
    final_ds: Any = None
    try:
        check_context(assoc, uid, aec)
        for status, ds in send():
            if int(status.Status) == 0xFF00:
                bar.update(status)
                continue
            final, final_ds = status, ds
        assoc.release()
    except BaseException:
        if assoc.is_established:
            assoc.abort()
        raise
    finally:
        bar.close()
    return report(final, what, final_ds)
