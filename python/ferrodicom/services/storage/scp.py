"""Storage SCP (PS3.4 Annex B): C-STORE into the archive.

The Rust data path streams each data set into ``<archive>/.incoming/*.part`` (converting the transfer syntax
if asked, extracting the index keys while streaming, fsyncing), then calls :func:`StorageSCP.stored` once;
that call hands the file to the archive, which moves it into place, commits the index row and returns the
status sent in the C-STORE-RSP.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Callable, Optional

from pydicom.datadict import tag_for_keyword

from ferrodicom import _core
from ferrodicom.ae import ContextSpec
from ferrodicom.archive import Archive, Plan, StoredInstance
from ferrodicom.services.storage.classes import STORAGE_TRANSFER_SYNTAXES, storage_sop_classes
from ferrodicom.uids import UNCOMPRESSED

log = logging.getLogger("ferrodicom.storage")


def index_tags(keywords: Optional[Sequence[str]] = None) -> list[tuple[int, str]]:
    """(tag, keyword) of the top-level attributes the Rust data path extracts for the archive's index (its
    default keys, or ``keywords``: the archive's schema with its extra keys)."""
    from ferrodicom.archive import INDEX_KEYWORDS

    tags = [(tag_for_keyword(k), k) for k in (keywords or INDEX_KEYWORDS)]
    return [(int(t), k) for t, k in tags if t is not None]


