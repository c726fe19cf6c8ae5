"""Bad batch specs and prompt CSVs: one SpecError naming the file, the line or key and the
problem (issue 19 item 9); property-based tests of the spec and prompt-CSV parsers; the YAML
alias bomb in a bounded child (item 3); spec outputs stay in the spec's folder (item 10)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from harness.bounded import GB, run_bounded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from medplib_core.batch import SpecError, load_spec
from medplib_core.batch.prompts_csv import PromptCsvError, read_prompts
from medplib_core.batch.spec import safe_name
from medplib_core.errors import MedplibError

GOOD_PROMPTS = "case,label,type,x0,y0,x1,y1\na,disc,box,2,2,10,10\n"
HEAD = "output: run\nengine: litemedsam\nprompts: prompts.csv\n"
CASE_A = "cases:\n  - {path: a.png, id: a}\n"


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]")
    lines.append(f"cases: *a{levels - 1}")
    return "\n".join(lines) + "\n"


# (name, spec file name, spec text, {extra file: content}, words the message must hold)
BAD_SPECS = [
    ("empty", "spec.yaml", "", {}, ["mapping"]),
    ("a list", "spec.yaml", "- a.png\n", {}, ["mapping"]),
    ("a scalar", "spec.yaml", "hello\n", {}, ["mapping"]),
    ("typo key", "spec.yaml", HEAD.replace("prompts:", "promts:") + CASE_A, {},
     ["line 3", "unknown key 'promts'", "did you mean 'prompts'"]),
    ("unknown key", "spec.yaml", HEAD + CASE_A + "colour: red\n", {}, ["line 6", "unknown key 'colour'"]),
    ("no cases", "spec.yaml", HEAD, {}, ["'cases' is missing"]),
    ("cases a number", "spec.yaml", HEAD + "cases: 5\n", {}, ["line 4", "expected a list of cases"]),
    ("cases empty", "spec.yaml", HEAD + "cases: []\n", {}, ["line 4", "no cases found"]),
    ("case a number", "spec.yaml", HEAD + "cases:\n  - 5\n", {}, ["line 5", "cases[0]", "cannot understand"]),
    ("case path a number", "spec.yaml", HEAD + "cases:\n  - {path: 5}\n", {}, ["line 5", "expected a path"]),
    ("case path empty", "spec.yaml", HEAD + "cases:\n  - {path: ''}\n", {}, ["line 5", "expected a path"]),
    ("case without path", "spec.yaml", HEAD + "cases:\n  - {file: a.png}\n", {}, ["line 5", "exactly one of"]),
    ("case path and folder", "spec.yaml", HEAD + "cases:\n  - {path: a.png, folder: x}\n", {},
     ["line 5", "exactly one of"]),
    ("case key typo", "spec.yaml", HEAD + "cases:\n  - {path: a.png, idd: a}\n", {},
     ["line 5", "unknown key 'idd'"]),
    ("case id a list", "spec.yaml", HEAD + "cases:\n  - {path: a.png, id: [1]}\n", {},
     ["line 5", "expected a case id"]),
    ("folder missing", "spec.yaml", HEAD + "cases:\n  - {folder: nope}\n", {}, ["line 5", "does not exist"]),
    ("folder pattern", "spec.yaml", HEAD + "cases:\n  - {folder: ., pattern: 5}\n", {},
     ["line 5", "expected a file pattern"]),
    ("cases csv missing", "spec.yaml", HEAD + "cases:\n  - {csv: nope.csv}\n", {},
     ["nope.csv", "cannot read the cases CSV"]),
    ("cases csv no path", "spec.yaml", HEAD + "cases:\n  - {csv: c.csv}\n", {"c.csv": "file,id\na.png,a\n"},
     ["line 5", "needs a 'path' column"]),
    ("cases csv latin-1", "spec.yaml", HEAD + "cases:\n  - {csv: c.csv}\n",
     {"c.csv": b"path,id\na.png,a\nb\xe9.png,b\n"}, ["c.csv", "line 3", "not UTF-8"]),
    ("cases csv empty path", "spec.yaml", HEAD + "cases:\n  - {csv: c.csv}\n", {"c.csv": "path,id\n,a\n"},
     ["c.csv", "line 2", "empty path"]),
    ("repeated ids", "spec.yaml", HEAD + "cases:\n  - {path: a.png, id: a}\n  - {path: a.png, id: a}\n", {},
     ["line 6", "cases[1]", "repeated"]),
    ("ids one file", "spec.yaml", HEAD + "cases:\n  - {path: a.png, id: a}\n  - {path: a.png, id: 'x/y'}\n"
     "  - {path: a.png, id: 'x_y'}\n", {}, ["line 7", "same output file"]),
    ("ids by case", "spec.yaml", HEAD + "cases:\n  - {path: a.png, id: a}\n  - {path: a.png, id: A}\n", {},
     ["line 6", "same output file"]),
    ("prompts a number", "spec.yaml", HEAD.replace("prompts.csv", "5") + CASE_A, {},
     ["line 3", "expected a path"]),
    ("prompts missing", "spec.yaml", HEAD.replace("prompts.csv", "nope.csv") + CASE_A, {},
     ["line 3", "nope.csv", "cannot read the prompts CSV"]),
    ("prompts header", "spec.yaml", HEAD + CASE_A, {"prompts.csv": "case,x0\na,1\n"},
     ["prompts.csv", "line 1", "header must have"]),
    ("prompts latin-1", "spec.yaml", HEAD + CASE_A, {"prompts.csv": b"case,label,x0,y0,x1,y1\na,r\xe9gion,1,1,5,5\n"},
     ["prompts.csv", "line 2", "not UTF-8"]),
    ("prompts not a number", "spec.yaml", HEAD + CASE_A, {"prompts.csv": GOOD_PROMPTS + "a,disc,box,abc,2,10,10\n"},
     ["prompts.csv", "line 3", "'abc' is not a number"]),
    ("prompts nan", "spec.yaml", HEAD + CASE_A, {"prompts.csv": GOOD_PROMPTS + "a,disc,box,nan,2,10,10\n"},
     ["line 3", "not a finite number"]),
    ("prompts inf", "spec.yaml", HEAD + CASE_A, {"prompts.csv": GOOD_PROMPTS + "a,disc,point,inf,2,,\n"},
     ["line 3", "not a finite number"]),
    ("prompts empty box", "spec.yaml", HEAD + CASE_A, {"prompts.csv": "case,label,type,x0,y0,x1,y1\na,disc,box,9,2,3,10\n"},
     ["line 2", "empty box"]),
    ("prompts type", "spec.yaml", HEAD + CASE_A, {"prompts.csv": GOOD_PROMPTS + "a,disc,circle,1,2,3,4\n"},
     ["line 3", "type must be"]),
    ("prompts polarity", "spec.yaml", HEAD + CASE_A,
     {"prompts.csv": "case,label,type,x0,y0,polarity\na,disc,point,3,4,maybe\n"}, ["line 2", "polarity"]),
    ("prompts slice", "spec.yaml", HEAD + CASE_A, {"prompts.csv": "case,label,slice,x0,y0,x1,y1\na,disc,-1,2,2,9,9\n"},
     ["line 2", "not a slice index"]),
    ("prompts slice fraction", "spec.yaml", HEAD + CASE_A,
     {"prompts.csv": "case,label,slice,x0,y0,x1,y1\na,disc,1.5,2,2,9,9\n"}, ["line 2", "not a slice index"]),
    ("prompts other case", "spec.yaml", HEAD + CASE_A, {"prompts.csv": GOOD_PROMPTS + "zz,disc,box,1,1,5,5\n"},
     ["line 3", "not in the spec", "'zz'"]),
    ("prompts no label", "spec.yaml", HEAD + CASE_A, {"prompts.csv": GOOD_PROMPTS + "a,,box,1,1,5,5\n"},
     ["line 3", "needs a case and a label"]),
    ("prompts bad quotes", "spec.yaml", HEAD + CASE_A, {"prompts.csv": GOOD_PROMPTS + 'a,"disc\0,box,1,1,5,5\n'},
     ["prompts.csv", "line"]),
    ("engine a number", "spec.yaml", HEAD.replace("engine: litemedsam", "engine: 5") + CASE_A, {},
     ["line 2", "expected an engine name or mapping"]),
    ("engine unknown", "spec.yaml", HEAD.replace("engine: litemedsam", "engine: {name: litemedsm}") + CASE_A, {},
     ["line 2", "unknown engine", "did you mean 'litemedsam'"]),
    ("engine value a list", "spec.yaml", HEAD.replace("engine: litemedsam", "engine: {name: litemedsam, device: [1]}")
     + CASE_A, {}, ["line 2", "engine.device", "expected a single value"]),
    ("targets a number", "spec.yaml", HEAD + CASE_A + "targets: 5\n", {}, ["line 6", "expected a list of names"]),
    ("targets need medplib", "spec.yaml", HEAD + CASE_A + "targets: [liver]\n", {}, ["line 6", "MedPLIB engine"]),
    ("nothing to do", "spec.yaml", "output: run\ncases: [a.png]\n", {}, ["give box/point prompts"]),
    ("propagate text", "spec.yaml", HEAD + CASE_A + "propagate: yes please\n", {},
     ["line 6", "expected true or false"]),
    ("workers zero", "spec.yaml", HEAD + CASE_A + "workers: 0\n", {}, ["line 6", "workers"]),
    ("workers text", "spec.yaml", HEAD + CASE_A + "workers: many\n", {}, ["line 6", "workers"]),
    ("output escapes", "spec.yaml", HEAD.replace("output: run", "output: ../elsewhere") + CASE_A, {},
     ["line 1", "outside the spec's folder", "--output"]),
    ("output absolute", "spec.yaml", HEAD.replace("output: run", "output: /tmp/medplib-escape") + CASE_A, {},
     ["line 1", "outside the spec's folder"]),
    ("yaml broken", "spec.yaml", HEAD + "cases: [a.png\n", {}, ["not valid YAML", "line"]),
    ("yaml tab", "spec.yaml", HEAD + "cases:\n\t- a.png\n", {}, ["not valid YAML", "line 5"]),
    ("json broken", "spec.json", '{"cases": [', {}, ["not valid JSON"]),
    ("json key", "spec.json", json.dumps({"cases": ["a.png"], "prompts": "prompts.csv", "extra": 1}), {},
     ["extra", "unknown key"]),
    ("spec latin-1", "spec.yaml", (HEAD + CASE_A + "# r\xe9gion\n").encode("latin-1"), {}, ["line 6", "not UTF-8"]),
    ("alias bomb", "spec.yaml", _bomb(), {}, ["expands to more than", "MEDPLIB_MAX_SPEC_NODES"]),
    ("recursive alias", "spec.yaml", HEAD + "cases: &c [*c]\n", {}, ["line 4", "recursive alias"]),
]


def _setup(root: Path, name: str, text, files: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(root / "a.png")
    (root / "prompts.csv").write_text(GOOD_PROMPTS)
    for fname, content in files.items():
        p = root / fname
        p.write_bytes(content) if isinstance(content, bytes) else p.write_text(content)
    spec = root / name
    spec.write_bytes(text) if isinstance(text, bytes) else spec.write_text(text)
    return spec


def test_there_are_forty_bad_specs() -> None:
    assert len(BAD_SPECS) >= 40


@pytest.mark.parametrize("name, fname, text, files, words", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_each_bad_spec_gets_one_message_naming_file_place_and_problem(tmp_path, name, fname, text,
                                                                    files, words) -> None:
    spec = _setup(tmp_path / "s", fname, text, files)
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    msg = str(info.value)
    assert msg.startswith(str(spec)), msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert "\n" not in msg and len(msg) < 600, msg


def test_the_good_spec_loads_and_output_may_come_from_the_command_line(tmp_path) -> None:
    spec = _setup(tmp_path / "s", "spec.yaml", HEAD + CASE_A, {})
    loaded = load_spec(spec)
    assert loaded.output == (tmp_path / "s" / "run").resolve() and loaded.cases[0].id == "a"
    escaping = _setup(tmp_path / "t", "spec.yaml", HEAD.replace("output: run", "output: ../x") + CASE_A, {})
    assert load_spec(escaping, output=tmp_path / "elsewhere").output == (tmp_path / "elsewhere").resolve()


def test_an_output_link_out_of_the_spec_folder_is_refused(tmp_path) -> None:
    spec = _setup(tmp_path / "s", "spec.yaml", HEAD + CASE_A, {})
    (tmp_path / "outside").mkdir()
    (tmp_path / "s" / "run").symlink_to(tmp_path / "outside")
    with pytest.raises(SpecError, match="outside the spec's folder"):
        load_spec(spec)


def test_cli_batch_names_the_spec_problem_without_a_traceback(tmp_path) -> None:
    import subprocess
    import sys

    spec = _setup(tmp_path / "s", "spec.yaml", HEAD.replace("prompts:", "promts:") + CASE_A, {})
    res = subprocess.run([sys.executable, "-m", "medplib_core.cli.main", "batch", str(spec)],
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "line 3" in res.stderr and "promts" in res.stderr


def test_the_alias_bomb_is_refused_fast_and_small(tmp_path) -> None:
    spec = _setup(tmp_path / "s", "spec.yaml", _bomb(), {})
    assert spec.stat().st_size < 600
    (o,) = run_bounded([{"id": "bomb", "call": "medplib_core.batch.spec:load_spec", "args": [str(spec)]}],
                       timeout_s=30, mem_bytes=2 * GB, preload=("medplib_core.batch.spec",))
    assert o.clean and not o.ok and o.type == "SpecError", str(o)
    assert o.seconds < 5 and o.peak_bytes < 200e6, str(o)


@pytest.mark.parametrize("case_id, name", [("../../escaped", "_.._escaped"), ("/etc/x", "_etc_x"),
                                           ("..", "case"), ("CON", "_CON"), ("a b", "a_b"),
                                           ("ok-1.2_x", "ok-1.2_x"), ("", "case")])
def test_case_ids_become_safe_file_names(case_id, name) -> None:
    assert safe_name(case_id) == name
    assert "/" not in safe_name(case_id) and not safe_name(case_id).startswith(".")


# ----- property-based: whatever a spec or a prompt CSV holds, the answer is in the family ------
VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats() |
                      st.sampled_from(["a.png", "prompts.csv", "run", "litemedsam", "medplib", "../x",
                                       "", "auto", "x.csv", "/tmp"]),
                      lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(st.sampled_from(["path", "id", "folder", "csv", "pattern", "name",
                                                       "device", "x"]), inner, max_size=3),
                      max_leaves=12)
SPEC_KEYS = ["output", "engine", "cases", "prompts", "targets", "propagate", "dicom_seg", "workers",
             "other"]


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prop")
    _setup(root, "spec.yaml", "", {})
    return root


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.sampled_from(SPEC_KEYS), VALUES, max_size=6), as_json=st.booleans())
def test_any_spec_gives_a_spec_or_a_spec_error(spec_dir, data, as_json) -> None:
    spec = spec_dir / ("spec.json" if as_json else "spec.yaml")
    import yaml

    spec.write_text(json.dumps(data) if as_json else yaml.safe_dump(data))
    try:
        loaded = load_spec(spec)
    except SpecError as exc:
        assert str(exc).startswith(str(spec)) and "\n" not in str(exc)
    else:
        assert loaded.cases and all(c.output_name for c in loaded.cases)


CELL = st.sampled_from(["", "a", "box", "point", "pixel", "world", "1", "0", "-1", "2.5", "nan",
                        "inf", "-inf", "1e308", "1e999", "x", "neg", " 3 ", "\u00e9", '"', ","])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(st.sampled_from(["case", "label", "type", "space", "slice", "x0", "y0", "z0",
                                        "x1", "y1", "z1", "polarity", "note"]), min_size=1, max_size=9,
                       unique=True),
       rows=st.lists(st.lists(CELL, min_size=0, max_size=10), max_size=5),
       raw=st.binary(max_size=40))
def test_any_prompt_csv_gives_rows_or_a_prompt_error(spec_dir, header, rows, raw) -> None:
    import csv
    import io
    import math

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    path = spec_dir / "p.csv"
    path.write_bytes(buf.getvalue().encode() + raw)
    try:
        out = read_prompts(path)
    except PromptCsvError as exc:
        assert str(path) in str(exc)
    else:
        for r in out:
            assert all(math.isfinite(c) for c in r.coords) and r.type in ("box", "point")
            assert r.case and r.label and r.line >= 2


def test_prompt_errors_are_in_the_family() -> None:
    assert issubclass(PromptCsvError, MedplibError) and issubclass(SpecError, MedplibError)
