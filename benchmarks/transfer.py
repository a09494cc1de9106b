"""Transfer-learning benchmark: ants vs bees, ImageNet fine-tuning against training from scratch, the bundled
CIFAR-10 backbones and plain fastai, side by side in one run, offline.

Data: ../shared/data/hymenoptera.tar (245 training photos, one of them a stray "image not found" GIF that
decodes like any picture; 153 validation photos; the archive's own train/val split). For each seed, every
set-up trains for the same total number of epochs:

- **cvkit fine-tuned**: `cvkit train DATA` with no flags (its choice for photos: efficientnet_lite0 from the
  ImageNet weights that ship with cvkit; one epoch with the body frozen, then the rest unfrozen);
- **cvkit from scratch**: `cvkit train DATA --scratch`, the same network, size and data, without the weights;
- **cifar_resnet / cifar_speednet fine-tuned**: `cvkit train DATA --arch NAME --pretrained`, the bundled
  CIFAR-10 backbones at their 32 px;
- **plain fastai**: `ImageDataLoaders.from_folder` (`Resize(224)`, default `aug_transforms`, batch size 64)
  + `vision_learner` over the same timm model with the same weights (normalised with the weights' own
  statistics, 0.5/0.5) + `fine_tune`, fastai's defaults otherwise.

Wall time is each whole run: reading and decoding the images, training, evaluating (and for cvkit writing
the model), so the data paths are part of the comparison. With 153 validation images one image is 0.65
points; the figures are means ± standard deviations over the seeds. Everything runs offline.

    python benchmarks/transfer.py [--seeds 42 1 2] [--epochs N] [--json benchmarks/results/transfer-cpu.json]
"""
import argparse, contextlib, datetime, io, json, os, statistics, sys, tempfile, time, warnings
warnings.filterwarnings("ignore")
os.environ.setdefault("CVKIT_OFFLINE", "1")
from pathlib import Path
import torch
from cvkit.core import log, device_name, default_device
from cvkit.core import save_json
from cvkit.datasets import extract_archive
from cvkit.data import VALID_FOLDER_NAMES
from cvkit.models import arch_spec, pretrained_state_dict
from cvkit.cli import main as cvkit_main

DATA = Path(__file__).resolve().parents[2]/"shared"/"data"/"hymenoptera.tar"
CIFAR_BACKBONES = ("cifar_resnet", "cifar_speednet")


def cvkit_run(args:list, out:Path)->tuple[dict, float]:
    "Run `cvkit train` in this process; return its metrics.json and the wall time."
    t0 = time.perf_counter()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cvkit_main(["train", *map(str, args), "--out", str(out)])
    secs = time.perf_counter() - t0
    if rc != 0: raise SystemExit(f"cvkit train {' '.join(map(str, args))} failed with exit code {rc}\n{buf.getvalue()}")
    m = json.loads((out/"metrics.json").read_text())
    m["printed"] = buf.getvalue()
    return m, secs


def fastai_run(root:Path, arch:str, size:int, epochs:int, seed:int)->tuple[float, float]:
    "Plain fastai: from_folder + default aug_transforms + vision_learner + fine_tune; return (accuracy, seconds)."
    from fastai.vision.all import (ImageDataLoaders, Resize, aug_transforms, Normalize, vision_learner, accuracy,
                                   set_seed)
    spec = arch_spec(arch)
    valid = next(n for n in VALID_FOLDER_NAMES if (root/n).is_dir())
    t0 = time.perf_counter()
    set_seed(seed, reproducible=True)
    dls = ImageDataLoaders.from_folder(root, train="train", valid=valid, item_tfms=Resize(size), seed=seed,
                                       batch_tfms=[*aug_transforms(size=size), Normalize.from_stats(spec.mean, spec.std)])
    sd = pretrained_state_dict(arch)                     # the same ImageNet weights, in timm's names
    learn = vision_learner(dls, arch, pretrained=True, normalize=False, metrics=accuracy,
                           pretrained_cfg_overlay=dict(state_dict=sd))
    with learn.no_bar(), learn.no_logging(): learn.fine_tune(epochs)
    with learn.no_bar(), learn.no_logging(): acc = float(learn.validate()[1])
    return acc, time.perf_counter() - t0


