"""Tiny CPU runs of the GPU suite (`benchmarks/gpu_suite.sh`) and its checks (`benchmarks/gpu_checks.py`).

The real runs need an NVIDIA GPU; here every step runs at tiny sizes on the CPU (`SUITE_TINY=1 SUITE_DEVICE=cpu`),
so that the plumbing (timeouts, one JSON per step, the summary, the exit code) and the checks' logic are tested.
That tiny run is also the smoke test of the scripts it runs: gpu_checks.py, overhead.py, speedrun.py and throughput.py.
The checks' decisions (the autocast dtype, the gradient scaler's layout in bf16 and fp16 checkpoints, the comparison
of a resumed run with an uninterrupted one) are pure functions of gpu_checks.py, fed here with the layouts and
records a GPU produces, and with broken ones, so a check that would pass when broken fails here first.
About 5 minutes on 2 cores."""
from __future__ import annotations
import json, re, subprocess, sys, warnings
from pathlib import Path

import pytest

from conftest import PYTHON, REPO, cli_env

sys.path.insert(0, str(REPO/"tools"))
import figures                                                               # noqa: E402

SUITE = REPO/"benchmarks"/"gpu_suite.sh"
CHECKS = REPO/"benchmarks"/"gpu_checks.py"
STEPS = ["gpu_checks", "gpu_checks_nondeterministic", "cuda_notebooks", "overhead", "speedrun", "throughput", "throughput_compile"]
SKIPPED_ON_CPU = {"cuda_notebooks", "throughput_compile"}
TINY_CHECKS = ("--device", "cpu", "--deterministic", "--epochs", 2, "--size", 16, "--lr-steps", 20, "--n-predict", 10,
               "--min-accuracy", 0.5)


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
def checks_run(suite_run):
    "The suite's tiny gpu_checks step (its arguments are TINY_CHECKS): the suite's output and the step's JSON."
    p, out = suite_run
    return p, out/"gpu_checks-cpu.json"


