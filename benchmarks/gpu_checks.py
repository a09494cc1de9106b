"""GPU checks: mixed-precision training, the LR finder and the export round trip, on one device.

Through cvkit's public API only (`digits`, `image_dataloaders`, `cv_learner`, `find_lr`, `export`, `load_model`,
`evaluate`), on `--device` (default cuda):

- **training** (`train_bf16`, `train_fp16`): `small_resnet` on the scikit-learn digits (32 px, no flips) for
  `--epochs` epochs, once with `precision="bf16"` and once with `"fp16"` (loss scaling), plus an fp32 baseline.
  Each records the validation accuracy, the training seconds and the precision the learner actually used,
  and checks that every training loss and the validation loss are finite, that the precision used is the one
  asked for, and that the accuracy reaches `--min-accuracy`. On a device without CUDA the mixed-precision
  runs are recorded as skipped (with the reason) and only fp32 runs.
- **find_lr**: the LR range test on the first trained learner; records its suggestions and checks that the
  learner's weights are bit-for-bit unchanged afterwards (state_dict compared before and after).
- **export_parity**: `export`s that learner to a temporary folder, loads it with `load_model(folder, device=...)`
  and predicts `--n-predict` digit images. The classes must equal those of the learner's own model on the
  same input tensor, and those of the same export loaded on the CPU. (Two kernels can round differently,
  so a class may flip only where the learner's top two probabilities are within `--tie` of each other;
  such near-ties are counted apart.)

The JSON (`--json`) holds the device, torch version, date, each check's figures and its pass/fail;
the exit code is 1 if any check that ran failed.

    python benchmarks/gpu_checks.py [--device cuda] [--epochs 5] [--size 32] [--json benchmarks/results/gpu_checks-cuda.json]
"""
import argparse, datetime, json, math, shutil, tempfile, time, traceback, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import numpy as np
import torch
import cvkit
from cvkit.core import save_json
from cvkit.datasets import digits
from cvkit.data import image_dataloaders
from cvkit.learner import cv_learner
from cvkit.lr_find import find_lr
from cvkit.export import export, load_model
from cvkit.interpret import evaluate
from cvkit.callbacks import TrainingHistory, SaveBest, EarlyStopping, WeightAveraging
from cvkit.checkpoint import CheckpointFolder, load_checkpoint, run_phases, one_cycle_phases

MIXED = ("bf16", "fp16")


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def finite(xs)->bool: return all(math.isfinite(float(x)) for x in xs)


def skip_reason(device, precision:str)->str|None:
    "Why `precision` cannot be trained on `device` (None: it can)."
    if precision not in MIXED: return None
    if device.type != "cuda":
        return f"{device.type} has no CUDA: {precision} mixed precision is for CUDA GPUs (cvkit refuses it elsewhere)"
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name(device)} does not support bf16"
    return None


