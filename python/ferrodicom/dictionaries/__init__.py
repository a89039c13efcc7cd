"""Private data dictionaries of the five conformance statements, keyed by private creator.

Private elements (PS3.5 7.8.1) are identified by (creator, group, element offset): the block ``xx`` in
``(gggg,xxee)`` is whatever the writer reserved at ``(gggg,00xx)``, so nothing here fixes it.  The data come
from the seeds (``data/seed-00N.json``, one per document, each element with its seed line; produced by
``scripts/extract_private_dicts.py``) and are merged in ``data/merged.json``.

Where products print a different VR/VM for the same creator and tag (eNTEGRA 1.0 vs Xeleris, e.g. Gantry Locus
Type SL vs UL) every product's variant is kept; the *default* is the variant printed by the most seeds, ties
going to the newer product (xeleris, datquant, entegra, gemini-tf, pacs-iw).  :func:`use_product` switches
pydicom's dictionary to one product's variants; :func:`product_for_dataset` picks the product from an incoming
object's Manufacturer / Implementation Class UID / Software Versions where that is unambiguous.

``import ferrodicom`` calls :func:`register` (the default variants) once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache, lru_cache
from importlib import resources
from typing import Any, NamedTuple, Optional

__all__ = [
    "PRODUCTS",
    "PrivateEntry",
    "codec_entries",
    "creators",
    "entries",
    "lookup",
    "product_for_dataset",
    "register",
    "registered_product",
    "seed_document",
    "use_product",
    "use_product_for",
    "variants",
]

#: products (profile names) and the seed each dictionary comes from
PRODUCTS: dict[str, str] = {
    "entegra": "000",
    "gemini-tf": "001",
    "xeleris": "002",
    "pacs-iw": "003",
    "datquant": "004",
}

_registered: list[Optional[str]] = [None]


class PrivateEntry(NamedTuple):
    """One private dictionary entry (PS3.5 7.8.1), as pydicom keys it: creator + ``ggggxxee``."""

    creator: str
    group: int
    element: int  #: low byte (the offset inside the creator's block)
    vr: str
    vm: str
    name: str
    retired: bool


def _data_text(name: str) -> str:
    return resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _merged() -> dict[str, Any]:
    return json.loads(_data_text("merged.json"))


@cache
def seed_document(seed: str) -> dict[str, Any]:
    """The extracted dictionary of one seed ("000".."004"): entries with seed line, nesting, corrections."""
    if seed not in PRODUCTS.values():
        raise KeyError(f"unknown seed {seed!r}; known: {sorted(PRODUCTS.values())}")
    return json.loads(_data_text(f"seed-{seed}.json"))


def _check_product(product: Optional[str]) -> None:
    if product is not None and product not in PRODUCTS:
        raise KeyError(f"unknown product {product!r}; known: {', '.join(PRODUCTS)}")


def _table(product: Optional[str] = None) -> dict[str, dict[str, list[str]]]:
    """creator -> 'ggggxxee' -> [VR, VM, name, retired]: the default, overlaid with a product's variants."""
    _check_product(product)
    merged = _merged()
    if product is None:
        return merged["default"]
    out = {c: dict(keys) for c, keys in merged["default"].items()}
    for creator, keys in merged["variants"].items():
        for key, prods in keys.items():
            if product in prods:
                vr, vm = prods[product]
                cur = out[creator][key]
                out[creator][key] = [vr, vm, cur[2], cur[3]]
    return out


def entries(product: Optional[str] = None) -> Iterator[PrivateEntry]:
    """Every entry of the default (or one product's) variant, sorted by creator and tag."""
    for creator, keys in sorted(_table(product).items()):
        for key, (vr, vm, name, retired) in sorted(keys.items()):
            yield PrivateEntry(creator, int(key[:4], 16), int(key[6:], 16), vr, vm, name, retired == "R")


def creators() -> dict[str, list[int]]:
    """Private creator -> the groups it reserves in the seeds."""
    out: dict[str, set[int]] = {}
    for creator, keys in _merged()["default"].items():
        out.setdefault(creator, set()).update(int(k[:4], 16) for k in keys)
    return {c: sorted(g) for c, g in sorted(out.items())}


def variants() -> dict[tuple[str, int, int], dict[str, tuple[str, str]]]:
    """(creator, group, offset) -> {product: (VR, VM)} for every tag whose products disagree."""
    out = {}
    for creator, keys in _merged()["variants"].items():
        for key, prods in keys.items():
            out[(creator, int(key[:4], 16), int(key[6:], 16))] = {p: (v[0], v[1]) for p, v in prods.items()}
    return out


