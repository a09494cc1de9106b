"""Smoke tests of the benchmarks: each script runs at tiny sizes, prints its side-by-side figures and writes
a JSON whose numbers agree with what it printed, and from which every figure README.md quotes from that script can
be rendered (`tools/figures.py`). (The real runs are not part of the test suite: see benchmarks/.)"""
from __future__ import annotations
import json, re, subprocess, sys
from pathlib import Path

import pytest

from conftest import PYTHON, REPO, cli_env, make_shapes, run_benchmark_script

sys.path.insert(0, str(REPO/"tools"))
import figures                                                               # noqa: E402

# Where each benchmark script's smoke test is (README: "each has a smoke test").
SMOKE_TESTS = {"audit.py": "test_benchmarks.py", "experiments.py": "test_benchmarks.py", "inference.py": "test_benchmarks.py",
               "lr_find.py": "test_lr_find_benchmark.py", "overhead.py": "test_gpu_suite.py", "quickstart.py": "test_benchmarks.py",
               "scaling.py": "test_benchmarks.py", "speedrun.py": "test_gpu_suite.py", "throughput.py": "test_gpu_suite.py",
               "transfer.py": "test_benchmarks.py", "gpu_checks.py": "test_gpu_suite.py", "gpu_suite.sh": "test_gpu_suite.py",
               "cuda_notebooks.py": "test_gpu_suite.py"}


def run_script(name:str, *args, cwd:Path, timeout:float=300) -> subprocess.CompletedProcess:
    p = run_benchmark_script(name, *args, cwd=cwd, timeout=timeout)
    assert p.returncode == 0, f"{name} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert "Traceback" not in p.stderr
    return p


@pytest.fixture(scope="module")
def split_shapes(tmp_path_factory) -> Path:
    "Synthetic shapes in train/ and test/ folders (as CIFAR-10's archive has them)."
    root = tmp_path_factory.mktemp("bench")/"shapes"
    make_shapes(root/"train", n_per_class=40, seed=0)
    make_shapes(root/"test", n_per_class=10, seed=1)
    return root


@pytest.mark.parametrize("script, message", [("speedrun.py", "nope.tar.gz not found"),
                                             ("transfer.py", "this benchmark needs")])
