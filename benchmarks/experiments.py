"""The experiment layer in numbers: k-fold cross-validation, classical models against a CNN, and a hyperparameter search
with pruning against the same search without it.

1. **Cross-validation**: `cross_validate` of the default digits config (what `cvkit train` trains) on k folds:
   each fold's accuracy, the mean ± standard deviation, and the total time.
2. **CNN or classical model**: `classical_baselines` on the digits and on a CIFAR-10 subset taken from the archive's
   *test* images (the bundled `cifar_resnet`, whose body gives the embeddings, was trained on the training images
   and never saw these): linear and RBF SVMs, logistic regression, k-NN and a random forest on pixels, HOG and
   CNN embeddings, with fitting and prediction times, beside the CNN `train` picks, on the same split.
3. **Search**: `tune` over the default digits space, `--trials` trials with each of `--pruners` (median, successive
   halving) and the same number without pruning, the same sampler seed, in memory. Reported: the best accuracy of
   each, the default config's accuracy (the first trial of all), and the training epochs each spent; the saving is
   1 - epochs with pruning / epochs without.

    python benchmarks/experiments.py [--folds 5] [--cifar-per-class 200] [--trials 30] [--pruners median,halving]
                                     [--parts cv,classical,search]
                                     [--json benchmarks/results/experiments-cpu.json]
"""
import argparse, datetime, os, platform, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import pandas as pd
import torch
import cvkit
from cvkit.core import default_device, device_name, save_json, log
from cvkit.experiment.config import TrainConfig
from cvkit.experiment.kfold import cross_validate
from cvkit.experiment.baselines import classical_baselines
from cvkit.experiment.search import tune, default_space

from _shared import cifar_subset


def show(title:str, df:pd.DataFrame):
    print(f"\n## {title}\n{df.to_string(index=False, float_format=lambda v: f'{v:.4f}')}", flush=True)


def part_cv(a)->dict:
    res = cross_validate(TrainConfig(seed=a.seed, size=a.size), k=a.folds)
    show(f"{a.folds}-fold cross-validation, digits, default config", res.folds[["fold", "n_train", "n_valid", "accuracy", "macro_f1", "train_seconds"]])
    print(f"accuracy {res.mean:.4f} ± {res.std:.4f} over {a.folds} folds; total {res.seconds:.1f} s", flush=True)
    return {"folds": a.folds, "accuracy_mean": res.mean, "accuracy_std": res.std, "fold_accuracy": res.scores.tolist(),
            "seconds": res.seconds, "arch": res.config.get("arch")}


def part_classical(a)->dict:
    out = {}
    for name, data in (("digits", None), ("cifar10_test_subset", None if a.cifar_per_class == 0 else cifar_subset("test", a.cifar_per_class))):
        if name != "digits" and data is None: continue
        t = time.perf_counter()
        base = classical_baselines(data, features=a.features.split(","), models=a.models.split(","), seed=a.seed, epochs=a.cnn_epochs)
        show(f"CNN or classical model: {name}" + (f" ({a.cifar_per_class} test images per class)" if data else ""), base.table)
        out[name] = {"table": base.table.to_dict(orient="records"), "seconds": time.perf_counter() - t,
                     "n_images": len(base.items), "n_train": int(len(base.train_idx))}
    return out


def fmt(v)->str: return "n/a (a default lies outside the space)" if v is None else f"{v:.4f}"


def part_search(a)->dict:
    runs = {}
    for pruner in [*a.pruners.split(","), "none"]:
        t = time.perf_counter()
        lo, hi = map(int, a.epochs.split(","))
        config = TrainConfig(seed=a.seed, size=a.size)
        space = default_space(config) | {"epochs": (lo, hi)}
        res = tune(config, space, trials=a.trials, pruner=pruner, retrain=False, seed=a.seed)
        tr = res.trials()
        runs[pruner] = {"best_accuracy": res.best_value, "default_accuracy": res.default_value, "best_params": res.best_params,
                        "epochs_trained": res.epochs_trained, "pruned": int((tr["state"] == "pruned").sum()),
                        "trials": [{"state": s, "accuracy": acc, "default": bool(d)}
                                   for s, acc, d in zip(tr["state"], tr["accuracy"], tr["default"])],
                        "seconds": time.perf_counter() - t}
        print(f"\n## search, pruner {pruner}: {res.summary()} ({runs[pruner]['seconds']:.0f} s)", flush=True)
    savings = {p: 1 - runs[p]["epochs_trained"]/runs["none"]["epochs_trained"] for p in runs if p != "none"}
    for p, v in savings.items():
        print(f"\npruner {p}: {runs[p]['epochs_trained']} epochs against {runs['none']['epochs_trained']} without pruning: "
              f"saving {v:.1%}; best {runs[p]['best_accuracy']:.4f} vs {runs['none']['best_accuracy']:.4f} "
              f"(default config {fmt(runs['none']['default_accuracy'])})", flush=True)
    return {"trials": a.trials, "runs": runs, "epoch_savings": savings}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--cifar-per-class", type=int, default=200, help="CIFAR-10 test images per class (0: skip CIFAR-10)")
    ap.add_argument("--cnn-epochs", type=int, default=None, help="epochs of the CNN beside the classical models (default: train's)")
    ap.add_argument("--features", default="pixels,hog,embeddings", help="features of the classical models")
    ap.add_argument("--models", default="linear_svm,rbf_svm,logistic,knn,random_forest", help="classical models")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--epochs", default="2,8", help="the searched range of epochs (the rest of the space is default_space's)")
    ap.add_argument("--pruners", default="median,halving", help="pruners each compared with the same search without pruning")
    ap.add_argument("--parts", default="cv,classical,search")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--size", type=int, default=None, help="image side for cross-validation and the search (default: train's)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    parts = a.parts.split(",")
    res = {"benchmark": "experiments", "device": device_name(default_device()), "cpu_threads": torch.get_num_threads(),
           "torch": torch.__version__, "cvkit": cvkit.__version__, "python": platform.python_version(),
           "date": datetime.date.today().isoformat()}
    clock = time.perf_counter()
    if "cv" in parts: res["cross_validation"] = part_cv(a)
    if "classical" in parts: res["classical"] = part_classical(a)
    if "search" in parts: res["search"] = part_search(a)
    res["total_seconds"] = time.perf_counter() - clock
    print(f"\ntotal {res['total_seconds']:.0f} s")
    if a.json: save_json(res, a.json); print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
