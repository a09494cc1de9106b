"""`cvkit` command line: help, usage errors, and end-to-end training on every kind of DATA."""
from __future__ import annotations
import csv, json, shutil, tarfile, zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import (FAST, SHAPE_CLASSES, SHAPES_PER_CLASS, check_metrics_consistent, check_outputs,
                      check_plain_stdout, cli_env, copy_classes, image_files, read_metrics, run_cli)


# ---------------------------------------------------------------- help and usage

def test_top_level_help(run_cli):
    rc, out, err = run_cli("--help")
    assert rc == 0, err
    assert "usage: cvkit" in out and "train" in out
    assert "Traceback" not in err


def test_train_help(run_cli):
    rc, out, err = run_cli("train", "--help")
    assert rc == 0, err
    assert "DATA" in out, "train --help does not explain DATA"
    for opt in ("--epochs", "--arch", "--size", "--out", "--seed", "--debug", "--valid-pct", "--split"):
        assert opt in out, f"{opt} missing from train --help"


USAGE_ERRORS = {
    "unknown-option": (("train", "--no-such-option"), "unrecognized arguments"),
    "no-command": ((), "usage"),                                  # prints help, exit 2
    "epochs-0": (("train", "--epochs", "0"), "--epochs must be at least 1"),
    "epochs-negative": (("train", "--epochs", "-3"), "--epochs must be at least 1"),
    "epochs-not-int": (("train", "--epochs", "two"), "invalid int value"),
    "bs-0": (("train", "--bs", "0"), "--bs must be at least 1"),
    "size-0": (("train", "--size", "0"), "--size must be at least 8"),
    "size-3": (("train", "--size", "3"), "--size must be at least 8"),       # too small to train on: a usage error too
    "tune-size-3": (("tune", "--size", "3"), "--size must be at least 8"),
    "valid-pct-1.5": (("train", "--valid-pct", "1.5"), "--valid-pct must be between 0 and 1"),
    "bad-split": (("train", "--split", "sideways"), "invalid choice"),
    "bad-command": (("frobnicate",), "invalid choice"),
}


@pytest.fixture(scope="module")
def usage_runs(tmp_path_factory):
    "All usage-error runs, a few at a time (each is mostly interpreter start-up)."
    root = tmp_path_factory.mktemp("usage")
    with ThreadPoolExecutor(3) as ex:
        futures = {k: ex.submit(run_cli, *args, cwd=root) for k, (args, _) in USAGE_ERRORS.items()}
        return root, {k: f.result() for k, f in futures.items()}


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_usage_errors_exit_2(usage_runs, case):
    root, runs = usage_runs
    rc, out, err = runs[case]
    needle = USAGE_ERRORS[case][1]
    assert rc == 2, f"exit {rc}, expected 2 (usage error)\n{out}\n{err}"
    assert needle in out + err
    assert "Traceback" not in err
    assert not (root/"cvkit-out").exists(), "a usage error must not start training"


# ---------------------------------------------------------------- built-in digits, end to end

DIGITS_EPOCHS = 2


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    "One default `cvkit train` run on the built-in digits (default architecture), shared by the digits tests."
    out = tmp_path_factory.mktemp("digits")/"run"
    rc, stdout, stderr = run_cli("train", "--epochs", DIGITS_EPOCHS, "--out", out, cwd=out.parent)
    return rc, stdout, stderr, out


def test_digits_end_to_end(digits_run):
    rc, stdout, stderr, out = digits_run
    assert rc == 0, f"cvkit train failed:\n{stderr}"
    m = check_outputs(out)
    check_metrics_consistent(m)
    check_plain_stdout(stdout, DIGITS_EPOCHS, m)
    assert "cvkit: the built-in digits: small_resnet from scratch" in stderr      # the one-line choice, with its reason
    assert m["classes"] == [str(d) for d in range(10)]
    assert m["skipped"] == []
    from cvkit.datasets import digits
    n_files = len(image_files(digits()))
    assert m["n_train"] + m["n_valid"] == n_files
    assert m["n_valid"] == pytest.approx(0.2*n_files, abs=10)      # default --valid-pct 0.2, stratified
    assert m["epochs"] == DIGITS_EPOCHS
    assert m["accuracy"] >= 0.8, f"digits after {DIGITS_EPOCHS} epochs: accuracy {m['accuracy']}"
    assert "Traceback" not in stderr and "cvkit: error" not in stderr
    # the data summary on stderr agrees with metrics.json
    assert f"cvkit: data: {m['n_train']} training and {m['n_valid']} validation images, 10 classes, 32px" in stderr
    assert not (out.parent/"cvkit-out").exists(), "--out was not respected"