def stats(v:list)->tuple[float, float]: return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA), help="the hymenoptera archive or folder (train/ and val/ class folders)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    ap.add_argument("--epochs", type=int, default=None,
                    help="total epochs of every set-up (default: what `cvkit train` does with no flags)")
    ap.add_argument("--arch", default="auto", help="cvkit's fine-tuned network (default auto: `cvkit train`'s own choice)")
    ap.add_argument("--size", type=int, default=None, help="image size of the cvkit runs (default: cvkit train's choice)")
    ap.add_argument("--fastai-size", type=int, default=224, help="plain fastai's image size (default 224)")
    ap.add_argument("--skip-fastai", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if not Path(a.data).exists(): raise SystemExit(f"this benchmark needs {a.data} (../shared/data/hymenoptera.tar)")
    log.setLevel("WARNING")
    data = Path(a.data)
    root = extract_archive(data) if data.is_file() else data
    print(f"ants vs bees ({root}), seeds {a.seeds}, offline, {device_name(default_device(None))}", flush=True)
    extra = ([] if a.arch == "auto" else ["--arch", a.arch, "--pretrained"]) + ([] if a.size is None else ["--size", a.size])
    accs, secs, train_secs = {}, {}, {}
    def record(name, acc, s, ts=None):
        accs.setdefault(name, []).append(acc); secs.setdefault(name, []).append(s)
        if ts is not None: train_secs.setdefault(name, []).append(ts)
    total, arch, size = a.epochs, None, None
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            out = Path(tmp)/f"s{seed}"
            ft_args = [a.data, "--seed", seed, *extra] + ([] if total is None else ["--epochs", total - 1])
            m, s = cvkit_run(ft_args, out/"ft")
            if total is None: total = m["epochs"] + 1           # fine_tune: one frozen epoch, then m["epochs"]
            arch, size, choice = m["arch"], json.loads((out/"ft"/"cvkit.json").read_text())["size"], m["choice"]
            name_ft = f"cvkit fine-tuned ({arch}, {size} px)"
            record(name_ft, m["accuracy"], s, m["train_seconds"])
            scratch_args = [a.data, "--seed", seed, "--scratch", "--epochs", total, "--arch", arch, "--size", size]
            m, s = cvkit_run(scratch_args, out/"scratch")
            record(f"cvkit from scratch ({arch}, {size} px)", m["accuracy"], s, m["train_seconds"])
            for b in CIFAR_BACKBONES:
                m, s = cvkit_run([a.data, "--seed", seed, "--arch", b, "--pretrained", "--epochs", total - 1], out/b)
                record(f"cvkit fine-tuned {b} (32 px)", m["accuracy"], s, m["train_seconds"])
            if not a.skip_fastai:
                acc, s = fastai_run(root, arch, a.fastai_size, total - 1, seed)
                record(f"plain fastai fine_tune ({arch}, {a.fastai_size} px)", acc, s)
            print(f"seed {seed:3d}: " + ", ".join(f"{n} {v[-1]:.2%}" for n, v in accs.items()), flush=True)
    mean = {n: stats(v) for n, v in accs.items()}
    wall = {n: statistics.mean(v) for n, v in secs.items()}
    w = max(map(len, accs))
    print(f"\ncvkit's choice: {choice}")
    print(f"every set-up: {total} epochs in all; means of {len(a.seeds)} seeds\n")
    print(f"{'set-up':{w}s} {'accuracy':>17s} {'s/run':>7s}")
    for n in accs: print(f"{n:{w}s} {mean[n][0]:8.2%} ± {mean[n][1]:5.2%} {wall[n]:7.1f}")
    names = list(accs)
    ft, scratch = names[0], names[1]
    cifar = [n for n in names if "cifar_" in n]
    best_cifar = max(cifar, key=lambda n: mean[n][0])
    gaps = {"fine_tuned_minus_scratch_points": 100*(mean[ft][0] - mean[scratch][0]),
            "fine_tuned_minus_best_cifar_points": 100*(mean[ft][0] - mean[best_cifar][0])}
    print(f"\nfine-tuned vs from scratch: {gaps['fine_tuned_minus_scratch_points']:+.1f} points")
    print(f"fine-tuned vs the best CIFAR-10 backbone ({best_cifar}): {gaps['fine_tuned_minus_best_cifar_points']:+.1f} points")
    fastai = next((n for n in names if n.startswith("plain fastai")), None)
    if fastai is not None:
        gaps["cvkit_minus_fastai_points"] = 100*(mean[ft][0] - mean[fastai][0])
        gaps["cvkit_over_fastai_time"] = wall[ft]/wall[fastai]
        print(f"cvkit vs plain fastai at {total} epochs: {gaps['cvkit_minus_fastai_points']:+.1f} points, "
              f"wall time ratio {gaps['cvkit_over_fastai_time']:.2f} ({wall[ft]:.1f} s vs {wall[fastai]:.1f} s per run)")
    if a.json:
        res = {"benchmark": "transfer-hymenoptera", "device": device_name(default_device(None)), "torch": torch.__version__,
               "date": datetime.date.today().isoformat(), "args": vars(a), "total_epochs": total, "cvkit_choice": choice,
               "setups": {n: {"accuracies": accs[n], "mean": mean[n][0], "std": mean[n][1], "seconds_per_run": wall[n],
                              **({"train_seconds_per_run": statistics.mean(train_secs[n])} if n in train_secs else {})}
                          for n in names},
               "fine_tuned": ft, "scratch": scratch, "fastai": fastai, "best_cifar": best_cifar, "gaps": gaps}
        save_json(res, a.json)
        print(f"wrote {a.json}")


if __name__ == "__main__": main()
