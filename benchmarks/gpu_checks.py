"""GPU checks: mixed-precision training, exact resume, the LR finder and the export round trip, on one device.

Through cvkit's public API (`digits`, `image_dataloaders`, `cv_learner`, `run_phases`, `find_lr`, `export`,
`load_model`, `evaluate`), on `--device` (default cuda):

- **training** (`train_bf16`, `train_fp16`, `train_fp32`): `small_resnet` on the scikit-learn digits (32 px, no
  flips) for `--epochs` epochs with every cvkit training callback, in `precision="bf16"`, `"fp16"` (loss scaling)
  and fp32, checkpointing every epoch. Each checks that every loss is finite, that the accuracy reaches
  `--min-accuracy`, that autocast really computed in the asked dtype (a forward hook on the first convolution and
  the last linear layer records the dtype of their outputs in every training batch: bfloat16, float16 or
  float32), and that each checkpoint stores the gradient scaler as cvkit's layout says: its state (scale, growth
  tracker, factors) in fp16 checkpoints written during a fit, `None` in bf16 (fastai's scaler is disabled there)
  and fp32, and `None` at the end of a fit in every precision (the scaler is gone then). On a device without
  CUDA the mixed-precision runs are skipped (with the reason) and only fp32 runs.
- **resume** (`resume_bf16`, ...): for each precision trained, the same training is stopped in the middle of an
  epoch (as Ctrl-C would: a mid-epoch checkpoint) and a fresh learner resumes it. With `--deterministic`
  (`cvkit.experiment.training.use_deterministic`, as `cvkit train --deterministic`) the resumed run must equal the
  uninterrupted one bit for bit: every weight and buffer, the per-epoch history (losses, accuracy, learning
  rate) and the final validation probabilities. Without it, the distances are reported (largest weight and
  probability differences, accuracy and loss differences), and only an accuracy difference over
  `--resume-tolerance` fails. Operations torch flags as lacking a deterministic kernel are listed
  (`nondeterministic_ops`).
- **find_lr**: the LR range test on the first trained learner; records its suggestions and checks that the
  learner's weights are bit-for-bit unchanged afterwards (state_dict compared before and after).
- **export_parity**: `export`s that learner to a temporary folder, loads it with `load_model(folder, device=...)`
  and predicts `--n-predict` digit images. The classes must equal those of the learner's own model on the
  same input tensor, and those of the same export loaded on the CPU. (Two kernels can round differently,
  so a class may flip only where the learner's top two probabilities are within `--tie` of each other;
  such near-ties are counted apart.)
- **find_lr_placement**, **data_parallel**: find_lr leaves a fresh model where it was; two-process training on two
  GPUs (skipped with fewer).

`--checks` runs a subset (e.g. `--checks train resume`). The decisions are pure functions (`precision_problems`,
`scaler_problems`, `compare_runs`, `resume_problems`) that tests/test_gpu_suite.py exercises on the CPU.
The JSON (`--json`) holds the device, torch version, date, each check's figures and its pass/fail;
the exit code is 1 if any check that ran failed.

    python benchmarks/gpu_checks.py [--device cuda] [--deterministic] [--epochs 5] [--size 32] [--json benchmarks/results/gpu_checks-cuda.json]
"""
import argparse, datetime, json, math, os, shutil, tempfile, time, traceback, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import numpy as np
import torch
import cvkit
from cvkit.core import save_json
from cvkit.datasets import digits
from cvkit.data.loaders import image_dataloaders
from cvkit.train.learner import cv_learner
from cvkit.train.lr_find import find_lr
from cvkit.export import export, load_model
from cvkit.eval.interpret import evaluate
from cvkit.train.callbacks import TrainingHistory, SaveBest, EarlyStopping, WeightAveraging
from cvkit.train.checkpoint import CheckpointFolder, TrainingInterrupted, load_checkpoint, run_phases, one_cycle_phases
from cvkit.experiment.training import use_deterministic
from fastai.learner import Callback

MIXED = ("bf16", "fp16")
AUTOCAST_DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}   # what a layer computes in, per precision
SCALER_KEYS = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}   # GradScaler.state_dict()
NONDETERMINISTIC = "does not have a deterministic implementation"              # torch's warning (warn_only=True)


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


