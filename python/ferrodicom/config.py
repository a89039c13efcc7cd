"""The node's configuration file (TOML, read with tomllib or tomli): a ``[node]`` table, the Storage Commitment
SCP's ``[commitment]`` table and the address book of ``[[peers]]``, as ``ferrodicom serve --config node.toml``
reads it::

    [node]
    ae_title = "FERRO"          # 1-16 characters (PS3.5 6.2)
    port = 11112
    bind = "0.0.0.0"
    archive = "/var/lib/ferrodicom"
    durability = "full"         # or "none"
    duplicates = "keep-first"   # or "replace", "reject"
    storage_syntax = "ele"      # optional: ile, ele, ebe, deflated or a UID
    max_associations = 64
    max_pdu = 262144            # 0: unlimited
    network_timeout = 60.0      # seconds; 0: never
    require_called_aet = false
    metrics_port = 9100         # Prometheus text format on /metrics; 0 (default): off
    stats_interval = 60.0       # a rate line in the log (info) every this many seconds; 0: off

    [commitment]                # Storage Commitment SCP (PS3.4 Annex J)
    delivery = "same"           # report on the requesting association while open, else a new one; "new": always new
    wait = 60.0                 # seconds to wait for instances not yet received; 0: report at once
    retries = 10                # new-association attempts after the first one fails (0: give up at once)
    retry_interval = 60.0       # seconds between them

    [qr]                        # Query/Retrieve SCP
    max_results = 0             # matches one C-FIND returns at most (then A700); 0: no limit
    pn_matching = "insensitive" # PN matching ignores case and accents; "exact": case-sensitive
    relational = true           # relational queries/retrieves for requestors that negotiate them
    no_match_status = 0         # final status of a C-MOVE/C-GET matching nothing (0xA701: eNTEGRA's)

    [index]                     # extra keys the index holds, by level (patient, study, series, instance)
    series = ["PerformedProcedureStepDescription"]

    [[peers]]                   # C-MOVE destinations, peers to report to
    ae_title = "PACS"
    host = "10.0.0.5"
    port = 104
    commit_delivery = "new"     # optional: this peer's Storage Commitment reports (default: [commitment] delivery)

A key that is unknown, of the wrong type or out of range is a :class:`ConfigError` naming the file, the line and
the key; nothing is started from a file that has one.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9/3.10
    import tomli as tomllib

from ferrodicom._core import DicomError
from ferrodicom.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE, UNCOMPRESSED

#: Short names of the uncompressed transfer syntaxes a node may store in.
SYNTAXES = {"ile": IMPLICIT_VR_LE, "ele": EXPLICIT_VR_LE, "ebe": EXPLICIT_VR_BE, "deflated": DEFLATED_EXPLICIT_VR_LE}
DURABILITIES = ("full", "none")
DUPLICATES = ("keep-first", "replace", "reject")
#: Where a Storage Commitment report goes (see ferrodicom.services.commitment.scp).
COMMIT_DELIVERIES = ("same", "new")
#: ``[commitment]`` keys -> NodeConfig fields.
COMMITMENT_KEYS = {"delivery": "commit_delivery", "wait": "commit_wait", "retries": "commit_retries",
                   "retry_interval": "commit_retry_interval"}  # fmt: skip


class ConfigError(DicomError):
    """An invalid configuration: ``path``, ``line`` (1-based, None when unknown) and ``key`` say where."""

    def __init__(self, message: str, path: Optional[Path] = None, line: Optional[int] = None, key: str = "") -> None:
        where = str(path) if path else "configuration"
        if line is not None:
            where += f" line {line}"
        super().__init__(f"{where}: {key + ': ' if key else ''}{message}")
        self.path, self.line, self.key = path, line, key


@dataclass(frozen=True)
class PeerConfig:
    """An entry of the address book; ``commit_delivery`` overrides ``[commitment] delivery`` for its requests."""

    ae_title: str
    host: str
    port: int
    commit_delivery: Optional[str] = None


@dataclass
class NodeConfig:
    """The ``[node]`` table, with the defaults of ``ferrodicom serve``."""

    ae_title: str = "FERRODICOM"
    port: int = 11112
    bind: str = "0.0.0.0"
    archive: Optional[Path] = None
    durability: str = "full"
    duplicates: str = "keep-first"
    storage_syntax: Optional[str] = None
    max_associations: int = 64
    max_pdu: int = 262_144
    network_timeout: float = 60.0
    require_called_aet: bool = False
    #: Prometheus text format on this port (0: off), and a rate line in the log every this many seconds (0: off).
    metrics_port: int = 0
    stats_interval: float = 60.0
    #: The Storage Commitment SCP: the ``[commitment]`` table.
    commit_delivery: str = "same"
    commit_wait: float = 60.0
    commit_retries: int = 10
    commit_retry_interval: float = 60.0
    peers: list[PeerConfig] = field(default_factory=list)
    #: [qr]: the Query/Retrieve SCP's settings (see ferrodicom.services.qr.QRSettings).
    max_results: int = 0
    pn_matching: str = "insensitive"
    relational: bool = True
    no_match_status: int = 0
    #: [index]: extra index keys by level.
    index_keys: dict[str, list[str]] = field(default_factory=dict)


def ae_title_problem(title: str) -> Optional[str]:
    """Why ``title`` is not an AE title (PS3.5 6.2: 1-16 characters, printable ASCII, no backslash), or None."""
    if not title.strip(" "):
        return "an AE title cannot be empty"
    if len(title) > 16:
        return f"{title!r} has {len(title)} characters; an AE title has at most 16 (PS3.5 6.2)"
    if any(ord(c) < 0x20 or ord(c) > 0x7E or c == "\\" for c in title):
        return f"{title!r}: an AE title is printable ASCII without backslash (PS3.5 6.2)"
    return None


def storage_syntax(value: str) -> str:
    """A short name (ile, ele, ebe, deflated) or the UID of an uncompressed transfer syntax, as its UID."""
    uid = SYNTAXES.get(value.lower(), value)
    if uid not in UNCOMPRESSED:
        names = ", ".join(f"{k} ({v})" for k, v in SYNTAXES.items())
        raise ValueError(f"{value!r} is not an uncompressed transfer syntax; use one of {names}")
    return uid


def _check_peer_value(key: str, value: Any) -> None:
    """An entry of a [[peers]] table: ValueError saying what is wrong."""
    if key == "port":
        _check_type(value, int, "an integer")
        _raise_if(_port_problem(value))
        return
    _check_type(value, str, "a string")
    _raise_if(ae_title_problem(value) if key == "ae_title" else (None if value.strip() else "empty host"))


def _raise_if(problem: Optional[str]) -> None:
    if problem:
        raise ValueError(problem)


def _port_problem(port: int) -> Optional[str]:
    return None if 1 <= port <= 65535 else f"port {port} is not between 1 and 65535"


def parse_peer(text: str) -> PeerConfig:
    """``AET=HOST:PORT`` (``--peer``) as a peer; ValueError naming what is wrong."""
    m = re.fullmatch(r"([^=]+)=(.+):(\d{1,5})", text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not AET=HOST:PORT")
    title, host, port = m[1].strip(), m[2].strip("[]"), int(m[3])
    _raise_if(ae_title_problem(title))
    _raise_if(_port_problem(port))
    return PeerConfig(title, host, port)


class _Lines:
    """Finds the line of a key in the file's text, for error messages (tomllib gives no positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def of(self, table: str, key: Optional[str], index: int = 0) -> Optional[int]:
        """The line of ``key`` in the ``index``-th ``[table]`` (or ``[[table]]``); the table's header if no key."""
        seen = -1
        inside = False
        for n, raw in enumerate(self.lines, start=1):
            line = raw.split("#", 1)[0].strip()
            header = re.fullmatch(r"\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?", line)
            if header:
                inside = header[1] == table
                if inside:
                    seen += 1
                    if key is None and seen == index:
                        return n
                continue
            if inside and seen == index and key and re.match(rf"{re.escape(key)}\s*=", line):
                return n
        return None


