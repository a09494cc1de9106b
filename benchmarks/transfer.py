"""Transfer-learning benchmark: ants vs bees, cvkit's bundled CIFAR-10 backbones fine-tuned vs the same networks from scratch.

Data: ../shared/data/hymenoptera.tar (245 training images, one of them a stray "image not found" GIF that
decodes like any picture; 153 validation photos). For each bundled backbone (`cifar_resnet`, `cifar_speednet`)
every run uses the same architecture, image size, batch size, augmentation, label smoothing and number of
epochs. The set-ups:

- from scratch, with the architecture's own head (global max-pool → linear) and with the head that is
  fine-tuned (avg+max pool → batch-norm → dropout 0.5 → linear), each at learning rates 1e-2 and 3e-3
  (`cv_learner` sets a whitening layer from the training images, as for any network trained from scratch);
- fine-tuned: the bundled CIFAR-10 weights, `fine_tune` (one epoch with the body frozen, then every layer,
  discriminative learning rates 3× apart), at learning rates 5e-3 and 2e-3.

With 153 validation images one image is 0.65 points and one seed's result varies by several points, so each
set-up runs with several seeds and the gap is taken between means: the best fine-tuned set-up against the
best from-scratch set-up (four chances for scratch, two for fine-tuning: the comparison leans towards
scratch). It is reported per architecture and across both. Everything runs offline.

    python benchmarks/transfer.py [--arch cifar_resnet cifar_speednet] [--size 32] [--epochs 8] [--seeds 42 1 2 3 4] [--json benchmarks/results/transfer-cpu.json]
"""
import argparse, inspect, json, time, warnings, statistics, datetime
warnings.filterwarnings("ignore")
from pathlib import Path
import torch
from cvkit.core import log, device_name
from cvkit.data import image_dataloaders
from cvkit.learner import cv_learner, EpochLogger
from cvkit.models import BUNDLED_WEIGHTS, resolve_arch
from cvkit.interpret import evaluate

DATA = Path(__file__).resolve().parents[2]/"shared"/"data"/"hymenoptera.tar"
SCRATCH_LRS, FINETUNE_LRS = (1e-2, 3e-3), (5e-3, 2e-3)

def setups(arch:str)->dict:
    "name: (pretrained, head, lr). Scratch gets two heads × two rates, fine-tuning two rates; the best of each counts."
    default_head = inspect.signature(resolve_arch(arch)[1]).parameters["head"].default
    out = {}
    for head in (default_head, "concat"):
        for lr in SCRATCH_LRS: out[f"scratch, {head} head, lr {lr:g}"] = (False, head, lr)
    for lr in FINETUNE_LRS: out[f"fine-tuned, lr {lr:g}"] = (True, "concat", lr)
    return out

def run(arch:str, setup:tuple, dls, a, seed:int)->float:
    pretrained, head, lr = setup
    learn = cv_learner(dls, arch, pretrained=pretrained, head=head, label_smoothing=0.1, seed=seed, plain_logging=True)
    learn.remove_cb(EpochLogger)
    if pretrained: learn.fine_tune(a.epochs - 1, lr, freeze_epochs=1, lr_mult=3)   # 1 frozen + the rest
    else: learn.fit_one_cycle(a.epochs, lr)
    return evaluate(learn).accuracy

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=sorted(BUNDLED_WEIGHTS), choices=sorted(BUNDLED_WEIGHTS),
                    help="the bundled backbones to compare (default: all)")
    ap.add_argument("--size", type=int, default=32, help="image size (32: the backbones' pretraining resolution; default)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
    ap.add_argument("--data", default=str(DATA), help="the hymenoptera archive or folder")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if not Path(a.data).exists(): raise SystemExit(f"this benchmark needs {a.data} (../shared/data/hymenoptera.tar)")
    log.setLevel("WARNING")
    print(f"ants vs bees at {a.size}px, {', '.join(a.arch)}, {a.epochs} epochs, batch size {a.bs}, seeds {a.seeds}")
    runs = {(arch, s): setup for arch in a.arch for s, setup in setups(arch).items()}
    accs, secs, dev = {k: [] for k in runs}, {k: 0.0 for k in runs}, None
    for seed in a.seeds:
        dls = image_dataloaders(a.data, size=a.size, bs=a.bs, seed=seed, normalize="imagenet")
        dev = device_name(dls.device)
        for k, setup in runs.items():
            t0 = time.perf_counter(); accs[k].append(run(k[0], setup, dls, a, seed)); secs[k] += time.perf_counter() - t0
        print(f"seed {seed:3d}: " + ", ".join(f"{arch} {s} {accs[arch, s][-1]:.2%}" for arch, s in runs), flush=True)
    mean = {k: statistics.mean(v) for k, v in accs.items()}
    sd = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in accs.items()}
    best = lambda keys: max(keys, key=mean.get)
    out = {}
    for arch in a.arch:
        keys = [k for k in runs if k[0] == arch]
        w = max(len(s) for _, s in keys)
        print(f"\n{arch:{w}s} {'mean':>7s} {'std':>6s} {'s/run':>6s}")
        for k in keys: print(f"{k[1]:{w}s} {mean[k]:7.2%} {sd[k]:6.2%} {secs[k]/len(a.seeds):6.1f}")
        bs_, bt = best([k for k in keys if not runs[k][0]]), best([k for k in keys if runs[k][0]])
        gap = 100*(mean[bt] - mean[bs_])
        print(f"gap: best fine-tuned ({bt[1]}) {mean[bt]:.2%} vs best from scratch ({bs_[1]}) {mean[bs_]:.2%}: "
              f"{gap:+.1f} points")
        out[arch] = {"setups": {s: {"pretrained": p, "head": h, "lr": lr, "accuracies": accs[arch, s], "mean": mean[arch, s],
                                    "std": sd[arch, s], "seconds_per_run": secs[arch, s]/len(a.seeds)}
                                for (ar, s), (p, h, lr) in runs.items() if ar == arch},
                     "best_scratch": bs_[1], "best_fine_tuned": bt[1], "gap_points": gap}
    bs_, bt = best([k for k in runs if not runs[k][0]]), best([k for k in runs if runs[k][0]])
    overall = 100*(mean[bt] - mean[bs_])
    if len(a.arch) > 1:
        print(f"\nacross architectures: best fine-tuned ({' '.join(bt)}) {mean[bt]:.2%} vs best from scratch "
              f"({' '.join(bs_)}) {mean[bs_]:.2%}: {overall:+.1f} points (means of {len(a.seeds)} seeds)")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"benchmark": "transfer-hymenoptera", "device": dev,
            "torch": torch.__version__, "date": datetime.date.today().isoformat(), "args": vars(a), "archs": out,
            "across_archs": {"best_fine_tuned": list(bt), "best_scratch": list(bs_), "gap_points": overall}},
            indent=2) + "\n")
        print(f"wrote {a.json}")

if __name__ == "__main__": main()
