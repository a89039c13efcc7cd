"""Storage Commitment Push Model (PS3.4 Annex J).

SCP: the service over the archive (:mod:`.scp`), its persistent transactions (:mod:`.transactions`) and its
archive checks (:mod:`.checks`). SCU: the commit job and the report handler (:mod:`.scu`), with its state file
(:mod:`.outstanding`). Both: the data sets (:mod:`.messages`) and the codes with the seed lines they answer to
(:mod:`.statuses`).
"""

from ferrodicom.services.commitment.scp import DELIVERIES, CommitmentSCP
from ferrodicom.services.commitment.scu import CommitmentSCU, CommitResult, Pending, commit, resume
from ferrodicom.services.commitment.transactions import Transaction, TransactionStore

__all__ = [
    "DELIVERIES",
    "CommitResult",
    "CommitmentSCP",
    "CommitmentSCU",
    "Pending",
    "Transaction",
    "TransactionStore",
    "commit",
    "resume",
]
