"""Tiny CPU runs of the GPU suite (`benchmarks/gpu_suite.sh`) and its checks (`benchmarks/gpu_checks.py`).

The real runs need an NVIDIA GPU; here every step runs at tiny sizes on the CPU (`SUITE_TINY=1 SUITE_DEVICE=cpu`),
so that the plumbing (timeouts, one JSON per step, the summary, the exit code) and the checks' logic are tested.
About 2 minutes on 2 cores."""
from __future__ import annotations
import json, re, subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, REPO, cli_env

SUITE = REPO/"benchmarks"/"gpu_suite.sh"
CHECKS = REPO/"benchmarks"/"gpu_checks.py"
STEPS = ["gpu_checks", "overhead", "speedrun", "throughput", "throughput_compile"]
TINY_CHECKS = ("--device", "cpu", "--epochs", 2, "--size", 16, "--lr-steps", 20, "--n-predict", 10, "--min-accuracy", 0.5)


def run_suite(out:Path, timeout:float=400, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SUITE)], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=cli_env(OMP_NUM_THREADS=1, PYTHON=PYTHON, SUITE_TINY=1,
                                                                SUITE_OUT=out, **env))


def airbench_importable() -> bool:
    return subprocess.run([str(PYTHON), "-c", "import airbench"], capture_output=True).returncode == 0


def cuda_available() -> bool:
    return subprocess.run([str(PYTHON), "-c", "import torch, sys; sys.exit(not torch.cuda.is_available())"],
                          capture_output=True).returncode == 0


# ---------------------------------------------------------------- gpu_checks.py alone

