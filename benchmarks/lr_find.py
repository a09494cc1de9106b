"""LR finder benchmark: does cvkit's recommended learning rate train as well as fastai's valley suggestion?

Data: scikit-learn's handwritten digits (`cvkit.datasets.digits()`) at 32 px, no flips. Model: `simple_cnn`
with channels (8, 16) and a 32-wide hidden layer, trained with `fit_one_cycle` for a few epochs: a short
schedule, where the choice of rate matters most.

For every seed: build the data and the learner with that seed, run `find_lr` once, then train at each
rule's suggestion (valley, fastai's default; slide; minimum; steep) and at cvkit's recommendation, every run
from the same initial weights and the same random state (`compare_lrs`), so the runs differ only in the
rate. Rules that suggest the same rate share one run. Accuracy on the validation set is printed side by
side, then means over the seeds (a single run varies by 2-3 points from seed to seed, hence 8 seeds).

    python benchmarks/lr_find.py [--size 32] [--epochs 3] [--seeds 0 1 2 3 4 5 6 7] [--num-it 100] [--json benchmarks/results/lr_find-cpu.json]
"""
import argparse, datetime, math, re, statistics, time, warnings
warnings.filterwarnings("ignore")
import torch
import fastai
from cvkit.core import log, device_name, save_json
from cvkit.datasets import digits
from cvkit.data.loaders import image_dataloaders
from cvkit.train.learner import cv_learner
from cvkit.train.lr_find import find_lr, compare_lrs

RULES = ("valley", "recommended", "slide", "minimum", "steep")   # valley: fastai's default; recommended: cvkit's

def one_seed(a, seed:int)->dict:
    "find_lr once, then one training run per distinct suggested rate, all from the same start."
    dls = image_dataloaders(digits(), size=a.size, bs=a.bs, flip=False, seed=seed)
    learn = cv_learner(dls, a.arch, channels=tuple(a.channels), hidden=a.hidden, seed=seed, plain_logging=True)
    t0 = time.perf_counter()
    res = find_lr(learn, num_it=a.num_it, seed=seed)
    find_s = time.perf_counter() - t0
    lrs = {**res.suggestions, "recommended": res.recommended}
    distinct = sorted({v for v in lrs.values() if v})
    runs = {r.lr: r for r in compare_lrs(learn, distinct, epochs=a.epochs).runs}
    out = {"device": device_name(dls.device), "find_seconds": find_s, "stop_reason": res.stop_reason,
           "reason": res.reason, "rules": {}}
    for rule in RULES:
        lr = lrs.get(rule)
        run = runs.get(lr)
        out["rules"][rule] = {"lr": lr, "accuracy": run.metrics.get("accuracy") if run else None,
                              "valid_loss": run.valid_loss if run else None}
    return out

def fmt(x, spec:str)->str:
    "`x` formatted with `spec`, or a dash as wide as `spec` asks when there is no value."
    return format(x, spec) if x is not None else format("-", ">" + re.match(r"\d*", spec).group())

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=32, help="image size (default 32)")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--arch", default="simple_cnn")
    ap.add_argument("--channels", type=int, nargs=2, default=[8, 16], help="simple_cnn's two convolution widths")
    ap.add_argument("--hidden", type=int, default=32, help="simple_cnn's hidden layer width")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each one-cycle training run")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)),
                    help="one run per seed and rate varies by 2-3 points, so compare means over several (default 0-7)")
    ap.add_argument("--num-it", type=int, default=100, help="batches in the LR range test")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    a = ap.parse_args()
    if a.epochs < 1 or a.num_it < 10 or a.size < 8: ap.error("need --epochs >= 1, --num-it >= 10 and --size >= 8")
    log.setLevel("WARNING")
    print(f"digits at {a.size}px, {a.arch} {tuple(a.channels)}/{a.hidden}, fit_one_cycle {a.epochs} epoch(s), "
          f"batch size {a.bs}, find_lr {a.num_it} steps, seeds {a.seeds}\n", flush=True)
    per_seed, dev = {}, None
    for seed in a.seeds:
        r = per_seed[seed] = one_seed(a, seed)
        dev = r["device"]
        print(f"seed {seed}: " + "  ".join(f"{k} {fmt(v['lr'], '.1e')} -> {fmt(v['accuracy'], '.2%')}"
                                           for k, v in r["rules"].items()) + f"  (find_lr {r['find_seconds']:.1f}s)", flush=True)
    summary = {}
    for rule in RULES:
        lrs = [per_seed[s]["rules"][rule]["lr"] for s in a.seeds]
        accs = [per_seed[s]["rules"][rule]["accuracy"] for s in a.seeds]
        ok = [x for x in accs if x is not None]
        summary[rule] = {"lrs": lrs, "accuracies": accs,
                         "geomean_lr": math.exp(statistics.mean(math.log(x) for x in lrs if x)) if any(lrs) else None,
                         "mean_accuracy": statistics.mean(ok) if ok else None,
                         "std_accuracy": statistics.stdev(ok) if len(ok) > 1 else 0.0 if ok else None}
    print(f"\n{'rule':12s} {'rate (geo. mean)':>16s} {'mean accuracy':>14s} {'std':>7s}")
    for rule, s in summary.items():
        print(f"{rule:12s} {fmt(s['geomean_lr'], '16.2e')} {fmt(s['mean_accuracy'], '14.2%')} {fmt(s['std_accuracy'], '7.2%')}")
    rec, val = summary["recommended"]["mean_accuracy"], summary["valley"]["mean_accuracy"]
    gap = None if rec is None or val is None else 100*(rec - val)
    passed = gap is not None and gap >= 0
    print(f"\nrecommended vs valley (fastai's default): {fmt(rec, '.2%')} vs {fmt(val, '.2%')}, "
          f"{fmt(gap, '+.2f')} points (mean of {len(a.seeds)} seed(s)): "
          f"{'recommended is at least as good' if passed else 'recommended is worse'}")
    if a.json:
        save_json({"benchmark": "lr_find", "device": dev, "torch": torch.__version__, "fastai": fastai.__version__,
                   "date": datetime.date.today().isoformat(), "args": vars(a), "rules": summary,
                   "per_seed": {str(k): v for k, v in per_seed.items()},
                   "recommended_minus_valley_points": gap, "recommended_at_least_valley": passed}, a.json)
        print(f"wrote {a.json}")

if __name__ == "__main__": main()
