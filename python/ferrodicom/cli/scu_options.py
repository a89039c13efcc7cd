"""The options every SCU command takes alike (``store``, ``echo``, ``commit``, ``print``, ``find``, ``move``,
``get``): our and the peer's AE titles (PS3.8 §7.1.1.3), the timeout and the largest PDU we receive
(PS3.8 D.1). One definition each, so the commands cannot drift apart."""

from __future__ import annotations

from typing import Any, Callable

import click

from ferrodicom.cli.errors import AE_TITLE

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def calling_ae_option(help: str = "Our (calling) AE title.") -> Decorator:
    """``--aet``: our AE title (default FERRODICOM)."""
    return click.option("--aet", default="FERRODICOM", show_default=True, type=AE_TITLE, help=help)


def called_ae_option(peer: str = "peer") -> Decorator:
    """``--aec``: the AE title the request is addressed to (default ANY-SCP)."""
    return click.option(
        "--aec", default="ANY-SCP", show_default=True, type=AE_TITLE, help=f"The {peer}'s (called) AE title."
    )


def timeout_option(default: float = 60.0) -> Decorator:
    """``--timeout``: seconds for connecting, for the association's set-up and release, and for each response."""
    return click.option(
        "--timeout",
        default=default,
        show_default=True,
        type=click.FloatRange(min=0, min_open=True),
        help="Connect/ACSE/DIMSE timeout, seconds.",
    )


def max_pdu_option() -> Decorator:
    """``--max-pdu``: the Maximum Length we announce (None: the library's default)."""
    return click.option(
        "--max-pdu", default=None, type=click.IntRange(0, 2**32 - 1), help="Max PDU we receive (0: unlimited)."
    )