def test_gpu_checks_pass_on_cpu(checks_run):
    p, out = checks_run
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert "Traceback" not in p.stdout + p.stderr
    d = json.loads(out.read_text())
    assert d["benchmark"] == "gpu_checks" and d["device"] == "cpu"
    assert d["torch"] and re.match(r"\d{4}-\d\d-\d\d$", d["date"])
    assert d["passed"] is True and d["failed"] == []
    assert set(d["checks"]) == {"train_bf16", "train_fp16", "train_fp32", "resume_bf16", "resume_fp16", "resume_fp32",
                                "find_lr", "export_parity", "find_lr_placement", "data_parallel"}
    det = d["deterministic"]                                   # --deterministic did what `cvkit train --deterministic` does
    assert det["asked"] is True and det["algorithms"] is True and det["cudnn_deterministic"] is True
    assert det["cudnn_benchmark"] is False and det["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert d["nondeterministic_ops"] == []                     # the CPU kernels used are all deterministic
    assert {k: d["args"][k] for k in ("epochs", "size", "lr_steps", "n_predict", "min_accuracy")} == dict(
        epochs=2, size=16, lr_steps=20, n_predict=10, min_accuracy=0.5)             # the suite ran TINY_CHECKS
    assert "gpu checks: PASSED" in step_output(p.stdout, "gpu_checks")


def test_gpu_checks_training(checks_run):
    d = json.loads(checks_run[1].read_text())
    for p in ("bf16", "fp16"):                                   # no CUDA: skipped, with the reason
        for k in (f"train_{p}", f"resume_{p}"):
            c = d["checks"][k]
            assert c["status"] == "skipped" and c["passed"] is None, c
            assert "CUDA" in c["reason"] and p in c["reason"]
            assert d["skipped"][k] == c["reason"]
    t = d["checks"]["train_fp32"]
    assert t["status"] == "passed" and t["passed"] is True and not t["problems"]
    assert t["requested"] == t["precision"] == "fp32" and t["precision_as_asked"] is True
    assert t["loss_finite"] is True and t["n_steps"] > 0
    assert 0.5 <= t["accuracy"] <= 1 and t["seconds"] > 0 and t["images_per_second"] > 0
    assert t["n_train"] > 0 and t["n_valid"] > 0
    assert d["checked_learner"] == "fp32"
    assert t["checkpoints"] == 2 and t["history_rows"] == 2 and t["scaler_in_checkpoint"] is False   # every callback ran
    assert t["weight_average_updates"] > 0
    assert t["autocast_dtypes"] == {"first conv": ["float32"], "last linear": ["float32"]} and t["expected_dtype"] == "float32"
    assert t["hooked_forward_calls"] == 2*t["n_steps"]             # both layers, every training batch, no validation batch
    assert [(s["epoch"], s["end_of_fit"], s["scaler"]) for s in t["scaler_layout"]] == [(1, False, None), (2, True, None)]


def test_gpu_checks_resume_placement_and_data_parallel(checks_run):
    c = json.loads(checks_run[1].read_text())["checks"]
    r = c["resume_fp32"]
    assert r["passed"] is True and r["deterministic"] is True and r["problems"] == []
    assert r["interrupted"].startswith("stop requested: stopped at") and r["checkpoint"] == "checkpoint-00002.safetensors"
    assert r["resumed_from"]["epoch"] == 1 and 0 < r["resumed_from"]["batch"] < 22           # in the middle of epoch 2
    assert r["bit_identical"] is True and r["weights_equal"] and r["history_equal"] and r["probs_equal"]
    assert r["max_abs_weight_diff"] == r["max_abs_prob_diff"] == r["accuracy_diff"] == r["valid_loss_diff"] == 0
    assert r["tensors_compared"] > 0 and r["epochs"] == [2, 2] and r["scaler_at_stop"] is None
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


# ---------------------------------------------------------------- the checks' decisions, fed on the CPU

@pytest.fixture(scope="module")
def gc():
    "benchmarks/gpu_checks.py as a module (its warning filter undone, so it does not leak into other tests)."
    with warnings.catch_warnings():
        sys.path.insert(0, str(REPO/"benchmarks"))
        try: import gpu_checks
        finally: sys.path.remove(str(REPO/"benchmarks"))
    return gpu_checks


def stored(state:dict, tmp_path:Path) -> dict:
    "`state` after a round trip through a checkpoint file, as the check reads it."
    from cvkit.train.checkpoint import save_checkpoint, load_checkpoint
    return load_checkpoint(save_checkpoint(state, tmp_path/"c.safetensors"))


def scaler_layouts(scaler, tmp_path:Path) -> list:
    "The checkpoints of a 2-epoch fit whose learner had `scaler` during the fit (fastai drops it at the end)."
    from types import SimpleNamespace
    from cvkit.train.checkpoint import scaler_state
    pos = lambda e: {"phase": 0, "epoch": e, "batch": 0, "n_epoch": 2}
    return [stored({"position": pos(1), "scaler": scaler_state(SimpleNamespace(scaler=scaler))}, tmp_path),
            stored({"position": {**pos(1), "batch": 7}, "scaler": scaler_state(SimpleNamespace(scaler=scaler))}, tmp_path),
            stored({"position": pos(2), "scaler": scaler_state(SimpleNamespace(scaler=None))}, tmp_path)]


def test_scaler_layout_bf16_fp16(gc, tmp_path):
    "The layouts cvkit writes pass: bf16 (fastai's disabled GradScaler) stores None, fp16 the enabled scaler's state."
    from torch.amp import GradScaler
    bf16 = scaler_layouts(GradScaler("cpu", enabled=False), tmp_path)     # fastai: GradScaler(enabled=dtype == float16)
    fp16 = scaler_layouts(GradScaler("cpu", init_scale=2.0**14), tmp_path)
    assert [s["scaler"] for s in bf16] == [None, None, None]
    assert fp16[0]["scaler"]["scale"] == 2.0**14 and fp16[2]["scaler"] is None
    assert gc.scaler_problems("bf16", bf16) == [] and gc.scaler_problems("fp32", bf16) == []
    assert gc.scaler_problems("fp16", fp16) == []


def test_scaler_layout_mutants_fail(gc, tmp_path):
    "Broken layouts fail, saying which checkpoint and why."
    from torch.amp import GradScaler
    bf16 = scaler_layouts(GradScaler("cpu", enabled=False), tmp_path)
    fp16 = scaler_layouts(GradScaler("cpu"), tmp_path)
    [p] = gc.scaler_problems("fp16", [fp16[0] | {"scaler": None}, fp16[2]])       # fp16 without its scaler
    assert "epoch 1, batch 0 has no gradient scaler state" in p
    assert len(gc.scaler_problems("bf16", fp16)) == 2                              # bf16 with an enabled scaler's state
    [p] = gc.scaler_problems("bf16", [bf16[0] | {"scaler": {}}, bf16[2]])          # a disabled scaler's raw state_dict()
    assert "stores a scaler state {}" in p and "bf16 does not scale the loss" in p
    assert "end of the fit" in gc.scaler_problems("fp16", [fp16[0], fp16[0] | {"position": fp16[2]["position"]}])[0]
    assert "keys" in gc.scaler_problems("fp16", [fp16[0] | {"scaler": {"scale": 1.0}}])[0]
    assert "not a positive number" in gc.scaler_problems("fp16", [fp16[0] | {"scaler": fp16[0]["scaler"] | {"scale": float("nan")}}])[0]
    assert "unverified" in gc.scaler_problems("fp16", [fp16[2]])[0]                # only an end-of-fit checkpoint: nothing checked


def tiny_model():
    import torch
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3), torch.nn.Flatten(),
                               torch.nn.Linear(4*4*4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def test_autocast_dtype_hook(gc):
    "The hooks see what autocast computed in: bfloat16 under CPU autocast, float32 without; eval-mode calls are not counted."
    import torch
    model, x = tiny_model(), torch.randn(2, 3, 8, 8)
    with gc.ActivationDtypes(model) as rec:
        with torch.autocast("cpu", dtype=torch.bfloat16): model(x)
        model.eval(); model(x); model.train()                          # a validation batch, in fp32: not recorded
    assert rec.record() == {"first conv": ["bfloat16"], "last linear": ["bfloat16"]} and rec.calls == 2
    assert rec.layers["first conv"] is model[0] and rec.layers["last linear"] is model[-1]
    assert gc.precision_problems("bf16", rec.record()) == []
    model(x); assert rec.calls == 2                                    # the hooks are gone after the block
    with gc.ActivationDtypes(model) as plain: model(x)                 # mutant: no autocast, as if bf16 were not applied
    assert plain.record() == {"first conv": ["float32"], "last linear": ["float32"]}
    [a, b] = gc.precision_problems("bf16", plain.record())
    assert "first conv computed in float32 (expected bfloat16)" in a and "last linear" in b
    assert gc.precision_problems("fp32", plain.record()) == []
    assert gc.precision_problems("fp16", rec.record())                 # bfloat16 is not float16
    assert "unverified" in gc.precision_problems("bf16", {"first conv": [], "last linear": []})[0]
    mixed = {"first conv": ["bfloat16", "float32"], "last linear": ["bfloat16"]}   # one batch outside autocast
    assert len(gc.precision_problems("bf16", mixed)) == 1


def run(gc, weights, history, accuracy=0.9, probs=((0.7, 0.3), (0.2, 0.8))):
    import numpy as np
    return {"weights": weights, "history": history, "accuracy": accuracy, "probs": np.array(probs)}


def test_resume_comparison(gc):
    "Identical runs pass, bit for bit; a perturbed one fails with --deterministic, its distance reported, and passes without."
    import torch
    w = {k: v.clone() for k, v in tiny_model().state_dict().items()}
    h = [{"epoch": 1, "phase": "all layers", "train_loss": 1.2, "valid_loss": 0.9, "accuracy": 0.8, "lr": 1e-3}]
    same = gc.compare_runs(run(gc, w, h), run(gc, {k: v.clone() for k, v in w.items()}, [dict(r) for r in h]))
    assert same["bit_identical"] is True and same["max_abs_weight_diff"] == 0 and same["tensors_compared"] == len(w)
    assert gc.resume_problems(same, deterministic=True) == [] and gc.resume_problems(same, deterministic=False) == []
    nudged = {k: v.clone() for k, v in w.items()}; nudged["4.weight"][0, 0] += 1e-3
    cmp = gc.compare_runs(run(gc, w, h), run(gc, nudged, h))
    assert cmp["bit_identical"] is False and cmp["tensors_differing"] == ["4.weight"]
    assert cmp["max_abs_weight_diff"] == pytest.approx(1e-3, rel=1e-3)
    [p] = gc.resume_problems(cmp, deterministic=True)
    assert "not bit-identical" in p and "1 weight tensor(s) differ" in p and "1.000e-03" in p
    assert gc.resume_problems(cmp, deterministic=False) == []          # without --deterministic: reported, not failed
    later = [h[0] | {"valid_loss": 0.9 + 2e-7}]                        # the metrics too, to the bit
    cmp = gc.compare_runs(run(gc, w, h), run(gc, w, later, probs=((0.7, 0.3), (0.2, 0.8 + 1e-9))))
    assert cmp["weights_equal"] and not cmp["history_equal"] and not cmp["probs_equal"] and not cmp["bit_identical"]
    assert cmp["max_abs_history_diff"] == pytest.approx(2e-7) and cmp["valid_loss_diff"] == pytest.approx(2e-7)
    assert len(gc.resume_problems(cmp, deterministic=True)) == 2
    far = gc.compare_runs(run(gc, w, h), run(gc, w, h, accuracy=0.8))
    assert "resumed accuracy 0.8000 vs 0.9000" in gc.resume_problems(far, deterministic=False, tolerance=0.02)[0]
    del nudged["4.bias"]
    assert gc.compare_runs(run(gc, w, h), run(gc, nudged, h))["missing_tensors"] == ["4.bias"]


def test_nondeterministic_warnings_recorded(gc):
    "torch's 'no deterministic implementation' warnings are collected (every one), even under a global ignore filter."
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")                              # as gpu_checks.py sets at import
        cm, caught = gc.watch_nondeterminism()
        try:
            for _ in range(2): warnings.warn(f"adaptive_max_pool2d_backward_cuda {gc.NONDETERMINISTIC}, but you set ...", UserWarning)
            warnings.warn("something else", UserWarning)
        finally: cm.__exit__(None, None, None)
    assert len(caught) == 2 and gc.nondeterministic_ops(caught) == ["adaptive_max_pool2d_backward_cuda"]


# ---------------------------------------------------------------- the #| cuda notebook cells

def write_notebook(path:Path, cells:list):
    import nbformat
    nb = nbformat.v4.new_notebook(); nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def test_cuda_notebooks_found():
    "The notebooks with `#| cuda` code cells, by nbdev's own parser: a mention in prose (index.ipynb) does not count."
    sys.path.insert(0, str(REPO/"benchmarks"))
    try: import cuda_notebooks
    finally: sys.path.remove(str(REPO/"benchmarks"))
    found = {p.name: n for p, n in cuda_notebooks.flagged_notebooks(REPO/"nbs").items()}
    assert {"04c_data.loaders.ipynb", "09_export.ipynb"} <= set(found) and all(n >= 1 for n in found.values())
    assert "#| cuda" in (REPO/"nbs"/"index.ipynb").read_text() and "index.ipynb" not in found


def test_cuda_notebooks_run(tmp_path):
    "Flagged cells really run (they are skipped without the flag), a failing one fails its notebook, and the JSON says so."
    proj = tmp_path/"proj"; nbs = proj/"nbs"; nbs.mkdir(parents=True)
    (proj/"pyproject.toml").write_text('[project]\nname = "probe"\nversion = "0.0.1"\n\n[tool.nbdev]\nlib_path = "probe"\n'
                                       'nbs_path = "nbs"\ntst_flags = "cuda"\n')
    write_notebook(nbs/"ok.ipynb", ["x = 1", "#| cuda\nfrom pathlib import Path; Path('ran').write_text(str(x))"])
    write_notebook(nbs/"bad.ipynb", ["#| cuda\nassert False, 'the flagged cell failed'"])
    write_notebook(nbs/"plain.ipynb", ["y = 2  # #| cuda, in a comment, is no flag"])
    out = tmp_path/"cuda_notebooks.json"
    p = subprocess.run([str(PYTHON), str(REPO/"benchmarks"/"cuda_notebooks.py"), "--nbs", str(nbs), "--timeout", "120", "--json", out],
                       cwd=REPO, env=cli_env(OMP_NUM_THREADS=1), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stdout + p.stderr
    d = json.loads(out.read_text())
    assert d["benchmark"] == "cuda_notebooks" and d["passed"] is False and d["failed"] == ["bad.ipynb"]
    assert set(d["notebooks"]) == {"ok.ipynb", "bad.ipynb"}                    # plain.ipynb has no flagged cell
    ok, bad = d["notebooks"]["ok.ipynb"], d["notebooks"]["bad.ipynb"]
    assert (ok["status"], ok["exit_code"], ok["flagged_cells"]) == ("passed", 0, 1)
    assert (nbs/"ran").read_text() == "1"                                      # the flagged cell ran, after the others
    assert bad["status"] == "failed" and bad["exit_code"] == 1 and "the flagged cell failed" in bad["output"]
    assert "cuda notebooks: FAILED (bad.ipynb)" in p.stdout
    (nbs/"bad.ipynb").unlink(); (nbs/"ok.ipynb").unlink()                      # nothing flagged: a failure, not a pass
    p = subprocess.run([str(PYTHON), str(REPO/"benchmarks"/"cuda_notebooks.py"), "--nbs", str(nbs), "--json", out],
                       cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 1 and "has a #| cuda cell" in json.loads(out.read_text())["failed"][0]


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
        [f"{n}-cpu.json" for n in ("gpu_checks", "gpu_checks_nondeterministic", "overhead", "speedrun", "throughput", "suite")]
        + ["suite-cpu.log"])
    s = json.loads((out/"suite-cpu.json").read_text())
    assert s["tiny"] is True and s["device"] == "cpu" and s["failed"] == []
    assert [st["name"] for st in s["steps"]] == STEPS
    for st in s["steps"]:
        if st["name"] in SKIPPED_ON_CPU:                        # the steps that cannot run on a CPU
            assert st["status"] == "skipped" and "CUDA" in st["note"], st
        else:
            assert st["status"] == "ok" and 0 < st["timeout_s"] and st["seconds"] <= st["timeout_s"], st
    assert s["seconds"] <= s["budget_seconds"] == 480
    summary = p.stdout[p.stdout.index("=== summary"):]
    for name in STEPS: assert re.search(rf"^{name} +(ok|skipped) ", summary, re.M), summary
    assert p.stdout.strip().endswith("all steps ok")
    assert "=== summary" in (out/"suite-cpu.log").read_text()


def step_output(stdout:str, name:str) -> str:
    "What one step of the suite printed (the suite prints every step's output under `=== NAME`)."
    start = stdout.index(f"=== {name} (")
    return stdout[start:stdout.index("\n--- ", start)]


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


def test_suite_gpu_checks_nondeterministic_json(suite_run):
    "The second gpu_checks run, without --deterministic: training and resume only, with the distances reported."
    d = json.loads((suite_run[1]/"gpu_checks_nondeterministic-cpu.json").read_text())
    assert d["benchmark"] == "gpu_checks" and d["suite"]["step"] == "gpu_checks_nondeterministic" and d["suite"]["exit_code"] == 0
    assert d["passed"] is True and d["deterministic"]["asked"] is False and d["args"]["checks"] == ["train", "resume"]
    assert set(d["checks"]) == {f"{k}_{p}" for k in ("train", "resume") for p in ("bf16", "fp16", "fp32")}
    r = d["checks"]["resume_fp32"]
    assert r["passed"] is True and r["deterministic"] is False
    for k in ("max_abs_weight_diff", "max_abs_prob_diff", "accuracy_diff", "valid_loss_diff", "max_abs_history_diff"):
        assert isinstance(r[k], float) and r[k] >= 0, k                  # reported, whatever they are


def test_suite_overhead_json(suite_run):
    "overhead.py's smoke test: the three loops measured, the printed ratio is the JSON's, README's figure renders from it."
    d = step_json(suite_run[1], "overhead")
    ips = d["images_per_second"]
    assert set(ips) == {"bare", "cvkit", "fastai"} and all(v > 0 for v in ips.values())
    assert d["ratios"]["cvkit_over_bare"] == pytest.approx(ips["cvkit"]/ips["bare"])
    assert d["ratios"]["cvkit_over_fastai"] == pytest.approx(ips["cvkit"]/ips["fastai"])
    assert d["args"]["data"] == "digits" and d["args"]["device"] == "cpu"
    printed = float(re.search(r"cvkit / bare ([\d.]+)", step_output(suite_run[0].stdout, "overhead"))[1])
    assert printed == pytest.approx(d["ratios"]["cvkit_over_bare"], abs=0.006)
    assert figures.check_source("overhead-cpu.json", d)["overhead.cvkit_over_bare"] == f"{printed:.2f}"


def test_suite_throughput_json(suite_run):
    "throughput.py's smoke test: both CPU modes (no bf16 on a CPU), plain fastai, no MFU claimed for a CPU."
    d = step_json(suite_run[1], "throughput")
    printed = step_output(suite_run[0].stdout, "throughput")
    assert set(d["modes"]) == {"fp32", "fp32+cl"}
    for mode, r in d["modes"].items():
        assert r["bare"]["images_per_second"] > 0 and r["cvkit"]["images_per_second"] > 0
        assert r["cvkit_over_bare"] == pytest.approx(r["cvkit"]["images_per_second"]/r["bare"]["images_per_second"])
        assert f"{mode:18} bare" in printed
    assert d["fastai"]["images_per_second"] > 0 and d["flops_per_image"] > 0
    assert d["peak_bf16_flops"] is None and "plain fastai" in printed


def test_suite_speedrun_json(suite_run):
    "speedrun.py's smoke test: trains for its budget of training time, no more, and compares with airbench94's time."
    d = step_json(suite_run[1], "speedrun")
    c = d["cvkit"]
    assert c["runs"] == 1 and d["budget_seconds"] == 3
    assert 3 <= c["train_seconds"][0] < 6, c["train_seconds"]   # the budget is training time, not more
    assert 1/3 < c["accuracy"][0] <= 1 and 0 <= c["tta_accuracy"][0] <= 1
    assert c["epochs"][0] > 0 and c["images_per_second"][0] > 0
    assert d["airbench94"]["ran"] is False and d["airbench94"]["why"]
    assert d["airbench94_published"]["seconds"] == 3.83 and "Published: 3.83 s" in step_output(suite_run[0].stdout, "speedrun")
    assert figures.check_source("speedrun-cpu.json", d)["speedrun.budget"] == "3 s"
    if not airbench_importable():                               # said so, in the JSON and the summary
        assert "--no-airbench" in d["suite"]["note"] and "airbench is not installed" in d["suite"]["note"]
        assert d["airbench94"]["why"] == "skipped (--no-airbench)"
        assert "airbench is not installed" in suite_run[0].stdout
    else:
        assert "CUDA" in d["airbench94"]["why"]                 # airbench94 needs CUDA


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
