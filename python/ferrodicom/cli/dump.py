"""``ferrodicom dump FILE``: print a data set like dcmdump, private elements named by our dictionaries.

Each line is ``(gggg,eeee) VR value  # length, VM name``; sequence items are indented (PS3.5 7.5).  A private
element is named from the creator that reserved its block in the same data set or item (PS3.5 7.8.1).
"""

from __future__ import annotations

from typing import Any, Optional

import click

from ferrodicom import dictionaries
from ferrodicom.cli.logs import logging_options, setup

_MAX_VALUE = 64


def _creator_of(ds: Any, tag: Any) -> Optional[str]:
    """The private creator reserving ``tag``'s block in ``ds`` (PS3.5 7.8.1), or None."""
    if not tag.is_private or tag.element < 0x1000:
        return None
    reservation = (tag.group << 16) | (tag.element >> 8)
    if reservation in ds:
        value = ds[reservation].value
        return str(value).strip() if value is not None else None
    return None


def _value_text(elem: Any) -> str:
    value = elem.value
    if value is None or value == "" or value == b"":
        return "(no value available)"
    if isinstance(value, (bytes, bytearray)):
        shown = "\\".join(f"{b:02x}" for b in value[:16])
        return shown + ("..." if len(value) > 16 else "")
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.replace("\n", " ").replace("\r", " ")
    if len(text) > _MAX_VALUE:
        text = text[: _MAX_VALUE - 3] + "..."
    return f"[{text}]"


def _name(ds: Any, elem: Any, product: Optional[str]) -> str:
    creator = _creator_of(ds, elem.tag)
    if creator is not None:
        try:
            return dictionaries.lookup(creator, elem.tag.group, elem.tag.element, product).name
        except KeyError:
            return f"{creator}: {elem.name}" if elem.name != "Private tag data" else f"{creator}: unknown"
    if elem.tag.is_private_creator:
        return "Private Creator"
    return elem.keyword or elem.name


def format_dataset(ds: Any, product: Optional[str] = None, indent: int = 0) -> list[str]:
    """Lines of a dcmdump-style listing of ``ds`` (a pydicom Dataset), nested items indented by 2."""
    pad = "  " * indent
    out: list[str] = []
    for elem in ds:
        tag = elem.tag
        head = f"{pad}({tag.group:04x},{tag.element:04x}) {elem.VR or 'UN'}"
        name = _name(ds, elem, product)
        if elem.VR == "SQ":
            items = elem.value or []
            out.append(f"{head} (Sequence with {len(items)} item{'s' if len(items) != 1 else ''})  # {name}")
            for n, item in enumerate(items, 1):
                out.append(f"{pad}  (fffe,e000) na (Item {n})")
                out.extend(format_dataset(item, product, indent + 2))
                out.append(f"{pad}  (fffe,e00d) na (ItemDelimitationItem)")
            out.append(f"{pad}(fffe,e0dd) na (SequenceDelimitationItem)")
            continue
        text = _value_text(elem)
        length = len(elem.value) if isinstance(elem.value, (bytes, bytearray)) else ""
        vm = elem.VM
        out.append(f"{head} {text:<{max(0, 44 - len(head) + len(pad))}} # {length!s:>4}, {vm} {name}")
    return out


@click.command(name="dump")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--product",
    type=click.Choice(sorted(dictionaries.PRODUCTS)),
    default=None,
    help="Use this product's private VR variants (default: detected from the file, else the default).",
)
@click.option("--meta/--no-meta", default=True, help="Also print the File Meta Information (group 0002).")
@logging_options
def command(file: str, product: Optional[str], meta: bool) -> None:
    """Print FILE like dcmdump, naming private elements from the conformance-statement dictionaries.

    Exit status: 0, 1 FILE is not a readable DICOM file, 2 bad arguments."""
    setup("info")
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        probe = pydicom.dcmread(file, stop_before_pixels=True, force=False)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise click.ClickException(f"{file}: not a readable DICOM file ({exc})") from exc
    chosen = product or dictionaries.product_for_dataset(probe)
    previous = dictionaries.registered_product()
    dictionaries.use_product(chosen)
    try:
        # re-read with the chosen variants so implicit-VR private values are typed by them
        ds = pydicom.dcmread(file, force=False)
        lines = []
        if meta and getattr(ds, "file_meta", None) is not None:
            lines.append("# File Meta Information")
            lines.extend(format_dataset(ds.file_meta, chosen))
            lines.append("")
        lines.append(f"# Dataset (private dictionary variant: {chosen or 'default'})")
        try:
            lines.extend(format_dataset(ds, chosen))
        except Exception as exc:  # pydicom raises assorted errors on damaged values; report, do not crash
            raise click.ClickException(f"{file}: damaged data set ({type(exc).__name__}: {exc})") from exc
        click.echo("\n".join(lines))
    finally:
        dictionaries.use_product(previous)
