"""Smoke test of `benchmarks/audit.py --parts blur`: blurred copies planted among real photos (40 per set at 128 px),
the blur check scored before (the Laplacian sharpness alone) and now, and a JSON that agrees with what was printed."""
from __future__ import annotations
import json, subprocess, time
from pathlib import Path

import pytest

from conftest import REPO, run_benchmark_script

SHARED = REPO.parent/"shared"/"data"
SETS = ("hymenoptera", "pinochle_cards")
ARCHIVES = ("hymenoptera.tar", "pinochle_cards.tar.gz")

pytestmark = pytest.mark.skipif(not all((SHARED/a).is_file() for a in ARCHIVES),
                                reason=f"needs {', '.join(ARCHIVES)} in {SHARED} (see its README)")


def run_benchmark(*args, cwd:Path, timeout:float=120) -> subprocess.CompletedProcess:
    return run_benchmark_script("audit.py", *args, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    "One tiny run, merged into a JSON that already holds another part (which must survive)."
    root = tmp_path_factory.mktemp("audit_blur_bench")
    out = root/"results"/"audit.json"; out.parent.mkdir()
    out.write_text(json.dumps({"benchmark": "audit", "date": "2000-01-01", "cvkit": "0", "total_seconds": 1.0,
                               "args": {"parts": "labels"}, "labels": {"kept": True}}))
    t0 = time.perf_counter()
    p = run_benchmark("--parts", "blur", "--blur-sizes", 128, "--blur-limit", 40, "--blur-repeats", 1, "--merge", "--json", out, cwd=root)
    return p, out, time.perf_counter() - t0


def test_runs_quickly_and_cleanly(tiny_run):
    p, out, seconds = tiny_run
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert "Traceback" not in p.stderr
    assert seconds < 60, f"the tiny benchmark took {seconds:.0f}s"
    assert not [f for f in out.parent.iterdir() if f.name.endswith(".tmp")], "temporary files left behind"
    assert p.stdout.splitlines()[-1] == f"wrote {out}"


def test_figures_add_up(tiny_run):
    p, out, _ = tiny_run
    res = json.loads(out.read_text())
    assert set(res["blur"]["sets"]) == set(SETS)
    for name in SETS:
        s = res["blur"]["sets"][name]["128"]
        assert s["n_images"] == 40 and s["radius"] == {"strong": 6.0, "moderate": 2.0}
        for when in ("before", "now"):
            r = s[when]
            hits = r["strong_found"] + r["moderate_found"]
            assert r["strong_planted"] == r["moderate_planted"] == 4
            assert r["found"] == hits + r["untouched_found"]
            assert r["recall_strong"] == pytest.approx(r["strong_found"]/r["strong_planted"])
            assert r["recall_moderate"] == pytest.approx(r["moderate_found"]/r["moderate_planted"])
            if r["found"]: assert r["precision"] == pytest.approx(hits/r["found"])
            assert r["ms_per_image"] > 0 and r["measure_ms_per_image"] > 0
            row = next(l for l in p.stdout.splitlines() if l.split()[:3] == [name, "128", when])
            assert row.split()[3:5] == ["40", str(r["found"])], row          # the printed table is the JSON's
        assert s["now"]["measure_ms_per_image"] > s["before"]["measure_ms_per_image"]   # now measures one thing more


def test_strong_blur_is_found_now(tiny_run):
    "Every strongly blurred photo is found now, nothing untouched is flagged; the Laplacian sharpness alone missed ants and bees."
    _, out, _ = tiny_run
    sets = json.loads(out.read_text())["blur"]["sets"]
    for name in SETS:
        now, before = sets[name]["128"]["now"], sets[name]["128"]["before"]
        assert now["recall_strong"] == 1.0 and now["untouched_found"] == 0, (name, now)
        assert now["strong_found"] >= before["strong_found"]
    assert sets["hymenoptera"]["128"]["before"]["recall_strong"] < 0.5     # the failure the re-blur measure fixes


def test_merge_keeps_other_parts(tiny_run):
    _, out, _ = tiny_run
    res = json.loads(out.read_text())
    assert res["labels"] == {"kept": True}
    assert [r["parts"] for r in res["runs"]] == ["labels", "blur"]