def test_digits_model_json(digits_run):
    rc, _, stderr, out = digits_run
    assert rc == 0, stderr
    meta = json.loads((out/"cvkit.json").read_text())
    assert meta["arch"] == "small_resnet"                          # --arch auto: small_resnet up to 64 px
    assert meta["size"] == 32                                      # documented default size for digits
    assert meta["classes"] == [str(d) for d in range(10)]
    assert len(meta["mean"]) == len(meta["std"]) == 3 and all(s > 0 for s in meta["std"])


def test_digits_load_model_round_trip(digits_run):
    "The exported model, loaded without the training data, reproduces the validation accuracy of metrics.json."
    rc, _, stderr, out = digits_run
    assert rc == 0, stderr
    from cvkit.datasets import digits
    from cvkit.data.items import items_from_folder
    from cvkit.data.split import split_indices
    from cvkit.export import load_model
    m = read_metrics(out)
    pred = load_model(out)
    assert pred.classes == m["classes"]

    items = items_from_folder(digits())
    p = pred.predict(items.files[0])
    assert p.label in m["classes"] and set(p.probs) == set(m["classes"])
    assert sum(p.probs.values()) == pytest.approx(1, abs=1e-4)
    assert p.probability == pytest.approx(max(p.probs.values())) and p.probs[p.label] == p.probability

    # the same validation images as training used (same documented seed and split)
    _, valid = split_indices(items.labels, 0.2, "auto", items.is_valid, seed=42)
    assert len(valid) == m["n_items"]
    preds = pred.predict_batch([items.files[i] for i in valid])
    correct = sum(q.label == items.labels[i] for q, i in zip(preds, valid))
    assert abs(correct - round(m["accuracy"]*m["n_items"])) <= 1, \
        f"exported model gets {correct}/{len(valid)}, metrics.json says {m['accuracy']:.4f}"


def test_predict_command(digits_run, tmp_path, run_cli):
    "`cvkit predict MODEL IMAGES...`: one tab-separated line per readable image; unreadable ones reported, exit 1."
    rc, _, stderr, out = digits_run
    assert rc == 0, stderr
    from cvkit.datasets import digits
    from cvkit.export import load_model
    files = [sorted((digits()/d).glob("*.png"))[0] for d in ("3", "7")]
    rc, stdout, stderr = run_cli("predict", out, *files, cwd=tmp_path)
    assert rc == 0, stderr
    lines = stdout.splitlines()
    assert len(lines) == len(files), stdout
    pred = load_model(out)
    for f, line in zip(files, lines):
        name, label, prob = line.split("\t")
        p = pred.predict(f)
        assert name == str(f) and label == p.label
        assert float(prob) == pytest.approx(p.probability, abs=1e-3)
    broken = tmp_path/"broken.png"; broken.write_text("not a png")
    rc, stdout, stderr = run_cli("predict", out, files[0], broken, cwd=tmp_path)
    assert rc == 1, (stdout, stderr)
    assert len(stdout.splitlines()) == 1 and stdout.startswith(str(files[0]))
    assert "broken.png" in stderr and "Traceback" not in stderr


# ---------------------------------------------------------------- other kinds of DATA

SHAPES_EPOCHS = 2
SHAPES_ARGS = ("--arch", "simple_cnn", "--epochs", SHAPES_EPOCHS, "--seed", 7, "--no-flip")


