"""Training-loop overhead: images/s of cvkit's full training loop beside the bare PyTorch loop and plain fastai.

All three train the same network (`small_resnet`, 10 classes, channels-last) on the same 32-px images, with the
same batch size, loss and optimiser family, one after the other in one process:

- **bare loop**: images already decoded, normalised and in memory as one float tensor; each step indexes a
  random batch, runs forward, backward and `torch.optim.AdamW.step()`. Nothing else: no augmentation, no
  metrics, no callbacks. This is the ceiling.
- **cvkit**: `image_dataloaders` + `cv_learner` + `fit` exactly as a user runs them: uint8 batches cut from memory,
  moved to the device, random shifts (and flips), normalisation, fastai's callbacks (recorder, logging),
  metrics on the validation set.
- **plain fastai**: `ImageDataLoaders.from_folder` (PIL decoding per item, default workers) + `Learner` with
  fastai's default optimiser, on the same image folder.

Only the training phase of the second epoch is timed (the first warms up caches and allocators); validation
is excluded from all three. On a GPU the bare loop uses the precision cvkit picks for the device (bf16 autocast
where supported, else fp16 with a gradient scaler); plain fastai runs as it does by default, in fp32.

A shared machine's speed drifts by several per cent over minutes, so the set-ups run in turns, `--repeats`
times. Each set-up's median images/s is reported. The ratios are the medians of the per-turn ratios: the
set-ups of one turn run back to back, so they see nearly the same machine, and the order alternates
from turn to turn, so that no set-up always runs first.

    python benchmarks/overhead.py [--data cifar10|digits] [--n 10000] [--bs 256] [--repeats 3] [--json benchmarks/results/overhead-cpu.json]
"""
import argparse, contextlib, datetime, json, os, statistics, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import torch, torch.nn.functional as F
from fastai.vision.all import (ImageDataLoaders, Learner, accuracy, Callback, ProgressCallback, noop,
                               CrossEntropyLossFlat)
from cvkit.core import log, default_device, device_name, seed_everything, choose_precision
from cvkit.core import save_json
from cvkit.data.loaders import image_dataloaders
from cvkit.data.items import items_from_folder
from cvkit.data.images import decode_images
from cvkit.datasets import digits
from cvkit.train.learner import cv_learner
from cvkit.models.architectures import small_resnet

from _shared import cifar_subset


class TrainTimer(Callback):
    "Seconds and images of each epoch's training phase."
    order = 99
    def __init__(self): self.epochs = []
    def before_train(self): self.n, self.t0 = 0, None
    def before_batch(self):
        if self.training and self.t0 is None:
            if self.dls.device.type == "cuda": torch.cuda.synchronize()
            self.t0 = time.perf_counter()
    def after_batch(self):
        if self.training: self.n += len(self.yb[0])
    def after_train(self):
        if self.dls.device.type == "cuda": torch.cuda.synchronize()
        self.epochs.append((time.perf_counter() - self.t0, self.n))


def dataset_folder(a)->Path:
    "A folder of 32-px images, one sub-folder per class (a subset of CIFAR-10's training set, or the digits)."
    if a.data == "digits": return digits()
    return cifar_subset("train", a.n // 10)


def bare_loop(images:torch.Tensor, labels:torch.Tensor, a, device)->float:
    "Images/s of forward + backward + AdamW step on random batches of an in-memory float tensor."
    seed_everything(a.seed)
    model = small_resnet(10).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    x_all = images.to(device).float().div_(255)
    mean, std = x_all.mean((0, 2, 3), keepdim=True), x_all.std((0, 2, 3), keepdim=True)
    x_all = ((x_all - mean)/std).contiguous(memory_format=torch.channels_last)
    y_all = labels.to(device)
    n_batches = len(x_all)//a.bs
    dtype = choose_precision(device).dtype                         # None on the CPU: fp32
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    amp = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext
    def epoch():
        perm = torch.randperm(len(x_all), device=device)
        for i in range(n_batches):
            idx = perm[i*a.bs:(i+1)*a.bs]
            with amp(): loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True); scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
    model.train(); epoch()                                         # warm-up
    if device.type == "cuda": torch.cuda.synchronize()
    t0 = time.perf_counter(); epoch()
    if device.type == "cuda": torch.cuda.synchronize()
    return n_batches*a.bs/(time.perf_counter() - t0)


