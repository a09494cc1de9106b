"""Hyperparameter searches shared by several processes, and a killed `cvkit tune` that continues when run again."""
from __future__ import annotations
import os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest

from conftest import CVKIT, PYTHON, cli_env

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState

TINY = ["--arch", "simple_cnn", "--size", "16", "--epochs", "1"]
WORKER = textwrap.dedent("""
    import sys
    from cvkit.experiment.search import tune
    tune(arch="simple_cnn", size=16, epochs=1, space={"lr": (1e-3, 3e-2), "wd": (1e-4, 1e-1)}, trials=int(sys.argv[2]),
         storage=sys.argv[1], study_name="shared", retrain=False, pruner="none")
""")


def finished(study):
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_workers_share_one_study(tmp_path, kind):
    "Two processes on one storage complete one study: every trial number once, none lost, none run twice."
    storage = f"sqlite:///{tmp_path/'study.db'}" if kind == "sqlite" else str(tmp_path/"study.log")
    target = 6
    procs = [subprocess.Popen([str(PYTHON), "-c", WORKER, storage, str(target)], env=cli_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[-3000:] for o in outs]
    from cvkit.experiment.search import open_storage
    study = optuna.load_study(study_name="shared", storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials))), numbers                 # no number lost or repeated
    assert len({t._trial_id for t in trials}) == len(trials)
    assert target <= len(finished(study)) <= target + 1, [t.state for t in trials]   # a second worker may finish one in flight
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), [t.state for t in trials]
    assert len({t.user_attrs["worker"] for t in trials}) == 2, "both workers ran trials"
    assert sum(bool(t.user_attrs.get("default")) for t in trials) == 1          # the default config once, not once per worker
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == len(params), "a setting was trained twice"


def test_killed_tune_continues(tmp_path):
    "SIGKILL `cvkit tune` mid-search; the same command again keeps the finished trials and completes the study."
    out, target = tmp_path/"tune", 6
    cmd = [str(CVKIT), "tune", *TINY, "--trials", str(target), "--pruner", "none", "--out", str(out)]
    p = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage, deadline, before = f"sqlite:///{out/'study.db'}", time.time() + 300, []
    try:
        while time.time() < deadline and p.poll() is None:
            time.sleep(0.5)
            if not (out/"study.db").exists(): continue
            try: study = optuna.load_study(study_name="cvkit", storage=storage)
            except Exception: continue
            before = [(t.number, t.value, t.params) for t in finished(study)]
            if len(before) >= 2: break
        assert p.poll() is None, "tune finished before it could be killed; make the search longer"
        os.kill(p.pid, signal.SIGKILL); p.wait()
    finally:
        if p.poll() is None: p.kill()
    study = optuna.load_study(study_name="cvkit", storage=storage)
    before = [(t.number, t.value, t.params) for t in finished(study)]
    assert 2 <= len(before) < target and not (out/"tune.json").exists()
    r = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"continues: {len(before)} of {target} trials already finished" in r.stderr + r.stdout
    study = optuna.load_study(study_name="cvkit", storage=storage)
    after = {t.number: (t.number, t.value, t.params) for t in finished(study)}
    assert len(after) == target
    assert all(after[n] == (n, v, prm) for n, v, prm in before), "finished trials were re-run or changed"
    cut = [t for t in study.get_trials(deepcopy=False) if t.state not in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(cut) <= 1 and all(t.state in (TrialState.RUNNING, TrialState.FAIL) for t in cut)   # the one the kill cut off
    assert (out/"best"/"model.safetensors").exists() and (out/"tune.json").exists()
