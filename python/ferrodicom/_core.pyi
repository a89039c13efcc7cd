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

# --- codec (transfer syntaxes, PS3.5) ---------------------------------------------------------
from os import PathLike  # noqa: E402
from typing import Dict, List, Optional, Tuple, Union  # noqa: E402

class PrivateDictionary:
    def __init__(self) -> None: ...
    def add(self, creator: str, group: int, element: int, vr: str) -> None: ...
    def get(self, creator: str, group: int, element: int) -> Optional[str]: ...
    def __len__(self) -> int: ...

class StreamConverter:
    def __init__(
        self,
        source_syntax: str,
        transfer_syntax: str,
        *,
        tags: Optional[List[int]] = None,
        private_dictionary: Optional[PrivateDictionary] = None,
    ) -> None: ...
    def feed(self, chunk: bytes) -> bytes: ...
    def finish(self) -> Tuple[bytes, Dict[int, Tuple[str, bytes]]]: ...

def set_default_private_dictionary(d: Optional[PrivateDictionary]) -> None: ...
def get_default_private_dictionary() -> Optional[PrivateDictionary]: ...
def transcode(
    data: bytes, transfer_syntax: str, *, private_dictionary: Optional[PrivateDictionary] = None
) -> bytes: ...
def transcode_dataset(
    data: bytes,
    source_syntax: str,
    transfer_syntax: str,
    *,
    private_dictionary: Optional[PrivateDictionary] = None,
) -> bytes: ...
def transcode_file(
    src: Union[str, PathLike[str]],
    dst: Union[str, PathLike[str]],
    transfer_syntax: str,
    *,
    private_dictionary: Optional[PrivateDictionary] = None,
    tags: Optional[List[int]] = None,
) -> Dict[int, Tuple[str, bytes]]: ...
def extract(
    data: Union[bytes, str, PathLike[str]],
    tags: List[int],
    *,
    private_dictionary: Optional[PrivateDictionary] = None,
) -> Dict[int, Tuple[str, bytes]]: ...
def file_meta(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str = "",
    source_ae_title: str = "",
) -> bytes: ...
def dictionary_vr(tag: int) -> str: ...
