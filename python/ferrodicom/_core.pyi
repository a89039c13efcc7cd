"""Type stubs for the Rust extension module ``ferrodicom._core`` (checked against the built module by
``python -m mypy.stubtest ferrodicom._core`` in the test command)."""

from os import PathLike
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union, final

__version__: str
__all__ = [
    "__version__",
    "DicomError",
    "PduError",
    "AssociationError",
    "AssociationRejected",
    "AssociationAborted",
    "DimseError",
    "CodecError",
    "NmError",
    "DicomTimeout",
    "DimseTimeout",
    "Pdu",
    "decode_pdu",
    "Command",
    "PresentationContext",
    "AssociationInfo",
    "AssociationRequest",
    "Received",
    "peek_part10",
    "Association",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "associate",
    "Services",
    "Request",
    "StorageConfig",
    "StoreRequest",
    "ServerConfig",
    "Server",
    "PrivateDictionary",
    "StreamConverter",
    "set_default_private_dictionary",
    "get_default_private_dictionary",
    "transcode",
    "transcode_dataset",
    "transcode_file",
    "extract",
    "file_meta",
    "dictionary_vr",
    "encode_dataset",
    "NmPlan",
    "Journal",
    "Placer",
    "UidFilter",
]

class DicomError(Exception): ...
class PduError(DicomError): ...
class AssociationError(DicomError): ...

class AssociationRejected(AssociationError):
    """A-ASSOCIATE-RJ (PS3.8 §9.3.4): ``result`` 1 permanent / 2 transient, ``source`` 1 service user / 2 ACSE /
    3 presentation, ``reason`` (Table 9-21)."""

    result: int
    source: int
    reason: int

class AssociationAborted(AssociationError):
    """A-ABORT (PS3.8 §9.3.8): ``source`` 0 service user / 2 service provider, ``reason``; both None when the
    connection just closed."""

    source: Optional[int]
    reason: Optional[int]

class DimseError(DicomError): ...
class CodecError(DicomError): ...
class NmError(DicomError): ...
class DicomTimeout(DicomError): ...
class DimseTimeout(DicomTimeout): ...

# --- nm (rust/py/src/nm.rs): NM frame <-> grid plans (PS3.3 C.8.4.8) ---

@final
class NmPlan:
    def __new__(
        cls,
        names: list[str],
        vectors: list[list[int]],
        extents: list[int],
        n_frames: int,
        subset: list[int] | None = None,
    ) -> NmPlan: ...
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

@final
class PrivateDictionary:
    def __init__(self) -> None: ...
    def add(self, creator: str, group: int, element: int, vr: str) -> None: ...
    def get(self, creator: str, group: int, element: int) -> Optional[str]: ...
    def __len__(self) -> int: ...

@final
class StreamConverter:
    def __new__(
        cls,
        source_syntax: str,
        transfer_syntax: str,
        *,
        tags: Optional[List[int]] = None,
        private_dictionary: Optional[PrivateDictionary] = None,
    ) -> StreamConverter: ...
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

@final
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

# --- command.rs, types.rs: DIMSE command sets, negotiation results (PS3.7, PS3.8) -------------------------

IMPLEMENTATION_CLASS_UID: str
IMPLEMENTATION_VERSION_NAME: str

@final
class Command:
    """A DIMSE command set (group 0000): US -> int, UI/AE/LO -> str, AT -> list[int], else bytes. Elements are
    also attributes by keyword (``command.MessageID``), None when absent."""

    def __new__(cls, fields: Dict[int, Any]) -> Command: ...
    @staticmethod
    def decode(data: bytes) -> Command: ...
    def encode(self) -> bytes: ...
    def get(self, element: int, default: Any = None) -> Any: ...
    def __contains__(self, key: int, /) -> bool: ...
    def __getattr__(self, name: str) -> Any: ...
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

@final
class PresentationContext:
    """A negotiated presentation context from our side (PS3.8 §9.3.2.2): result 0 is acceptance."""

    @property
    def context_id(self) -> int: ...
    @property
    def abstract_syntax(self) -> str: ...
    @property
    def transfer_syntax(self) -> str: ...
    @property
    def result(self) -> int: ...
    @property
    def as_scu(self) -> bool: ...
    @property
    def as_scp(self) -> bool: ...

@final
class AssociationInfo:
    """What both sides of an association agreed."""

    @property
    def calling_ae(self) -> str: ...
    @property
    def called_ae(self) -> str: ...
    @property
    def peer_address(self) -> Optional[Tuple[str, int]]: ...
    @property
    def is_requestor(self) -> bool: ...
    @property
    def contexts(self) -> List[PresentationContext]: ...
    @property
    def peer_max_pdu(self) -> int: ...
    @property
    def local_max_pdu(self) -> int: ...
    @property
    def peer_implementation_class_uid(self) -> str: ...
    @property
    def peer_implementation_version_name(self) -> Optional[str]: ...
    @property
    def user_identity(self) -> Optional[Tuple[int, bytes, bytes]]: ...
    @property
    def extended_negotiation(self) -> List[Tuple[str, bytes]]: ...
    @property
    def common_extended(self) -> List[Tuple[str, str, List[str]]]: ...