@pytest.fixture(scope="module")
def shapes_run(shapes_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes-run")/"run"
    rc, stdout, stderr = run_cli("train", shapes_dir, *SHAPES_ARGS, "--out", out, cwd=out.parent)
    return rc, stdout, stderr, out


def test_shapes_folder(shapes_run, shapes_dir):
    rc, stdout, stderr, out = shapes_run
    assert rc == 0, stderr
    m = check_outputs(out)
    check_metrics_consistent(m)
    check_plain_stdout(stdout, SHAPES_EPOCHS, m)
    assert m["classes"] == sorted(SHAPE_CLASSES)
    assert m["n_train"] + m["n_valid"] == len(SHAPE_CLASSES)*SHAPES_PER_CLASS == len(image_files(shapes_dir))
    # default split is stratified with --valid-pct 0.2: every class gets 20 % of its images
    for c in SHAPE_CLASSES:
        assert m["per_class"][c]["support"] == round(0.2*SHAPES_PER_CLASS)
    assert m["skipped"] == []
    assert m["seed"] == 7 and m["arch"] == "simple_cnn"


def test_same_seed_same_result(shapes_run, shapes_dir, tmp_path, run_cli):
    "Training twice with the same seed on CPU gives identical metrics and identical weights."
    rc, _, stderr, out1 = shapes_run
    assert rc == 0, stderr
    out2 = tmp_path/"again"
    rc, _, stderr = run_cli("train", shapes_dir, *SHAPES_ARGS, "--out", out2, cwd=tmp_path)
    assert rc == 0, stderr
    a, b = read_metrics(out1), read_metrics(out2)
    assert a["accuracy"] == b["accuracy"]
    assert a["confusion_matrix"] == b["confusion_matrix"]
    assert a["per_class"] == b["per_class"]
    assert (out1/"model.safetensors").read_bytes() == (out2/"model.safetensors").read_bytes(), \
        "same seed, different weights"


def test_presplit_train_valid_folders(shapes_dir, tmp_path, run_cli):
    "A folder with train/ and valid/ is split by folder (and --valid-pct is ignored)."
    data = tmp_path/"presplit"
    n_train = {"circle": 14, "square": 12, "triangle": 10}
    n_valid = {"circle": 7, "square": 5, "triangle": 4}
    for c in SHAPE_CLASSES:
        files = image_files(shapes_dir/c)
        for split, sel in (("train", files[:n_train[c]]), ("valid", files[n_train[c]:n_train[c] + n_valid[c]])):
            (data/split/c).mkdir(parents=True)
            for f in sel: shutil.copy2(f, data/split/c/f.name)
    out = tmp_path/"out"
    rc, stdout, stderr = run_cli("train", data, *FAST, "--valid-pct", "0.5", "--out", out, cwd=tmp_path)
    assert rc == 0, stderr
    m = check_outputs(out)
    check_metrics_consistent(m)
    assert m["classes"] == sorted(SHAPE_CLASSES), "train/ and valid/ must not become classes"
    assert m["n_train"] == sum(n_train.values())
    assert m["n_valid"] == sum(n_valid.values())
    assert {c: m["per_class"][c]["support"] for c in SHAPE_CLASSES} == n_valid


def _write_csv(path:Path, header, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f); w.writerow(header); w.writerows(rows)


def test_csv_relative_paths(shapes_dir, tmp_path, run_cli):
    "CSV file names are resolved against the CSV's folder, not the working folder; labels come from the CSV."
    data = tmp_path/"csvdata"; (data/"images").mkdir(parents=True)
    relabel = {"circle": "round", "square": "boxy"}
    rows = []
    for c, label in relabel.items():
        for i, f in enumerate(image_files(shapes_dir/c)[:15]):
            name = f"img_{c[0]}{i:03d}.png"
            shutil.copy2(f, data/"images"/name)
            rows.append((f"images/{name}", label))
    _write_csv(data/"labels.csv", ("file", "label"), rows)
    elsewhere = tmp_path/"elsewhere"; elsewhere.mkdir()
    out = tmp_path/"out"
    rc, stdout, stderr = run_cli("train", Path("..")/"csvdata"/"labels.csv", *FAST, "--out", out, cwd=elsewhere)
    assert rc == 0, stderr
    m = check_outputs(out)
    check_metrics_consistent(m)
    check_plain_stdout(stdout, 1, m)
    assert m["classes"] == sorted(relabel.values())
    assert m["n_train"] + m["n_valid"] == len(rows)


def test_csv_named_columns(shapes_dir, tmp_path, run_cli):
    "--fn-col and --label-col pick columns by name, in any order."
    data = tmp_path/"csvdata"; data.mkdir()
    rows = []
    for c in ("circle", "triangle"):
        for i, f in enumerate(image_files(shapes_dir/c)[:12]):
            shutil.copy2(f, data/f"{c}{i}.png")
            rows.append((f"id{len(rows)}", c.upper(), f"{c}{i}.png"))
    _write_csv(data/"meta.csv", ("id", "kind", "path"), rows)
    out = tmp_path/"out"
    rc, _, stderr = run_cli("train", data/"meta.csv", *FAST, "--fn-col", "path", "--label-col", "kind",
                            "--out", out, cwd=tmp_path)
    assert rc == 0, stderr
    m = check_outputs(out)
    assert m["classes"] == ["CIRCLE", "TRIANGLE"]
    assert m["n_train"] + m["n_valid"] == len(rows)


def _zip_dir(src:Path, archive:Path, top:str):
    with zipfile.ZipFile(archive, "w") as z:
        for f in image_files(src): z.write(f, f"{top}/{f.relative_to(src).as_posix()}")


def _targz_dir(src:Path, archive:Path, top:str):
    with tarfile.open(archive, "w:gz") as t:
        for f in image_files(src): t.add(f, f"{top}/{f.relative_to(src).as_posix()}")


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_archive_of_folder(shapes_dir, tmp_path, run_cli, suffix):
    "A .zip or .tar.gz of a folder-per-class dataset trains like the folder itself (extracted into the cache)."
    small = copy_classes(shapes_dir, tmp_path/"small", limit=15)
    archive = tmp_path/f"myshapes{suffix}"
    (_zip_dir if suffix == ".zip" else _targz_dir)(small, archive, "myshapes")
    shutil.rmtree(small)                                   # only the archive remains
    cache = tmp_path/"cache"
    out = tmp_path/"out"
    rc, stdout, stderr = run_cli("train", archive, *FAST, "--out", out, cwd=tmp_path, env=cli_env(CVKIT_CACHE=cache))
    assert rc == 0, stderr
    m = check_outputs(out)
    check_metrics_consistent(m)
    check_plain_stdout(stdout, 1, m)
    assert m["classes"] == sorted(SHAPE_CLASSES), "the archive's top folder must not be taken as a class"
    assert m["n_train"] + m["n_valid"] == 15*len(SHAPE_CLASSES)
    extracted = [p for p in (cache/"extracted").rglob("*.png")]
    assert len(extracted) == 15*len(SHAPE_CLASSES), "archive not extracted into $CVKIT_CACHE/extracted"


@pytest.mark.parametrize("subfolder,prefix", [("", "label-"), ("images/", "")], ids=["flat", "images-subfolder"])
def test_archive_with_csv(shapes_dir, tmp_path, run_cli, subfolder, prefix):
    "A .tar.gz holding one CSV and the images it names (beside it, or in an images/ folder) is read through the CSV."
    data = tmp_path/"pack"; (data/subfolder).mkdir(parents=True, exist_ok=True)
    rows = []
    for c in ("square", "triangle"):
        for i, f in enumerate(image_files(shapes_dir/c)[:12]):
            shutil.copy2(f, data/f"{subfolder}{c}_{i}.png"); rows.append((f"{subfolder}{c}_{i}.png", f"{prefix}{c}"))
    _write_csv(data/"labels.csv", ("file", "label"), rows)
    archive = tmp_path/"pack.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        for f in sorted(data.iterdir()): t.add(f, f.name)
    out = tmp_path/"out"
    rc, _, stderr = run_cli("train", archive, *FAST, "--out", out, cwd=tmp_path,
                            env=cli_env(CVKIT_CACHE=tmp_path/"cache"))
    assert rc == 0, stderr
    m = check_outputs(out)
    assert m["classes"] == [f"{prefix}square", f"{prefix}triangle"]
    assert m["n_train"] + m["n_valid"] == len(rows)