def _check_type(value: Any, kind: type, what: str) -> None:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise ValueError(f"{value!r} is not {what}")


def _node(table: dict[str, Any], base: Path, lines: _Lines, path: Path) -> NodeConfig:
    cfg = NodeConfig()
    known = (
        {f.name for f in fields(NodeConfig)} - {"peers", "index_keys"} - set(COMMITMENT_KEYS.values()) - set(QR_KEYS)
    )
    for key, value in table.items():
        line = lines.of("node", key)
        try:
            if key not in known:
                raise ValueError(f"unknown key (known: {', '.join(sorted(known))})")
            if key == "ae_title":
                _check_type(value, str, "a string")
                problem = ae_title_problem(value)
                if problem:
                    raise ValueError(problem)
            elif key in ("port", "max_associations", "max_pdu", "metrics_port"):
                _check_type(value, int, "an integer")
                lo, hi = {"port": (0, 65535), "max_associations": (1, 10_000), "max_pdu": (0, 2**32 - 1),
                          "metrics_port": (0, 65535)}[key]  # fmt: skip
                if not lo <= value <= hi:
                    raise ValueError(f"{value} is not between {lo} and {hi}")
            elif key in ("network_timeout", "stats_interval"):
                _check_type(value, float, "a number of seconds")
                if value < 0:
                    raise ValueError(f"{value} is negative")
                value = float(value)
            elif key == "require_called_aet":
                _check_type(value, bool, "true or false")
            elif key == "durability":
                if value not in DURABILITIES:
                    raise ValueError(f"{value!r} is not one of {', '.join(DURABILITIES)}")
            elif key == "duplicates":
                if value not in DUPLICATES:
                    raise ValueError(f"{value!r} is not one of {', '.join(DUPLICATES)}")
            elif key == "storage_syntax":
                _check_type(value, str, "a string")
                value = storage_syntax(value)
            elif key in ("bind", "archive"):
                _check_type(value, str, "a string")
                if key == "archive":
                    value = (base / value).resolve() if not Path(value).is_absolute() else Path(value)
        except ValueError as exc:
            raise ConfigError(str(exc), path, line, f"[node] {key}") from None
        setattr(cfg, key, value)
    return cfg


