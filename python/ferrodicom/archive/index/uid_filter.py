"""A Bloom filter of the SOP Instance UIDs an index holds: the duplicate check of every received instance
(PS3.4 B.2.3, the archive's duplicate policy) asks SQLite only when the filter says "maybe".

It answers "certainly absent" or "maybe present", never wrongly "absent" for a UID that was added. It is only
valid for an index that this process alone writes (the embedded SQLite index under the archive's lock): every
row written must have its UID added first. UIDs are never removed (a deleted instance costs a SELECT).

Sized at open for twice the instances then (at least a million) at 8 bits each, rounded up to a power of two
(1 MiB for an empty archive, 32 MiB for ten million instances), with 4 probes: at open 16 or more bits per
UID, a false "maybe" about 1 in 400; once the archive has doubled about 1 in 40, and past that SQLite is asked
more often until the archive is opened again.

The filter is in Rust (rust/node/src/placement.rs) because the storage data path asks it too: the archive's
:class:`~ferrodicom._core.Placer` places a new instance without entering Python when the filter says "absent".
``ready`` says the index's existing UIDs are all in (before that every answer is "maybe"); ``disable()``
makes every answer "maybe" for good (rows were written around the filter).
"""

from __future__ import annotations

from ferrodicom._core import UidFilter

__all__ = ["UidFilter"]