@pytest.fixture(scope="module")
def checks_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_checks")
    out = tmp/"gpu_checks.json"
    p = subprocess.run([str(PYTHON), str(CHECKS), *map(str, TINY_CHECKS), "--json", out], cwd=tmp,
                       env=cli_env(OMP_NUM_THREADS=1), capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    return p, out


def test_gpu_checks_pass_on_cpu(checks_run):
    p, out = checks_run
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert "Traceback" not in p.stdout + p.stderr
    d = json.loads(out.read_text())
    assert d["benchmark"] == "gpu_checks" and d["device"] == "cpu"
    assert d["torch"] and re.match(r"\d{4}-\d\d-\d\d$", d["date"])
    assert d["passed"] is True and d["failed"] == []
    assert set(d["checks"]) == {"train_bf16", "train_fp16", "train_fp32", "find_lr", "export_parity", "resume",
                                "find_lr_placement", "data_parallel"}
    assert (d["args"]["epochs"], d["args"]["size"]) == (2, 16)
    assert "gpu checks: PASSED" in p.stdout and p.stdout.strip().endswith(f"wrote {out}")


def test_gpu_checks_training(checks_run):
    d = json.loads(checks_run[1].read_text())
    for p in ("bf16", "fp16"):                                   # no CUDA: skipped, with the reason
        c = d["checks"][f"train_{p}"]
        assert c["status"] == "skipped" and c["passed"] is None, c
        assert "CUDA" in c["reason"] and p in c["reason"]
        assert d["skipped"][f"train_{p}"] == c["reason"]
    t = d["checks"]["train_fp32"]
    assert t["status"] == "passed" and t["passed"] is True and not t["problems"]
    assert t["requested"] == t["precision"] == "fp32" and t["precision_as_asked"] is True
    assert t["loss_finite"] is True and t["n_steps"] > 0
    assert 0.5 <= t["accuracy"] <= 1 and t["seconds"] > 0 and t["images_per_second"] > 0
    assert t["n_train"] > 0 and t["n_valid"] > 0
    assert d["checked_learner"] == "fp32"
    assert t["checkpoints"] == 2 and t["history_rows"] == 2 and t["scaler_in_checkpoint"] is False   # every callback ran
    assert t["weight_average_updates"] > 0


def test_gpu_checks_resume_placement_and_data_parallel(checks_run):
    c = json.loads(checks_run[1].read_text())["checks"]
    r = c["resume"]
    assert r["passed"] is True and r["resumed_from_epoch"] == 1
    assert r["bit_identical"] is True and r["max_abs_weight_diff"] == 0          # on the CPU a resume is exact
    p = c["find_lr_placement"]
    assert p["passed"] is True and p["fresh_before"] == p["fresh_after"] == {"device": "cpu", "channels_last": False}
    assert c["data_parallel"]["status"] == "skipped" and "needs 2" in c["data_parallel"]["reason"]


def test_gpu_checks_find_lr_leaves_weights(checks_run):
    f = json.loads(checks_run[1].read_text())["checks"]["find_lr"]
    assert f["passed"] is True and f["weights_unchanged"] is True
    assert f["n_tensors_compared"] > 0 and f["changed_tensors"] == [] and f["max_abs_change"] == 0
    assert f["recommended"] > 0 and f["n_steps"] > 0 and f["num_it"] == 20
    assert f["suggestions"] and all(v is None or v > 0 for v in f["suggestions"].values())


def test_gpu_checks_export_parity(checks_run):
    e = json.loads(checks_run[1].read_text())["checks"]["export_parity"]
    assert e["passed"] is True and e["n_images"] == 10 > 0
    assert len(e["learner_labels"]) == len(e["loaded_labels"]) == len(e["cpu_labels"]) == e["n_images"]
    assert e["loaded_labels"] == e["learner_labels"] == e["cpu_labels"]     # the same device: no near-ties either
    for k in ("loaded_vs_learner", "cpu_vs_learner"):
        assert e[k]["mismatches"] == 0 and e[k]["max_abs_prob_diff"] < 1e-5
    assert e["classes_match_vocab"] is True and {"model.safetensors", "cvkit.json"} <= set(e["files"])
    assert e["onnx_written"] > 0 and e["predictor_device_after_onnx"] == "cpu"


# ---------------------------------------------------------------- the whole suite, tiny, on the CPU

@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")/"results"
    return run_suite(out, SUITE_DEVICE="cpu"), out


def test_suite_runs_every_step(suite_run):
    p, out = suite_run
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-5000:]}\n{p.stderr[-3000:]}"
    assert "Traceback" not in p.stdout + p.stderr
    assert sorted(f.name for f in out.iterdir()) == sorted(
        [f"{n}-cpu.json" for n in ("gpu_checks", "overhead", "speedrun", "throughput", "suite")] + ["suite-cpu.log"])
    s = json.loads((out/"suite-cpu.json").read_text())
    assert s["tiny"] is True and s["device"] == "cpu" and s["failed"] == []
    assert [st["name"] for st in s["steps"]] == STEPS
    for st in s["steps"]:
        if st["name"] == "throughput_compile":                  # the one step that cannot run tiny on a CPU
            assert st["status"] == "skipped" and "CUDA" in st["note"], st
        else:
            assert st["status"] == "ok" and 0 < st["timeout_s"] and st["seconds"] <= st["timeout_s"], st
    assert s["seconds"] <= s["budget_seconds"] == 480
    summary = p.stdout[p.stdout.index("=== summary"):]
    for name in STEPS: assert re.search(rf"^{name} +(ok|skipped) ", summary, re.M), summary
    assert p.stdout.strip().endswith("all steps ok")
    assert "=== summary" in (out/"suite-cpu.log").read_text()


def step_json(out:Path, name:str) -> dict:
    d = json.loads((out/f"{name}-cpu.json").read_text())
    assert d["benchmark"] == name and d["torch"] and d["date"]
    assert d["suite"]["step"] == name and d["suite"]["exit_code"] == 0 and d["suite"]["timeout_s"] > 0
    return d


def test_suite_gpu_checks_json(suite_run):
    d = step_json(suite_run[1], "gpu_checks")
    assert d["passed"] is True and d["device"] == "cpu"
    assert d["checks"]["train_fp32"]["precision"] == "fp32" and d["checks"]["train_bf16"]["status"] == "skipped"
    assert d["checks"]["export_parity"]["n_images"] > 0


def test_suite_overhead_json(suite_run):
    d = step_json(suite_run[1], "overhead")
    ips = d["images_per_second"]
    assert set(ips) == {"bare", "cvkit", "fastai"} and all(v > 0 for v in ips.values())
    assert d["ratios"]["cvkit_over_bare"] == pytest.approx(ips["cvkit"]/ips["bare"])
    assert d["args"]["data"] == "digits" and d["args"]["device"] == "cpu"