# ---------------------------------------------------------------- the decisions (pure: tested on the CPU)

class ActivationDtypes:
    "Forward hooks on a model's first convolution and last linear layer: the dtypes their outputs had in training-mode calls."
    def __init__(self, model:torch.nn.Module):
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
        self.layers = {k: m for k, m in (("first conv", convs[0] if convs else None), ("last linear", linears[-1] if linears else None)) if m is not None}
        self.seen, self.calls, self.handles = {k: set() for k in self.layers}, 0, []
    def _hook(self, name):
        def hook(module, inputs, output):
            if module.training and isinstance(output, torch.Tensor):      # training batches only, not validation
                self.seen[name].add(str(output.dtype).removeprefix("torch.")); self.calls += 1
        return hook
    def __enter__(self):
        self.handles = [m.register_forward_hook(self._hook(k)) for k, m in self.layers.items()]
        return self
    def __exit__(self, *exc):
        for h in self.handles: h.remove()
        self.handles = []
    def record(self)->dict: return {k: sorted(v) for k, v in self.seen.items()}


def precision_problems(precision:str, seen:dict)->list[str]:
    "What is wrong with the dtypes `seen` (`ActivationDtypes.record()`) for training in `precision`: empty when autocast ran as asked."
    want = AUTOCAST_DTYPE[precision]
    if not seen or not any(seen.values()): return [f"no training activation was recorded, so the {precision} autocast dtype is unverified"]
    return [f"asked for {precision}, the {layer} computed in {', '.join(dts) or 'nothing'} (expected {want})"
            for layer, dts in seen.items() if list(dts) != [want]]


def _mid_fit(position:dict)->bool: return position["batch"] > 0 or position["epoch"] < position["n_epoch"]


def scaler_problems(precision:str, states:list)->list[str]:
    "Checkpoint `states` (each with `position` and `scaler`) that break cvkit's layout: fp16 stores the enabled scaler's state during a fit, everything else None."
    if not any(_mid_fit(s["position"]) for s in states):
        return ["no checkpoint written during a fit (train 2 epochs or more): the scaler layout is unverified"]
    out = []
    for s in states:
        pos, sc = s["position"], s["scaler"]
        where = f"the checkpoint at epoch {pos['epoch']}, batch {pos['batch']}" + ("" if _mid_fit(pos) else " (end of the fit)")
        if precision == "fp16" and _mid_fit(pos):
            if not isinstance(sc, dict) or not sc: out.append(f"{where} has no gradient scaler state ({sc!r}), though fp16 scales the loss")
            elif set(sc) != SCALER_KEYS: out.append(f"{where}: scaler state keys {sorted(sc)}, expected {sorted(SCALER_KEYS)}")
            elif not (isinstance(sc["scale"], (int, float)) and math.isfinite(sc["scale"]) and sc["scale"] > 0):
                out.append(f"{where}: loss scale {sc['scale']!r} is not a positive number")
        elif sc is not None:
            why = "the fit had ended" if not _mid_fit(pos) else f"{precision} does not scale the loss"
            out.append(f"{where} stores a scaler state {sc!r} where it should store None ({why})")
    return out


def run_record(learn, ev)->dict:
    "What two runs are compared on: every weight and buffer, the per-epoch history (without its seconds), the final evaluation."
    from cvkit.train.callbacks import unwrap_model
    rows = [{k: v for k, v in r.items() if k != "seconds"} for r in learn.training_history.rows]
    return {"weights": {k: v.detach().to("cpu", copy=True) for k, v in unwrap_model(learn.model).state_dict().items()},
            "history": rows, "accuracy": float(ev.accuracy), "probs": np.asarray(ev.probs, dtype=np.float64)}


