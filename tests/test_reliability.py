"""Reliability end to end: a killed or stopped `cvkit train` resumes to the result of an uninterrupted run; two
data-parallel processes reach the weights of one; no default load path unpickles; an unwritable --out fails before training."""
from __future__ import annotations
import json, os, pickle, re, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import CVKIT, PYTHON, check_one_line_error, cli_env, make_shapes, run_cli

# the built-in digits, small_resnet from scratch: 4 epochs of 22 batches (about 3 s each here)
ARGS = ("--epochs", "4", "--size", "16", "--seed", "7", "--deterministic")   # 16 px: what is tested here does not need more
VOLATILE = {"data_seconds", "train_seconds", "resumed_from", "config", "processes"}


# Test instrumentation, imported by every Python process of a run (the launcher's children too) as `sitecustomize`
# from $PYTHONPATH; each part is switched on by its variable, and nothing in it draws random numbers.
HOOKS = '''
import os
if os.environ.get("CVKIT_TEST_BATCH_LOG"):          # append "epoch batch batches" (1-based) after every trained batch
    from fastai.learner import Learner
    from fastai.callback.core import Callback
    class BatchLog(Callback):
        order = 100
        def after_batch(self):
            if not self.training: return
            with open(os.environ["CVKIT_TEST_BATCH_LOG"], "a") as f: f.write(f"{self.epoch + 1} {self.iter + 1} {self.n_iter}\\n")
    _init = Learner.__init__
    def __init__(self, *args, **kwargs): _init(self, *args, **kwargs); self.add_cb(BatchLog())
    Learner.__init__ = __init__
if os.environ.get("CVKIT_TEST_PLAIN_CNN"):          # "plain_cnn": simple_cnn without batch-norm or dropout
    import functools
    from cvkit.models.architectures import simple_cnn
    from cvkit.models.registry import IMAGENET_MEAN, IMAGENET_STD, ArchSpec, register_arch
    register_arch(ArchSpec("plain_cnn", builder=functools.partial(simple_cnn, batchnorm=False, dropout=0.0), family="cvkit",
                           small_images=True, mean=IMAGENET_MEAN, std=IMAGENET_STD, summary="simple_cnn, no batch-norm, no dropout"))
'''


@pytest.fixture(scope="module")
def hooks(tmp_path_factory) -> Path:
    "A folder holding the instrumentation as sitecustomize.py, for $PYTHONPATH."
    d = tmp_path_factory.mktemp("hooks")
    (d/"sitecustomize.py").write_text(HOOKS)
    return d


