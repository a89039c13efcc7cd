"""Logging options shared by every command: ``-v/-q``, ``--log-level``, ``--log-file``, ``--log-format``.

They are accepted both before the command (``ferrodicom -v store ...``) and after it (``ferrodicom store -v
...``); ``-v`` and ``-q`` add up wherever they are. A command calls :func:`setup` with its default level
(``serve``: warning, the others: info) before doing anything. At the info level without ``-v`` the info
records are the command's own (``ferrodicom.cli.*``); the library's (each association, ...) come with ``-v``
or ``--log-level info``. Records go to stderr, or only to the ``--log-file`` (appended to) when one is given.
``--log-format json`` writes one JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, and the fields a record carries (``extra=``), e.g. ``file``, ``status``, ``sop_instance_uid``,
so that a log shipper can index them.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import click

LEVELS = ("debug", "info", "warning", "error", "critical")
_LEVELS = {name: getattr(logging, name.upper()) for name in LEVELS}
_KEY = "ferrodicom.logging"

#: LogRecord attributes that are not a record's own fields (everything else set with ``extra=`` is).
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "taskName"})


def _settings(ctx: click.Context) -> dict[str, Any]:
    return ctx.find_root().meta.setdefault(_KEY, {"verbose": 0, "quiet": 0})


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    settings = _settings(ctx)
    if param.name in ("verbose", "quiet"):
        settings[param.name] += value or 0
    elif value is not None:
        settings[param.name] = value
    return value


def logging_options(f: Callable) -> Callable:
    """Adds the logging options to a click command or group (their values are read by :func:`setup`)."""
    options = [
        click.option("-v", "--verbose", count=True, expose_value=False, callback=_remember,
                     help="More log output (repeat for more: -vv is debug)."),
        click.option("-q", "--quiet", count=True, expose_value=False, callback=_remember,
                     help="Less log output (-q: warnings and errors only, -qq: errors only)."),
        click.option("--log-level", type=click.Choice(LEVELS, case_sensitive=False), default=None,
                     expose_value=False, callback=_remember, help="Log level (overrides -v/-q)."),
        click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     expose_value=False, callback=_remember, help="Append the log to this file instead of stderr."),
        click.option("--log-format", type=click.Choice(["text", "json"]), default=None, expose_value=False,
                     callback=_remember, help="text (default) or json: one object per line."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's own fields, and exc if any."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, tz=datetime.timezone.utc)
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """Plain lines on a console: the message alone for info and debug, ``warning: ...``/``error: ...`` above;
    with ``timestamps`` (a long-running server) each line starts with the local time."""

    def __init__(self, timestamps: bool = False) -> None:
        super().__init__("%(message)s")
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        return f"{self.formatTime(record)} {text}" if self.timestamps else text


#: Handlers installed by :func:`setup` (removed again by the next call, so tests can run commands in-process).
_installed: list[logging.Handler] = []


def setup(default: str = "info", timestamps: bool = False) -> int:
    """Configures the root logger from the options given to the group and the command; returns the level.

    ``default`` is the command's level without -v/-q; each -v is one level more verbose, each -q one less.
    Raises click.BadParameter when the log file cannot be opened (before the command creates anything)."""
    ctx = click.get_current_context(silent=True)
    settings: dict[str, Any] = _settings(ctx) if ctx is not None else {"verbose": 0, "quiet": 0}
    own = logging.getLogger("ferrodicom.cli")
    own.setLevel(logging.NOTSET)
    steps = settings["verbose"] - settings["quiet"]
    level: int
    root_level: int
    if settings.get("log_level"):
        level = root_level = _LEVELS[settings["log_level"].lower()]
    elif default.lower() == "info" and steps >= 0:
        # info is the command's own lines (ferrodicom.cli.*); -v adds the library's (each association, ...)
        level = root_level = logging.INFO if steps <= 1 else logging.DEBUG
        if steps == 0:
            own.setLevel(logging.INFO)
            root_level = logging.WARNING
    else:
        level = _LEVELS[default.lower()] - 10 * steps
        level = root_level = min(max(level, logging.DEBUG), logging.CRITICAL)
    root = logging.getLogger()
    for h in _installed:
        root.removeHandler(h)
        h.close()
    _installed.clear()
    path: Optional[Path] = settings.get("log_file")
    if path is not None:
        try:
            handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(
                f"cannot open {path} ({exc.strerror or exc}); choose a writable file", param_hint="'--log-file'"
            ) from exc
        text: logging.Formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name("console")
        text = ConsoleFormatter(timestamps)
    handler.setFormatter(JsonFormatter() if settings.get("log_format") == "json" else text)
    root.addHandler(handler)
    root.setLevel(root_level)
    _installed.append(handler)
    return level


def console_handler() -> Optional[logging.StreamHandler]:
    """The stderr handler :func:`setup` installed, or None when the log goes to a file."""
    return next((h for h in _installed if h.get_name() == "console" and isinstance(h, logging.StreamHandler)), None)


def file_handlers() -> list[logging.Handler]:
    """The ``--log-file`` handlers :func:`setup` installed."""
    return [h for h in _installed if h.get_name() != "console"]