def train_check(folder:Path, a, device, precision:str)->tuple[dict, object]:
    "Train small_resnet on the digits in `precision`; return the check's record and the learner."
    dls = image_dataloaders(folder, size=a.size, flip=False, bs=a.bs, seed=a.seed, device=device)
    learn = with_callbacks(cv_learner(dls, "small_resnet", precision=precision, seed=a.seed, plain_logging=True))
    print(f"-- train {precision}: {learn.precision}; callbacks {', '.join(type(c).__name__ for c in learn.cbs)}", flush=True)
    folder = CheckpointFolder(Path(tempfile.mkdtemp(prefix=f"gpu-checks-{precision}-")), keep=a.epochs + 1)
    sync(device); t0 = time.perf_counter()
    run_phases(learn, one_cycle_phases(a.epochs, a.lr), folder)      # checkpoints every epoch, as `train` does
    sync(device); seconds = time.perf_counter() - t0
    learn.checkpoint_folder = folder
    first = load_checkpoint(folder.paths()[0])
    losses = [float(x) for x in learn.recorder.losses]
    valid_loss = float(learn.recorder.values[-1][1]) if learn.recorder.values else float("nan")
    ev = evaluate(learn)
    used = learn.precision.name
    rec = {"requested": precision, "precision": used, "precision_reason": learn.precision.reason,
           "epochs": a.epochs, "lr": a.lr, "bs": a.bs, "size": a.size, "n_train": len(dls.train.dataset),
           "n_valid": len(dls.valid.dataset), "seconds": seconds,
           "images_per_second": a.epochs*len(dls.train.dataset)/seconds if seconds > 0 else None,
           "accuracy": ev.accuracy, "first_train_loss": losses[0] if losses else None,
           "final_train_loss": losses[-1] if losses else None, "valid_loss": valid_loss, "n_steps": len(losses),
           "loss_finite": bool(losses) and finite(losses) and math.isfinite(valid_loss) and bool(np.isfinite(ev.probs).all()),
           "precision_as_asked": used == precision, "min_accuracy": a.min_accuracy,
           "checkpoints": len(folder.paths()), "scaler_in_checkpoint": first["scaler"] is not None,
           "history_rows": len(learn.training_history.rows), "weight_average_updates": learn.weight_averaging.updates}
    problems = [m for ok, m in [(rec["loss_finite"], "a loss is not finite"),
                                (rec["precision_as_asked"], f"asked for {precision}, the learner used {used}"),
                                (ev.accuracy >= a.min_accuracy, f"accuracy {ev.accuracy:.4f} < {a.min_accuracy}"),
                                (rec["scaler_in_checkpoint"] == (used == "fp16"), "the grad scaler's state is missing from the fp16 checkpoint"
                                 if used == "fp16" else "a scaler state in a checkpoint without fp16"),
                                (rec["history_rows"] == a.epochs, f"{rec['history_rows']} history rows for {a.epochs} epochs")] if not ok]
    rec.update(status="failed" if problems else "passed", passed=not problems, problems=problems)
    print(f"   accuracy {ev.accuracy:.4f}, {seconds:.1f} s, final train loss {rec['final_train_loss']:.4f}, "
          f"valid loss {valid_loss:.4f}: {rec['status']}", flush=True)
    return rec, learn


def with_callbacks(learn):
    "Every cvkit training callback attached (early stopping with a patience that never stops these runs)."
    learn.add_cbs([TrainingHistory(), SaveBest(), EarlyStopping(patience=1000), WeightAveraging(start=0.5)])
    return learn


def state(model)->dict: return {k: v.detach().clone() for k, v in model.state_dict().items()}


def placement(model)->dict:
    p = next(model.parameters())
    return {"device": str(p.device), "channels_last": any(t.dim() == 4 and not t.is_contiguous() and
                                                          t.is_contiguous(memory_format=torch.channels_last) for t in model.parameters())}


def resume_check(learn, folder:Path, a, device)->dict:
    "A fresh learner resumed from the first epoch's checkpoint of `learn`'s run ends where `learn` did."
    dls = image_dataloaders(folder, size=a.size, flip=False, bs=a.bs, seed=a.seed, device=device)
    again = with_callbacks(cv_learner(dls, "small_resnet", precision=learn.precision.name, seed=a.seed, plain_logging=True))
    ckpt = load_checkpoint(learn.checkpoint_folder.paths()[0])
    run_phases(again, one_cycle_phases(a.epochs, a.lr), resume=ckpt)
    ref, got = learn.model.state_dict(), again.model.state_dict()
    diff = max(float((ref[k].float() - got[k].float()).abs().max()) for k in ref if ref[k].numel())
    acc_ref, acc = evaluate(learn).accuracy, evaluate(again).accuracy
    rec = {"resumed_from_epoch": ckpt["position"]["epoch"], "precision": learn.precision.name, "max_abs_weight_diff": diff,
           "bit_identical": diff == 0.0, "accuracy_uninterrupted": acc_ref, "accuracy_resumed": acc}
    problems = [] if abs(acc - acc_ref) <= 0.02 else [f"resumed accuracy {acc:.4f} vs {acc_ref:.4f}"]
    rec.update(status="failed" if problems else "passed", passed=not problems, problems=problems)
    print(f"-- resume: from epoch {rec['resumed_from_epoch']}, max |weight diff| {diff:.2e}, accuracy {acc:.4f} vs {acc_ref:.4f}: {rec['status']}", flush=True)
    return rec


