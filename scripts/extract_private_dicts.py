#!/usr/bin/env python3
"""Extract the private data dictionaries from the five conformance statements (the seeds).

Usage::

    python scripts/extract_private_dicts.py [--seeds DIR] [--check] [--no-measure]

For every seed it scans each line for private tags ``(gggg,xxee)`` (odd group) and classifies the row:

* a *dictionary row* when the tag is followed by a VR (possibly on the next non-blank line, where the
  PDF extraction broke the row): it gives VR and VM;
* a *reservation row* when the element is ``00xx``/``0010``: it names the creator of that group;
* a *module row* otherwise: it gives a name, a creator column (seeds 002/004) and the nesting (``>``).

Nesting comes from the ``>`` prefixes: a row at depth *d* nests in the nearest preceding row (standard or
private) of a smaller depth in the same table.  Damaged or wrong rows are corrected from the table in
``CORRECTIONS`` (each with its reason; PS3.5 decides where the seed contradicts the standard).  Output:
``python/ferrodicom/dictionaries/data/seed-00N.json`` (one file per seed) and ``merged.json`` (the compact
form loaded at import, with per-product variants and the default).  The report printed at the end gives
row counts, counts per creator and group, the variants, and the fraction of seed elements that pydicom
resolves with the seed's VR before and after registration (each measured in a fresh subprocess).
``--check`` regenerates in memory and fails if the checked-in data files differ.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "python" / "ferrodicom" / "dictionaries" / "data"
SEED_DIR = ROOT.parent / "shared" / "seeds"

SEEDS = {
    "000": ("000_ddd31ef9ac4a902e.txt", "entegra", "GE eNTEGRA P&R 1.0 DICOM Conformance Statement"),
    "001": ("001_5b4f07218f8a0fec.txt", "gemini-tf", "Philips GEMINI TF 3.1 DICOM Conformance Statement"),
    "002": ("002_74577c0ac36bea13.txt", "xeleris", "GE Xeleris 3.0-V DICOM Conformance Statement"),
    "003": ("003_8dfc7a4fcd5132a9.txt", "pacs-iw", "GE Centricity PACS-IW DICOM Conformance Statement"),
    "004": ("004_316b1602e21c62c5.txt", "datquant", "GE DaTQUANT DICOM Conformance Statement"),
}
#: creator used where a seed never prints one for a group (seed 000: table title "(GEMS_GENIE_1)"; seed 001:
#: the sentence after Table 104)
SEED_DEFAULT_CREATOR = {"000": "GEMS_GENIE_1", "001": "Philips PET Private Group"}
#: default variant when products disagree: order of preference (see DEFAULT_POLICY)
DEFAULT_ORDER = ["xeleris", "datquant", "entegra", "gemini-tf", "pacs-iw"]
DEFAULT_POLICY = (
    "When products print different VR/VM for the same creator and tag, the default is the variant "
    "printed by the most seeds; ties go to the newer product in the order " + ", ".join(DEFAULT_ORDER) + "."
)

VRS = set(
    "AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
CREATOR_RE = re.compile(r"\b(GEMS_[A-Z0-9_]+|GEHC_[A-Z0-9_]+|GEIIS_[A-Z0-9_]+|INVIA_RESULTS)\b")
TAG_RE = re.compile(
    r"\(\s*(?P<g>[0-9A-Fa-f]{4})\s*,\s*(?P<b>xx|XX|[0-9A-Fa-f]{2})(?P<e>[0-9A-Fa-f]{2}|xx|XX)?\s*\)?\)?"
    r"|^\s*(?P<gt>>*)\s*(?P<g2>[0-9A-Fa-f]{4}),(?P<b2>[0-9A-Fa-f]{2})(?P<e2>[0-9A-Fa-f]{2})\b"
)
VM_RE = re.compile(r"^(1|2|3|4|6|1-n|1-N|2-n|2-2n|3-n|N|n|1\s*-\s*n)$")
HEADING_RE = re.compile(r"^\s*(\*\*)?\s*(Table|TABLE)\s+[0-9A-Z]+[-.]|^#+\s|^\s*\d+(\.\d+)+\s+[A-Z]")

# ----------------------------------------------------------------------------------------------------
# Corrections.  kind "tag": the row's printed tag is replaced; "vr"/"vm": the printed VR/VM is replaced;
# "skip": the row is not a private element; "creator": the printed creator string is replaced.
# ----------------------------------------------------------------------------------------------------
CORRECTIONS: list[dict[str, str | int]] = [
    dict(
        seed="000",
        line=1749,
        kind="tag",
        printed="(0009,xx4)",
        corrected="(0009,xx42)",
        reason="Tag truncated by the PDF extraction; the row is Patient Creation Date, which the dictionary "
        "(L3184) gives as (0009,xx42).",
    ),
    dict(
        seed="000",
        line=3085,
        kind="tag",
        printed="(0013,xx87)",
        corrected="(0011,xx87)",
        reason="Slice Width Pixels sits among (0011,xx6E-86) in the Backprojection module; the "
        "dictionary (L3385, L6559) lists it as (0011,xx87); no (0013,xx87) exists.",
    ),
    dict(
        seed="000",
        line=6271,
        kind="tag",
        printed="(0013,xx87)",
        corrected="(0011,xx87)",
        reason="Same misprint as L3085 in Appendix Table A-11.",
    ),
    dict(
        seed="000",
        line=5269,
        kind="tag",
        printed="(0009,xx21)",
        corrected="(0009,xx20)",
        reason="'Series Name' printed with the tag of Series Flags (next row, L5271); the dictionary gives "
        "Series Object Name as (0009,xx20).",
    ),
    dict(
        seed="000",
        line=3537,
        kind="vr",
        printed="Sl",
        corrected="SL",
        reason="PS3.5 6.2 defines no VR 'Sl'; OCR case damage of SL.",
    ),
    dict(
        seed="000",
        line=6711,
        kind="vr",
        printed="Sl",
        corrected="SL",
        reason="PS3.5 6.2 defines no VR 'Sl'; OCR case damage of SL.",
    ),
    dict(
        seed="000",
        line=3566,
        kind="vr",
        printed="Sl",
        corrected="SL",
        reason="PS3.5 6.2 defines no VR 'Sl'; OCR case damage of SL.",
    ),
    dict(
        seed="000",
        line=6740,
        kind="vr",
        printed="Sl",
        corrected="SL",
        reason="PS3.5 6.2 defines no VR 'Sl'; OCR case damage of SL.",
    ),
    dict(
        seed="000",
        line=3180,
        kind="vm",
        printed="",
        corrected="1",
        reason="VM column empty for Num Views Acquired (retired) (0009,xx44); SL elements of this table "
        "are VM 1 and Xeleris prints none of it, so VM 1.",
    ),
    dict(
        seed="000",
        line=6354,
        kind="vm",
        printed="",
        corrected="1",
        reason="Same empty VM as L3180 in Appendix Table A-13.",
    ),
    dict(
        seed="000",
        line=3503,
        kind="vr",
        printed="LO",
        corrected="OB",
        reason="Table 9-2 Note 2 (L5818) says 'The Bulk Data is formatted as OB type'; a binary blob "
        "read as LO would be mangled (PS3.5 6.2: LO is character data); "
        "Xeleris prints BulkData OB (002 L2685).",
    ),
    dict(
        seed="000",
        line=6677,
        kind="vr",
        printed="LO",
        corrected="OB",
        reason="Same as L3503 in Appendix Table A-13.",
    ),
    dict(
        seed="001",
        line=2086,
        kind="skip",
        printed="(0009,1150)",
        corrected="(0008,1150)",
        reason="'>Referenced SOP Class UID' is the standard (0008,1150) (PS3.3 10.3); not a private element.",
    ),
    dict(
        seed="001",
        line=2482,
        kind="creator",
        printed="Philips PET Private Group.",
        corrected="Philips PET Private Group",
        reason="The trailing period is sentence punctuation; the creator value (LO) is 'Philips PET Private Group'.",
    ),
]
#: module-table-only elements that carry no VR in their seed: the VR follows from the row (PS3.5 7.5:
#: an element whose value is a sequence of items is SQ, VM 1)
INFERRED = {
    ("000", "GEMS_GENIE_1", 0x0055, 0x65): (
        "SQ",
        "1",
        "eNTEGRA Frame Sequence at (0055,xx65) in NM Table 3-13 "
        "(L2146) holds items (0015,xx10/11), (0013,xx14): a sequence, so SQ 1 "
        "(PS3.5 7.5); Xeleris prints it SQ 1 (002 L2657).",
    ),
}
#: text left in a table by the PDF extraction that belongs to no row (003 L5376: source code of the generator)
STRAY_TEXT = {"IW_MAKETAG(0x)"}
#: names of retired elements that the digests list but whose row lost the "(retired)" marker
RETIRED_EXTRA: set[tuple[str, int, int]] = set()


def norm_vm(vm: str) -> str:
    v = re.sub(r"\s+", "", vm)
    if v in ("N", "n", "1-N"):
        return "1-n"
    return v


def keyword(name: str) -> str:
    name = re.sub(r"\(retired\)", "", name, flags=re.I)
    name = name.replace("–", "-").replace("&", "And")
    parts = re.split(r"[^0-9A-Za-z]+", name)
    out = "".join(p[:1].upper() + p[1:] for p in parts if p)
    if out and out[0].isdigit():
        out = "X" + out
    return out


def tag_str(group: int, elem: int) -> str:
    return f"({group:04X},xx{elem:02X})"


class Row:
    __slots__ = (
        "seed",
        "line",
        "group",
        "block",
        "elem",
        "name",
        "vr",
        "vm",
        "creator",
        "depth",
        "kind",
        "parent",
        "table",
    )

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


def scan_seed(seed: str, text: str, log: list[str]) -> list[Row]:
    """Every tag row of one seed (standard rows too, for nesting), with corrections applied."""
    corr = {(c["seed"], c["line"], c["kind"]): c for c in CORRECTIONS}
    lines = text.split("\n")
    rows: list[Row] = []
    group_creator: dict[int, str] = {}
    stack: list[Row] = []
    table = ""
    for i, raw in enumerate(lines, 1):
        line = raw.replace("\\_", "_")
        if HEADING_RE.match(line):
            stack = []
            table = line.strip().strip("*").strip()[:80]
        m = TAG_RE.search(line)
        if not m:
            continue
        if m.group("g"):
            g, b, e = m.group("g"), m.group("b"), m.group("e")
        else:
            g, b, e = m.group("g2"), m.group("b2"), m.group("e2")
        head = line[: m.start()]
        rest = line[m.end() :]
        c = corr.get((seed, i, "tag"))
        if c:
            cm = TAG_RE.search(str(c["corrected"]))
            assert cm and str(c["printed"]) in line, (seed, i)
            g, b, e = cm.group("g"), cm.group("b"), cm.group("e")
            log.append(f"seed {seed} L{i}: tag {c['printed']} -> {c['corrected']}")
        if corr.get((seed, i, "skip")):
            log.append(f"seed {seed} L{i}: {corr[(seed, i, 'skip')]['printed']} skipped (not private)")
            continue
        group = int(g, 16)
        e = e or ""
        if b == "00" and e.lower() == "xx":
            e = "10"
        if len(e) != 2 or e.lower() == "xx":
            log.append(f"seed {seed} L{i}: unparseable tag {m.group(0)!r} (not corrected)")
            continue
        cols = [c_.strip() for c_ in rest.split("\t")] if "\t" in line else rest.split()
        cols = [c_ for c_ in cols if c_ != ""]
        # depth and name
        depth_src = m.group("gt") if m.group("gt") is not None else head
        depth = len(re.match(r"\s*((?:>\s*)*)", depth_src).group(1).replace(" ", ""))
        name = head.split("\t")[0] if "\t" in head else head
        name = re.sub(r"^[\s>]+", "", name).strip()
        # VR/VM: on this line, or on the next non-blank line when the row was broken (seed 003)
        vr = vm = None
        vr_line = i
        toks = cols
        if not toks:
            j = i
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j < len(lines):
                nxt = lines[j].split()
                if nxt and nxt[0].upper() in VRS and not TAG_RE.search(lines[j]):
                    toks, vr_line = nxt, j + 1
        if toks and toks[0].strip(")").upper() in VRS and (len(toks[0]) == 2):
            vr = toks[0]
            if seed == "001":  # Tag VR Meaning VM
                name = toks[1] if len(toks) > 1 else ""
                vm = toks[-1] if len(toks) > 2 and VM_RE.match(toks[-1]) else ""
            else:
                rest_after_vr = toks[1:]
                if rest_after_vr and VM_RE.match(rest_after_vr[0]):
                    vm = rest_after_vr[0]
                elif len(rest_after_vr) >= 3 and " ".join(rest_after_vr[:3]) == "1 - n":
                    vm = "1 - n"
                else:
                    vm = ""
            cv = corr.get((seed, vr_line, "vr"))
            if cv and vr == cv["printed"]:
                log.append(f"seed {seed} L{vr_line}: VR {vr} -> {cv['corrected']}")
                vr = str(cv["corrected"])
            cm_ = corr.get((seed, vr_line, "vm"))
            if cm_ and vm == cm_["printed"]:
                log.append(f"seed {seed} L{vr_line}: VM {vm!r} -> {cm_['corrected']}")
                vm = str(cm_["corrected"])
        if not name and seed != "001":
            # name broken onto the previous non-blank line (seed 003)
            j = i - 2
            while j >= 0 and (not lines[j].strip() or lines[j].strip() in STRAY_TEXT):
                if lines[j].strip() in STRAY_TEXT:
                    log.append(f"seed {seed} L{j + 1}: stray text {lines[j].strip()!r} ignored in row L{i}")
                j -= 1
            prev = lines[j].strip() if j >= 0 else ""
            if prev and not TAG_RE.search(prev) and not HEADING_RE.match(prev) and len(prev) < 60:
                depth = len(re.match(r"((?:>\s*)*)", prev).group(1).replace(" ", ""))
                name = re.sub(r"^[\s>]+", "", prev).strip()
        creators = CREATOR_RE.findall(line)
        row = Row(
            seed=seed,
            line=i,
            group=group,
            block=b,
            elem=int(e, 16),
            name=name,
            vr=vr,
            vm=vm,
            depth=depth,
            table=table,
        )
        is_private = group % 2 == 1 and group > 0x0008 and group != 0xFFFF
        if is_private and (b == "00" or (b.lower() != "xx" and int(b, 16) == 0 and int(e, 16) >= 0x10)):
            row.kind = "reservation"
            cr = creators[0] if creators else SEED_DEFAULT_CREATOR.get(seed)
            if cr:
                group_creator[group] = cr
            rows.append(row)
            continue
        if not is_private:
            row.kind = "standard"
        else:
            row.kind = "dictionary" if vr else "module"
            # module rows of seeds 002/004 carry a creator column right after the tag; dictionary rows take
            # the creator of the group's latest reservation row (descriptions may quote other strings)
            col = CREATOR_RE.fullmatch(cols[0]) if cols and not vr else None
            row.creator = (col.group(0) if col else None) or group_creator.get(group) or SEED_DEFAULT_CREATOR.get(seed)
        # nesting
        while stack and stack[-1].depth >= depth:
            stack.pop()
        if depth > 0 and stack:
            row.parent = stack[-1]
        stack.append(row)
        rows.append(row)
    return rows


def build_seed(seed: str, seed_dir: Path, log: list[str]) -> dict:
    fname, product, title = SEEDS[seed]
    text = (seed_dir / fname).read_text(encoding="utf-8")
    rows = scan_seed(seed, text, log)
    by_key: dict[tuple[str, int, int], list[Row]] = collections.OrderedDict()
    for r in rows:
        if r.kind in ("dictionary", "module"):
            if r.creator is None:
                log.append(
                    f"seed {seed} L{r.line}: private tag ({r.group:04X},{r.block}{r.elem:02X}) outside any "
                    "creator's table (example text); not an element"
                )
                continue
            by_key.setdefault((r.creator, r.group, r.elem), []).append(r)
    entries = []
    conflicts = []
    for (creator, group, elem), rs in by_key.items():
        drows = [r for r in rs if r.kind == "dictionary"]
        first = drows[0] if drows else rs[0]
        variants = collections.OrderedDict()
        for r in drows:
            variants.setdefault((r.vr.upper(), norm_vm(r.vm or "1")), []).append(r.line)
        if drows:
            vr, vm = next(iter(variants))
            source = "dictionary"
        else:
            inf = INFERRED.get((seed, creator, group, elem))
            if inf is None:
                log.append(f"seed {seed} L{first.line}: {creator} {tag_str(group, elem)} has no VR; dropped")
                continue
            vr, vm = inf[0], inf[1]
            source = "inferred"
        context_variants = []
        if len(variants) > 1:
            for (v, m_), lns in list(variants.items())[1:]:
                ctx_parents = sorted({_ptag(r.parent) for r in drows if r.line in lns and r.parent})
                context_variants.append({"vr": v, "vm": m_, "lines": lns, "in_sequence": ctx_parents})
            conflicts.append(
                f"seed {seed}: {creator} {tag_str(group, elem)} printed as "
                + " vs ".join(f"{v}/{m_} (L{','.join(map(str, lns))})" for (v, m_), lns in variants.items())
            )
        names = []
        for r in [first] + rs:
            n = re.sub(r"\s+", " ", (r.name or "")).strip()
            if n and n not in names:
                names.append(n)
        name = names[0] if names else f"Private {tag_str(group, elem)}"
        retired = bool(re.search(r"\(retired\)", " ".join(names), re.I)) or (creator, group, elem) in RETIRED_EXTRA
        clean = re.sub(r"\s*\(retired\)\s*", " ", name, flags=re.I).strip()
        parents = sorted({_ptag(r.parent) for r in rs if r.parent is not None})
        e = {
            "creator": creator,
            "group": f"{group:04X}",
            "element": f"{elem:02X}",
            "tag": tag_str(group, elem),
            "vr": vr,
            "vm": vm,
            "name": clean,
            "keyword": keyword(clean),
            "retired": retired,
            "in_sequence": parents,
            "seed": seed,
            "line": first.line,
            "other_lines": sorted({r.line for r in rs} - {first.line}),
            "source": source,
        }
        aliases = [re.sub(r"\s*\(retired\)\s*", " ", n, flags=re.I).strip() for n in names[1:]]
        aliases = [a for a in aliases if a != clean]
        if aliases:
            e["aliases"] = aliases
        if context_variants:
            e["context_variants"] = context_variants
        if source == "inferred":
            e["note"] = INFERRED[(seed, creator, group, elem)][2]
        entries.append(e)
    entries.sort(key=lambda e: (e["creator"], e["group"], e["element"]))
    creators: dict[str, list[str]] = {}
    for r in rows:
        if r.kind == "reservation":
            cr = (CREATOR_RE.findall(text.split("\n")[r.line - 1]) or [SEED_DEFAULT_CREATOR.get(seed)])[0]
            creators.setdefault(cr, [])
            if f"{r.group:04X}" not in creators[cr]:
                creators[cr].append(f"{r.group:04X}")
    for e in entries:
        creators.setdefault(e["creator"], [])
        if e["group"] not in creators[e["creator"]]:
            creators[e["creator"]].append(e["group"])
    return {
        "seed": seed,
        "file": fname,
        "document": title,
        "product": product,
        "creators": {k: sorted(v) for k, v in sorted(creators.items())},
        "rows": {k: sum(1 for r in rows if r.kind == k) for k in ("dictionary", "module", "reservation")},
        "corrections": [dict(c) for c in CORRECTIONS if c["seed"] == seed]
        + [
            {
                "seed": seed,
                "line": 0,
                "kind": "vm",
                "printed": "N / 1 - n / blank (SQ)",
                "corrected": "1-n / 1",
                "reason": "VM normalised to PS3.5 6.4 notation: 'N', '1 - n' -> '1-n'; blank VM of an SQ "
                "-> 1 (PS3.5 7.5: a sequence element has VM 1).",
            }
        ],
        "within_seed_conflicts": conflicts,
        "entries": entries,
    }


def _ptag(r: Row) -> str:
    if r.group % 2 == 1 and r.block and (r.block.lower() == "xx" or int(r.block, 16) >= 0x10):
        return tag_str(r.group, r.elem)
    return f"({r.group:04X},{r.block.upper()}{r.elem:02X})"


def fix_sq_vm(seed_doc: dict, log: list[str]) -> None:
    for e in seed_doc["entries"]:
        if e["vr"] == "SQ" and e["vm"] != "1":
            log.append(f"seed {seed_doc['seed']} L{e['line']}: SQ {e['tag']} VM {e['vm']!r} -> '1' (PS3.5 7.5)")
            e["vm"] = "1"
        if e["vm"] in ("", None):
            e["vm"] = "1"


def merge(docs: dict[str, dict]) -> dict:
    """Compact form: creator -> 'ggggxxee' -> {product: [vr, vm, name, retired]} plus the default."""
    table: dict[str, dict[str, dict[str, list]]] = {}
    for seed, doc in docs.items():
        prod = doc["product"]
        for e in doc["entries"]:
            key = f"{e['group']}xx{e['element']}"
            table.setdefault(e["creator"], {}).setdefault(key, {})[prod] = [
                e["vr"],
                e["vm"],
                e["name"],
                "R" if e["retired"] else "",
                seed,
                e["line"],
            ]
    out: dict[str, dict] = {
        "policy": DEFAULT_POLICY,
        "products": {d["product"]: s for s, d in docs.items()},
        "default": {},
        "variants": {},
    }
    for creator, keys in sorted(table.items()):
        for key, prods in sorted(keys.items()):
            counts = collections.Counter((v[0], v[1]) for v in prods.values())
            best = max(
                counts.items(),
                key=lambda kv: (
                    kv[1],
                    -min(DEFAULT_ORDER.index(p) for p, v in prods.items() if (v[0], v[1]) == kv[0]),
                ),
            )[0]
            pick = min((p for p, v in prods.items() if (v[0], v[1]) == best), key=DEFAULT_ORDER.index)
            out["default"].setdefault(creator, {})[key] = prods[pick][:4]
            if len(counts) > 1:
                out["variants"].setdefault(creator, {})[key] = {p: v[:2] for p, v in sorted(prods.items())}
    return out


MEASURE = r"""
import json, sys
import pydicom.datadict as dd
mode = sys.argv[1]
if mode != "pydicom":
    import ferrodicom.dictionaries as fd
    if mode != "default":
        fd.use_product(mode)
