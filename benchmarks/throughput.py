"""Training throughput on real JPEGs: images/s and model-FLOPs utilisation, bare loop vs cvkit vs plain fastai.

The model is the one `cv_learner(dls, ARCH)` builds (ResNet-50 body and fastai's head by default), so all
three set-ups train the identical network on the same images at `--size` px:

- **bare**: the network alone on an in-memory batch that is already normalised, on the device. Each step is
  forward, backward and an Adam step, in the precision and layout of the mode. This is the ceiling.
- **cvkit**: `image_dataloaders` + `cv_learner` + `fit` as a user writes them. The JPEGs are decoded once at
  reduced scale (PIL draft) into memory, because they fit. Then, per batch on the device: random-resized
  crop, flip, normalisation. Precision, channels-last and `torch.compile` come from `cv_learner`'s arguments.
- **plain fastai**: `ImageDataLoaders.from_lists` with `RandomResizedCrop` per item and `Flip` per batch,
  default workers, `vision_learner(..., pretrained=False)` and `.to_fp16()`: fastai's documented fast path.

Modes (`--modes`): fp32; bf16 (autocast); bf16+cl (and channels-last); bf16+cl+compile (and `torch.compile`,
with its compile time reported apart). On a CPU only fp32 and fp32+cl run by default: bf16 autocast on CPUs
without bf16 hardware is many times slower.

MFU = achieved model FLOPs/s (forward + backward, counted by `torch.utils.flop_counter`) ÷ the device's
dense bf16 tensor peak. This is listed for known GPUs; on other devices it is left out.

    python benchmarks/throughput.py [--data DIR_OR_ARCHIVE] [--arch resnet50] [--size 224] [--bs 128] [--json ...]
"""
import argparse, contextlib, datetime, json, math, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import torch, torch.nn.functional as F
from fastai.vision.all import (ImageDataLoaders, vision_learner, Callback, ProgressCallback, noop, CancelFitException,
                               RandomResizedCrop, Flip, Normalize, imagenet_stats, CrossEntropyLossFlat)
from cvkit.core import log, default_device, device_name, seed_everything
from cvkit.core import save_json
from cvkit.augment.transforms import Augmentation
from cvkit.data.loaders import image_dataloaders
from cvkit.data.items import items_from_folder, Items
from cvkit.datasets import extract_archive, is_archive
from cvkit.train.learner import cv_learner

SHARED = Path(__file__).resolve().parents[2]/"shared"/"data"
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}


def peak_flops(device)->float|None:
    if device.type != "cuda": return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def repeated_items(folder:Path, n:int)->Items:
    "The folder's labelled images, repeated until there are at least `n` (the epoch length we time)."
    items = items_from_folder(folder)
    reps = max(1, math.ceil(n/len(items)))
    return Items(items.files*reps, items.labels*reps, None, items.skipped, items.source)


def mode_settings(mode:str)->dict:
    parts = set(mode.split("+"))
    return dict(precision="bf16" if "bf16" in parts else "fp32", channels_last="cl" in parts, compile="compile" in parts)


class BatchTimer(Callback):
    "Time training batches after `warmup` ones; stop after `n` timed batches."
    order = 99
    def __init__(self, warmup:int, n:int): self.warmup, self.n, self.count, self.t0, self.first = warmup, n, 0, None, None
    def _sync(self):
        if self.dls.device.type == "cuda": torch.cuda.synchronize()
    def before_batch(self):
        if self.training and self.count == 0 and self.first is None: self._sync(); self.first = time.perf_counter()
    def after_batch(self):
        if not self.training: return
        self.count += 1
        if self.count == 1: self._sync(); self.first = time.perf_counter() - self.first     # first batch (compiles)
        if self.count == self.warmup: self._sync(); self.t0 = time.perf_counter(); self.images = 0
        elif self.count > self.warmup:
            self.images += len(self.yb[0])
            if self.count == self.warmup + self.n:
                self._sync(); self.seconds = time.perf_counter() - self.t0; raise CancelFitException()


def fwd_bwd_flops(model, size:int, device)->float:
    "FLOPs of one image's forward and backward pass."
    from torch.utils.flop_counter import FlopCounterMode
    m = model.train()
    x = torch.randn(2, 3, size, size, device=device)
    with FlopCounterMode(display=False) as fc: m(x).sum().backward()
    m.zero_grad(set_to_none=True)
    return fc.get_total_flops()/2