def test_benchmark_needs_data(script, message, tmp_path):
    "A benchmark without its data stops with a message naming what is missing, never a silent pass."
    p = subprocess.run([str(PYTHON), str(REPO/"benchmarks"/script), "--data", tmp_path/"nope.tar.gz"], cwd=tmp_path,
                       env=cli_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and message in p.stderr and "nope.tar.gz" in p.stderr, p.stderr


def test_transfer_smoke(tmp_path, split_shapes):
    "ImageNet fine-tuning, scratch, both bundled backbones and plain fastai, offline; the JSON's gaps are those printed."
    out = tmp_path/"transfer.json"
    p = run_script("transfer.py", "--data", split_shapes, "--epochs", 2, "--seeds", 0, 1, "--arch", "efficientnet_lite0",
                   "--size", 32, "--fastai-size", 32, "--json", out, cwd=tmp_path, timeout=600)
    res = json.loads(out.read_text())
    s = res["setups"]
    assert res["total_epochs"] == 2 and len(s) == 5
    assert res["fine_tuned"].startswith("cvkit fine-tuned (efficientnet_lite0, 32 px)")
    assert res["scratch"].startswith("cvkit from scratch (efficientnet_lite0")
    assert res["fastai"].startswith("plain fastai") and {"cvkit fine-tuned cifar_resnet (32 px)", "cvkit fine-tuned cifar_speednet (32 px)"} <= set(s)
    for r in s.values():
        assert len(r["accuracies"]) == 2 and 0 <= r["mean"] <= 1 and r["seconds_per_run"] > 0
        assert r["mean"] == pytest.approx(sum(r["accuracies"])/2)
    g = res["gaps"]
    assert g["fine_tuned_minus_scratch_points"] == pytest.approx(100*(s[res["fine_tuned"]]["mean"] - s[res["scratch"]]["mean"]))
    assert g["cvkit_over_fastai_time"] == pytest.approx(s[res["fine_tuned"]]["seconds_per_run"]/s[res["fastai"]]["seconds_per_run"])
    printed = re.search(r"fine-tuned vs from scratch: ([+-][\d.]+) points", p.stdout)
    assert printed and float(printed[1]) == pytest.approx(g["fine_tuned_minus_scratch_points"], abs=0.051), p.stdout
    assert re.search(r"wall time ratio ([\d.]+)", p.stdout)[1] == f"{g['cvkit_over_fastai_time']:.2f}"
    assert figures.check_source("transfer-cpu.json", res)["transfer.seeds"] == "2"

def test_experiments_smoke(tmp_path):
    out = tmp_path/"experiments.json"
    p = run_script("experiments.py", "--folds", 2, "--cifar-per-class", 0, "--cnn-epochs", 1, "--features", "pixels,hog",
                   "--models", "logistic,knn", "--trials", 2, "--pruners", "median", "--epochs", "1,4", "--size", 16, "--json", out, cwd=tmp_path, timeout=900)
    res = json.loads(out.read_text())
    cv = res["cross_validation"]
    assert len(cv["fold_accuracy"]) == 2 and cv["accuracy_mean"] == pytest.approx(sum(cv["fold_accuracy"])/2)
    assert f"accuracy {cv['accuracy_mean']:.4f} ± {cv['accuracy_std']:.4f} over 2 folds" in p.stdout
    table = res["classical"]["digits"]["table"]
    assert len(table) == 2*2 + 1 and sum(r["model"].startswith("CNN") for r in table) == 1
    s = res["search"]
    assert set(s["runs"]) == {"median", "none"} and all(r["epochs_trained"] > 0 for r in s["runs"].values())
    assert s["epoch_savings"]["median"] == pytest.approx(1 - s["runs"]["median"]["epochs_trained"]/s["runs"]["none"]["epochs_trained"])
    assert s["runs"]["none"]["default_accuracy"] is not None                  # the default config (4 epochs) fits the space: trial 0
    trials = s["runs"]["none"]["trials"]
    assert trials[0]["default"] and sum(t["default"] for t in trials) == 1       # the default config is the first trial, once
    assert s["runs"]["none"]["default_accuracy"] == trials[0]["accuracy"]
    assert s["runs"]["none"]["best_accuracy"] == max(t["accuracy"] for t in trials if t["state"] == "complete")
    assert res["device"] and res["date"]


def test_audit_smoke(tmp_path):
    "The audit benchmark on a small CIFAR-10 subset: every planted check is scored, and the figures add up."
    out = tmp_path/"audit.json"
    p = run_script("audit.py", "--n", 600, "--parts", "planted,photos", "--json", out, cwd=tmp_path, timeout=600)
    res = json.loads(out.read_text())
    checks = res["planted"]["checks"]
    assert set(checks) == {"exact_duplicate", "near_duplicate", "leakage", "dark", "blurry", "low_information"}
    for name, c in checks.items():
        assert c["hits"] <= min(c["found"], c["planted"]) and c["recall"] == pytest.approx(c["hits"]/c["planted"])
        assert c["recall"] >= 0.8, (name, c)                       # a broken detector finds nothing
    assert checks["leakage"]["planted"] == 50 and res["planted"]["seconds_per_1000"] > 0
    assert "s per 1,000 images" in p.stdout and res["photos"]["n_images"] == 398
    assert figures.check_source("audit-cpu.json", res, parts={"planted"})["audit.images"] == f"{res['planted']['n_images']:,}"


def test_every_benchmark_has_a_smoke_test():
    "Each script in benchmarks/ is run by a smoke test (the file named in SMOKE_TESTS runs it by name)."
    scripts = {p.name for p in (REPO/"benchmarks").iterdir() if p.suffix in (".py", ".sh") and not p.name.startswith("_")}
    assert scripts == set(SMOKE_TESTS), f"add a smoke test for {scripts - set(SMOKE_TESTS)}"
    for script, test in SMOKE_TESTS.items():
        assert script in (REPO/"tests"/test).read_text(), f"{test} does not run {script}"


def test_quickstart_smoke(tmp_path):
    "One epoch each to a 50 % target: the printed times and ratio are the JSON's, and README's figures render from it."
    out = tmp_path/"quickstart.json"
    p = run_script("quickstart.py", "--smoke", "--json", out, cwd=tmp_path)
    res = json.loads(out.read_text())
    c, f = res["cvkit"], res["fastai"]
    assert res["target"] == 0.5 and c["epochs"] == f["epochs"] == 1 and len(c["epochs_log"]) == len(f["epochs_log"]) == 1
    assert c["time_to_target_s"] == c["epochs_log"][0][0] <= c["total_s"]           # small_resnet passes 50 % in one epoch
    assert res["ratio_time_to_target_vs_fastai_total"] == pytest.approx(c["time_to_target_s"]/f["total_s"])
    assert f"cvkit {c['time_to_target_s']:.1f}s" in p.stdout
    assert f"= {res['ratio_total']:.3f}" in p.stdout
    figs = figures.check_source("quickstart-cpu.json", res)
    assert figs["quickstart.target"] == "50.0 %" and figs["quickstart.cvkit_epochs"] == "1"


def test_inference_smoke(tmp_path):
    "Both runtimes on both models: same answers, and the printed latencies are the JSON's."
    out = tmp_path/"inference.json"
    p = run_script("inference.py", "--smoke", "--json", out, cwd=tmp_path)
    res = json.loads(out.read_text())
    assert [(r["arch"], r["size"]) for r in res["results"]] == [("small_resnet", 32), ("resnet18", 224)]
    for r in res["results"]:
        for key in ("batch1", "batch4"):
            assert r[key]["max_abs_diff"] < 1e-3, r                                  # ONNX gives PyTorch's answers
            for rt in ("pytorch", "onnxruntime"):
                t = r[key][rt]
                assert 0 < t["median_ms"] <= t["p95_ms"] and t["images_per_s"] == pytest.approx(int(key[5:])*1e3/t["median_ms"])
        assert f"{r['batch1']['onnxruntime']['median_ms']:12.2f} ms" in p.stdout
    assert figures.check_source("inference-cpu.json", res) == {}                     # README quotes none of it


def test_scaling_smoke(tmp_path):
    "Data parallel, checkpoints and a SIGKILLed run resumed, at the smallest sizes: the resumed weights are bit-identical."
    out = tmp_path/"scaling.json"
    p = run_script("scaling.py", "--smoke", "--json", out, cwd=tmp_path, timeout=600)
    res = json.loads(out.read_text())
    d, c, r = res["data_parallel"], res["checkpoints"], res["resume"]
    assert res["args"]["epochs"] == 3 and res["args"]["repeats"] == 1 and res["args"]["size"] == 16
    assert all(len(v) == 1 for v in d["all_seconds"].values())
    assert d["speedup"] == pytest.approx(d["train_seconds_1"]/d["train_seconds_n"]) and d["processes"] == 2
    assert c["overhead"] == pytest.approx(c["train_seconds_with"]/c["train_seconds_without"] - 1) and c["checkpoint_bytes"] > 0
    assert c["same_weights_with_and_without"] is True
    assert r["resumed_from"]["epoch"] == 2 and r["bit_identical"] is True and r["same_accuracy"] is True
    assert "medians of 1 run(s)" in p.stdout and "bit-identical weights True" in p.stdout
    figs = figures.check_source("scaling-cpu.json", res)
    assert figs["scaling.killed_epoch"] == "third" and figs["scaling.resume_result"] == "bit-identical weights and the same accuracy"
