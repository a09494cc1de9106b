"""Shared fixtures and helpers for the cvkit test suite.

Every CLI test runs the real installed console script (`.venv/bin/cvkit`) in a subprocess, so its stdout is
a pipe, not a terminal, exactly as in CI logs. Nothing here touches the network.
"""
from __future__ import annotations
import io, json, os, re, shutil, subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO/".venv"/"bin"
CVKIT = VENV_BIN/"cvkit"
PYTHON = VENV_BIN/"python"
OUTPUT_FILES = ("model.safetensors", "cvkit.json", "metrics.json", "confusion_matrix.png")
SHAPE_CLASSES = ["circle", "square", "triangle"]
SHAPES_PER_CLASS = 24
SHAPES_SIZE = 32
FAST = ("--arch", "simple_cnn", "--epochs", "1")   # for tests where accuracy is not the point


# The test files that take longest on 2 CPU cores, longest first (`pytest --durations=0`). pytest-xdist hands a whole
# file to a worker at a time (--dist loadfile), in collection order (the Makefile passes --no-loadscope-reorder): starting
# the long files first keeps one worker from running a long file alone at the end while the other waits.
LONGEST_FIRST = ["test_benchmarks.py", "test_reliability.py", "test_gpu_suite.py", "test_cli.py", "test_bad_input.py",
                 "test_pretrained.py", "test_multilabel.py", "test_integration_cards.py", "test_experiments.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))    # stable: each file's own order is kept


def cli_env(**extra) -> dict:
    "The environment CLI subprocesses run in: inherited (so the digits cache is reused), non-interactive plotting."
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)                    # the script must find cvkit through its own venv
    env["MPLBACKEND"] = "Agg"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_benchmark_script(name:str, *args, cwd:Path, timeout:float=120) -> subprocess.CompletedProcess:
    "Run `benchmarks/NAME` with `args` in `cwd`, on one torch thread (a tiny model trains fastest on one, and tests run side by side)."
    return subprocess.run([str(PYTHON), str(REPO/"benchmarks"/name), *map(str, args)], cwd=cwd, env=cli_env(OMP_NUM_THREADS=1),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def run_cli(*args, cwd=None, env:dict|None=None, timeout:float=600) -> tuple[int, str, str]:
    "Run `.venv/bin/cvkit *args` (stdout is a pipe, not a terminal); return (returncode, stdout, stderr)."
    assert CVKIT.exists(), f"{CVKIT} not found; run `make venv` first"
    p = subprocess.run([str(CVKIT), *map(str, args)], cwd=cwd, env=env or cli_env(), capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(name="run_cli", scope="session")
def run_cli_fixture():
    "The `run_cli(*args, cwd=None, env=None)` helper, as a fixture."
    return run_cli


# ---------------------------------------------------------------- datasets

def make_shapes(dest:Path, n_per_class:int=SHAPES_PER_CLASS, classes=SHAPE_CLASSES, size:int=SHAPES_SIZE,
                seed:int=0) -> Path:
    "Write a synthetic folder-per-class dataset with cvkit's own generator and return its folder."
    from cvkit.datasets import shapes
    return shapes(n_per_class, classes=list(classes), size=size, seed=seed, dest=Path(dest))


def image_files(folder:Path) -> list[Path]:
    "Visible image files below `folder`, sorted."
    return sorted(p for p in Path(folder).rglob("*")
                  if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg")
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def copy_classes(src:Path, dest:Path, classes=None, limit:int|None=None, start:int=0) -> Path:
    "Copy class folders of `src` (optionally only images [start:start+limit] of each) into `dest`."
    dest.mkdir(parents=True, exist_ok=True)
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        if classes is not None and cls.name not in classes: continue
        (dest/cls.name).mkdir(exist_ok=True)
        files = image_files(cls)
        files = files[start:start + limit] if limit is not None else files[start:]
        for f in files: shutil.copy2(f, dest/cls.name/f.name)
    return dest


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    "A tiny 3-class shapes dataset (folder per class, PNGs), written once per session."
    return make_shapes(tmp_path_factory.mktemp("data")/"shapes")


def jpeg_bytes(png:Path, quality:int=95) -> bytes:
    "The image in `png`, re-encoded as a JPEG (bytes)."
    from PIL import Image
    buf = io.BytesIO()
    with Image.open(png) as im: im.convert("RGB").resize((64, 64)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# ---------------------------------------------------------------- checking outputs

def read_metrics(out:Path) -> dict:
    return json.loads((Path(out)/"metrics.json").read_text())


def check_outputs(out:Path) -> dict:
    "Assert all four output files exist and are well-formed; return metrics.json."
    out = Path(out)
    for f in OUTPUT_FILES:
        assert (out/f).is_file() and (out/f).stat().st_size > 0, f"{out/f} missing or empty"
    assert (out/"confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "confusion_matrix.png is not a PNG"
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary files left in {out}: {leftovers}"
    from safetensors import safe_open
    with safe_open(str(out/"model.safetensors"), "pt") as f: assert len(list(f.keys())) > 0
    meta = json.loads((out/"cvkit.json").read_text())
    m = read_metrics(out)
    assert meta["classes"] == m["classes"], "cvkit.json and metrics.json disagree on the classes"
    return m


def check_metrics_consistent(m:dict) -> None:
    "Assert the numbers in metrics.json agree with each other."
    for k in ("accuracy", "n_items", "classes", "per_class", "macro_avg", "confusion_matrix", "skipped",
              "n_train", "n_valid", "train_seconds"):
        assert k in m, f"metrics.json has no {k!r}"
    classes, cm, n = m["classes"], m["confusion_matrix"], m["n_items"]
    k = len(classes)
    assert k >= 2 and len(set(classes)) == k
    assert len(cm) == k and all(len(row) == k for row in cm), f"confusion matrix is not {k}x{k}"
    assert all(isinstance(v, int) and v >= 0 for row in cm for v in row)
    assert sum(map(sum, cm)) == n, "confusion matrix does not sum to n_items"
    assert n == m["n_valid"] > 0, "n_items (evaluated) differs from n_valid"
    assert m["n_train"] > 0
    trace = sum(cm[i][i] for i in range(k))
    assert m["accuracy"] == pytest.approx(trace/n, abs=1e-9), "accuracy != trace/n_items"   # so within 0..1 too
    assert set(m["per_class"]) == set(classes)
    assert sum(pc["support"] for pc in m["per_class"].values()) == n, "per-class supports do not sum to n_items"
    for i, c in enumerate(classes):
        pc, row, col = m["per_class"][c], sum(cm[i]), sum(cm[j][i] for j in range(k))
        assert pc["support"] == row, f"support of {c} != its confusion-matrix row"
        assert pc["recall"] == pytest.approx(cm[i][i]/row if row else 0.0)
        assert pc["precision"] == pytest.approx(cm[i][i]/col if col else 0.0)
        p, r = pc["precision"], pc["recall"]
        assert pc["f1"] == pytest.approx(2*p*r/(p + r) if p + r else 0.0)
    for key in ("precision", "recall", "f1"):
        assert m["macro_avg"][key] == pytest.approx(sum(pc[key] for pc in m["per_class"].values())/k)
    assert m["train_seconds"] > 0, "training took no time: its clock never ran"


EPOCH_RE = re.compile(r"^epoch (\d+)/(\d+)\s+\S")


def check_plain_stdout(stdout:str, epochs:int, m:dict|None=None) -> None:
    "Assert stdout has exactly one clean 'epoch i/N' line per epoch and nothing that looks like a progress bar."
    assert "\r" not in stdout, "carriage return in stdout (progress bar?)"
    assert "\x1b" not in stdout, "terminal escape sequence in stdout"
    assert "█" not in stdout and "|" not in stdout, "progress-bar characters in stdout"
    lines = stdout.splitlines()
    epoch_lines = [l for l in lines if l.startswith("epoch")]
    assert len(epoch_lines) == epochs, f"expected {epochs} epoch lines, got:\n{stdout}"
    for i, l in enumerate(epoch_lines, 1):
        mo = EPOCH_RE.match(l)
        assert mo and (int(mo[1]), int(mo[2])) == (i, epochs), f"bad epoch line {l!r}"
        assert "accuracy" in l and "valid_loss" in l, f"epoch line lacks metrics: {l!r}"
    others = [l for l in lines if not l.startswith("epoch")]
    assert all(l.startswith(("validation accuracy", "wrote ")) for l in others), f"unexpected stdout lines: {others}"
    summary = [l for l in others if l.startswith("validation accuracy")]
    assert len(summary) == 1, stdout
    if m is not None:
        mo = re.match(r"validation accuracy ([\d.]+)% on (\d+) images", summary[0])
        assert mo, summary[0]
        assert int(mo[2]) == m["n_items"]
        assert float(mo[1]) == pytest.approx(100*m["accuracy"], abs=0.006)


def error_lines(stderr:str) -> list[str]:
    return [l for l in stderr.splitlines() if l.startswith("cvkit: error:")]


def check_one_line_error(rc:int, stdout:str, stderr:str, *needles:str, progress:tuple[str, ...]=()) -> str:
    """Assert a data error: exit 1, exactly one stderr line 'cvkit: error: ...' containing every needle, no traceback.
    Besides it, stderr may only hold progress lines starting with one of `progress` (e.g. 'cvkit: extracting')."""
    assert rc == 1, f"exit code {rc}, expected 1\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = [l for l in stderr.splitlines() if l.strip() and not (progress and l.startswith(progress))]
    assert len(lines) == 1, f"expected a one-line error on stderr, got:\n{stderr}"
    msg = lines[0]
    assert stderr.strip().splitlines()[-1] == msg, "the error should be the last line on stderr"
    assert msg.startswith("cvkit: error: "), msg
    for n in needles: assert n in msg, f"{n!r} not in error message {msg!r}"
    return msg