def compare_runs(ref:dict, got:dict)->dict:
    "How far run record `got` is from `ref` (`run_record`): largest differences, and whether they are equal bit for bit."
    rw, gw = ref["weights"], got["weights"]
    missing = sorted(set(rw) ^ set(gw))
    shared = [k for k in rw if k in gw]
    differ = [k for k in shared if rw[k].shape != gw[k].shape or rw[k].dtype != gw[k].dtype or not torch.equal(rw[k], gw[k])]
    wdiff = max((float((rw[k].double() - gw[k].double()).abs().max()) for k in differ if rw[k].shape == gw[k].shape and rw[k].numel()),
                default=0.0)
    rh, gh = ref["history"], got["history"]
    hdiff = max((abs(float(a[k]) - float(b[k])) for a, b in zip(rh, gh) for k in a
                 if k in b and isinstance(a[k], (int, float)) and isinstance(b[k], (int, float))), default=0.0)
    last = lambda h, k: float(h[-1][k]) if h and k in h[-1] else float("nan")
    rp, gp = ref["probs"], got["probs"]
    pdiff = float(np.abs(rp - gp).max()) if rp.shape == gp.shape and rp.size else float("inf")
    return {"tensors_compared": len(shared), "missing_tensors": missing, "tensors_differing": differ[:10],
            "n_tensors_differing": len(differ), "max_abs_weight_diff": wdiff,
            "weights_equal": not missing and not differ,
            "history_equal": rh == gh, "epochs": [len(rh), len(gh)], "max_abs_history_diff": hdiff,
            "accuracy_uninterrupted": ref["accuracy"], "accuracy_resumed": got["accuracy"],
            "accuracy_diff": abs(ref["accuracy"] - got["accuracy"]),
            "valid_loss_diff": abs(last(rh, "valid_loss") - last(gh, "valid_loss")) if rh and gh else float("inf"),
            "probs_equal": rp.shape == gp.shape and bool(np.array_equal(rp, gp)), "max_abs_prob_diff": pdiff,
            "bit_identical": not missing and not differ and rh == gh and rp.shape == gp.shape and bool(np.array_equal(rp, gp))}


def resume_problems(cmp:dict, deterministic:bool, tolerance:float=0.02)->list[str]:
    "With `deterministic`, anything short of bit-identical (each difference named, with its size); otherwise an accuracy gap over `tolerance`."
    if not deterministic:
        return [] if cmp["accuracy_diff"] <= tolerance else [
            f"resumed accuracy {cmp['accuracy_resumed']:.4f} vs {cmp['accuracy_uninterrupted']:.4f} uninterrupted (over {tolerance})"]
    out = []
    if cmp["missing_tensors"]: out.append(f"tensors in one run only: {cmp['missing_tensors'][:5]}")
    if cmp["n_tensors_differing"]:
        out.append(f"{cmp['n_tensors_differing']} weight tensor(s) differ (max |diff| {cmp['max_abs_weight_diff']:.3e}; first {cmp['tensors_differing'][:3]})")
    if not cmp["history_equal"]:
        out.append(f"the per-epoch history differs (epochs {cmp['epochs'][0]} vs {cmp['epochs'][1]}, max |diff| {cmp['max_abs_history_diff']:.3e})")
    if not cmp["probs_equal"]: out.append(f"the validation probabilities differ (max |diff| {cmp['max_abs_prob_diff']:.3e})")
    return [f"--deterministic: not bit-identical: {m}" for m in out]


def nondeterministic_ops(caught:list)->list[str]:
    "The operations torch warned have no deterministic implementation, from `warnings.catch_warnings(record=True)`."
    return sorted({str(w.message).split(" ")[0] for w in caught if NONDETERMINISTIC in str(w.message)})


# ---------------------------------------------------------------- the runs

def watch_nondeterminism():
    "A `catch_warnings` that records torch's 'no deterministic implementation' warnings (every one, not only the first)."
    cm = warnings.catch_warnings(record=True)
    caught = cm.__enter__()
    warnings.filterwarnings("always", message=f".*{NONDETERMINISTIC}")
    return cm, caught