def bare(model, a, mode, device)->dict:
    s = mode_settings(mode)
    seed_everything(0)
    m = model.to(device)
    if s["channels_last"]: m = m.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)
    x = torch.randn(a.bs, 3, a.size, a.size, device=device)
    if s["channels_last"]: x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (a.bs,), device=device)
    fwd = torch.compile(m) if s["compile"] else m
    amp = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if s["precision"] == "bf16" else contextlib.nullcontext
    def step():
        with amp(): loss = F.cross_entropy(fwd(x), y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t = time.perf_counter(); step(); sync(); first = time.perf_counter() - t
    for _ in range(a.warmup - 1): step()
    sync(); t = time.perf_counter()
    for _ in range(a.batches): step()
    sync()
    return {"images_per_second": a.batches*a.bs/(time.perf_counter() - t), "first_batch_seconds": first}


def cvkit_run(items, a, mode, device)->tuple[dict, torch.nn.Module]:
    s = mode_settings(mode)
    dls = image_dataloaders(items, size=a.size, bs=a.bs, valid_pct=0.05, normalize="imagenet", device=device,
                            augment=Augmentation(crop_scale=0.35, flip=True), workers=a.workers)
    learn = cv_learner(dls, a.arch, plain_logging=False, **s)
    learn.remove_cb(ProgressCallback); learn.logger = noop
    timer = BatchTimer(a.warmup, a.batches)
    learn.fit(1000, 1e-4, cbs=timer)
    return ({"images_per_second": timer.images/timer.seconds, "first_batch_seconds": timer.first,
             "compile_seconds": getattr(learn, "compile_seconds", None), "in_memory": dls.spec.in_memory},
            learn.model)


def fastai_run(items, a, device)->dict:
    seed_everything(0)
    dls = ImageDataLoaders.from_lists(Path("/"), [str(f) for f in items.files], items.labels, valid_pct=0.05, seed=0,
                                      item_tfms=RandomResizedCrop(a.size, min_scale=0.35), bs=a.bs, device=device,
                                      batch_tfms=[Flip(), Normalize.from_stats(*imagenet_stats)])
    learn = vision_learner(dls, a.arch, pretrained=False, loss_func=CrossEntropyLossFlat())
    if device.type == "cuda": learn = learn.to_fp16()
    learn.remove_cb(ProgressCallback); learn.logger = noop
    timer = BatchTimer(a.warmup, a.batches)
    learn.fit(1000, 1e-4, cbs=timer)
    return {"images_per_second": timer.images/timer.seconds, "first_batch_seconds": timer.first,
            "precision": "fp16" if device.type == "cuda" else "fp32"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED/"hymenoptera.tar", help="a folder of class folders of JPEGs, or an archive of one")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--bs", type=int, default=128)
    ap.add_argument("--batches", type=int, default=30, help="timed batches per set-up")
    ap.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    ap.add_argument("--modes", nargs="+", default=None, help="default: fp32 bf16 bf16+cl bf16+cl+compile on GPU; fp32 fp32+cl on CPU")
    ap.add_argument("--workers", type=int, default=8, help="threads decoding JPEGs")
    ap.add_argument("--device", default=None)
    ap.add_argument("--skip-fastai", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    log.setLevel("WARNING")
    device = default_device(a.device)
    gpu = device.type == "cuda"
    modes = a.modes or (["fp32", "bf16", "bf16+cl", "bf16+cl+compile"] if gpu else ["fp32", "fp32+cl"])
    if not a.data.exists(): raise SystemExit(f"{a.data} not found (../shared/data beside the repository, or --data)")
    folder = extract_archive(a.data) if is_archive(a.data) else a.data
    sub = next((p for p in [folder/"train", *folder.glob("*/train")] if p.is_dir()), folder)
    items = repeated_items(sub, int(a.bs*(a.warmup + a.batches + 2)/0.95))
    print(f"{device_name(device)}; torch {torch.__version__}; {a.arch} at {a.size} px, batch {a.bs}; "
          f"{len(items)} training images (repeats of {sub})", flush=True)

    rows, flops = {}, None
    for mode in modes:
        c, model = cvkit_run(items, a, mode, device)
        if flops is None: flops = fwd_bwd_flops(model.float().to(memory_format=torch.contiguous_format), a.size, device)
        b = bare(model, a, mode, device)
        rows[mode] = {"bare": b, "cvkit": c, "cvkit_over_bare": c["images_per_second"]/b["images_per_second"]}
        comp = f"; compile {c['compile_seconds']:.0f} s" if c.get("compile_seconds") else ""
        print(f"{mode:18} bare {b['images_per_second']:8.1f}  cvkit {c['images_per_second']:8.1f} images/s   "
              f"cvkit/bare {rows[mode]['cvkit_over_bare']:.2f}{comp}", flush=True)
    out = {"benchmark": "throughput", "device": device_name(device), "torch": torch.__version__,
           "date": datetime.date.today().isoformat(), "args": {k: str(v) for k, v in vars(a).items()},
           "flops_per_image": flops, "peak_bf16_flops": peak_flops(device), "modes": rows}
    peak = peak_flops(device)
    if peak:
        for mode, r in rows.items():
            for k in ("bare", "cvkit"): r[k]["mfu"] = r[k]["images_per_second"]*flops/peak
        print("MFU (of dense bf16 peak): " + "  ".join(f"{m} cvkit {100*r['cvkit']['mfu']:.1f}%" for m, r in rows.items()))
    if not a.skip_fastai:
        fa = fastai_run(items, a, device)
        out["fastai"] = fa
        best = max(rows, key=lambda m: rows[m]["cvkit"]["images_per_second"])
        ratio = rows[best]["cvkit"]["images_per_second"]/fa["images_per_second"]
        out["cvkit_best_over_fastai"] = {"mode": best, "ratio": ratio}
        print(f"plain fastai ({fa['precision']}, default pipeline) {fa['images_per_second']:8.1f} images/s; "
              f"cvkit {best} is {ratio:.2f} x that (goal >= 2 on GPU)")
    if a.json:
        save_json(out, a.json)
        print(f"wrote {a.json}")

if __name__ == "__main__": main()