def cvkit_loop(folder:Path, a, device)->float:
    dls = image_dataloaders(folder, size=32, bs=a.bs, flip=a.data != "digits", seed=a.seed, device=device)
    learn = cv_learner(dls, "small_resnet", seed=a.seed, plain_logging=False)
    learn.remove_cb(ProgressCallback); learn.logger = noop
    timer = TrainTimer()
    learn.fit(2, 1e-3, cbs=timer)
    secs, n = timer.epochs[-1]
    return n/secs


def fastai_loop(folder:Path, a, device)->float:
    seed_everything(a.seed)
    dls = ImageDataLoaders.from_folder(folder, valid_pct=0.2, seed=a.seed, bs=a.bs, device=device)
    learn = Learner(dls, small_resnet(10), loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    learn.remove_cb(ProgressCallback); learn.logger = noop
    timer = TrainTimer()
    learn.fit(2, 1e-3, cbs=timer)
    secs, n = timer.epochs[-1]
    return n/secs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="cifar10", choices=["cifar10", "digits"])
    ap.add_argument("--n", type=int, default=10000, help="CIFAR-10 training images to use (split 80/20)")
    ap.add_argument("--bs", type=int, default=256)
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5, help="turns of the set-ups; each one's median is reported")
    ap.add_argument("--skip-fastai", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    log.setLevel("WARNING")
    device = default_device(a.device)
    folder = dataset_folder(a)
    items = items_from_folder(folder)
    arrays, _ = decode_images(items.files, 32, keep=True)
    classes = sorted(set(items.labels))
    images = torch.stack([torch.from_numpy(x).permute(2, 0, 1) for x in arrays])
    labels = torch.tensor([classes.index(l) for l in items.labels])
    n_train = int(len(images)*0.8)                                  # the same number of training images as the others
    images, labels = images[:n_train], labels[:n_train]
    print(f"{device_name(device)}; torch {torch.__version__}; {a.data}, {n_train} training images at 32 px, batch {a.bs}")

    runs = {"bare": [], "cvkit": []} | ({} if a.skip_fastai else {"fastai": []})
    setups = {"bare": lambda: bare_loop(images, labels, a, device), "cvkit": lambda: cvkit_loop(folder, a, device),
              "fastai": lambda: fastai_loop(folder, a, device)}
    for r in range(a.repeats):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]       # alternate the order: no set-up always goes first
        for k in order: runs[k].append(setups[k]())
        print(f"turn {r + 1}: " + "  ".join(f"{k} {v[-1]:.0f}" for k, v in runs.items()), flush=True)
    res = {k: statistics.median(v) for k, v in runs.items()}
    ratios = {"cvkit_over_bare": statistics.median(c/b for c, b in zip(runs["cvkit"], runs["bare"]))}
    if not a.skip_fastai: ratios["cvkit_over_fastai"] = statistics.median(c/f for c, f in zip(runs["cvkit"], runs["fastai"]))
    print(f"\nmedian of {a.repeats} turn(s), images/s:")
    print(f"bare loop      {res['bare']:8.0f}")
    print(f"cvkit          {res['cvkit']:8.0f}")
    if not a.skip_fastai:
        print(f"plain fastai   {res['fastai']:8.0f}")
    print(f"\nmedian of the per-turn ratios: cvkit / bare {ratios['cvkit_over_bare']:.2f} (goal >= 0.95)" +
          (f"; cvkit / plain fastai {ratios['cvkit_over_fastai']:.2f} (goal >= 1.15)" if not a.skip_fastai else ""))
    if a.json:
        save_json({"benchmark": "overhead", "device": device_name(device),
            "torch": torch.__version__, "date": datetime.date.today().isoformat(), "args": vars(a),
            "images_per_second": res, "runs": runs, "ratios": ratios}, a.json)
        print(f"wrote {a.json}")

if __name__ == "__main__": main()