@final
class AssociationRequest:
    """An A-ASSOCIATE-RQ, as the negotiation hook sees it."""

    @property
    def calling_ae(self) -> str: ...
    @property
    def called_ae(self) -> str: ...
    @property
    def peer_address(self) -> Optional[Tuple[str, int]]: ...
    @property
    def abstract_syntaxes(self) -> List[str]: ...
    @property
    def user_identity(self) -> Optional[Tuple[int, bool, bytes, bytes]]:
        """(type, positive response requested, primary field, secondary field), PS3.7 D.3.3.7.1."""
    @property
    def extended_negotiation(self) -> List[Tuple[str, bytes]]: ...

@final
class Received:
    """What the C-STORE data path did with one data set."""

    @property
    def path(self) -> Optional[str]: ...
    @property
    def placed(self) -> Optional[str]: ...
    @property
    def size(self) -> int: ...
    @property
    def transfer_syntax(self) -> str: ...
    @property
    def keys(self) -> Dict[str, str]: ...
    @property
    def failure(self) -> Optional[Tuple[int, str]]: ...
    @property
    def discarded(self) -> bool: ...
    @property
    def journal_seq(self) -> Optional[int]: ...

# --- association.rs, associate.rs: a handle on an association (SCU calls; a server's event.assoc) ---------

_Fields = Dict[int, Any]
_Response = Tuple[Command, Optional[bytes]]

@final
class Association:
    @property
    def id(self) -> int: ...
    @property
    def info(self) -> AssociationInfo: ...
    @property
    def is_established(self) -> bool: ...
    @property
    def outcome(self) -> Optional[str]:
        """ "released" or "aborted" once over."""
    def send(self, context_id: int, fields: _Fields, data: Optional[bytes] = None) -> int: ...
    def next_response(self, message_id: int, timeout: Optional[float] = None) -> _Response: ...
    def request(
        self, context_id: int, fields: _Fields, data: Optional[bytes] = None, timeout: Optional[float] = None
    ) -> _Response: ...
    def send_cancel(self, context_id: int, message_id: int) -> None: ...
    def send_c_echo(self) -> int: ...
    def send_c_store_file(
        self,
        path: Union[str, PathLike[str]],
        *,
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
        priority: int = 0,
        move_originator: Optional[Tuple[str, int]] = None,
        private_dictionary: Optional[PrivateDictionary] = None,
    ) -> Tuple[int, Command, int, str]: ...
    def serve_in_background(self) -> None: ...
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
    services: Optional[Services] = None,
    max_pdu: int = 262144,
    implementation_class_uid: Optional[str] = None,
    implementation_version_name: Optional[str] = None,
    user_identity: Optional[Tuple[int, bool, bytes, bytes]] = None,
    extended_negotiation: Optional[List[Tuple[str, bytes]]] = None,
    common_extended: Optional[List[Tuple[str, str, List[str]]]] = None,
    async_window: Optional[Tuple[int, int]] = None,
    acse_timeout: Optional[float] = ...,
    dimse_timeout: Optional[float] = ...,
    connect_timeout: Optional[float] = ...,
    max_data_set: int = ...,
) -> Association: ...
def peek_part10(path: Union[str, PathLike[str]]) -> Tuple[str, str, str]: ...
def encode_dataset(ds: Any, implicit: bool) -> Optional[bytes]:
    """A pydicom Dataset in Implicit/Explicit VR Little Endian, or None when pydicom must encode it."""

# --- service.rs: services (Python handlers, the storage data path) --------------------------------------

@final
class Request:
    """One request of the peer, live while its handler runs: answer it with ``respond`` (pending statuses any
    number of times, then a final one)."""

    @property
    def command(self) -> Command: ...
    @property
    def context(self) -> PresentationContext: ...
    @property
    def data(self) -> Optional[bytes]: ...
    @property
    def message_id(self) -> int: ...
    @property
    def association(self) -> Association: ...
    @property
    def answered(self) -> bool: ...
    @property
    def is_cancelled(self) -> bool: ...
    def respond(self, status: int, fields: Optional[_Fields] = None, data: Optional[bytes] = None) -> bool:
        """After a pending response: whether the peer has cancelled the request."""

@final
class StoreRequest:
    """The C-STORE being received, as the storage handler sees it."""

    association: Association
    context: PresentationContext
    command: Command

@final
class StorageConfig:
    def __new__(
        cls,
        incoming_dir: Union[str, PathLike[str]],
        *,
        extract: Optional[List[Tuple[int, str]]] = None,
        store_transfer_syntax: Optional[str] = None,
        fsync: bool = True,
        writeback: bool = False,
        part_pool: int = 8,
        journal: Optional[Journal] = None,
        private_dictionary: Optional[PrivateDictionary] = None,
        implementation_class_uid: Optional[str] = None,
        implementation_version_name: Optional[str] = None,
        placer: Optional[Placer] = None,
    ) -> StorageConfig: ...
    def flush(self) -> None:
        """Waits until ``stored`` has run for every instance answered early so far."""
    def close(self) -> None: ...

