"""Type stubs for the Rust extension module ``ferrodicom._core``."""

from os import PathLike
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

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
        fresh: bool = False,
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
        fresh: bool = False,
    ) -> bytearray | None: ...

# --- codec (transfer syntaxes, PS3.5) ---------------------------------------------------------

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

# --- pdu (rust/py/src/pdu.rs): PDUs of PS3.8 §9.3 ---------------------------------------------------

class Pdu:
    """A decoded PDU; fields that do not apply to its type are None."""

    @property
    def pdu_type(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def protocol_version(self) -> Optional[int]: ...
    @property
    def called_ae(self) -> Optional[str]: ...
    @property
    def calling_ae(self) -> Optional[str]: ...
    @property
    def application_context(self) -> Optional[str]: ...
    @property
    def presentation_contexts(self) -> Optional[List[Dict[str, Any]]]: ...
    @property
    def user_information(self) -> Optional[List[Dict[str, Any]]]: ...
    @property
    def max_length(self) -> Optional[int]: ...
    @property
    def result(self) -> Optional[int]: ...
    @property
    def source(self) -> Optional[int]: ...
    @property
    def reason(self) -> Optional[int]: ...
    @property
    def pdvs(self) -> Optional[List[Tuple[int, bool, bool, bytes]]]: ...
    def encode(self) -> bytes: ...

def decode_pdu(data: bytes, max_length: Optional[int] = None) -> Pdu: ...

# --- net (rust/py/src/net.rs): associations, DIMSE commands, the SCP server ----------------------

IMPLEMENTATION_CLASS_UID: str
IMPLEMENTATION_VERSION_NAME: str

class Command:
    """A DIMSE command set (group 0000): US -> int, UI/AE/LO -> str, AT -> list[int], else bytes."""

    def __init__(self, fields: Dict[int, Any]) -> None: ...
    @staticmethod
    def decode(data: bytes) -> Command: ...
    def encode(self) -> bytes: ...
    def get(self, element: int, default: Any = None) -> Any: ...
    def __contains__(self, element: int) -> bool: ...
    def to_dict(self) -> Dict[int, Any]: ...
    @property
    def command_field(self) -> Optional[int]: ...
    @property
    def name(self) -> Optional[str]: ...
    @property
    def message_id(self) -> Optional[int]: ...
    @property
    def message_id_being_responded_to(self) -> Optional[int]: ...
    @property
    def status(self) -> Optional[int]: ...
    @property
    def affected_sop_class_uid(self) -> Optional[str]: ...
    @property
    def affected_sop_instance_uid(self) -> Optional[str]: ...
    @property
    def has_data_set(self) -> bool: ...

class Association:
    @property
    def is_established(self) -> bool: ...
    @property
    def negotiated(self) -> Dict[str, Any]: ...
    def send_c_echo(self, message_id: Optional[int] = None) -> int: ...
    def send(self, context_id: int, fields: Dict[int, Any], data_set: Optional[bytes] = None) -> int: ...
    def receive(
        self, timeout: Optional[float] = None, max_data_set: int = ...
    ) -> Optional[Tuple[int, Command, Optional[bytes]]]: ...
    def send_c_store_file(
        self,
        path: Union[str, PathLike],
        *,
        message_id: Optional[int] = None,
        priority: int = 0,
        move_originator: Optional[Tuple[str, int]] = None,
        private_dictionary: Optional[PrivateDictionary] = None,
    ) -> Tuple[int, Command, int, str]: ...
    def send_c_store_data(
        self,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
        data: bytes,
        *,
        message_id: Optional[int] = None,
        priority: int = 0,
        move_originator: Optional[Tuple[str, int]] = None,
        private_dictionary: Optional[PrivateDictionary] = None,
    ) -> Tuple[int, Command, int, str]: ...
    def release(self) -> Optional[Tuple[int, int]]:
        """None, or (PDVs, bytes) of P-DATA received after our A-RELEASE-RQ (released all the same)."""
    def abort(self) -> None: ...

def associate(
    host: str,
    port: int,
    calling_ae: str,
    called_ae: str,
    contexts: List[Tuple[str, List[str], Optional[Tuple[bool, bool]]]],
    *,
    max_pdu: int = 262144,
    implementation_class_uid: Optional[str] = None,
    implementation_version_name: Optional[str] = None,
    user_identity: Optional[Tuple[int, bool, bytes, bytes]] = None,
    extended_negotiation: Optional[List[Tuple[str, bytes]]] = None,
    common_extended: Optional[List[Tuple[str, str, List[str]]]] = None,
    async_window: Optional[Tuple[int, int]] = None,
    acse_timeout: Optional[float] = 30.0,
    dimse_timeout: Optional[float] = 60.0,
    connect_timeout: Optional[float] = 30.0,
) -> Association: ...
def peek_part10(path: Union[str, PathLike]) -> Tuple[str, str, str]: ...

class Server:
    def __init__(
        self,
        host: str,
        port: int,
        ae_title: str,
        contexts: List[Tuple[str, List[str], bool, bool]],
        *,
        handler: Optional[Callable[..., Any]] = None,
        events: Optional[Callable[[str, Dict[str, Any]], None]] = None,
        routed: Optional[List[int]] = None,
        store_handler: Optional[Callable[..., Any]] = None,
        store_prepare: Optional[Callable[..., Any]] = None,
        storage_dir: Optional[Union[str, PathLike]] = None,
        store_transfer_syntax: Optional[str] = None,
        fsync: bool = True,
        writeback: bool = False,
        part_pool: int = 8,
        journal: Optional[Journal] = None,
        extract: Optional[List[Tuple[int, str]]] = None,
        max_pdu: int = 262144,
        require_called_aet: bool = False,
        allowed_calling_aets: Optional[List[str]] = None,
        max_associations: int = 64,
        implementation_class_uid: Optional[str] = None,
        implementation_version_name: Optional[str] = None,
        extended_negotiation: Optional[Dict[str, bytes]] = None,
        artim_timeout: float = 30.0,
        acse_timeout: Optional[float] = 30.0,
        dimse_timeout: Optional[float] = None,
        max_data_set: int = ...,
        private_dictionary: Optional[PrivateDictionary] = None,
    ) -> None: ...
    @property
    def address(self) -> Tuple[str, int]: ...
    @property
    def active_associations(self) -> int: ...
    @property
    def total_connections(self) -> int: ...
    def start(self) -> None: ...
    def serve_forever(self) -> None: ...
    def shutdown(self) -> None: ...

class Journal:
    """``<archive>/.journal``, the write-ahead journal of durability full (rust/node/src/journal.rs):
    an instance up to ``max_record`` bytes streams into a slot and is acknowledged once its record is
    durable; files and rows become durable at checkpoints.
    Opening replays the records after the last checkpoint (their files are written again)."""

    def __init__(
        self, root: str, size_bytes: int = ..., record_bytes: int = ..., checkpoint_interval: float = 1.0
    ) -> None: ...
    @property
    def replayed(self) -> list[str]:
        """Archive-relative paths of the files written again at open."""
    @property
    def damaged(self) -> Optional[str]:
        """Why the journal found at open was set aside (kept as ``.journal.damaged-*``), or None."""
    @property
    def ready(self) -> bool: ...
    @property
    def max_record(self) -> int: ...
    @property
    def stats(self) -> dict[str, int]:
        """appended, full (appends refused: ring full), syncs, checkpoints."""
    def wait_ready(self, timeout: float) -> bool: ...
    def done(self, seqs: list[int]) -> None: ...
    def supersede(self, rel: str) -> None: ...
    def checkpoint(self) -> bool: ...
    def close(self) -> None: ...