docs = json.load(sys.stdin)
res = {}
for seed, entries in docs.items():
    ok = 0
    for cr, g, e, vr in entries:
        try:
            got = dd.get_private_entry((int(g, 16), 0x1000 | int(e, 16)), cr)[0]
        except KeyError:
            continue
        ok += got == vr
    res[seed] = [ok, len(entries)]
print(json.dumps(res))
"""


def measure(docs: dict[str, dict], mode: str) -> dict[str, list[int]]:
    payload = {s: [[e["creator"], e["group"], e["element"], e["vr"]] for e in d["entries"]] for s, d in docs.items()}
    p = subprocess.run(
        [sys.executable, "-c", MEASURE, mode],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(p.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=Path, default=SEED_DIR)
    ap.add_argument("--check", action="store_true", help="fail if the checked-in data differ")
    ap.add_argument("--no-measure", action="store_true")
    args = ap.parse_args(argv)
    log: list[str] = []
    docs = {}
    for seed in SEEDS:
        d = build_seed(seed, args.seeds, log)
        fix_sq_vm(d, log)
        docs[seed] = d
    merged = merge(docs)
    outputs = {f"seed-{s}.json": json.dumps(d, indent=1, ensure_ascii=False) + "\n" for s, d in docs.items()}
    outputs["merged.json"] = json.dumps(merged, separators=(",", ":"), ensure_ascii=False) + "\n"
    if args.check:
        bad = [n for n, t in outputs.items() if not (DATA / n).exists() or (DATA / n).read_text("utf-8") != t]
        if bad:
            print("stale data files:", ", ".join(bad))
            return 1
        print("data files are up to date")
    else:
        DATA.mkdir(parents=True, exist_ok=True)
        for n, t in outputs.items():
            (DATA / n).write_text(t, encoding="utf-8")
    # ---- report ----
    print("== extraction log (corrections applied, rows dropped)")
    for line in log:
        print("  " + line)
    print("== rows per seed (dictionary / module / reservation) and entries")
    for s, d in docs.items():
        print(f"  {s} {d['product']:10s} rows {d['rows']}  entries {len(d['entries'])}")
        for c in d["within_seed_conflicts"]:
            print("    within-seed VR conflict:", c)
    print("== entries per creator and group (union over seeds)")
    counts: dict[str, collections.Counter] = {}
    for cr, keys in merged["default"].items():
        counts[cr] = collections.Counter(k[:4] for k in keys)
    for cr, c in sorted(counts.items()):
        print(f"  {cr:28s} {sum(c.values()):4d}  " + ", ".join(f"{g}:{n}" for g, n in sorted(c.items())))
    print(f"  total {sum(sum(c.values()) for c in counts.values())}")
    print("== per-product variants (creator tag: product VR/VM ... -> default)")
    for cr, keys in merged["variants"].items():
        for k, prods in keys.items():
            dflt = merged["default"][cr][k]
            print(
                f"  {cr} ({k[:4]},{k[4:]}) {merged['default'][cr][k][2]}: "
                + ", ".join(f"{p} {v[0]}/{v[1]}" for p, v in prods.items())
                + f" -> default {dflt[0]}/{dflt[1]}"
            )
    if not args.no_measure:
        print("== get_private_entry resolves the seed's VR (tag with block 0x10), fresh interpreter each")
        own: dict[str, list[int]] = {}
        for mode in ["pydicom", "default"] + sorted({d["product"] for d in docs.values()}):
            r = measure(docs, mode)
            for s, d in docs.items():
                if d["product"] == mode:
                    own[s] = r[s]
            ok = sum(v[0] for v in r.values())
            n = sum(v[1] for v in r.values())
            label = {"pydicom": "pydicom alone", "default": "import ferrodicom (default)"}.get(
                mode, f"use_product({mode})"
            )
            print(f"  {label:32s} {ok}/{n} = {ok / n:.1%}   " + " ".join(f"{s}:{v[0]}/{v[1]}" for s, v in r.items()))
        ok = sum(v[0] for v in own.values())
        n = sum(v[1] for v in own.values())
        print(
            f"  {'each seed under its own product':32s} {ok}/{n} = {ok / n:.1%}   "
            + " ".join(f"{s}:{v[0]}/{v[1]}" for s, v in sorted(own.items()))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
