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

**Sizes mode** (`--sizes 32 48 64 96 128`): at which image size do ImageNet weights stop paying? At each size, side by
side on the same data, split and number of epochs and steps (batch 32): efficientnet_lite0 fine-tuned from its
ImageNet weights, small_resnet from scratch, and the bundled CIFAR-10 backbone cifar_resnet fine-tuned. Two sets of
real photos: ants vs bees (above) and the playing cards of ../shared/data/pinochle_cards.tar.gz cropped to their
boxes (about 140 px, 6 ranks; up to `--cards-per-class` training crops per rank, the original train/test split of
the photos). The figures are what `choose_arch` reads (`MIN_TRANSFER_SIZE` in cvkit.experiment.training). A run adds its rows to
the JSON file of earlier runs with the same epochs and batch (`--sets ants` now, `--sets cards` later), and the
file is rewritten (atomically) after every run, so a stopped benchmark keeps what it measured. `--smoke` runs a
tiny version in seconds (size 32, 2 epochs, a few images) to check the script.

    python benchmarks/transfer.py --sizes 32 48 64 96 128 [--seeds 42] [--epochs 6] [--json benchmarks/results/transfer-sizes-cpu.json]
    python benchmarks/transfer.py --sizes --smoke
"""
import argparse, contextlib, datetime, io, json, os, statistics, sys, tempfile, time, warnings
warnings.filterwarnings("ignore")
os.environ.setdefault("CVKIT_OFFLINE", "1")
from pathlib import Path
import torch
from cvkit.core import log, device_name, default_device
from cvkit.core import save_json
from cvkit.datasets import extract_archive
from cvkit.data.items import VALID_FOLDER_NAMES
from cvkit.models.registry import arch_spec, pretrained_state_dict
from cvkit.cli import main as cvkit_main

DATA = Path(__file__).resolve().parents[2]/"shared"/"data"/"hymenoptera.tar"
CARDS = DATA.parent/"pinochle_cards.tar.gz"
SIZE_SETUPS = {"efficientnet_lite0 fine-tuned (ImageNet)": ("efficientnet_lite0", True),
               "small_resnet from scratch": ("small_resnet", False),
               "cifar_resnet fine-tuned (CIFAR-10)": ("cifar_resnet", True)}
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


def card_crops(per_class:int|None, dest:Path, valid_per_class:int|None=None)->Path:
    "The pinochle card boxes as a folder of crops, train/ and valid/ by the photos' original split, one folder per rank."
    import pandas as pd
    from PIL import Image
    root = extract_archive(CARDS)
    boxes = pd.read_csv(root/"labels.csv")
    test = set((root/"test.txt").read_text().split())
    taken = {}
    for i, b in boxes.iterrows():
        split = "valid" if b.filename in test or Path(b.filename).stem in test else "train"
        cap = per_class if split == "train" else valid_per_class
        if cap is not None and taken.get((split, b["class"]), 0) >= cap: continue
        taken[split, b["class"]] = taken.get((split, b["class"]), 0) + 1
        (dest/split/b["class"]).mkdir(parents=True, exist_ok=True)
        with Image.open(root/"images"/b.filename) as im:
            im.convert("RGB").crop((b.xmin, b.ymin, b.xmax, b.ymax)).save(dest/split/b["class"]/f"{i:04d}.jpg", quality=95)
    return dest


def photo_subset(root:Path, per_class:int, dest:Path)->Path:
    "The first `per_class` photos of each class of each split of `root` (hard links): a smoke-sized copy."
    for split in (d for d in root.iterdir() if d.is_dir()):
        for c in (d for d in split.iterdir() if d.is_dir()):
            (dest/split.name/c.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(c.iterdir())[:per_class]: os.link(f, dest/split.name/c.name/f.name)
    return dest


def size_run(data:Path, arch:str, pretrained:bool, size:int, epochs:int, bs:int, seed:int)->dict:
    "One `train` at `size`: `epochs` in all (fine-tuning: one frozen, then the rest), batch `bs`; accuracy, losses, seconds."
    from cvkit.experiment.training import train
    from cvkit.experiment.config import TrainConfig
    cfg = TrainConfig(data=data, arch=arch, pretrained=pretrained, size=size, bs=bs, seed=seed,
                      epochs=epochs - 1 if pretrained else epochs)
    with contextlib.redirect_stdout(io.StringIO()): r = train(cfg)
    h = r.history
    return {"accuracy": r.metrics["accuracy"], "valid_loss": float(h["valid_loss"].iloc[-1]),
            "train_loss": float(h["train_loss"].iloc[-1]), "train_seconds": r.metrics["train_seconds"],
            "epochs": len(h), "steps": len(h)*max(1, r.metrics["n_train"]//bs), "n_train": r.metrics["n_train"], "n_valid": r.metrics["n_valid"]}


def sizes_main(a):
    "The sizes mode: every set-up at every size on both photo sets, side by side; print a table, write the JSON."
    from cvkit.data.images import typical_side
    from cvkit.data.items import read_items
    if a.smoke: a.sizes, a.epochs, a.seeds = [32], 2, [42]
    sizes, epochs = a.sizes or [32, 48, 64, 96, 128], a.epochs or 6
    for f in (DATA, CARDS):
        if not f.exists(): raise SystemExit(f"the sizes mode needs {f} (../shared/data beside the repository)")
    log.setLevel("WARNING")
    rows, info = [], {}
    old = json.loads(Path(a.json).read_text()) if a.json and Path(a.json).exists() else None
    if old and old.get("benchmark") == "transfer-sizes" and (old["epochs"], old["bs"], old.get("smoke")) == (epochs, a.bs, a.smoke):
        rows, info = old["rows"], old["datasets"]          # a run adds to the results of earlier ones (same epochs and batch)
    a.runs = (old or {}).get("runs", []) if rows else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sets = {}
        if "ants" in a.sets: sets["ants vs bees"] = photo_subset(extract_archive(DATA), 6, tmp/"ants") if a.smoke else extract_archive(DATA)
        if "cards" in a.sets: sets["playing cards"] = card_crops(3 if a.smoke else a.cards_per_class, tmp/"cards", 3 if a.smoke else None)
        for name, root in sets.items():
            items = read_items(root)
            info[name] = {"median_side": typical_side(items.files), "classes": len(set(map(str, items.labels))), "images": len(items.files)}
        print(f"image size vs transfer: {epochs} epochs, batch {a.bs}, seeds {a.seeds}, {device_name(default_device(None))}", flush=True)
        for name, root in sets.items():
            for size in sizes:
                for setup, (arch, pre) in SIZE_SETUPS.items():
                    for seed in a.seeds:
                        rows = [r for r in rows if (r["dataset"], r["size"], r["setup"], r["seed"]) != (name, size, setup, seed)]
                        r = {"dataset": name, "size": size, "setup": setup, "arch": arch, "pretrained": pre, "seed": seed,
                             **size_run(root, arch, pre, size, epochs, a.bs, seed)}
                        rows.append(r)
                        print(f"{name:13s} {size:4d} px  {setup:42s} seed {seed:3d}: {r['accuracy']:6.1%}  valid loss {r['valid_loss']:.2f}"
                              f"  {r['train_seconds']:6.1f} s", flush=True)
                        save_sizes(a, rows, info, epochs, complete=False)   # partial figures survive a stopped run
    save_sizes(a, rows, info, epochs, complete=True, show=True)


def save_sizes(a, rows:list, info:dict, epochs:int, complete:bool, show:bool=False):
    "The mean of every (data, size, set-up) over the seeds, the crossover size; print them (`show`) and write the JSON."
    sets = list(dict.fromkeys(r["dataset"] for r in rows))
    sizes = sorted({r["size"] for r in rows})
    done = lambda name, size: all(any((r["dataset"], r["size"], r["setup"]) == (name, size, k) for r in rows) for k in SIZE_SETUPS)
    mean = lambda name, size, setup, k: statistics.mean(r[k] for r in rows if (r["dataset"], r["size"], r["setup"]) == (name, size, setup))
    table = {name: {str(size): {setup: {k: mean(name, size, setup, k) for k in ("accuracy", "valid_loss", "train_seconds")}
                                for setup in SIZE_SETUPS} for size in sizes if done(name, size)} for name in sets}
    lite = next(iter(SIZE_SETUPS))
    def wins(name, size):
        t = table[name][str(size)]
        return t[lite]["accuracy"] > max(v["accuracy"] for k, v in t.items() if k != lite)
    # the smallest size from which the ImageNet fine-tuning beats both small networks at every size measured, on every set
    common = [s for s in sizes if all(str(s) in table[n] for n in sets)]           # the sizes measured on every set
    crossover = next((s for s in common if all(wins(n, t) for n in sets for t in common if t >= s)), None) if complete else None
    if show:
        print(f"\n{'data':13s} {'size':>5s}  " + "  ".join(f"{k.split(' (')[0]:>30s}" for k in SIZE_SETUPS))
        for name in sets:
            for size in map(int, table[name]):
                t = table[name][str(size)]
                print(f"{name:13s} {size:5d}  " + "  ".join(f"{t[k]['accuracy']:10.1%} (loss {t[k]['valid_loss']:4.2f}, {t[k]['train_seconds']:5.1f} s)" for k in SIZE_SETUPS))
        print(f"\nImageNet fine-tuning beats both small networks from {crossover} px on" if crossover else "\nImageNet fine-tuning does not beat both small networks at every larger size")
    if a.json:
        save_json({"benchmark": "transfer-sizes", "complete": complete, "device": device_name(default_device(None)), "torch": torch.__version__,
                   "date": datetime.date.today().isoformat(), "threads": torch.get_num_threads(), "smoke": a.smoke,
                   "epochs": epochs, "bs": a.bs, "seeds": sorted({r["seed"] for r in rows}), "sizes": sizes, "setups": list(SIZE_SETUPS),
                   "datasets": info, "rows": rows, "table": table, "crossover": crossover,
                   "runs": a.runs + [{k: v for k, v in vars(a).items() if k != "runs"}]}, a.json)
        if show: print(f"wrote {a.json}")


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
    ap.add_argument("--sizes", type=int, nargs="*", default=None,
                    help="sizes mode: these image sizes (none given: 32 48 64 96 128), three set-ups, two photo sets")
    ap.add_argument("--bs", type=int, default=32, help="sizes mode: the batch size of every run")
    ap.add_argument("--sets", nargs="+", default=["ants", "cards"], choices=["ants", "cards"], help="sizes mode: the photo sets")
    ap.add_argument("--cards-per-class", type=int, default=40, help="sizes mode: training crops per card rank")
    ap.add_argument("--smoke", action="store_true", help="sizes mode: a tiny run in seconds (size 32, 2 epochs, a few images)")
    a = ap.parse_args()
    if a.sizes is not None or a.smoke:
        if a.seeds == [42, 1, 2] and not a.smoke: a.seeds = [42]
        return sizes_main(a)
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
