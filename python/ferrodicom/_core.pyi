"""Type stubs for the Rust extension module ``ferrodicom._core``."""

__version__: str

class DicomError(Exception): ...
class PduError(DicomError): ...
class AssociationError(DicomError): ...
class DimseError(DicomError): ...
class CodecError(DicomError): ...
class NmError(DicomError): ...
class DicomTimeout(DicomError): ...

# --- nm (rust/py/src/nm.rs): NM frame <-> grid plans (PS3.3 C.8.4.8) ---

class NmPlan:
    def __init__(
        self,
        names: list[str],
        vectors: list[list[int]],
        extents: list[int],
        n_frames: int,
        subset: list[int] | None = None,
    ) -> None: ...
    @property
    def shape(self) -> list[int]: ...
    @property
    def is_identity(self) -> bool: ...
    @property
    def slot_frames(self) -> list[int]: ...
    @property
    def frame_slots(self) -> list[int]: ...
    def gather(
        self,
        pixels: bytes | tuple[int, int],
        frame_len: int,
        sample_bytes: int,
        swap: bool,
        out: tuple[int, int] | None = None,
        stream: bool | None = None,
        threads: int | None = None,
    ) -> bytearray | None: ...
    def scatter(
        self,
        volume: bytes | tuple[int, int],
        frame_len: int,
        sample_bytes: int,
        swap: bool,
        out: tuple[int, int] | None = None,
        stream: bool | None = None,
        threads: int | None = None,
    ) -> bytearray | None: ...
