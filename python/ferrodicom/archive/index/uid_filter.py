"""A Bloom filter of the SOP Instance UIDs an index holds: the duplicate check of every received instance
(PS3.4 B.2.3, the archive's duplicate policy) asks SQLite only when the filter says "maybe".

It answers "certainly absent" or "maybe present", never wrongly "absent" for a UID that was added. It is only
valid for an index that this process alone writes (the embedded SQLite index under the archive's lock): every
row written must have its UID added first. UIDs are never removed (a deleted instance costs a SELECT).

Sized at open for twice the instances then (at least a million) at 8 bits each, rounded up to a power of two
(1 MiB for an empty archive, 32 MiB for ten million instances), with 4 probes: at open 16 or more bits per
UID, a false "maybe" about 1 in 400; once the archive has doubled about 1 in 40, and past that SQLite is asked
more often until the archive is opened again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np

__all__ = ["UidFilter"]

_PROBES = 4
_BITS_PER_UID = 8
_MIN_UIDS = 1 << 20
_U64 = (1 << 64) - 1


class UidFilter:
    """``uid in f`` is False only for a UID never added (see the module documentation). ``ready`` says that
    the index's existing UIDs are all in (:meth:`add_many` done); before that, every answer is "maybe"."""

    def __init__(self, expected: int) -> None:
        wanted = max(_MIN_UIDS, 2 * expected) * _BITS_PER_UID
        bits = 1 << (wanted - 1).bit_length()  # the power of two at or above
        self._mask = bits - 1
        self._bits = bytearray(bits >> 3)
        self._lock = threading.Lock()  # a read-modify-write of one byte must not lose a concurrent one
        self.ready = False

    def _positions(self, uid: str) -> list[int]:
        h = hash(uid) & _U64
        g = (h >> 32) | 1
        mask = self._mask
        return [(h + i * g) & mask for i in range(_PROBES)]

    def add(self, uid: str) -> None:
        positions = self._positions(uid)
        bits = self._bits
        with self._lock:
            for p in positions:
                bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, uid: object) -> bool:
        if not self.ready or not isinstance(uid, str):
            return True
        bits = self._bits
        return all(bits[p >> 3] >> (p & 7) & 1 for p in self._positions(uid))

    def add_many(self, uids: Iterable[str], chunk: int = 50_000) -> None:
        """Adds many UIDs (the index's rows at open), vectorised; the same positions as :meth:`add`."""
        private = np.zeros(len(self._bits), dtype=np.uint8)
        batch: list[int] = []
        for uid in uids:
            batch.append(hash(uid) & _U64)
            if len(batch) >= chunk:
                self._set(private, batch)
                batch = []
        if batch:
            self._set(private, batch)
        shared = np.frombuffer(self._bits, dtype=np.uint8)
        with self._lock:
            np.bitwise_or(shared, private, out=shared)

    def _set(self, bits: np.ndarray, hashes: list[int]) -> None:
        h = np.array(hashes, dtype=np.uint64)
        g = (h >> np.uint64(32)) | np.uint64(1)
        mask = np.uint64(self._mask)
        for i in range(_PROBES):
            p = (h + np.uint64(i) * g) & mask
            byte = (p >> np.uint64(3)).astype(np.intp)
            bit = np.left_shift(np.uint8(1), (p & np.uint64(7)).astype(np.uint8))
            np.bitwise_or.at(bits, byte, bit)
