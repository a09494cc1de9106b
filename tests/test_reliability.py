"""Reliability end to end: a killed or stopped `cvkit train` resumes to the result of an uninterrupted run; two
data-parallel processes match one; no default load path unpickles; an unwritable --out fails before training."""
from __future__ import annotations
import json, os, pickle, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import CVKIT, PYTHON, check_one_line_error, cli_env, run_cli

# the built-in digits, small_resnet from scratch: 4 epochs of 23 batches (about 3 s each here)
ARGS = ("--epochs", "4", "--seed", "7", "--deterministic")
VOLATILE = {"data_seconds", "train_seconds", "resumed_from", "config", "processes"}


def start(out:Path, *extra:str) -> subprocess.Popen:
    return subprocess.Popen([str(CVKIT), "train", *ARGS, "--out", str(out), *extra], env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def wait_for_line(p:subprocess.Popen, prefix:str) -> list[str]:
    "Read stdout until a line starts with `prefix`; return the lines read."
    lines = []
    for line in p.stdout:
        lines.append(line)
        if line.startswith(prefix): return lines
    raise AssertionError(f"no line starting {prefix!r}; stdout:\n{''.join(lines)}\nstderr:\n{p.stderr.read()}")


def wait_for_file(path:Path, timeout:float=60):
    "Wait until `path` exists (checkpoints are renamed into place whole)."
    t = time.time()
    while not path.exists():
        assert time.time() - t < timeout, f"{path} was not written within {timeout} s"
        time.sleep(0.02)


def weights(out:Path) -> dict: return load_file(out/"model.safetensors")


def metrics(out:Path) -> dict:
    return {k: v for k, v in json.loads((out/"metrics.json").read_text()).items() if k not in VOLATILE}


def positions(out:Path) -> list[dict]:
    from cvkit.checkpoint import CheckpointFolder, load_checkpoint
    return [load_checkpoint(p)["position"] for p in CheckpointFolder(out/"checkpoints").paths()]


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    "An uninterrupted run, the reference."
    out = tmp_path_factory.mktemp("whole")
    rc, so, se = run_cli("train", *ARGS, "--out", out)
    assert rc == 0, se
    return out


def check_same_run(a:Path, b:Path):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa: assert torch.equal(wa[k], wb[k]), f"{k} differs"            # bit-identical on the CPU
    assert metrics(a) == metrics(b)
    ha, hb = (Path(x/"history.csv").read_text().splitlines() for x in (a, b))
    drop = lambda rows: [",".join(r.split(",")[:-1]) for r in rows]          # the last column is the epoch's seconds
    assert drop(ha) == drop(hb)


def test_sigkill_mid_epoch_then_resume(whole, tmp_path):
    out = tmp_path/"killed"
    p = start(out)
    seen = wait_for_line(p, "epoch 2/4")
    wait_for_file(out/"checkpoints"/"checkpoint-00002.safetensors")   # written after the epoch's line
    time.sleep(0.5)                                            # inside epoch 3 (an epoch takes seconds)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not any(l.startswith("epoch 3/4") for l in seen)
    assert [q["epoch"] for q in positions(out)][-1] == 2       # the last checkpoint: after epoch 2
    assert not (out/"metrics.json").exists()
    rc, so, se = run_cli("train", "--resume", out)
    assert rc == 0, se
    assert "resuming from" in se and "epoch 3/4" in so and "epoch 1/4" not in so
    check_same_run(whole, out)
    assert json.loads((out/"metrics.json").read_text())["resumed_from"].endswith(".safetensors")


def test_sigterm_mid_epoch_checkpoints_then_resume(whole, tmp_path):
    out = tmp_path/"stopped"
    p = start(out)
    wait_for_line(p, "epoch 1/4")
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    so, se = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, se
    assert "SIGTERM: stopped at all layers, epoch 2/4, batch" in se and "--resume" in se and "Traceback" not in se
    last = positions(out)[-1]
    assert last["epoch"] == 1 and 0 < last["batch"] < 23        # mid-epoch, with the batch counter
    rc, so, se = run_cli("train", "--resume", out)
    assert rc == 0, se
    check_same_run(whole, out)


def test_resume_refuses_other_settings_and_missing_runs(whole, tmp_path):
    rc, so, se = run_cli("train", "--resume", whole, "--epochs", "5")
    check_one_line_error(rc, so, se, "settings differ", "epochs: 4 in the checkpoint, 5 now")
    rc, so, se = run_cli("train", "--resume", tmp_path/"nothing")
    check_one_line_error(rc, so, se, "does not exist")
    # a finished run resumes to the same model and metrics without training
    copy = tmp_path/"again"
    import shutil; shutil.copytree(whole, copy)
    rc, so, se = run_cli("train", "--resume", copy)
    assert rc == 0 and "epoch" not in so, so
    check_same_run(whole, copy)


def test_two_processes_match_one(whole, tmp_path):
    out = tmp_path/"dp"
    rc, so, se = run_cli("train", *ARGS, "--processes", "2", "--out", out)
    assert rc == 0, se
    assert "cvkit [1/2]: process 1 of 2 (gloo on cpu)" in se and "cvkit [2/2]: process 2 of 2 (gloo on cpu)" in se
    assert so.count("wrote ") == 1 and so.count("epoch 4/4") == 1    # rank 0 reports, once
    one, two = (json.loads((x/"metrics.json").read_text()) for x in (whole, out))
    assert two["processes"] == 2 and two["bs"] == one["bs"]
    assert abs(two["accuracy"] - one["accuracy"]) <= 0.01, (one["accuracy"], two["accuracy"])
    assert len((out/"history.csv").read_text().splitlines()) == 5   # header + 4 epochs, written once
    assert [q["epoch"] for q in positions(out)] == [3, 4]


class Payload:
    "A pickle that would create a file when unpickled."
    def __init__(self, marker:Path): self.marker = marker
    def __reduce__(self): return (Path.touch, (self.marker,))


def test_no_default_load_path_unpickles(whole, tmp_path):
    marker = tmp_path/"pwned"
    evil = lambda path: torch.save({"w": Payload(marker)}, path)
    # 1. a model folder whose weights are a pickle
    model = tmp_path/"model"; model.mkdir()
    (model/"cvkit.json").write_text((whole/"cvkit.json").read_text()); evil(model/"model.safetensors")
    rc, so, se = run_cli("predict", model, Path(__file__))
    assert rc == 1 and "Traceback" not in se
    # 2. a checkpoint that is a pickle (newest) beside a good one: resume falls back to the good one
    run = tmp_path/"run"; (run/"checkpoints").mkdir(parents=True)
    good = sorted((whole/"checkpoints").iterdir())[-1]
    (run/"checkpoints"/"checkpoint-00001.safetensors").write_bytes(good.read_bytes())
    evil(run/"checkpoints"/"checkpoint-00002.safetensors")
    rc, so, se = run_cli("train", "--resume", run)
    assert rc == 0 and "newer ones are unusable" in se, se
    # 3. pretrained weights given as a pickled .pth
    evil(tmp_path/"weights.pth")
    rc, so, se = run_cli("train", "--arch", "small_resnet", "--weights", tmp_path/"weights.pth", "--epochs", "1", "--out", tmp_path/"w")
    assert rc == 1 and "Traceback" not in se
    # 4. the library functions themselves
    code = ("import sys\nfrom cvkit.export import load_model\nfrom cvkit.checkpoint import load_checkpoint\n"
            "from cvkit.models import load_state_dict_file\n"
            f"for f in (lambda: load_model({str(model)!r}), lambda: load_checkpoint({str(run/'checkpoints'/'checkpoint-00002.safetensors')!r}),"
            f" lambda: load_state_dict_file({str(tmp_path/'weights.pth')!r})):\n"
            "    try: f(); print('loaded')\n    except Exception as e: print(type(e).__name__)\n")
    r = subprocess.run([str(PYTHON), "-c", code], capture_output=True, text=True, env=cli_env())
    assert "loaded" not in r.stdout and r.returncode == 0, r.stdout + r.stderr
    assert not marker.exists()                                  # nothing was unpickled, anywhere


def test_unwritable_out_fails_before_training(tmp_path):
    blocker = tmp_path/"a-file"; blocker.write_text("not a folder")
    t = time.time()
    rc, so, se = run_cli("train", "--out", blocker/"run")
    check_one_line_error(rc, so, se, "cannot write to", "--out")
    assert "epoch" not in so and not any("data:" in l for l in se.splitlines())   # no data read, no training
