"""CIFAR-10 speedrun: cvkit's speed recipe (`cvkit.experiment.recipes`) beside airbench94, on the same machine and data.

On a GPU the recipe trains for its epochs (default 10, batch 1024, `speed_net` widths 64/256/256) `--runs`
times after one warm-up run. The script reports the median training time, the test accuracy with and without
TTA, and how many runs reached 94 %. It then runs airbench94 (`pip install airbench`) the same way, on the same
images: the JPEGs decoded by cvkit and written in the tensor files airbench reads. The ratio of the two times
is the figure of merit. airbench needs CUDA; where it cannot run, the script says why and compares with its
published time instead (3.83 s on one A100 for 94.01 %).

On a CPU (no bf16 hardware, no airbench) the question becomes: *what accuracy does the recipe reach in a
fixed time?* `--budget` seconds of training time (default 300). The schedule is driven by time, so the
learning rate reaches its end value just as the budget runs out. The CPU default is a narrower network
(widths 32/64/128) and batch 512.

Training time counts from the first step to the last, device-synchronised. Decoding the data and evaluating
are timed apart.

    python benchmarks/speedrun.py [--data PATH] [--budget 300] [--runs 3] [--json benchmarks/results/speedrun-cpu.json]
"""
import argparse, datetime, json, os, statistics, sys, tempfile, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import numpy as np
import torch
from cvkit.core import log, default_device, device_name
from cvkit.core import save_json
from cvkit.datasets import extract_archive, is_archive
from cvkit.experiment.recipes import SpeedRecipe, speed_dataloaders, speed_run

SHARED = Path(__file__).resolve().parents[2]/"shared"/"data"
AIRBENCH94_PUBLISHED = {"seconds": 3.83, "accuracy": 0.9401, "device": "NVIDIA A100-SXM4-80GB"}


def data_folder(path:Path)->Path:
    "A folder with train/ and test/ (or valid/) class folders, extracting an archive once."
    if not path.exists():
        raise SystemExit(f"{path} not found: the speedrun needs CIFAR-10 (../shared/data/cifar10-jpg.tar.gz beside the "
                         f"repository) or --data pointing at a folder with train/ and test/ class folders")
    root = extract_archive(path) if is_archive(path) else path
    for p in [root, *sorted(q for q in root.iterdir() if q.is_dir())]:
        if (p/"train").is_dir() and any((p/n).is_dir() for n in ("test", "valid", "val")): return p
    raise SystemExit(f"{root} has no train/ and test/ folders")