def train_check(folder:Path, a, device, precision:str)->tuple[dict, object]:
    "Train small_resnet on the digits in `precision`; return the check's record and the learner (with `.reference`, its run record)."
    dls = image_dataloaders(folder, size=a.size, flip=False, bs=a.bs, seed=a.seed, device=device)
    learn = with_callbacks(cv_learner(dls, "small_resnet", precision=precision, seed=a.seed, plain_logging=True))
    print(f"-- train {precision}: {learn.precision}; callbacks {', '.join(type(c).__name__ for c in learn.cbs)}", flush=True)
    ckpts = CheckpointFolder(Path(tempfile.mkdtemp(prefix=f"gpu-checks-{precision}-")), keep=a.epochs + 1)
    cm, caught = watch_nondeterminism()
    try:
        with ActivationDtypes(learn.model) as dtypes:
            sync(device); t0 = time.perf_counter()
            run_phases(learn, one_cycle_phases(a.epochs, a.lr), ckpts)      # checkpoints every epoch, as `train` does
            sync(device); seconds = time.perf_counter() - t0
    finally: cm.__exit__(None, None, None)
    learn.checkpoint_folder = ckpts
    states = [load_checkpoint(p) for p in ckpts.paths()]
    losses = [float(x) for x in learn.recorder.losses]
    valid_loss = float(learn.recorder.values[-1][1]) if learn.recorder.values else float("nan")
    ev = evaluate(learn)
    learn.reference = run_record(learn, ev)
    used = learn.precision.name
    seen = dtypes.record()
    scaler_layout = [{"epoch": s["position"]["epoch"], "batch": s["position"]["batch"], "end_of_fit": not _mid_fit(s["position"]),
                      "scaler": s["scaler"]} for s in states]
    rec = {"requested": precision, "precision": used, "precision_reason": learn.precision.reason,
           "epochs": a.epochs, "lr": a.lr, "bs": a.bs, "size": a.size, "n_train": len(dls.train.dataset),
           "n_valid": len(dls.valid.dataset), "seconds": seconds,
           "images_per_second": a.epochs*len(dls.train.dataset)/seconds if seconds > 0 else None,
           "accuracy": ev.accuracy, "first_train_loss": losses[0] if losses else None,
           "final_train_loss": losses[-1] if losses else None, "valid_loss": valid_loss, "n_steps": len(losses),
           "loss_finite": bool(losses) and finite(losses) and math.isfinite(valid_loss) and bool(np.isfinite(ev.probs).all()),
           "precision_as_asked": used == precision, "autocast_dtypes": seen, "expected_dtype": AUTOCAST_DTYPE[precision],
           "hooked_forward_calls": dtypes.calls, "min_accuracy": a.min_accuracy,
           "checkpoints": len(states), "scaler_layout": scaler_layout,
           "scaler_in_checkpoint": any(s["scaler"] is not None for s in states),
           "nondeterministic_ops": nondeterministic_ops(caught), "deterministic": a.deterministic,
           "history_rows": len(learn.training_history.rows), "weight_average_updates": learn.weight_averaging.updates}
    problems = [m for ok, m in [(rec["loss_finite"], "a loss is not finite"),
                                (rec["precision_as_asked"], f"asked for {precision}, the learner reports {used}"),
                                (ev.accuracy >= a.min_accuracy, f"accuracy {ev.accuracy:.4f} < {a.min_accuracy}"),
                                (rec["history_rows"] == a.epochs, f"{rec['history_rows']} history rows for {a.epochs} epochs")] if not ok]
    problems += precision_problems(precision, seen) + scaler_problems(used, states)
    rec.update(status="failed" if problems else "passed", passed=not problems, problems=problems)
    print(f"   accuracy {ev.accuracy:.4f}, {seconds:.1f} s, final train loss {rec['final_train_loss']:.4f}, "
          f"valid loss {valid_loss:.4f}; autocast dtypes {seen}; scaler in {sum(s['scaler'] is not None for s in states)} of "
          f"{len(states)} checkpoints: {rec['status']}" + (f" ({'; '.join(problems)})" if problems else ""), flush=True)
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


class StopAt(Callback):
    "Ask training to stop, as Ctrl-C would, after batch `batch` of epoch `epoch` (0-based): a mid-epoch checkpoint follows."
    order = 80
    def __init__(self, epoch:int, batch:int): self.at = (epoch, batch)
    def after_batch(self):
        if self.training and (self.epoch, self.iter) == self.at: self.learn.checkpointing.stop.request()


