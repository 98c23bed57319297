"""The E2E and WebNLG readers: grouping of references, training pairs, and errors naming file and item."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from autolora.data import DataConfig, load_task
from autolora.data.nlg import read_nlg, subset_inputs
from autolora.errors import InputError

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
E2E = """mr,ref
"name[Aromi], area[riverside]","Aromi is by the riverside."
"name[Aromi], area[riverside]","By the riverside is Aromi."
"name[Bibimbap], food[Chinese]","Bibimbap serves Chinese food."
"name[Cocum], eatType[pub]","Cocum is a pub."
"name[Cocum], eatType[pub]","A pub: Cocum."
"name[Cocum], eatType[pub]","There is a pub called Cocum."
"""


def webnlg(entries: list) -> str:
    return json.dumps({"entries": [{str(i + 1): e} for i, e in enumerate(entries)]})


def entry(triples: list[tuple[str, str, str]], lexes: list[str]) -> dict:
    return {
        "category": "Airport",
        "modifiedtripleset": [{"subject": s, "property": p, "object": o} for s, p, o in triples],
        "lexicalisations": [{"lex": x, "comment": "good"} for x in lexes],
    }


def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return str(tmp_path / name)


def test_e2e_rows_keep_their_lines(tmp_path):
    table = read_nlg(write(tmp_path, "dev.csv", E2E), "e2e", "eval_file")
    assert table["source"][:3] == ["name[Aromi], area[riverside]"] * 2 + ["name[Bibimbap], food[Chinese]"]
    assert table["target"][3] == "Cocum is a pub." and table.lines == [2, 3, 4, 5, 6, 7]


def test_e2e_trains_on_every_reference_and_evaluates_each_mr_once(tmp_path, tok):
    path = write(tmp_path, "dev.csv", E2E)
    data = load_task(DataConfig(task="causal-lm", format="e2e", train_file=path, eval_file=path), tok)
    assert len(data.train) == 6  # one training pair per reference
    assert [(it["prompt"], it["references"]) for it in data.eval_raw] == [
        ("name[Aromi], area[riverside]", ["Aromi is by the riverside.", "By the riverside is Aromi."]),
        ("name[Bibimbap], food[Chinese]", ["Bibimbap serves Chinese food."]),
        ("name[Cocum], eatType[pub]", ["Cocum is a pub.", "A pub: Cocum.", "There is a pub called Cocum."]),
    ]
    # The eval subset takes whole MRs: each keeps all its references.
    sub = load_task(
        DataConfig(task="causal-lm", format="e2e", train_file=path, eval_file=path, max_eval_samples=2), tok
    )
    assert len(sub.eval_raw) == 2 and all(it in data.eval_raw for it in sub.eval_raw)


def test_webnlg_linearises_triples_and_keeps_every_lexicalisation(tmp_path, tok):
    text = webnlg(
        [
            entry(
                [("Aarhus", "leaderName", "Jacob_Bundsgaard")], ["The leader of Aarhus is Jacob Bundsgaard."]
            ),
            entry(
                [("Aarhus_Airport", "cityServed", "Aarhus"), ("Aarhus", "country", "Denmark")],
                ["Aarhus Airport serves Aarhus, Denmark.", "Aarhus, in Denmark, has an airport."],
            ),
        ]
    )
    path = write(tmp_path, "dev.json", text)
    data = load_task(DataConfig(task="causal-lm", format="webnlg", train_file=path, eval_file=path), tok)
    assert len(data.train) == 3
    assert [(it["prompt"], len(it["references"])) for it in data.eval_raw] == [
        ("Aarhus : leaderName : Jacob Bundsgaard", 1),
        ("Aarhus Airport : cityServed : Aarhus | Aarhus : country : Denmark", 2),
    ]


@pytest.mark.parametrize(
    ("body", "message", "at"),
    [
        ('mr,ref\n"name[A]","A."\n"name[B]"\n', "a row with no reference", "line 3"),
        ('mr,ref\n"name[A]","A."\n"name[B]",""\n', "the MR 'name[B]' has no reference", "line 3"),
        ('mr,ref\n"name[A]","A."\n"",B.\n', "the mr field is empty", "line 3"),
        ('mr,ref\n"name[A]","A."\n"name[B]","B."\n"name[A]","A!"\n', "must be consecutive rows", "line 4"),
        ('mr,ref\n"name[A]","A.",x\n', "has 3 fields", "line 2"),
        ('source,target\n"name[A]","A."\n', "expected the E2E header 'mr,ref'", "line 1"),
        ("mr,ref\n", "no rows", None),
    ],
)
def test_bad_e2e_rows_name_the_file_and_line(tmp_path, body, message, at):
    path = write(tmp_path, "train.csv", body)
    with pytest.raises(InputError, match=re.escape(message)) as err:
        read_nlg(path, "e2e", "train_file")
    assert err.value.arg == "data.train_file" and err.value.path == path and err.value.at == at


@pytest.mark.parametrize(
    ("text", "message", "at"),
    [
        (webnlg([entry([("A", "p", "B")], ["A p B."]), {}]), "no triples", "entry 1 (id '2')"),
        (webnlg([entry([("A", "p", "B")], [])]), "no references", "entry 0 (id '1')"),
        (webnlg([entry([("A", "p", "B")], ["  "])]), "lexicalisation 0 has no text", "entry 0 (id '1')"),
        (
            webnlg([entry([("A", "", "B")], ["A B."])]),
            "a triple without ['property']",
            "entry 0 (id '1')",
        ),
        ('{"entries": [\n{"1": }]}', "not valid JSON", "line 2"),
        ('{"entries": []}', "at least one entry", None),
    ],
)
def test_bad_webnlg_entries_name_the_file_and_entry(tmp_path, text, message, at):
    path = write(tmp_path, "dev.json", text)
    with pytest.raises(InputError, match=re.escape(message)) as err:
        read_nlg(path, "webnlg", "eval_file")
    assert err.value.arg == "data.eval_file" and err.value.path == path and err.value.at == at


def test_nlg_formats_are_causal_lm_only(tmp_path, tok):
    path = write(tmp_path, "dev.csv", E2E)
    with pytest.raises(InputError, match="data.task: 'classification' does not fit format='e2e'"):
        load_task(DataConfig(task="classification", format="e2e", train_file=path, eval_file=path), tok)


def test_subset_inputs_checks_its_argument(tmp_path):
    table = read_nlg(write(tmp_path, "dev.csv", E2E), "e2e", "eval_file")
    with pytest.raises(InputError, match="data.max_eval_samples: must be an integer >= 1"):
        subset_inputs(table, 0, "max_eval_samples")


@pytest.mark.skipif(
    not SHARED.is_dir(), reason="../shared/data (the real E2E and WebNLG sets) is not beside the repo"
)
def test_the_real_sets_group_as_their_readmes_say():
    e2e = read_nlg(str(SHARED / "e2e" / "devset.csv"), "e2e", "eval_file")
    assert e2e.num_rows == 4672 and len(set(e2e["source"])) == 547
    web = read_nlg(str(SHARED / "webnlg" / "dev.json"), "webnlg", "eval_file")
    assert len(json.loads((SHARED / "webnlg" / "dev.json").read_text())["entries"]) == 872
    assert web.num_rows == 2268 and len(set(web["source"])) == 871  # two entries linearise alike
