"""Where data-to-text data enters: the E2E NLG CSV and the WebNLG 2017 JSON.

Both are read into the `Table` of readers.py with a "source" column (the meaning representation, or
the linearised triples) and a "target" column, one row per reference: the causal-lm encoder then
trains on every (source, reference) pair and groups the references of one source into one
evaluation item. A bad file, row or entry raises an InputError naming the argument, the file and the
line (E2E) or the entry (WebNLG), before any model is touched.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from autolora.data.readers import Table, _decode
from autolora.errors import InputError

NLG_FORMATS = ("e2e", "webnlg")
E2E_HEADER = ("mr", "ref")
# One triple as the model reads it, and what joins the triples of one input.
TRIPLE = "{subject} : {property} : {object}"
TRIPLE_SEP = " | "


def read_nlg(path: str, fmt: str, which: str) -> Table:
    """Read one E2E or WebNLG file. fmt: "e2e" or "webnlg"; which: "train_file" or "eval_file"."""
    arg, p = f"data.{which}", Path(path)
    if not p.is_file():
        raise InputError(arg, "is a folder, not a file" if p.is_dir() else "file not found", path=path)
    text = _decode(p, arg)
    return read_e2e(text, arg, path) if fmt == "e2e" else read_webnlg(text, arg, path)


def read_e2e(text: str, arg: str, path: str) -> Table:
    """The official E2E CSV: a header `mr,ref`, then one reference a row; the references of one MR
    are consecutive rows (an MR seen again after another one is an error, as is an empty field)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, lines = [], []
    try:
        for row in reader:
            if row and row != [""]:
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as e:
        raise InputError(arg, f"cannot parse the CSV: {e}", path=path, at=f"line {reader.line_num}") from e
    if not rows or tuple(c.strip().lower() for c in rows[0]) != E2E_HEADER:
        got = rows[0] if rows else "an empty file"
        raise InputError(arg, f"expected the E2E header 'mr,ref', got {got!r}", path=path, at="line 1")
    sources, targets, first_line = [], [], {}
    for row, line in zip(rows[1:], lines[1:], strict=True):
        at = f"line {line}"
        if len(row) == 1:
            raise InputError(arg, "a row with no reference (one field; expected mr,ref)", path=path, at=at)
        if len(row) != 2:
            raise InputError(arg, f"has {len(row)} fields; expected 2 (mr,ref)", path=path, at=at)
        mr, ref = row
        if not mr.strip():
            raise InputError(arg, "the mr field is empty", path=path, at=at)
        if not ref.strip():
            raise InputError(arg, f"the MR {mr!r} has no reference (empty ref field)", path=path, at=at)
        if mr in first_line and sources[-1] != mr:
            raise InputError(
                arg,
                f"the MR {mr!r} was seen before (line {first_line[mr]}), after other MRs: the "
                "references of one MR must be consecutive rows",
                path=path,
                at=at,
            )
        first_line.setdefault(mr, line)
        sources.append(mr)
        targets.append(ref)
    if not sources:
        raise InputError(arg, "has a header but no rows (empty split)", path=path)
    return Table({"source": sources, "target": targets}, arg, path, lines[1:])


def linearise(triples: list[dict], arg: str, path: str, at: str) -> str:
    """DBpedia triples as one line: "s : p : o | s2 : p2 : o2", underscores read as spaces."""
    parts = []
    for t in triples:
        fields = {k: t.get(k) if isinstance(t, dict) else None for k in ("subject", "property", "object")}
        bad = [k for k, v in fields.items() if not isinstance(v, str) or not v.strip()]
        if bad:
            raise InputError(arg, f"a triple without {bad}: {t!r}", path=path, at=at)
        parts.append(TRIPLE.format(**{k: v.replace("_", " ").strip() for k, v in fields.items()}))
    return TRIPLE_SEP.join(parts)


def read_webnlg(text: str, arg: str, path: str) -> Table:
    """WebNLG 2017 JSON: {"entries": [{"<id>": {"modifiedtripleset": [...], "lexicalisations":
    [{"lex": ...}, ...]}}]}: each entry is one input, each lexicalisation one reference."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(arg, f"not valid JSON: {e.msg}", path=path, at=f"line {e.lineno}") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InputError(arg, 'expected {"entries": [...]} with at least one entry (WebNLG JSON)', path=path)
    sources, targets = [], []
    for i, wrapped in enumerate(entries):
        if not isinstance(wrapped, dict) or len(wrapped) != 1:
            raise InputError(arg, f"expected {{id: entry}}, got {wrapped!r}", path=path, at=f"entry {i}")
        ((eid, entry),) = wrapped.items()
        at = f"entry {i} (id {eid!r})"
        if not isinstance(entry, dict):
            raise InputError(arg, f"expected an object, got {entry!r}", path=path, at=at)
        triples, lexes = entry.get("modifiedtripleset"), entry.get("lexicalisations")
        if not isinstance(triples, list) or not triples:
            raise InputError(arg, "no triples (modifiedtripleset is missing or empty)", path=path, at=at)
        if not isinstance(lexes, list) or not lexes:
            raise InputError(arg, "no references (lexicalisations is missing or empty)", path=path, at=at)
        source = linearise(triples, arg, path, at)
        for j, lex in enumerate(lexes):
            ref = lex.get("lex") if isinstance(lex, dict) else None
            if not isinstance(ref, str) or not ref.strip():
                raise InputError(arg, f"lexicalisation {j} has no text ('lex'): {lex!r}", path=path, at=at)
            sources.append(source)
            targets.append(ref)
    return Table({"source": sources, "target": targets}, arg, path, unit="reference")


def subset_inputs(table: Table, n: int | None, arg: str) -> Table:
    """A fixed-seed random subset of n inputs (sources) with all their references, in file order."""
    if n is not None and (not isinstance(n, int) or n < 1):
        raise InputError(f"data.{arg}", f"must be an integer >= 1 or None, got {n!r}")
    sources = list(dict.fromkeys(table["source"]))
    if n is None or n >= len(sources):
        return table
    chosen = {sources[i] for i in np.random.default_rng(0).permutation(len(sources))[:n]}
    return table.take([i for i, s in enumerate(table["source"]) if s in chosen])
