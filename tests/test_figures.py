"""The figures quoted in README.md and nbs/index.ipynb are the ones in benchmarks/results: each is rendered there by
`tools/figures.py` (`make figures`) between `<!-- fig:NAME -->` markers, and no measured-looking number stands
without one. Re-rendering happens in memory; nothing here runs a benchmark."""
from __future__ import annotations
import json, shutil, sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO/"tools"))
import figures as F                                                          # noqa: E402

DOCS = [REPO/d for d in F.DOCS]


@pytest.fixture(scope="module")
def results(): return F.Results()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_figures_match_results(doc, results):
    "Every marked figure is what its results file says (after a benchmark, `make figures` updates the text)."
    assert F.differences(doc, results) == [], "run `make figures`"
    assert F.render_document(doc, results) == doc.read_text()              # rendering changes nothing, byte for byte


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_hand_typed_figures(doc):
    "A percentage, a time, a ratio or a speed in the text is a marked figure, rendered from results."
    assert F.unmarked_in(doc) == [], "mark each figure and add it to FIGURES in tools/figures.py"


def test_every_figure_is_quoted():
    "FIGURES holds no figure that no document quotes (a stale entry would hide a dropped measurement)."
    assert set(F.FIGURES) - set.union(*(F.quoted(d) for d in DOCS)) == set()


def test_a_changed_result_is_caught(tmp_path):
    "Measuring again changes the JSON; the text then differs until it is rendered again."
    for f in F.RESULTS.glob("*.json"): shutil.copy(f, tmp_path)
    text = F.render_text((REPO/"README.md").read_text(), F.Results(tmp_path))     # up to date with the results
    res = json.loads((tmp_path/"overhead-cpu.json").read_text())
    res["ratios"]["cvkit_over_bare"] = 0.5
    (tmp_path/"overhead-cpu.json").write_text(json.dumps(res))
    diff = F.text_differences(text, F.Results(tmp_path))
    assert len(diff) == 1 and diff[0].startswith("overhead.cvkit_over_bare:") and "'0.50'" in diff[0], diff
    fixed = F.render_text(text, F.Results(tmp_path))
    assert "<!-- fig:overhead.cvkit_over_bare -->0.50<!-- /fig -->" in fixed
    assert F.text_differences(fixed, F.Results(tmp_path)) == []


def test_a_hand_edited_figure_is_caught(results):
    "Typing over a rendered figure makes it differ from its results."
    text = F.render_text((REPO/"README.md").read_text(), results)                # up to date with the results
    name = "quickstart.cvkit_time_to_target"
    rendered = F.render_figure(name, results[F.FIGURES[name].source])
    edited = text.replace(f"<!-- fig:{name} -->{rendered}<!-- /fig -->", f"<!-- fig:{name} -->1.2 s<!-- /fig -->")
    assert edited != text
    assert F.text_differences(edited, results) == [f"{name}: '1.2 s' in the text, {rendered!r} from quickstart-cpu.json"]


def test_an_unmarked_figure_is_caught():
    "A number typed without a marker in a section of measurements is found; marked or in inline code, it is not."
    text = "## How fast\n\nOn the 2-core CPU: cvkit {} beside fastai, ratio {}; `fit(4, 1e-2)` at batch 256.\n"
    assert F.unmarked_figures(text.format("5.4 s", "<!-- fig:quickstart.ratio -->0.21<!-- /fig -->")) != []
    assert F.unmarked_figures(text.format("<!-- fig:x -->5.4 s<!-- /fig -->", "0.21")) != []      # a bare ratio
    assert F.unmarked_figures(text.format("<!-- fig:x -->5.4 s<!-- /fig -->",
                                          "<!-- fig:quickstart.ratio -->0.21<!-- /fig -->")) == []
    assert F.unmarked_figures("## Layout\n\n90 % of the time goes into the model.\n") != []      # units: every section
    assert F.unmarked_figures("## Layout\n\nformat 2, version 0.3 of the table\n") == []          # decimals: measured sections


def test_unknown_figure_and_missing_key(results):
    with pytest.raises(F.FigureError, match="unknown figure 'quickstart.nope'"):
        F.render_text("<!-- fig:quickstart.nope -->1<!-- /fig -->", results)
    with pytest.raises(F.FigureError, match="quickstart-cpu.json lacks"):
        F.check_source("quickstart-cpu.json", {"target": 0.985})


def test_make_test_timing_is_read_from_the_log(tmp_path):
    "tools/ci_timing.py reads the total, every notebook's time and pytest's slowest tests from a `.ci/run` log."
    import ci_timing
    log = tmp_path/"ci.log"
    log.write_text("cvkit/ matches nbs/\nSuccess.\n02_transfer_learning.ipynb: 51 secs\n00_core.ipynb: 3 secs\n"
                   "============================= slowest 15 durations =============================\n"
                   "61.20s call     tests/test_cli.py::test_digits\n4.10s setup    tests/test_cli.py::test_shapes\n"
                   "======================= 120 passed, 1 skipped in 400.51s (0:06:40) ========================\n"
                   "CI finished in 812s\n")
    out = tmp_path/"make-test.json"
    assert ci_timing.main([str(log), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["total_seconds"] == 812 and res["pytest_seconds"] == pytest.approx(400.51)
    assert res["pytest_summary"] == "120 passed, 1 skipped"
    assert [r["notebook"] for r in res["notebooks"]] == ["02_transfer_learning.ipynb", "00_core.ipynb"]
    assert res["slowest_tests"][0] == {"test": "tests/test_cli.py::test_digits", "phase": "call", "seconds": 61.2}
    assert F.render_figure("make_test.minutes", res) == "14 minutes"
    log.write_text("00_core.ipynb: 3 secs\n")                                 # pytest never finished: no figure from it
    with pytest.raises(SystemExit, match="no pytest summary"): ci_timing.main([str(log)])