def test_suite_throughput_json(suite_run):
    d = step_json(suite_run[1], "throughput")
    assert set(d["modes"]) == {"fp32", "fp32+cl"}
    for r in d["modes"].values():
        assert r["bare"]["images_per_second"] > 0 and r["cvkit"]["images_per_second"] > 0
    assert d["fastai"]["images_per_second"] > 0 and d["flops_per_image"] > 0


def test_suite_speedrun_json(suite_run):
    d = step_json(suite_run[1], "speedrun")
    c = d["cvkit"]
    assert c["runs"] == 1 and 0 <= c["accuracy"][0] <= 1 and c["epochs"][0] > 0 and d["budget_seconds"] == 3
    assert d["airbench94"]["ran"] is False and d["airbench94"]["why"]
    assert d["airbench94_published"]["seconds"] == 3.83
    if not airbench_importable():                               # said so, in the JSON and the summary
        assert "--no-airbench" in d["suite"]["note"] and "airbench is not installed" in d["suite"]["note"]
        assert d["airbench94"]["why"] == "skipped (--no-airbench)"
        assert "airbench is not installed" in suite_run[0].stdout


# ---------------------------------------------------------------- failures and timeouts

@pytest.mark.skipif(cuda_available(), reason="needs a machine without CUDA")
def test_suite_goes_on_after_failures(tmp_path):
    "Asked for CUDA where there is none: each step fails, the suite runs the next, and exits 1 naming them."
    out = tmp_path/"results"
    p = run_suite(out, timeout=200, SUITE_DEVICE="cuda", SUITE_STEPS="gpu_checks speedrun")
    assert p.returncode == 1, p.stdout
    assert p.stdout.strip().endswith("FAILED: gpu_checks speedrun")
    s = json.loads((out/"suite-cuda.json").read_text())
    assert s["failed"] == ["gpu_checks", "speedrun"] and [st["status"] for st in s["steps"]] == ["failed", "failed"]
    g = json.loads((out/"gpu_checks-cuda.json").read_text())   # gpu_checks records its own failure
    assert g["passed"] is False and "CUDA is not available" in g["checks"]["device"]["error"]
    assert not (out/"speedrun-cuda.json").exists()


def test_suite_timeout_keeps_previous_result(tmp_path):
    "A step that outruns its timeout is killed, recorded as timed out, and leaves the previous JSON alone."
    out = tmp_path/"results"
    out.mkdir()
    (out/"overhead-cpu.json").write_text('{"previous": true}\n')
    p = run_suite(out, timeout=120, SUITE_DEVICE="cpu", SUITE_STEPS="overhead", SUITE_TIMEOUT_overhead=4)
    assert p.returncode == 1, p.stdout
    s = json.loads((out/"suite-cpu.json").read_text())
    [st] = s["steps"]
    assert (st["name"], st["status"], st["timeout_s"]) == ("overhead", "timed_out", 4), st
    assert 4 <= st["seconds"] <= 10 and "exit 124" in st["note"] and "previous" in st["note"]
    assert s["failed"] == ["overhead"] and p.stdout.strip().endswith("FAILED: overhead")
    assert json.loads((out/"overhead-cpu.json").read_text()) == {"previous": True}


def test_suite_out_of_budget(tmp_path):
    "Steps that would not fit in what is left of the budget are not started, and count as failures."
    out = tmp_path/"results"
    p = run_suite(out, timeout=120, SUITE_DEVICE="cpu", SUITE_STEPS="speedrun gpu_checks", SUITE_BUDGET=20)
    assert p.returncode == 1, p.stdout
    s = json.loads((out/"suite-cpu.json").read_text())
    assert [(st["name"], st["status"]) for st in s["steps"]] == [("gpu_checks", "no_time"), ("speedrun", "no_time")]
    assert all("not started" in st["note"] for st in s["steps"]) and s["failed"] == ["gpu_checks", "speedrun"]
    assert sorted(f.name for f in out.iterdir()) == ["suite-cpu.json", "suite-cpu.log"]
