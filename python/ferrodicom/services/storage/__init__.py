"""Storage service class (PS3.4 Annex B): the SCP into the archive (:mod:`.scp`), the SCU (:mod:`.scu`) and
the SOP classes and transfer syntaxes both use (:mod:`.classes`)."""

from ferrodicom.services.storage.classes import (
    PRIVATE_STORAGE_CLASSES,
    STORAGE_TRANSFER_SYNTAXES,
    add_storage_contexts,
    storage_sop_classes,
)
from ferrodicom.services.storage.scp import StorageSCP, index_tags
from ferrodicom.services.storage.scu import (
    Item,
    Source,
    StoreReport,
    StoreResult,
    build_contexts,
    collect,
    store,
)

__all__ = [
    "PRIVATE_STORAGE_CLASSES",
    "STORAGE_TRANSFER_SYNTAXES",
    "Item",
    "Source",
    "StorageSCP",
    "StoreReport",
    "StoreResult",
    "add_storage_contexts",
    "build_contexts",
    "collect",
    "index_tags",
    "storage_sop_classes",
    "store",
]
