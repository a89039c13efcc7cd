"""UIDs ferrodicom uses by name (PS3.6 Annex A)."""

from __future__ import annotations

VERIFICATION = "1.2.840.10008.1.1"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"

#: Uncompressed transfer syntaxes, in the order ferrodicom proposes them as SCU.
DEFAULT_TRANSFER_SYNTAXES: list[str] = [EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE]

#: The uncompressed transfer syntaxes, Deflated included (PS3.5 Annex A.1-A.5): what the codec converts
#: between, so what a storage SCP can store received data sets in (``store_transfer_syntax``).
UNCOMPRESSED: list[str] = [EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_EXPLICIT_VR_LE]