def lookup(creator: str, group: int, element: int, product: Optional[str] = None) -> PrivateEntry:
    """The entry for a private element; ``element`` may be the full element (0x1038) or the offset (0x38)."""
    key = f"{group:04X}xx{element & 0xFF:02X}"
    try:
        vr, vm, name, retired = _table(product)[creator][key]
    except KeyError:
        raise KeyError(f"no private entry for {creator!r} ({group:04X},xx{element & 0xFF:02X})") from None
    return PrivateEntry(creator, group, element & 0xFF, vr, vm, name, retired == "R")


def codec_entries(product: Optional[str] = None) -> list[tuple[str, int, int, str]]:
    """(creator, group, element low byte, VR) for the Rust codec's implicit-VR decoding and byte swapping."""
    return [(e.creator, e.group, e.element, e.vr) for e in entries(product)]


def codec_dictionary(product: Optional[str] = None) -> Any:
    """The entries as a Rust codec :class:`ferrodicom._core.PrivateDictionary` (implicit-VR decoding, byte swapping)."""
    from ferrodicom._core import PrivateDictionary

    d = PrivateDictionary()
    for creator, group, element, vr in codec_entries(product):
        d.add(creator, group, element, vr)
    return d


def register(product: Optional[str] = None) -> int:
    """Add the entries to pydicom's private dictionary (``add_private_dict_entries``) and make them the Rust
    codec's default private dictionary; returns the count.

    pydicom keys private entries by creator and ``'ggggxxee'`` (block written ``xx``), so the entries apply
    to any reserved block.  Entries pydicom already had for these creators are replaced, others kept.
    """
    from pydicom.datadict import add_private_dict_entries

    n = 0
    for creator, keys in _table(product).items():
        add_private_dict_entries(
            creator,
            {(int(k[:4], 16) << 16) | 0x1000 | int(k[6:], 16): (v[0], v[1], v[2], v[3]) for k, v in keys.items()},
        )
        n += len(keys)
    from ferrodicom._core import set_default_private_dictionary

    set_default_private_dictionary(codec_dictionary(product))
    _registered[0] = product
    return n


def use_product(product: Optional[str]) -> int:
    """Switch pydicom's private dictionary to ``product``'s variants (``None``: the documented default)."""
    _check_product(product)
    if product != _registered[0]:
        return register(product)
    return 0


def registered_product() -> Optional[str]:
    """The product whose variants are registered with pydicom now (``None``: the default)."""
    return _registered[0]


# ---- product detection ---------------------------------------------------------------------------------

#: Implementation Class UID (PS3.7 D.3.3.2, File Meta (0002,0012)) -> product, from the seeds
_IMPL_UIDS = {
    "1.2.840.113619.6.96": "entegra",  # 000 L346
    "1.3.46.670589.33.1.1": "gemini-tf",  # 001 L471-474
    "1.2.840.113619.6.281": "xeleris",  # 002 L525 (DaTQUANT SC output also prints it, 004 L2508)
    "1.2.840.113654.2.3.1995.2.11.2": "pacs-iw",  # 003 L665
    "1.2.840.114356.0.4": "pacs-iw",  # 003 L3259
    "1.2.840.113619.6.407": "datquant",  # 004 L419
}


def product_for_dataset(ds: Any) -> Optional[str]:
    """Guess the product that wrote ``ds`` (a pydicom Dataset/FileDataset); ``None`` when not unambiguous.

    Looks at the File Meta Implementation Class UID and Version Name (PS3.10 7.1), Software Versions
    (0018,1020) and Manufacturer (0008,0070).  The DaTQUANT SC output carries the Xeleris implementation UID
    (seed 004 L2508), so an explicit "DaTQUANT" version or software string wins over the UID.
    """
    meta = getattr(ds, "file_meta", None)
    uid = str(getattr(meta, "ImplementationClassUID", "") or "") if meta is not None else ""
    version = str(getattr(meta, "ImplementationVersionName", "") or "") if meta is not None else ""
    software = getattr(ds, "SoftwareVersions", "") or ""
    if not isinstance(software, str):
        software = "\\".join(str(s) for s in software)
    manufacturer = str(getattr(ds, "Manufacturer", "") or "").strip().upper()
    text = f"{version} {software}".upper()
    hints = set()
    if "DATQUANT" in text:
        return "datquant"
    if "XELERIS" in text:
        hints.add("xeleris")
    if "ENTEGRA" in text:
        hints.add("entegra")
    if "BRCONN" in text or "GEMINI" in text:
        hints.add("gemini-tf")
    if "MIRCTN" in text:
        hints.add("pacs-iw")
    if uid in _IMPL_UIDS:
        hints.add(_IMPL_UIDS[uid])
    if not hints and manufacturer.startswith("PHILIPS"):
        hints.add("gemini-tf")
    return hints.pop() if len(hints) == 1 else None


def use_product_for(ds: Any) -> Optional[str]:
    """Register the variants of the product that wrote ``ds`` (or the default); returns the product chosen."""
    product = product_for_dataset(ds)
    use_product(product)
    return product


register()
