"""Quickstart benchmark: wall time to 98.5 % validation accuracy on the built-in digits.

cvkit (in-memory uint8 data, batch-wise augmentation, small_resnet, one-cycle) beside plain fastai
(`ImageDataLoaders.from_folder` + `vision_learner(resnet18, pretrained=False)`, 5 epochs), on the same
folder of 1,797 32-px digit images, in one process, one after the other. Timings start before the
DataLoaders are built (image decoding included) and exclude Python start-up and imports.

    python benchmarks/quickstart.py [--target 0.985] [--json benchmarks/results/quickstart-cpu.json]

`--smoke` checks the script end to end in seconds: one epoch each, to a 50 % target.
"""
import argparse, json, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import torch
from fastai.vision.all import (ImageDataLoaders, vision_learner, resnet18, accuracy, Callback,
                               ProgressCallback, noop)
from cvkit.datasets import digits
from cvkit.core import save_json
from cvkit.data.loaders import image_dataloaders
from cvkit.train.learner import cv_learner
from cvkit.core import log, default_device, device_name

class EpochTimes(Callback):
    "Record (elapsed seconds since `t0`, validation accuracy) after every epoch."
    order = 70
    def __init__(self, t0): self.t0, self.rows = t0, []
    def after_epoch(self):
        if not getattr(self.learn, "training", True) and self.learn.recorder.log:
            names = self.recorder.metric_names
            self.rows.append((time.perf_counter() - self.t0, float(self.recorder.log[names.index("accuracy")])))

def time_to(rows, target):
    return next((t for t, acc in rows if acc >= target), None)

def quiet(learn):
    learn.remove_cb(ProgressCallback); learn.logger = noop
    return learn

def run_cvkit(path, epochs, seed):
    t0 = time.perf_counter()
    dls = image_dataloaders(path, size=32, flip=False, seed=seed)
    learn = quiet(cv_learner(dls, "small_resnet", seed=seed, label_smoothing=0.1, plain_logging=False))
    cb = EpochTimes(t0)
    learn.fit_one_cycle(epochs, 1e-2, cbs=cb)          # the settings of `cvkit train` on digits
    return cb.rows, time.perf_counter() - t0

def run_fastai(path, epochs, seed):
    t0 = time.perf_counter()
    dls = ImageDataLoaders.from_folder(path, valid_pct=0.2, seed=seed, bs=64)
    learn = quiet(vision_learner(dls, resnet18, pretrained=False, metrics=accuracy))
    cb = EpochTimes(t0)
    learn.fit_one_cycle(epochs, cbs=cb)
    return cb.rows, time.perf_counter() - t0

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=float, default=0.985)
    ap.add_argument("--cvkit-epochs", type=int, default=4)
    ap.add_argument("--fastai-epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--smoke", action="store_true", help="one epoch each, to a 50 %% target, to check the script")
    a = ap.parse_args()
    if a.smoke: a.cvkit_epochs, a.fastai_epochs, a.target = 1, 1, 0.5
    warnings.filterwarnings("ignore"); log.setLevel("WARNING")
    path = digits()
    dev = default_device()
    device = device_name(dev)
    print(f"device: {device}; torch {torch.__version__}; digits at {path}")

    ck_rows, ck_total = run_cvkit(path, a.cvkit_epochs, a.seed)
    fa_rows, fa_total = run_fastai(path, a.fastai_epochs, a.seed)
    ck_t, fa_t = time_to(ck_rows, a.target), time_to(fa_rows, a.target)

    def show(name, rows, total):
        print(f"\n{name}")
        for i, (t, acc) in enumerate(rows, 1): print(f"  epoch {i}: {acc:.2%} at {t:6.1f}s")
        print(f"  total {total:.1f}s, final accuracy {rows[-1][1]:.2%}")
    show(f"cvkit  small_resnet, in-memory data, label smoothing 0.1, {a.cvkit_epochs} epochs", ck_rows, ck_total)
    show(f"fastai resnet18 from scratch, from_folder, {a.fastai_epochs} epochs", fa_rows, fa_total)

    fmt = lambda t: f"{t:.1f}s" if t is not None else "not reached"
    print(f"\ntime to {a.target:.1%}: cvkit {fmt(ck_t)}; fastai {fmt(fa_t)}")
    ratio = ck_t / fa_total if ck_t is not None else None
    print(f"cvkit time to {a.target:.1%} / fastai {a.fastai_epochs}-epoch wall time: "
          f"{ratio:.3f}" if ratio is not None else "ratio: cvkit did not reach the target")
    print(f"full runs: cvkit {ck_total:.1f}s / fastai {fa_total:.1f}s = {ck_total/fa_total:.3f}")
    if a.json:
        res = {"benchmark": "quickstart-digits", "device": device, "torch": torch.__version__, "target": a.target,
               "cvkit": {"epochs": a.cvkit_epochs, "epochs_log": ck_rows, "total_s": ck_total, "time_to_target_s": ck_t},
               "fastai": {"epochs": a.fastai_epochs, "epochs_log": fa_rows, "total_s": fa_total, "time_to_target_s": fa_t},
               "ratio_time_to_target_vs_fastai_total": ratio, "ratio_total": ck_total/fa_total}
        save_json(res, a.json)
        print(f"wrote {a.json}")

if __name__ == "__main__": main()
