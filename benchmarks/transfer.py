"""Transfer-learning benchmark: ants vs bees, the bundled CIFAR-10 backbone fine-tuned vs the same network from scratch.

Data: ../shared/data/hymenoptera.tar (245 training images, one of them a stray "image not found" GIF that
decodes like any picture; 153 validation photos). Every run uses the architecture `cifar_resnet`, the same image size, batch size,
augmentation, label smoothing and number of epochs. Three set-ups are compared:

- scratch, max head: `cifar_resnet` as `cv_learner` builds it from scratch (global max-pool → linear), lr 1e-2;
- scratch, concat head: exactly the network that is fine-tuned (avg+max pool → batch-norm → dropout 0.5 →
  linear), random weights, lr 3e-3 (its better rate of 1e-2 and 3e-3);
- fine-tuned: the bundled CIFAR-10 weights, `fine_tune` (one epoch with the body frozen, then every layer,
  discriminative learning rates 3× apart).

With 153 validation images one image is 0.65 points and one seed's result varies by several points, so each
set-up runs with several seeds and the gap is taken between means, against the better of the two scratch
set-ups. Everything runs offline.

    python benchmarks/transfer.py [--size 32] [--epochs 8] [--seeds 42 1 2 3 4] [--json benchmarks/results/transfer-cpu.json]
"""
import argparse, json, time, warnings, statistics, datetime
warnings.filterwarnings("ignore")
from pathlib import Path
import torch
from cvkit.core import log, device_name
from cvkit.data import image_dataloaders
from cvkit.learner import cv_learner, EpochLogger
from cvkit.interpret import evaluate

DATA = Path(__file__).resolve().parents[2]/"shared"/"data"/"hymenoptera.tar"
SETUPS = {  # name: (pretrained, head, lr)
    "scratch, max head": (False, "max", 1e-2),
    "scratch, concat head": (False, "concat", 3e-3),
    "fine-tuned": (True, "concat", 5e-3),
}

def run(setup:str, dls, a, seed:int)->float:
    pretrained, head, lr = SETUPS[setup]
    learn = cv_learner(dls, "cifar_resnet", pretrained=pretrained, head=head, label_smoothing=0.1, seed=seed,
                       plain_logging=True)
    learn.remove_cb(EpochLogger)
    if pretrained: learn.fine_tune(a.epochs - 1, lr, freeze_epochs=1, lr_mult=3)   # 1 frozen + the rest
    else: learn.fit_one_cycle(a.epochs, lr)
    return evaluate(learn).accuracy

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=32, help="image size (32: the backbone's pretraining resolution; default)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
    ap.add_argument("--data", default=str(DATA), help="the hymenoptera archive or folder")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if not Path(a.data).exists(): raise SystemExit(f"this benchmark needs {a.data} (../shared/data/hymenoptera.tar)")
    log.setLevel("WARNING")
    print(f"ants vs bees at {a.size}px, cifar_resnet, {a.epochs} epochs, batch size {a.bs}, seeds {a.seeds}\n")
    accs, secs, dev = {s: [] for s in SETUPS}, {s: 0.0 for s in SETUPS}, None
    for seed in a.seeds:
        dls = image_dataloaders(a.data, size=a.size, bs=a.bs, seed=seed, normalize="imagenet")
        dev = device_name(dls.device)
        for s in SETUPS:
            t0 = time.perf_counter(); accs[s].append(run(s, dls, a, seed)); secs[s] += time.perf_counter() - t0
        print(f"seed {seed:3d}: " + ", ".join(f"{s} {accs[s][-1]:.2%}" for s in SETUPS), flush=True)
    mean = {s: statistics.mean(v) for s, v in accs.items()}
    sd = {s: statistics.stdev(v) if len(v) > 1 else 0.0 for s, v in accs.items()}
    print(f"\n{'set-up':22s} {'mean':>7s} {'std':>6s} {'s/run':>6s}")
    for s in SETUPS: print(f"{s:22s} {mean[s]:7.2%} {sd[s]:6.2%} {secs[s]/len(a.seeds):6.1f}")
    best_scratch = max((s for s in SETUPS if s.startswith("scratch")), key=mean.get)
    gap = 100*(mean["fine-tuned"] - mean[best_scratch])
    print(f"\ngap: fine-tuned {mean['fine-tuned']:.2%} vs the better from-scratch set-up ({best_scratch}) "
          f"{mean[best_scratch]:.2%}: {gap:+.1f} points (mean of {len(a.seeds)} seeds)")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"benchmark": "transfer-hymenoptera", "device": dev,
            "torch": torch.__version__, "date": datetime.date.today().isoformat(), "args": vars(a),
            "setups": {s: {"pretrained": p, "head": h, "lr": lr, "accuracies": accs[s], "mean": mean[s], "std": sd[s],
                           "seconds_per_run": secs[s]/len(a.seeds)} for s, (p, h, lr) in SETUPS.items()},
            "best_scratch": best_scratch, "gap_points": gap}, indent=2) + "\n")
        print(f"wrote {a.json}")

if __name__ == "__main__": main()
