"""Pretrained weights offline: a fast, actionable failure with an empty cache, weights from a file, and refusal
of a weights file that would run code when unpickled."""
from __future__ import annotations
import json, time
import pytest

import torch

from conftest import check_outputs, cli_env, make_shapes


def offline_env(tmp_path, **extra) -> dict:
    "No network (CVKIT_OFFLINE=1) and empty torch / Hugging Face caches."
    return cli_env(CVKIT_OFFLINE=1, HF_HOME=tmp_path/"hf", TORCH_HOME=tmp_path/"torch", **extra)


def test_pretrained_timm_offline_empty_cache_fails_fast(shapes_dir, tmp_path, run_cli):
    t0 = time.perf_counter()
    rc, stdout, stderr = run_cli("train", shapes_dir, "--arch", "resnet10t", "--pretrained", "--epochs", "1",
                                 "--out", tmp_path/"out", env=offline_env(tmp_path), timeout=120)
    elapsed = time.perf_counter() - t0
    assert rc == 1, stderr
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    error = [l for l in lines if l.startswith("cvkit: error:")]
    assert len(error) == 1, stderr
    for hint in ("not in the local cache", "weights=PATH", "timm.create_model('resnet10t', pretrained=True)",
                 "pretrained=False"):
        assert hint in error[0], error[0]
    assert "epoch" not in stdout
    assert elapsed < 40, f"took {elapsed:.1f}s (imports included); it must not wait for the network"


def test_pretrained_torchvision_offline_names_the_cache(shapes_dir, tmp_path, run_cli):
    rc, _, stderr = run_cli("train", shapes_dir, "--arch", "resnet18", "--pretrained", "--epochs", "1",
                            "--out", tmp_path/"out", env=offline_env(tmp_path), timeout=120)
    assert rc == 1 and "torchvision.models.get_model('resnet18', weights='DEFAULT')" in stderr, stderr


def test_weights_file_through_cli(shapes_dir, tmp_path, run_cli):
    "A timm state dict saved as safetensors is used offline; the trained model exports and reloads."
    import timm
    from safetensors.torch import save_file
    sd = timm.create_model("resnet10t", pretrained=False).state_dict()
    save_file(sd, str(tmp_path/"resnet10t.safetensors"))
    out = tmp_path/"out"
    rc, stdout, stderr = run_cli("train", shapes_dir, "--arch", "resnet10t", "--weights", tmp_path/"resnet10t.safetensors",
                                 "--epochs", "1", "--size", "32", "--out", out, env=offline_env(tmp_path))
    assert rc == 0, stderr
    check_outputs(out)
    meta = json.loads((out/"cvkit.json").read_text())
    assert meta["arch"] == "resnet10t" and meta["pretrained"] is True and meta["normalize"] == "imagenet"
    # fine_tune: one frozen epoch, then the unfrozen ones
    assert sum(l.startswith("epoch") for l in stdout.splitlines()) == 2, stdout


def test_malicious_weights_pickle_is_refused(shapes_dir, tmp_path, run_cli):
    marker = tmp_path/"pwned"
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))
    torch.save({"conv.weight": Evil()}, tmp_path/"evil.pth")
    rc, _, stderr = run_cli("train", shapes_dir, "--arch", "resnet18", "--weights", tmp_path/"evil.pth",
                            "--epochs", "1", "--out", tmp_path/"out", env=offline_env(tmp_path))
    assert rc == 1 and "refused" in stderr, stderr
    assert not marker.exists(), "loading the weights ran code from the pickle"


@pytest.mark.parametrize("arch", ["cifar_resnet", "cifar_speednet"])
def test_bundled_backbone_offline(arch, shapes_dir, tmp_path, run_cli):
    "`--arch <bundled> --pretrained` fine-tunes cvkit's bundled weights with no network and empty caches."
    out = tmp_path/"out"
    rc, stdout, stderr = run_cli("train", shapes_dir, "--arch", arch, "--pretrained", "--epochs", "1",
                                 "--out", out, env=offline_env(tmp_path))
    assert rc == 0, stderr
    check_outputs(out)
    meta = json.loads((out/"cvkit.json").read_text())
    assert meta["arch"] == arch and meta["pretrained"] is True and meta["normalize"] == "imagenet"
    assert sum(l.startswith("epoch") for l in stdout.splitlines()) == 2, stdout     # frozen epoch + 1


def test_photos_fine_tune_imagenet_weights_offline_by_default(tmp_path, run_cli):
    "Photo-sized images trained at 96 px (MIN_TRANSFER_SIZE) and no other flags: efficientnet_lite0 fine-tuned from its ImageNet weights, offline, with their statistics."
    data = make_shapes(tmp_path/"photos", n_per_class=10, size=120, seed=0)
    rc, stdout, stderr = run_cli("train", data, "--epochs", "1", "--size", "96", "--out", tmp_path/"out",
                                 env=offline_env(tmp_path), timeout=300)
    assert rc == 0, stderr
    assert "cvkit: photos (median side 120 px): efficientnet_lite0 fine-tuned from its ImageNet weights" in stderr
    meta = json.loads((tmp_path/"out"/"cvkit.json").read_text())
    m = json.loads((tmp_path/"out"/"metrics.json").read_text())
    assert meta["arch"] == "efficientnet_lite0" and meta["pretrained"] is True and meta["family"] == "timm"
    assert meta["mean"] == [0.5]*3 and meta["std"] == [0.5]*3 and meta["normalize"] == "efficientnet_lite0"
    assert m["bs"] == 32 and m["label_smoothing"] == 0.0 and m["pretrained"] is True
    assert len([l for l in stdout.splitlines() if l.startswith("epoch")]) == 2     # one frozen epoch, then one
    rc, _, stderr = run_cli("train", data, "--epochs", "1", "--size", "96", "--scratch", "--out", tmp_path/"scratch",
                            env=offline_env(tmp_path), timeout=300)
    assert rc == 0, stderr
    meta = json.loads((tmp_path/"scratch"/"cvkit.json").read_text())
    assert meta["arch"] == "efficientnet_lite0" and meta["pretrained"] is False and meta["normalize"] == "data"
