"""Transfer-learning benchmark: ants vs bees, the bundled CIFAR-10 backbone fine-tuned vs the same network from scratch.

Data: ../shared/data/hymenoptera.tar (245 training, 153 validation photos; train/ants also holds a stray GIF,
which is decoded like any image). Both runs use the same architecture (`cifar_resnet`), image size, batch size,
augmentation, seed and number of epochs; they differ only in the starting weights and in fine-tuning's
schedule (one epoch with the backbone frozen, then all layers with discriminative learning rates).
Everything runs offline.

    python benchmarks/transfer.py [--size 32] [--epochs 8] [--json benchmarks/results/transfer-cpu.json]
"""
import argparse, json, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import torch
from cvkit.core import log, device_name
from cvkit.data import image_dataloaders
from cvkit.learner import cv_learner
from cvkit.interpret import evaluate

DATA = Path(__file__).resolve().parents[2]/"shared"/"data"/"hymenoptera.tar"

def run(pretrained:bool, a)->dict:
    t0 = time.perf_counter()
    dls = image_dataloaders(DATA, size=a.size, bs=a.bs, seed=a.seed, normalize="imagenet")
    learn = cv_learner(dls, "cifar_resnet", pretrained=pretrained, label_smoothing=0.1, seed=a.seed, plain_logging=True)
    if pretrained: learn.fine_tune(a.epochs - 1, a.lr_finetune, freeze_epochs=1, lr_mult=a.lr_mult)  # 1 frozen + rest
    else: learn.fit_one_cycle(a.epochs, a.lr_scratch)
    ev = evaluate(learn)
    return {"accuracy": ev.accuracy, "seconds": time.perf_counter() - t0, "device": device_name(dls.device)}

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=32, help="image size (32: the backbone's pretraining resolution; default)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--lr-scratch", type=float, default=1e-2)
    ap.add_argument("--lr-finetune", type=float, default=5e-3)
    ap.add_argument("--lr-mult", type=float, default=3, help="ratio of the head's to the backbone's learning rate")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if not DATA.is_file(): raise SystemExit(f"this benchmark needs {DATA} (../shared/data/hymenoptera.tar)")
    log.setLevel("WARNING")
    print(f"ants vs bees at {a.size}px, cifar_resnet, {a.epochs} epochs each, batch size {a.bs}, seed {a.seed}\n")
    print("from scratch:"); scratch = run(False, a)
    print("\nfine-tuned from the bundled CIFAR-10 weights:"); tuned = run(True, a)
    gap = 100*(tuned["accuracy"] - scratch["accuracy"])
    print(f"\nvalidation accuracy: from scratch {scratch['accuracy']:.2%} ({scratch['seconds']:.0f}s), "
          f"fine-tuned {tuned['accuracy']:.2%} ({tuned['seconds']:.0f}s); gap {gap:+.1f} points")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"benchmark": "transfer-hymenoptera", "device": tuned["device"],
            "torch": torch.__version__, "args": vars(a), "scratch": scratch, "fine_tuned": tuned,
            "gap_points": gap}, indent=2) + "\n")
        print(f"wrote {a.json}")

if __name__ == "__main__": main()