def run_airbench(dls, runs:int)->dict:
    "airbench94 on the images in `dls` (training and validation = test split), timed like the recipe; or why not."
    if not torch.cuda.is_available(): return {"ran": False, "why": "airbench94 needs a CUDA GPU"}
    try: import airbench
    except ImportError as e: return {"ran": False, "why": f"airbench is not installed ({e}); pip install airbench"}
    work = Path(tempfile.mkdtemp(prefix="airbench-"))
    (work/"cifar10").mkdir()
    for name, dl in (("train", dls.train), ("test", dls.valid)):
        ds = dl.dataset          # uint8 N×C×H×W: airbench stores N×H×W×C
        torch.save({"images": ds.images.permute(0, 2, 3, 1).contiguous().cpu(), "labels": ds.labels.cpu(),
                    "classes": list(ds.vocab)}, work/"cifar10"/f"{name}.pt")
    old = os.getcwd(); os.chdir(work)
    try:
        airbench.warmup94(verbose=False)
        secs, accs = [], []
        for _ in range(runs):
            torch.cuda.synchronize(); t0 = time.perf_counter()
            model = airbench.train94(verbose=False)       # includes its own final evaluation
            torch.cuda.synchronize(); secs.append(time.perf_counter() - t0)
            accs.append(float(airbench.evaluate(model, airbench.CifarLoader("cifar10", train=False, batch_size=2000),
                                                tta_level=2)))
    finally: os.chdir(old)
    return {"ran": True, "seconds": secs, "accuracy": accs, "median_seconds": statistics.median(secs),
            "note": "wall time of train94, which includes its final evaluation"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED/"cifar10-jpg.tar.gz")
    ap.add_argument("--device", default=None)
    ap.add_argument("--budget", type=float, default=None, help="seconds of training (default: 300 on CPU; on GPU: train for --epochs)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--bs", type=int, default=None, help="batch size (default 1024 on GPU, 512 on CPU)")
    ap.add_argument("--lr", type=float, default=None, help="peak rate per 1024 images (default: the recipe's)")
    ap.add_argument("--widths", type=int, nargs=3, default=None, help="speed_net widths (default 64 256 256 on GPU, 32 64 128 on CPU)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs (default 3 on GPU, 1 on CPU)")
    ap.add_argument("--target", type=float, default=0.94)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--no-airbench", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    log.setLevel("WARNING")
    device = default_device(a.device)
    gpu = device.type == "cuda"
    budget = a.budget if a.budget is not None else (None if gpu else 300.0)
    runs = a.runs or (3 if gpu else 1)
    kw = {k: v for k, v in dict(lr=a.lr, widths=tuple(a.widths) if a.widths else None).items() if v is not None}
    recipe = SpeedRecipe(epochs=a.epochs, bs=a.bs or (1024 if gpu else 512), compile=a.compile,
                         **({"widths": (32, 64, 128)} if not gpu and "widths" not in kw else {}), **kw)
    folder = data_folder(a.data)
    print(f"{device_name(device)}; torch {torch.__version__}; data {folder}", flush=True)
    t0 = time.perf_counter()
    dls = speed_dataloaders(folder, recipe, 32, seed=a.seed, device=device)
    print(f"data: {dls.spec.summary()} ({time.perf_counter() - t0:.1f} s to decode)", flush=True)
    what = f"{budget:g} s budget" if budget else f"{recipe.epochs} epochs"
    print(f"recipe: speed_net {recipe.widths}, batch {recipe.bs}, peak lr {recipe.peak_lr:.3g}, {what}", flush=True)

    if gpu:                                                  # warm-up: cuDNN autotuning, allocator, kernels
        speed_run(dls, SpeedRecipe(**{**vars(recipe), "epochs": 1, "tta": False}), seed=a.seed, log_epochs=False)
    results = []
    for i in range(runs):
        res, _ = speed_run(dls, recipe, budget, seed=a.seed + i, log_epochs=False)
        results.append(res)
        print(f"run {i + 1}: {res.summary()}", flush=True)
    best_acc = [r.tta_accuracy if r.tta_accuracy is not None else r.accuracy for r in results]
    med = statistics.median(r.train_seconds for r in results)
    out = {"benchmark": "speedrun", "device": device_name(device), "torch": torch.__version__,
           "date": datetime.date.today().isoformat(), "args": {k: str(v) for k, v in vars(a).items()},
           "recipe": {**vars(recipe), "widths": list(recipe.widths)}, "budget_seconds": budget,
           "cvkit": {"train_seconds": [r.train_seconds for r in results], "median_train_seconds": med,
                     "accuracy": [r.accuracy for r in results], "tta_accuracy": [r.tta_accuracy for r in results],
                     "epochs": [r.epochs for r in results], "images_per_second": [r.images_per_second for r in results],
                     "reached_target": sum(acc >= a.target for acc in best_acc), "runs": runs,
                     "precision": results[0].precision, "compile_seconds": [r.compile_seconds for r in results]}}
    print(f"\ncvkit speed recipe: median {med:.1f} s of training, accuracy {100*statistics.mean(best_acc):.2f} % "
          f"(TTA; mean of {runs}); {out['cvkit']['reached_target']}/{runs} runs reached {100*a.target:.0f} %")

    ab = {"ran": False, "why": "skipped (--no-airbench)"} if a.no_airbench else run_airbench(dls, runs)
    out["airbench94"] = ab
    if ab["ran"]:
        ratio = med/ab["median_seconds"]
        out["ratio_cvkit_over_airbench"] = ratio
        print(f"airbench94: median {ab['median_seconds']:.2f} s, accuracy {100*statistics.mean(ab['accuracy']):.2f} %")
        print(f"cvkit / airbench94 time: {ratio:.2f} (goal <= 1.5, with both reaching {100*a.target:.0f} %)")
    else:
        pub = AIRBENCH94_PUBLISHED
        out["airbench94_published"] = pub
        print(f"airbench94 did not run here: {ab['why']}. Published: {pub['seconds']} s to "
              f"{100*pub['accuracy']:.2f} % on one {pub['device']}.")
        if budget: print(f"(on this device the recipe reached {100*max(best_acc):.2f} % in {budget:g} s of training)")
    if a.json:
        save_json(out, a.json)
        print(f"wrote {a.json}")

if __name__ == "__main__": main()
