"""Per-system network identity from the conformance statements, as data (``profiles/data/systems.json``).

Implementation Class UID / Version Name (PS3.7 D.3.3.2), private SOP classes, private status codes
(PS3.7 C: A7xx are "Refused: Out of resources" codes the systems give their own meanings) and AE defaults.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Optional

__all__ = ["status_meaning", "system", "systems"]


@cache
def systems() -> dict[str, dict[str, Any]]:
    """Product name -> its record (each value carries the seed line it came from in ``src``)."""
    text = resources.files(__package__).joinpath("data", "systems.json").read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def system(product: str) -> dict[str, Any]:
    """The record of one product ("entegra", "gemini-tf", "xeleris", "pacs-iw", "datquant")."""
    try:
        return systems()[product]
    except KeyError:
        raise KeyError(f"unknown product {product!r}; known: {', '.join(systems())}") from None


def status_meaning(product: str, status: int) -> Optional[str]:
    """The product's own meaning of a private status code (e.g. 0xA710), or None if it defines none."""
    code = f"{status:04X}"
    for row in system(product)["private_status_codes"]:
        if row["code"] == code:
            return str(row["meaning"])
    return None