def _commitment(table: Any, cfg: NodeConfig, lines: _Lines, path: Path) -> None:
    if not isinstance(table, dict):
        raise ConfigError("commitment is a table: write [commitment]", path, lines.of("commitment", None), "commitment")
    for key, value in table.items():
        line = lines.of("commitment", key)
        try:
            if key not in COMMITMENT_KEYS:
                raise ValueError(f"unknown key (known: {', '.join(COMMITMENT_KEYS)})")
            if key == "delivery":
                if value not in COMMIT_DELIVERIES:
                    raise ValueError(f"{value!r} is not one of {', '.join(COMMIT_DELIVERIES)}")
            elif key == "retries":
                _check_type(value, int, "an integer")
                if not 0 <= value <= 10_000:
                    raise ValueError(f"{value} is not between 0 and 10000")
            else:
                _check_type(value, float, "a number of seconds")
                if value < 0:
                    raise ValueError(f"{value} is negative")
                value = float(value)
        except ValueError as exc:
            raise ConfigError(str(exc), path, line, f"[commitment] {key}") from None
        setattr(cfg, COMMITMENT_KEYS[key], value)


#: The keys of [qr] (NodeConfig fields).
QR_KEYS = ("max_results", "pn_matching", "relational", "no_match_status")
PN_MATCHING = ("insensitive", "exact")
INDEX_LEVELS = ("patient", "study", "series", "instance")


def _qr(table: Any, cfg: NodeConfig, lines: _Lines, path: Path) -> None:
    if not isinstance(table, dict):
        raise ConfigError("qr is a table: write [qr]", path, None, "qr")
    for key, value in table.items():
        line = lines.of("qr", key)
        try:
            if key not in QR_KEYS:
                raise ValueError(f"unknown key (known: {', '.join(QR_KEYS)})")
            if key in ("max_results", "no_match_status"):
                _check_type(value, int, "an integer")
                if key == "max_results" and value < 0:
                    raise ValueError(f"{value} is negative")
                if key == "no_match_status" and not (value == 0 or 0xA000 <= value <= 0xCFFF):
                    raise ValueError(f"{value:#06x} is neither 0 nor a failure status (0xA000-0xCFFF)")
            elif key == "pn_matching":
                if value not in PN_MATCHING:
                    raise ValueError(f"{value!r} is not one of {', '.join(PN_MATCHING)}")
            else:
                _check_type(value, bool, "true or false")
        except ValueError as exc:
            raise ConfigError(str(exc), path, line, f"[qr] {key}") from None
        setattr(cfg, key, value)