def placement_check(folder:Path, a, device)->dict:
    "find_lr on a fresh learner and on a trained one leaves the model on its device and in its memory layout."
    dls = image_dataloaders(folder, size=a.size, flip=False, bs=a.bs, seed=a.seed, device=device)
    fresh = cv_learner(dls, "small_resnet", seed=a.seed, plain_logging=True)
    before = placement(fresh.model)
    find_lr(fresh, num_it=20, seed=a.seed)
    after = placement(fresh.model)
    rec = {"fresh_before": before, "fresh_after": after, "unchanged": before == after}
    problems = [] if rec["unchanged"] else [f"find_lr moved a fresh model: {before} -> {after}"]
    rec.update(status="failed" if problems else "passed", passed=not problems, problems=problems)
    print(f"-- find_lr placement: {before} -> {after}: {rec['status']}", flush=True)
    return rec


def data_parallel_check(a)->dict:
    "`cvkit train --processes 2` on two GPUs (skipped with fewer)."
    import subprocess, sys
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n < 2: return {"status": "skipped", "passed": None, "reason": f"{n} GPU(s): data-parallel needs 2"}
    out = Path(tempfile.mkdtemp(prefix="gpu-checks-dp-"))
    r = subprocess.run([sys.executable, "-m", "cvkit", "train", "--processes", "2", "--device", "cuda", "--epochs", str(a.epochs),
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    m = json.loads((out/"metrics.json").read_text()) if (out/"metrics.json").exists() else {}
    rec = {"returncode": r.returncode, "accuracy": m.get("accuracy"), "processes": m.get("processes"), "stderr_tail": r.stderr[-800:]}
    problems = [] if r.returncode == 0 and m.get("processes") == 2 else ["the 2-process run failed"]
    rec.update(status="failed" if problems else "passed", passed=not problems, problems=problems)
    print(f"-- data parallel (2 GPUs): {rec['status']}, accuracy {rec['accuracy']}", flush=True)
    return rec


def lr_check(learn, a)->dict:
    "find_lr on `learn`: its suggestions, and whether the weights are unchanged afterwards."
    before = state(learn.model)
    t0 = time.perf_counter()
    res = find_lr(learn, num_it=a.lr_steps, seed=a.seed)
    seconds = time.perf_counter() - t0
    after = learn.model.state_dict()
    same_keys = list(before) == list(after)
    changed = [k for k in before if k not in after or not torch.equal(before[k], after[k])]
    max_change = max((float((before[k].float() - after[k].float()).abs().max()) for k in changed
                      if k in after and before[k].shape == after[k].shape and before[k].numel()), default=0.0)
    sugg = {k: (float(v) if v is not None else None) for k, v in res.suggestions.items()}
    rec_lr = float(res.recommended) if res.recommended is not None else None
    rec = {"num_it": a.lr_steps, "n_steps": len(res.lrs), "seconds": seconds, "stop_reason": res.stop_reason,
           "suggestions": sugg, "recommended": rec_lr, "reason": res.reason, "n_dropped": res.n_dropped,
           "n_tensors_compared": len(before), "weights_unchanged": same_keys and not changed,
           "changed_tensors": changed[:10], "max_abs_change": max_change}
    problems = [m for ok, m in [(rec["weights_unchanged"], f"{len(changed)} weight tensor(s) changed"),
                                (rec_lr is not None and math.isfinite(rec_lr) and rec_lr > 0, "no finite recommendation")]
                if not ok]
    rec.update(status="failed" if problems else "passed", passed=not problems, problems=problems)
    print(f"-- find_lr: {res.summary()}; weights unchanged: {rec['weights_unchanged']}: {rec['status']}", flush=True)
    return rec


def sample_files(folder:Path, n:int)->list[Path]:
    "`n` digit images, taken in turn from each class folder (sorted, so the same every run)."
    per_class = [sorted(p for p in d.iterdir() if p.is_file()) for d in sorted(folder.iterdir()) if d.is_dir()]
    files, i = [], 0
    while len(files) < n and any(i < len(c) for c in per_class):
        files += [c[i] for c in per_class if i < len(c)][:n - len(files)]
        i += 1
    return files


def compare(ref_probs:torch.Tensor, probs:torch.Tensor, tie:float)->dict:
    "Class agreement of two probability batches; disagreements where `ref_probs`' top two are within `tie` are near-ties."
    ref_cls, cls = ref_probs.argmax(1), probs.argmax(1)
    top2 = ref_probs.topk(2, dim=1).values
    gap = top2[:, 0] - top2[:, 1]
    differ = ref_cls != cls
    return {"mismatches": int(differ.sum()), "near_tie_mismatches": int((differ & (gap < tie)).sum()),
            "real_mismatches": int((differ & (gap >= tie)).sum()),
            "max_abs_prob_diff": float((ref_probs - probs).abs().max())}


def export_check(learn, folder:Path, a, device)->dict:
    "Export `learn`, load it on `device` and on the CPU, and compare the predicted classes with the learner's."
    out = Path(tempfile.mkdtemp(prefix="gpu-checks-export-"))
    try:
        export(learn, out)
        files = sample_files(folder, a.n_predict)
        loaded = load_model(out, device=device)
        preds = loaded.predict_batch(files)
        vocab = list(learn.dls.vocab)
        x = loaded.preprocess(files)                                  # the very input the loaded model saw
        onnx_rec = {}
        try:
            import onnx  # noqa: F401
            from cvkit.export import export_onnx
            export_onnx(loaded, out/"model.onnx")
            onnx_rec = {"onnx_written": (out/"model.onnx").stat().st_size, "predictor_device_after_onnx": str(next(loaded.model.parameters()).device)}
        except ImportError: onnx_rec = {"onnx_written": None}
        model = learn.model.eval()
        with torch.no_grad(): ref = model(x.to(next(model.parameters()).device)).float().softmax(1).cpu()
        dev_probs = torch.tensor([[p.probs[c] for c in vocab] for p in preds])
        cpu_preds = load_model(out, device="cpu").predict_batch(files)
        cpu_probs = torch.tensor([[p.probs[c] for c in vocab] for p in cpu_preds])
        ref_labels = [vocab[i] for i in ref.argmax(1).tolist()]
        truth = [f.parent.name for f in files]
        rec = {"n_images": len(files), "loaded_device": str(loaded.device), "classes_match_vocab": loaded.classes == vocab,
               "learner_labels": ref_labels, "loaded_labels": [p.label for p in preds],
               "cpu_labels": [p.label for p in cpu_preds], "tie": a.tie,
               "loaded_vs_learner": compare(ref, dev_probs, a.tie), "cpu_vs_learner": compare(ref, cpu_probs, a.tie),
               "accuracy_on_these": sum(t == p for t, p in zip(truth, ref_labels))/max(1, len(files)),
               "files": sorted(p.name for p in out.iterdir()), **onnx_rec}
        rec["loaded_equal"] = rec["loaded_vs_learner"]["real_mismatches"] == 0
        rec["cpu_equal"] = rec["cpu_vs_learner"]["real_mismatches"] == 0
        problems = [m for ok, m in [(len(files) > 0, "no images to predict"),
                                    (rec["classes_match_vocab"], "the loaded model's classes differ from the learner's"),
                                    (rec["loaded_equal"], f"loaded on {device}: {rec['loaded_vs_learner']['real_mismatches']} class(es) differ"),
                                    (rec["cpu_equal"], f"loaded on cpu: {rec['cpu_vs_learner']['real_mismatches']} class(es) differ"),
                                    (rec.get("predictor_device_after_onnx", str(loaded.device)).split(":")[0] == str(loaded.device).split(":")[0],
                                     "export_onnx moved the Predictor")]
                    if not ok]
        rec.update(status="failed" if problems else "passed", passed=not problems, problems=problems)
        print(f"-- export: {len(files)} images; loaded on {device} vs learner {rec['loaded_vs_learner']}; "
              f"cpu vs learner {rec['cpu_vs_learner']}: {rec['status']}", flush=True)
        return rec
    finally: shutil.rmtree(out, ignore_errors=True)


def failed(e:BaseException)->dict:
    print(traceback.format_exc(), flush=True)
    return {"status": "failed", "passed": False, "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc().splitlines()[-6:]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--lr-steps", type=int, default=100, help="steps of the LR range test")
    ap.add_argument("--n-predict", type=int, default=40, help="digit images predicted in the export check")
    ap.add_argument("--min-accuracy", type=float, default=0.9, help="validation accuracy each training run must reach")
    ap.add_argument("--tie", type=float, default=1e-3, help="top-2 probability gap below which a class flip is a near-tie")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda and torch.cuda.is_available() else device.type
    out = {"benchmark": "gpu_checks", "device": name, "torch": torch.__version__, "cvkit": cvkit.__version__,
           "cuda": torch.version.cuda, "date": datetime.date.today().isoformat(), "args": vars(a), "checks": {}}
    checks = out["checks"]
    print(f"{name}; torch {torch.__version__}; cvkit {cvkit.__version__}", flush=True)
    if cuda and not torch.cuda.is_available():
        checks["device"] = {"status": "failed", "passed": False, "error": f"device {a.device!r} asked for, but CUDA is not available"}
    else:
        folder = digits()
        learners = {}
        for p in ("bf16", "fp16", "fp32"):
            why = skip_reason(device, p)
            if why:
                checks[f"train_{p}"] = {"requested": p, "status": "skipped", "passed": None, "reason": why}
                print(f"-- train {p}: skipped ({why})", flush=True)
                continue
            try: checks[f"train_{p}"], learners[p] = train_check(folder, a, device, p)
            except Exception as e: checks[f"train_{p}"] = {"requested": p, **failed(e)}
        learn = next(iter(learners.values()), None)       # the first that trained: bf16 on a GPU, fp32 on a CPU
        if learn is None:
            for k in ("find_lr", "export_parity", "resume"): checks[k] = {"status": "failed", "passed": False, "error": "no learner trained"}
        else:
            out["checked_learner"] = learn.precision.name
            try: checks["find_lr"] = lr_check(learn, a)
            except Exception as e: checks["find_lr"] = failed(e)
            try: checks["export_parity"] = export_check(learn, folder, a, device)
            except Exception as e: checks["export_parity"] = failed(e)
            try: checks["resume"] = resume_check(learn, folder, a, device)
            except Exception as e: checks["resume"] = failed(e)
        try: checks["find_lr_placement"] = placement_check(folder, a, device)
        except Exception as e: checks["find_lr_placement"] = failed(e)
        try: checks["data_parallel"] = data_parallel_check(a)
        except Exception as e: checks["data_parallel"] = failed(e)
    out["failed"] = [k for k, c in checks.items() if c["status"] == "failed"]
    out["skipped"] = {k: c["reason"] for k, c in checks.items() if c["status"] == "skipped"}
    out["passed"] = not out["failed"] and any(c["status"] == "passed" for c in checks.values())
    print("\n" + "\n".join(f"{k:15} {c['status']}" + (f" ({c.get('reason') or c.get('error') or '; '.join(c.get('problems', []))})"
                                                      if c["status"] != "passed" else "") for k, c in checks.items()))
    print(f"gpu checks: {'PASSED' if out['passed'] else 'FAILED'}" + (f" ({', '.join(out['failed'])})" if out["failed"] else ""))
    if a.json:
        save_json(out, a.json)
        print(f"wrote {a.json}")
    raise SystemExit(0 if out["passed"] else 1)

if __name__ == "__main__": main()