class StorageSCP:
    """The Storage SCP service over an :class:`ferrodicom.archive.Archive`: ``ae.add_service(StorageSCP(archive))``
    makes the AE accept every storage SOP class (:func:`~ferrodicom.services.storage.storage_sop_classes`) and
    stream each C-STORE's data set to disk in Rust; this object decides where each file goes and what the
    response says (through the archive).

    ``store_transfer_syntax`` (an uncompressed transfer syntax) converts uncompressed data sets while they
    stream; compressed ones are stored as received. ``on_stored(instance, status)`` hears of each instance."""

    def __init__(
        self,
        archive: Any,
        on_stored: Optional[Callable[[Any, int], None]] = None,
        store_transfer_syntax: Optional[str] = None,
        transfer_syntaxes: Optional[list[str]] = None,
    ) -> None:
        if store_transfer_syntax is not None and store_transfer_syntax not in UNCOMPRESSED:
            raise ValueError(
                f"store_transfer_syntax {store_transfer_syntax!r} is not an uncompressed transfer syntax "
                f"({', '.join(UNCOMPRESSED)}); compressed data sets are always stored as received"
            )
        self.archive = archive
        self.on_stored = on_stored
        self.store_transfer_syntax = store_transfer_syntax
        self.transfer_syntaxes = transfer_syntaxes or STORAGE_TRANSFER_SYNTAXES
        self._configs: list[_core.StorageConfig] = []
        add_flush_hook = getattr(archive, "add_flush_hook", None)
        if add_flush_hook is not None:
            add_flush_hook(self.flush)

    # --- the service protocol of AE.add_service ------------------------------------------------------
    def contexts(self) -> list[ContextSpec]:
        return [ContextSpec(uid, list(self.transfer_syntaxes)) for uid in storage_sop_classes()]

    def install(self, services: _core.Services) -> None:
        """Adds the Rust data path (C-STORE-RQs with a data set) to a server's or an association's services."""
        archive = self.archive
        config = _core.StorageConfig(
            str(archive.incoming_dir),
            extract=index_tags(getattr(getattr(archive, "schema", None), "keywords", None)),
            store_transfer_syntax=self.store_transfer_syntax,
            fsync=archive.durability == "full",
            writeback=archive.durability == "full",
            journal=getattr(archive, "journal", None),
            placer=self._placer(),
        )
        self._configs.append(config)
        services.add_storage(config, self)

    def _placer(self) -> Optional[_core.Placer]:
        """The archive's placer, which lets the data path place a new instance of a known series without calling
        :meth:`prepare`; None when this handler's or the archive's ``prepare`` is not the stock one (a subclass
        or a replacement that decides for itself must see every instance)."""
        archive = self.archive
        if type(self).prepare is not StorageSCP.prepare or not isinstance(archive, Archive):
            return None
        if getattr(archive.prepare, "__func__", None) is not Archive.prepare:
            return None
        return archive.placer

    def flush(self) -> None:
        """Waits until :meth:`stored` has run for every instance answered so far (after an early reply it runs
        on the data path's own thread, in batches)."""
        for config in list(self._configs):
            config.flush()

    def close(self) -> None:
        """Runs the :meth:`stored` calls still queued and empties the pools of ready ``.part`` files (at server
        shutdown)."""
        for config in self._configs:
            config.close()
        self._configs.clear()

    # --- the storage handler the Rust data path calls -------------------------------------------------
    def prepare(self, request: _core.StoreRequest, keys: dict) -> Any:
        """Mid-stream, once the data set's index keys are known (the Pixel Data is usually still arriving):
        ``(final path | None to discard, early reply | None, state)``; the state comes back to :meth:`stored`.
        The early reply is sent as soon as the file is in place, before it is indexed: with durability none
        as DCMTK's storescp answers once its file is written; with full only if a journal record made the
        file durable (else :meth:`stored` answers)."""
        command = request.command
        plan = self.archive.prepare(command.affected_sop_class_uid or "", command.affected_sop_instance_uid or "", keys)
        if not isinstance(plan, Plan):
            return (None, None, plan)
        early = self.archive.early_status(plan)
        return (plan.final, None if early is None else _reply(*early), plan)

    def stored(self, request: _core.StoreRequest, received: _core.Received, plan: Any) -> Any:
        """Once per C-STORE, after the data set is on disk (or failed): the response. After an early reply
        from :meth:`prepare` it is not sent, and this runs later on the data path's own thread, several
        instances in a row (:meth:`flush` waits for it)."""
        command = request.command
        info = request.association.info
        failure = received.failure
        if failure is not None:
            if isinstance(plan, Plan):
                self.archive.abandon(plan, failed=True)
            status, comment = failure
            log.warning(
                "C-STORE %s from %s at %s failed (0x%04X): %s",
                command.affected_sop_instance_uid,
                info.calling_ae,
                info.peer_address,
                status,
                comment,
            )
            return _reply(status, comment)
        if received.discarded:
            return _reply(*plan)  # prepare's decision: not kept (a refusal, or keep-first)
        placed = received.placed
        stored_at = placed or received.path
        if stored_at is None:  # the data path reports success only with a file
            return _reply(0x0110, "the data path reported no file")
        inst = _instance(request, received, stored_at)
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

    def placed(self, request: _core.StoreRequest, received: _core.Received) -> Any:
        """Instead of :meth:`prepare` and :meth:`stored`, for an instance the data path placed by the archive's
        :attr:`~ferrodicom.archive.Archive.placer` (a new instance in a known series, no remark: the archive's
        decision made without entering Python on the association's thread): indexes it; the response (sent
        already when it was answered early, which is the usual case)."""
        inst = _instance(request, received, received.placed or "")
        status, comment = self.archive.complete_placed(inst)
        if self.on_stored is not None:
            self.on_stored(inst, status)
        return _reply(status, comment)

    def abandoned(self, request: _core.StoreRequest, plan: Any) -> None:
        """The association ended inside the data set: release what :meth:`prepare` reserved."""
        if isinstance(plan, Plan):
            self.archive.abandon(plan, failed=True)


def _instance(request: _core.StoreRequest, received: _core.Received, path: str) -> StoredInstance:
    """The received file at ``path``, as the archive indexes it."""
    command = request.command
    info = request.association.info
    return StoredInstance(
        part_path=path,
        size=received.size,
        sop_class_uid=command.affected_sop_class_uid or "",
        sop_instance_uid=command.affected_sop_instance_uid or "",
        transfer_syntax_uid=received.transfer_syntax,
        calling_ae=info.calling_ae,
        called_ae=info.called_ae,
        keys=received.keys,
        journal_seq=received.journal_seq,
    )


def _reply(status: int, comment: Optional[str]) -> Any:
    """A handler reply: the status, with an Error Comment (0000,0902) when there is one."""
    return (status, None, {0x0902: comment[:64]}) if comment else status