def _index(table: Any, cfg: NodeConfig, lines: _Lines, path: Path) -> None:
    if not isinstance(table, dict):
        raise ConfigError("index is a table: write [index]", path, None, "index")
    from pydicom.datadict import tag_for_keyword

    for key, value in table.items():
        line = lines.of("index", key)
        try:
            if key not in INDEX_LEVELS:
                raise ValueError(f"unknown level (known: {', '.join(INDEX_LEVELS)})")
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("a list of DICOM keywords")
            for kw in value:
                if tag_for_keyword(kw) is None:
                    raise ValueError(f"{kw!r} is not a DICOM keyword")
        except ValueError as exc:
            raise ConfigError(str(exc), path, line, f"[index] {key}") from None
        cfg.index_keys[key] = list(value)


def _peers(items: Any, lines: _Lines, path: Path) -> list[PeerConfig]:
    if not isinstance(items, list):
        raise ConfigError("peers is an array of tables: write [[peers]]", path, lines.of("peers", None), "peers")
    peers: list[PeerConfig] = []
    for i, item in enumerate(items):
        where = f"[[peers]] #{i + 1}"
        if not isinstance(item, dict):
            raise ConfigError("each peer is a table", path, lines.of("peers", None, i), where)
        unknown = set(item) - {"ae_title", "host", "port", "commit_delivery"}
        if unknown:
            key = sorted(unknown)[0]
            raise ConfigError("unknown key (known: ae_title, host, port, commit_delivery)", path,
                              lines.of("peers", key, i), f"{where} {key}")  # fmt: skip
        for key in ("ae_title", "host", "port"):
            if key not in item:
                raise ConfigError(f"missing {key}", path, lines.of("peers", None, i), where)
        for key in ("ae_title", "host", "port"):
            try:
                _check_peer_value(key, item[key])
            except ValueError as exc:
                raise ConfigError(str(exc), path, lines.of("peers", key, i), f"{where} {key}") from None
        delivery = item.get("commit_delivery")
        if delivery is not None and delivery not in COMMIT_DELIVERIES:
            raise ConfigError(f"{delivery!r} is not one of {', '.join(COMMIT_DELIVERIES)}", path,
                              lines.of("peers", "commit_delivery", i), f"{where} commit_delivery")  # fmt: skip
        peer = PeerConfig(item["ae_title"].strip(), item["host"], item["port"], delivery)
        if any(p.ae_title == peer.ae_title for p in peers):
            raise ConfigError(f"{peer.ae_title!r} is listed twice", path, lines.of("peers", "ae_title", i), where)
        peers.append(peer)
    return peers


def load(path: Union[str, Path]) -> NodeConfig:
    """Reads and checks a node configuration file; a relative ``archive`` is relative to the file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read it: {exc}", path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(f"not valid TOML: {exc}", path, int(m[1]) if m else None) from None
    lines = _Lines(text)
    unknown = set(data) - {"node", "commitment", "peers", "qr", "index"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError("unknown table or key (known: [node], [commitment], [qr], [index], [[peers]])", path,
                          lines.of(key, None), key)  # fmt: skip
    node = data.get("node", {})
    if not isinstance(node, dict):
        raise ConfigError("node is a table: write [node]", path, None, "node")
    cfg = _node(node, path.parent, lines, path)
    _commitment(data.get("commitment", {}), cfg, lines, path)
    cfg.peers = _peers(data.get("peers", []), lines, path)
    _qr(data.get("qr", {}), cfg, lines, path)
    _index(data.get("index", {}), cfg, lines, path)
    return cfg
