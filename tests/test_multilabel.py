"""Multi-label classification through the command line, end to end: train (task detected from the CSV), predict, ONNX;
and `cvkit train` giving the same model as `train(config)` for the same config and seed."""
from __future__ import annotations
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import check_outputs, read_metrics, run_cli


@pytest.fixture(scope="module")
def multilabel_dir(tmp_path_factory) -> Path:
    "A small multi-label shapes set: images/ and labels.csv (file, space-separated labels)."
    from cvkit.datasets import shapes
    return shapes(40, classes=3, size=32, multilabel=True, dest=tmp_path_factory.mktemp("ml")/"shapes")


@pytest.fixture(scope="module")
def multilabel_run(multilabel_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("mlrun")/"run"
    rc, stdout, stderr = run_cli("train", multilabel_dir/"labels.csv", "--arch", "simple_cnn", "--epochs", 3, "--out", out)
    return rc, stdout, stderr, out


def test_multilabel_train_detects_task_and_writes_outputs(multilabel_run):
    rc, stdout, stderr, out = multilabel_run
    assert rc == 0, stderr
    assert "multi-label data:" in stderr and "Traceback" not in stderr          # the one-line note on the detected task
    m = check_outputs(out)
    assert m["task"] == "multi_label" and m["classes"] == ["circle", "square", "triangle"]
    for k in ("macro_f1", "map", "exact_match", "label_accuracy", "thresholds", "per_label", "label_confusion"):
        assert k in m, k
    meta = json.loads((out/"cvkit.json").read_text())
    assert meta["task"] == "multi_label" and meta["threshold"] == m["thresholds"] and meta["format_version"] == 2
    # the per-label numbers agree with each other and with the confusion counts
    for c in m["classes"]:
        pl, cm = m["per_label"][c], m["label_confusion"][c]
        assert pl["support"] == cm["tp"] + cm["fn"]
        assert pl["precision"] == pytest.approx(cm["tp"]/(cm["tp"] + cm["fp"]) if cm["tp"] + cm["fp"] else 0.0)
        assert pl["recall"] == pytest.approx(cm["tp"]/(cm["tp"] + cm["fn"]) if cm["tp"] + cm["fn"] else 0.0)
        assert sum(cm.values()) == m["n_items"] == m["n_valid"]
    assert m["macro_f1"] == pytest.approx(np.mean([m["per_label"][c]["f1"] for c in m["classes"]]))
    summary = [l for l in stdout.splitlines() if l.startswith("validation macro F1")]
    assert len(summary) == 1 and f"on {m['n_items']} images" in summary[0], stdout
    assert len([l for l in stdout.splitlines() if l.startswith("epoch ")]) == 3


def test_multilabel_predict_and_onnx(multilabel_run, multilabel_dir, tmp_path):
    rc, _, stderr, out = multilabel_run
    assert rc == 0, stderr
    files = sorted((multilabel_dir/"images").glob("*.png"))[:5]
    rc, stdout, stderr = run_cli("predict", out, *files, "--json")
    assert rc == 0, stderr
    rows = [json.loads(l) for l in stdout.splitlines()]
    assert len(rows) == 5 and all(set(r) == {"file", "labels", "probs", "thresholds"} for r in rows)
    for r in rows:                                                          # labels = probabilities at or above threshold
        assert r["labels"] == [c for c, p in r["probs"].items() if p >= r["thresholds"][c]]
    rc, tsv, _ = run_cli("predict", out, *files)
    assert rc == 0 and len(tsv.splitlines()) == 5
    for line, r in zip(tsv.splitlines(), rows):
        f, labels = line.split("\t")
        assert f == r["file"] and ([] if labels == "(none)" else [x.split(":")[0] for x in labels.split()]) == r["labels"]
    rc, _, stderr = run_cli("export", out, "--onnx", tmp_path/"m.onnx")
    assert rc == 0, stderr
    from cvkit.export import load_model, onnx_session
    from cvkit.data.images import load_image
    import torch
    pred = load_model(out)
    raw = np.stack([load_image(f, 32) for f in files]).transpose(0, 3, 1, 2).astype(np.float32)/255
    (logits,) = onnx_session(tmp_path/"m.onnx").run(None, {"image": raw})
    probs = 1/(1 + np.exp(-logits))
    np.testing.assert_allclose(probs, [[r["probs"][c] for c in pred.classes] for r in rows], atol=1e-4)


def test_task_can_be_forced(multilabel_dir, tmp_path):
    "With --task single_label, each whole label cell is one class name."
    out = tmp_path/"out"
    rc, _, stderr = run_cli("train", multilabel_dir/"labels.csv", "--task", "single_label", "--arch", "simple_cnn",
                            "--epochs", 1, "--valid-pct", 0.5, "--out", out)
    assert rc == 0, stderr
    m = read_metrics(out)
    assert m["task"] == "single_label"
    assert any(" " in c for c in m["classes"]), m["classes"]             # e.g. "circle square" is one class


def test_cli_and_train_config_give_the_same_model(tmp_path):
    "`cvkit train` is a thin parser over `train(config)`: same config and seed, same weights and metrics."
    from cvkit.experiment.training import train
    from cvkit.experiment.config import TrainConfig
    from safetensors.torch import load_file
    import torch
    a, b = tmp_path/"cli", tmp_path/"fn"
    rc, _, stderr = run_cli("train", "--arch", "simple_cnn", "--epochs", 1, "--seed", 3, "--out", a)
    assert rc == 0, stderr
    train(TrainConfig(arch="simple_cnn", epochs=1, seed=3, out=b))
    wa, wb = load_file(str(a/"model.safetensors")), load_file(str(b/"model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa: torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6, msg=k)
    ma, mb = read_metrics(a), read_metrics(b)
    for k in ("accuracy", "per_class", "confusion_matrix", "lr", "epochs", "bs", "label_smoothing", "arch", "choice"):
        assert ma[k] == mb[k], k
    assert ma["config"] | {"out": None} == mb["config"] | {"out": None}