def start(out:Path, *extra:str, env:dict|None=None) -> subprocess.Popen:
    return subprocess.Popen([str(CVKIT), "train", *ARGS, "--out", str(out), *extra], env=env or cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def logged_batches(log:Path) -> list[tuple[int, int, int]]:
    "The (epoch, batch, batches per epoch) lines of a batch log written so far (a line still being written is left out)."
    text = log.read_text() if log.exists() else ""
    return [tuple(map(int, l.split())) for l in text.splitlines(keepends=True) if l.endswith("\n")]


def wait_for_batch(p:subprocess.Popen, log:Path, epoch:int, batch:int, timeout:float=120):
    "Wait until the batch log shows `batch` batches of `epoch` trained."
    t = time.time()
    while not any(e == epoch and b >= batch for e, b, _ in logged_batches(log)):
        assert p.poll() is None, f"the run ended (exit {p.returncode}) before batch {batch} of epoch {epoch}:\n{p.stderr.read()}"
        assert time.time() - t < timeout, f"batch {batch} of epoch {epoch} not trained within {timeout} s"
        time.sleep(0.02)


def weights(out:Path) -> dict: return load_file(out/"model.safetensors")


def metrics(out:Path) -> dict:
    return {k: v for k, v in json.loads((out/"metrics.json").read_text()).items() if k not in VOLATILE}


def positions(out:Path) -> list[dict]:
    from cvkit.train.checkpoint import CheckpointFolder, load_checkpoint
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


def test_sigkill_mid_epoch_then_resume(whole, tmp_path, hooks):
    """SIGKILL leaves no chance to write a checkpoint: killed inside epoch 2, the run resumes from the checkpoint at
    the end of epoch 1, trains epoch 2 again from its first batch, and ends bit for bit as the uninterrupted run."""
    out, log = tmp_path/"killed", tmp_path/"batches.log"
    p = start(out, env=cli_env(PYTHONPATH=hooks, CVKIT_TEST_BATCH_LOG=log))
    wait_for_batch(p, log, epoch=2, batch=3)
    p.send_signal(signal.SIGKILL); p.communicate()
    epoch, batch, n = logged_batches(log)[-1]
    assert epoch == 2 and 3 <= batch < n, (epoch, batch, n)      # the kill landed inside epoch 2, after some of its batches
    assert positions(out) == [{"phase": 0, "epoch": 1, "batch": 0, "n_epoch": 4}]   # only the end of epoch 1 was saved
    assert not (out/"metrics.json").exists()
    rc, so, se = run_cli("train", "--resume", out)
    assert rc == 0, se
    assert "resuming from" in se and re.findall(r"^epoch (\d+)/4", so, re.M) == ["2", "3", "4"], so   # epoch 2 again
    check_same_run(whole, out)
    assert json.loads((out/"metrics.json").read_text())["resumed_from"].endswith("checkpoint-00001.safetensors")


def test_sigterm_mid_epoch_checkpoints_then_resume(whole, tmp_path, hooks):
    out, log = tmp_path/"stopped", tmp_path/"batches.log"
    p = start(out, env=cli_env(PYTHONPATH=hooks, CVKIT_TEST_BATCH_LOG=log))
    wait_for_batch(p, log, epoch=2, batch=3)
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


def test_two_processes_match_one(tmp_path, hooks):
    """Two data-parallel processes, each on half of every batch, reach the weights of one process on the whole batch:
    their gradients are averaged at every step. The comparison is made exact where it can be:
    - every step sees the same images: one batch per epoch, the whole training set (each process takes a contiguous
      half of the epoch's shuffled order, so with several batches per epoch the two processes' k-th batches together
      would hold other images than one process's k-th batch);
    - nothing depends on how a batch is split: no augmentation, and `plain_cnn` (simple_cnn without batch-norm, whose
      statistics each CPU process takes over its own half, and without dropout, whose masks each process draws alone).
    What is left is the order of float32 sums: measured at most 2.4e-7 apart; with the gradients not averaged, about 1e-2."""
    data = tmp_path/"shapes"
    make_shapes(data/"train", n_per_class=32, seed=0); make_shapes(data/"valid", n_per_class=8, seed=1)   # 96 + 24
    args = ("train", data, "--arch", "plain_cnn", "--bs", "96", "--epochs", "2", "--no-augment", "--seed", "7", "--deterministic")
    env = cli_env(PYTHONPATH=hooks, CVKIT_TEST_PLAIN_CNN=1)
    one, two = tmp_path/"one", tmp_path/"two"
    rc, so, se = run_cli(*args, "--out", one, env=env)
    assert rc == 0, se
    rc, so, se = run_cli(*args, "--processes", "2", "--out", two, env=env)
    assert rc == 0, se
    assert "cvkit [1/2]: process 1 of 2 (gloo on cpu): 48 training images per epoch in batches of 48" in se, se
    assert "cvkit [2/2]: process 2 of 2 (gloo on cpu)" in se
    assert so.count("wrote ") == 1 and so.count("epoch 2/2") == 1    # rank 0 reports, once
    w1, w2 = weights(one), weights(two)
    assert w1.keys() == w2.keys()
    for k in w1: assert torch.allclose(w2[k], w1[k], rtol=0, atol=1e-5), f"{k}: {(w2[k] - w1[k]).abs().max():.2e} apart"
    m1, m2 = (json.loads((x/"metrics.json").read_text()) for x in (one, two))
    assert m2["processes"] == 2 and m2["bs"] == m1["bs"] == 96
    assert m2["confusion_matrix"] == m1["confusion_matrix"]
    assert len((two/"history.csv").read_text().splitlines()) == 3   # header + 2 epochs, written once
    assert [q["epoch"] for q in positions(two)] == [1, 2]


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
    code = ("import sys\nfrom cvkit.export import load_model\nfrom cvkit.train.checkpoint import load_checkpoint\n"
            "from cvkit.models.registry import load_state_dict_file\n"
            f"for f in (lambda: load_model({str(model)!r}), lambda: load_checkpoint({str(run/'checkpoints'/'checkpoint-00002.safetensors')!r}),"
            f" lambda: load_state_dict_file({str(tmp_path/'weights.pth')!r})):\n"
            "    try: f(); print('loaded')\n    except Exception as e: print(type(e).__name__)\n")
    r = subprocess.run([str(PYTHON), "-c", code], capture_output=True, text=True, env=cli_env())
    assert "loaded" not in r.stdout and r.returncode == 0, r.stdout + r.stderr
    assert not marker.exists()                                  # nothing was unpickled, anywhere


def test_unwritable_out_fails_before_training(tmp_path):
    blocker = tmp_path/"a-file"; blocker.write_text("not a folder")
    rc, so, se = run_cli("train", "--out", blocker/"run")
    check_one_line_error(rc, so, se, "cannot write to", "--out")
    assert "epoch" not in so and not any("data:" in l for l in se.splitlines())   # no data read, no training