@final
class UidFilter:
    """A Bloom filter of SOP Instance UIDs: ``uid in f`` is False only for a UID never added, once ``ready`` and
    unless disabled (see ferrodicom.archive.index.uid_filter)."""

    ready: bool
    def __new__(cls, expected: int) -> UidFilter: ...
    def add(self, uid: str) -> None: ...
    def add_many(self, uids: Iterable[str]) -> None: ...
    def __contains__(self, uid: str, /) -> bool: ...
    @property
    def enabled(self) -> bool: ...
    def disable(self) -> None: ...
    @property
    def nbytes(self) -> int: ...

@final
class Placer:
    """An archive's reserved SOP Instance UIDs and series directories made, and the storage data path's own
    placement of a new instance in a known series (rust/node/src/placement.rs)."""

    def __new__(cls, root: str) -> Placer: ...
    def attach(self, filter: UidFilter, early: bool) -> None: ...
    def close(self) -> None: ...
    def try_place(self, sop_class_uid: str, sop_instance_uid: str, keys: Dict[str, str]) -> Optional[str]: ...
    def reserve(self, uid: str) -> None: ...
    def release(self, uid: str) -> None: ...
    def release_all(self, uids: List[str]) -> None: ...
    def __contains__(self, uid: str, /) -> bool: ...
    def __len__(self) -> int: ...
    def has_dir(self, dir: str) -> bool: ...
    def add_dir(self, dir: str) -> None: ...
    def forget_dir(self, dir: str) -> None: ...
    def forget_dirs(self) -> None: ...

@final
class Services:
    def __new__(cls) -> Services: ...
    def add_handler(
        self,
        fields: List[int],
        handler: Callable[[Request], Any],
        abstract_syntaxes: Optional[List[str]] = None,
        max_data_set: int = ...,
    ) -> None: ...
    def add_storage(self, config: StorageConfig, handler: Any) -> None:
        """``handler``: ``prepare(request, keys)``, ``stored(request, received, state)``, ``abandoned(request,
        state)``. After an early reply from ``prepare``, ``stored`` runs later on a thread of the config's own
        (``config.flush()`` waits for it). An instance the config's ``placer`` places skips ``prepare``:
        ``placed(request, received)`` then takes the place of ``stored``."""
    def set_notices(self, notices: Callable[[Association, str, str], Any]) -> None: ...

# --- server.rs: the SCP ------------------------------------------------------------------------------------

@final
class ServerConfig:
    def __new__(
        cls,
        host: str,
        port: int,
        ae_title: str,
        contexts: List[Tuple[str, List[str], bool, bool]],
        *,
        max_pdu: int = 262144,
        require_called_aet: bool = False,
        allowed_calling_aets: Optional[List[str]] = None,
        max_associations: int = 64,
        implementation_class_uid: Optional[str] = None,
        implementation_version_name: Optional[str] = None,
        extended_negotiation: Optional[Dict[str, bytes]] = None,
        artim_timeout: float = 30.0,
        acse_timeout: Optional[float] = ...,
        network_timeout: Optional[float] = None,
        dimse_timeout: Optional[float] = ...,
        max_data_set: int = ...,
    ) -> ServerConfig: ...
    @property
    def ae_title(self) -> str: ...
    @property
    def max_associations(self) -> int: ...

@final
class Server:
    """``hooks``: an object whose optional methods are called once per association: ``negotiate(request)`` ->
    None | (reject (result, source, reason) | None, identity response | None, {uid: reply} | None),
    ``established(association)``, ``rejected(request, result, source, reason, why)``, ``refused(peer_address,
    kind, message)``, ``closed(association, outcome)``."""

    def __new__(cls, config: ServerConfig, services: Services, hooks: Any = None) -> Server: ...
    @property
    def address(self) -> Tuple[str, int]: ...
    @property
    def active_associations(self) -> int: ...
    @property
    def total_connections(self) -> int: ...
    def metrics(self) -> Dict[str, Any]: ...
    def start(self) -> None: ...
    def serve_forever(self) -> None: ...
    def shutdown(self) -> None: ...

# --- journal.rs ------------------------------------------------------------------------------------------

@final
class Journal:
    """``<archive>/.journal``, the write-ahead journal of durability full (rust/node/src/journal.rs):
    an instance up to ``max_record`` bytes streams into a slot and is acknowledged once its record is
    durable; files and rows become durable at checkpoints.
    Opening replays the records after the last checkpoint (their files are written again)."""

    def __new__(
        cls, root: str, size_bytes: int = ..., record_bytes: int = ..., checkpoint_interval: float = 1.0
    ) -> Journal: ...
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
    def writes_direct(self) -> bool:
        """Records written with direct I/O through io_uring (else through the page cache: a filesystem
        without direct I/O, or a kernel without io_uring)."""
    @property
    def stats(self) -> dict[str, int]:
        """appended, full (appends refused: ring full), syncs, checkpoints."""
    def wait_ready(self, timeout: float) -> bool: ...
    def done(self, seqs: list[int]) -> None: ...
    def supersede(self, rel: str) -> None: ...
    def checkpoint(self) -> bool: ...
    def close(self) -> None: ...
