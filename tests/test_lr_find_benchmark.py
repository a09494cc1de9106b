"""Smoke test of `benchmarks/lr_find.py`: a tiny run prints the side-by-side figures and writes a consistent JSON."""
from __future__ import annotations
import json, math, re, subprocess, time
from pathlib import Path

import pytest

from conftest import run_benchmark_script

RULES = ["valley", "recommended", "slide", "minimum", "steep"]
SEEDS = [0, 1]


def summary_table(stdout:str) -> dict:
    "The rows of the printed summary table: rule -> [rate, mean accuracy, std]."
    return {l.split()[0]: l.split()[1:] for l in stdout.splitlines() if len(l.split()) == 4 and l.split()[0] in RULES}


def run_benchmark(*args, cwd:Path, timeout:float=120) -> subprocess.CompletedProcess:
    return run_benchmark_script("lr_find.py", *args, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    "One tiny benchmark run: 16 px, 1 epoch, 2 seeds, a 20-step range test."
    root = tmp_path_factory.mktemp("lr_find_bench")
    out = root/"results"/"lr_find.json"
    t0 = time.perf_counter()
    p = run_benchmark("--size", 16, "--epochs", 1, "--seeds", *SEEDS, "--num-it", 20, "--json", out, cwd=root)
    return p, out, time.perf_counter() - t0


def test_runs_quickly_and_cleanly(tiny_run):
    p, out, seconds = tiny_run
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert "Traceback" not in p.stderr
    assert seconds < 60, f"the tiny benchmark took {seconds:.0f}s"
    assert "\r" not in p.stdout and "\x1b" not in p.stdout, "progress-bar output in stdout"
    assert not [f for f in out.parent.iterdir() if f.name.endswith(".tmp")], "temporary files left behind"


def test_prints_side_by_side(tiny_run):
    p, out, _ = tiny_run
    lines = p.stdout.splitlines()
    assert lines[0].startswith("digits at 16px") and "1 epoch" in lines[0] and "20 steps" in lines[0]
    seed_lines = [l for l in lines if l.startswith("seed ")]
    assert [int(l.split()[1].rstrip(":")) for l in seed_lines] == SEEDS
    for l in seed_lines:
        for rule in RULES: assert f" {rule} " in l, f"{rule} missing from {l!r}"
    assert list(summary_table(p.stdout)) == RULES, p.stdout
    assert any(l.startswith("recommended vs valley") for l in lines)
    assert lines[-1] == f"wrote {out}"


def test_json_is_consistent(tiny_run):
    from cvkit.train.lr_find import recommend_lr
    p, out, _ = tiny_run
    d = json.loads(out.read_text())
    assert d["benchmark"] == "lr_find"
    assert isinstance(d["device"], str) and d["device"]
    assert d["torch"] and re.match(r"\d{4}-\d\d-\d\d$", d["date"])
    assert (d["args"]["size"], d["args"]["epochs"], d["args"]["seeds"], d["args"]["num_it"]) == (16, 1, SEEDS, 20)
    assert list(d["rules"]) == RULES
    table = summary_table(p.stdout)
    for rule, r in d["rules"].items():
        assert len(r["lrs"]) == len(r["accuracies"]) == len(SEEDS)
        accs = [a for a in r["accuracies"] if a is not None]
        assert all(0 <= a <= 1 for a in accs)
        assert all(lr is None or lr > 0 for lr in r["lrs"])
        if accs:
            assert r["mean_accuracy"] == pytest.approx(sum(accs)/len(accs))
            printed = float(table[rule][1].rstrip("%"))/100
            assert printed == pytest.approx(r["mean_accuracy"], abs=6e-5), "printed mean differs from the JSON"
    for seed in SEEDS:
        per = d["per_seed"][str(seed)]["rules"]
        suggestions = {k: per[k]["lr"] for k in ("valley", "slide", "minimum", "steep")}
        expected = recommend_lr(suggestions)[0]
        assert per["recommended"]["lr"] == (None if expected is None else pytest.approx(expected))
        for rule in RULES:               # rules suggesting the same rate share a run: same numbers
            same = [k for k in RULES if per[k]["lr"] == per[rule]["lr"]]
            assert len({per[k]["accuracy"] for k in same}) == 1
    rec, val = d["rules"]["recommended"]["mean_accuracy"], d["rules"]["valley"]["mean_accuracy"]
    assert d["recommended_minus_valley_points"] == pytest.approx(100*(rec - val))
    assert d["recommended_at_least_valley"] == (rec >= val)


def test_bad_arguments(tmp_path):
    p = run_benchmark("--num-it", 5, cwd=tmp_path)
    assert p.returncode == 2 and "--num-it >= 10" in p.stderr
    assert "Traceback" not in p.stderr