def resume_check(learn, folder:Path, a, device)->dict:
    "Stop `learn`'s training in the middle of an epoch, resume it in a fresh learner, and compare with `learn` (the uninterrupted run)."
    precision = learn.precision.name
    def fresh():
        dls = image_dataloaders(folder, size=a.size, flip=False, bs=a.bs, seed=a.seed, device=device)
        return with_callbacks(cv_learner(dls, "small_resnet", precision=precision, seed=a.seed, plain_logging=True))
    stopped = fresh()
    n = len(stopped.dls.train)
    at = (a.epochs//2, max(0, n//2 - 1))                       # the middle batch of the middle epoch
    ckpts = CheckpointFolder(Path(tempfile.mkdtemp(prefix=f"gpu-checks-stop-{precision}-")), keep=a.epochs + 2)
    cm, caught = watch_nondeterminism()
    try:
        try:
            run_phases(stopped, one_cycle_phases(a.epochs, a.lr), ckpts, cbs=[StopAt(*at)])
            interrupted = None
        except TrainingInterrupted as e: interrupted = str(e)
        state, path = ckpts.latest()
        resumed = fresh()
        sync(device); t0 = time.perf_counter()
        run_phases(resumed, one_cycle_phases(a.epochs, a.lr), resume=state)
        sync(device); seconds = time.perf_counter() - t0
    finally: cm.__exit__(None, None, None)
    cmp = compare_runs(learn.reference, run_record(resumed, evaluate(resumed)))
    pos = state["position"]
    rec = {"precision": precision, "deterministic": a.deterministic, "stop_asked_at": {"epoch": at[0], "batch": at[1] + 1},
           "interrupted": interrupted, "resumed_from": pos, "checkpoint": path.name,
           "scaler_at_stop": state["scaler"], "resumed_seconds": seconds,
           "nondeterministic_ops": nondeterministic_ops(caught), **cmp}
    problems = [] if interrupted else ["the stop request did not interrupt training"]
    problems += [] if 0 < pos["batch"] < n else [f"the checkpoint resumed from is not mid-epoch: {pos}"]
    problems += scaler_problems(precision, [state]) + resume_problems(cmp, a.deterministic, a.resume_tolerance)
    rec.update(status="failed" if problems else "passed", passed=not problems, problems=problems)
    print(f"-- resume {precision}{' (deterministic)' if a.deterministic else ''}: stopped at epoch {pos['epoch'] + 1}, batch {pos['batch']}/{n}; "
          f"bit-identical {cmp['bit_identical']}; max |weight diff| {cmp['max_abs_weight_diff']:.3e}, "
          f"max |prob diff| {cmp['max_abs_prob_diff']:.3e}, accuracy {cmp['accuracy_resumed']:.4f} vs {cmp['accuracy_uninterrupted']:.4f} "
          f"(diff {cmp['accuracy_diff']:.4f}), valid loss diff {cmp['valid_loss_diff']:.3e}: {rec['status']}"
          + (f" ({'; '.join(problems)})" if problems else ""), flush=True)
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


CHECKS = ("train", "resume", "find_lr", "export", "placement", "data_parallel")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--deterministic", action="store_true",
                    help="as `cvkit train --deterministic` (before any CUDA work); resumed runs must then equal uninterrupted ones bit for bit")
    ap.add_argument("--checks", nargs="+", default=list(CHECKS), choices=CHECKS, help="the checks to run (resume needs train; default: all)")
    ap.add_argument("--precisions", nargs="+", default=["bf16", "fp16", "fp32"], choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--lr-steps", type=int, default=100, help="steps of the LR range test")
    ap.add_argument("--n-predict", type=int, default=40, help="digit images predicted in the export check")
    ap.add_argument("--min-accuracy", type=float, default=0.9, help="validation accuracy each training run must reach")
    ap.add_argument("--resume-tolerance", type=float, default=0.02, help="without --deterministic: the largest accuracy gap a resume may show")
    ap.add_argument("--tie", type=float, default=1e-3, help="top-2 probability gap below which a class flip is a near-tie")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if "resume" in a.checks and "train" not in a.checks: ap.error("--checks resume needs train (it compares with the trained run)")
    if a.deterministic: use_deterministic(True)        # before any CUDA work, as `cvkit train` does
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda and torch.cuda.is_available() else device.type
    out = {"benchmark": "gpu_checks", "device": name, "torch": torch.__version__, "cvkit": cvkit.__version__,
           "cuda": torch.version.cuda, "date": datetime.date.today().isoformat(), "args": vars(a),
           "deterministic": {"asked": a.deterministic, "algorithms": torch.are_deterministic_algorithms_enabled(),
                             "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
                             "cudnn_deterministic": torch.backends.cudnn.deterministic, "cudnn_benchmark": torch.backends.cudnn.benchmark,
                             "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}, "checks": {}}
    checks = out["checks"]
    print(f"{name}; torch {torch.__version__}; cvkit {cvkit.__version__}; deterministic: {out['deterministic']}", flush=True)
    if cuda and not torch.cuda.is_available():
        checks["device"] = {"status": "failed", "passed": False, "error": f"device {a.device!r} asked for, but CUDA is not available"}
    else:
        folder = digits()
        learners = {}
        for p in a.precisions if "train" in a.checks else []:
            why = skip_reason(device, p)
            if why:
                checks[f"train_{p}"] = {"requested": p, "status": "skipped", "passed": None, "reason": why}
                print(f"-- train {p}: skipped ({why})", flush=True)
                if "resume" in a.checks: checks[f"resume_{p}"] = {"precision": p, "status": "skipped", "passed": None, "reason": why}
                continue
            try: checks[f"train_{p}"], learners[p] = train_check(folder, a, device, p)
            except Exception as e: checks[f"train_{p}"] = {"requested": p, **failed(e)}
            if "resume" not in a.checks: continue
            if p not in learners: checks[f"resume_{p}"] = {"precision": p, "status": "failed", "passed": False, "error": f"train_{p} failed"}
            else:
                try: checks[f"resume_{p}"] = resume_check(learners[p], folder, a, device)
                except Exception as e: checks[f"resume_{p}"] = {"precision": p, **failed(e)}
        out["nondeterministic_ops"] = sorted({op for c in checks.values() for op in c.get("nondeterministic_ops", [])})
        learn = next(iter(learners.values()), None)       # the first that trained: bf16 on a GPU, fp32 on a CPU
        wanted = [(k, c) for k, c in (("find_lr", "find_lr"), ("export_parity", "export")) if c in a.checks]
        if learn is None:
            for k, _ in wanted: checks[k] = {"status": "failed", "passed": False, "error": "no learner trained"}
        else:
            out["checked_learner"] = learn.precision.name
            for k, _ in wanted:
                try: checks[k] = lr_check(learn, a) if k == "find_lr" else export_check(learn, folder, a, device)
                except Exception as e: checks[k] = failed(e)
        if "placement" in a.checks:
            try: checks["find_lr_placement"] = placement_check(folder, a, device)
            except Exception as e: checks["find_lr_placement"] = failed(e)
        if "data_parallel" in a.checks:
            try: checks["data_parallel"] = data_parallel_check(a)
            except Exception as e: checks["data_parallel"] = failed(e)
    out["failed"] = [k for k, c in checks.items() if c["status"] == "failed"]
    out["skipped"] = {k: c["reason"] for k, c in checks.items() if c["status"] == "skipped"}
    out["passed"] = not out["failed"] and any(c["status"] == "passed" for c in checks.values())
    print("\n" + "\n".join(f"{k:17} {c['status']}" + (f" ({c.get('reason') or c.get('error') or '; '.join(c.get('problems', []))})"
                                                      if c["status"] != "passed" else "") for k, c in checks.items()))
    if out.get("nondeterministic_ops"): print(f"torch has no deterministic kernel for: {', '.join(out['nondeterministic_ops'])}")
    print(f"gpu checks: {'PASSED' if out['passed'] else 'FAILED'}" + (f" ({', '.join(out['failed'])})" if out["failed"] else ""))
    if a.json:
        save_json(out, a.json)
        print(f"wrote {a.json}")
    raise SystemExit(0 if out["passed"] else 1)

if __name__ == "__main__": main()
