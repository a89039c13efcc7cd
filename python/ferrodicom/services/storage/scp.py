"""Storage SCP (PS3.4 Annex B): C-STORE into the archive.

The Rust data path streams each data set into ``<archive>/.incoming/*.part`` (converting the transfer syntax
if asked, extracting the index keys while streaming, fsyncing), then calls :func:`StorageSCP.store` once;
that call hands the file to the archive, which moves it into place, commits the index row and returns the
status sent in the C-STORE-RSP.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from pydicom.datadict import tag_for_keyword

from ferrodicom import _core

log = logging.getLogger("ferrodicom.storage")


def index_tags() -> list[tuple[int, str]]:
    """(tag, keyword) of the top-level attributes the Rust data path extracts for the archive's index."""
    from ferrodicom.archive import INDEX_KEYWORDS

    return [(int(tag_for_keyword(k)), k) for k in INDEX_KEYWORDS]


# ---------------------------------------------------------------------------------------------------------------
# SCP
# ---------------------------------------------------------------------------------------------------------------


class StorageSCP:
    """Connects the Rust C-STORE data path to an :class:`ferrodicom.archive.Archive`."""

    def __init__(self, archive: Any, on_stored: Optional[Callable[[Any, int], None]] = None) -> None:
        self.archive = archive
        self.on_stored = on_stored

    def prepare(self, info: dict, ctx: tuple[int, str, str], command: _core.Command, keys: dict) -> Any:
        """Called mid-stream once the data set's index keys are known (the Pixel Data is usually still
        arriving): ``(final path | None to discard, early reply | None, state)``; the state comes back
        to :meth:`store` as ``received["prepared"]``. The early reply is sent as soon as the file is in
        place, before it is indexed: with durability none as DCMTK's storescp answers once its file is
        written; with full only if a journal record made the file durable (else :meth:`store` answers)."""
        from ferrodicom.archive import Plan

        plan = self.archive.prepare(command.affected_sop_class_uid or "", command.affected_sop_instance_uid or "", keys)
        if not isinstance(plan, Plan):
            return (None, None, plan)
        early = self.archive.early_status(plan)
        return (plan.final, None if early is None else _reply(*early), plan)

    def store(self, info: dict, ctx: tuple[int, str, str], command: _core.Command, received: dict) -> Any:
        """Called once per C-STORE, after the data set is on disk (or failed): returns the response
        (not sent if :meth:`prepare` gave an early reply)."""
        from ferrodicom.archive import Plan, StoredInstance

        plan = received.get("prepared")
        failure = received["failure"]
        if failure is not None:
            if isinstance(plan, Plan):
                self.archive.abandon(plan, failed=True)
            status, comment = failure
            log.warning("C-STORE %s from %s failed: %s", command.affected_sop_instance_uid, info["calling_ae"], comment)
            return _reply(status, comment)
        if received.get("discarded"):
            return _reply(*plan)  # prepare's decision: not kept (a refusal, or keep-first)
        placed = received.get("placed")
        inst = StoredInstance(
            part_path=placed or received["path"],
            size=received["size"],
            sop_class_uid=command.affected_sop_class_uid or "",
            sop_instance_uid=command.affected_sop_instance_uid or "",
            transfer_syntax_uid=received["transfer_syntax"],
            calling_ae=info["calling_ae"],
            called_ae=info["called_ae"],
            keys=received["keys"],
            journal_seq=received.get("journal_seq"),
        )
        if isinstance(plan, Plan):
            if placed:
                status, comment = self.archive.complete(plan, inst)
            else:  # the keys changed after prepare (elements out of order): start again
                self.archive.abandon(plan)
                status, comment = self.archive.ingest(inst)
        else:
            status, comment = self.archive.ingest(inst)
        if self.on_stored is not None:
            self.on_stored(inst, status)
        return _reply(status, comment)


def _reply(status: int, comment: Optional[str]) -> Any:
    """A handler reply: the status, with an Error Comment (0000,0902) when there is one."""
    return (status, None, {0x0902: comment[:64]}) if comment else status
