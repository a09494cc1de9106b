"""Scaling and reliability figures, measured side by side in one run on this machine:

- **data parallel**: `cvkit train` on the built-in digits with 1 process and with `--processes N` (gloo on a CPU,
  nccl on GPUs): validation accuracy, training seconds and their ratio. The global batch is the same, so the
  accuracy should match within a point; the speed depends on the cores or GPUs there are to share.
- **checkpoints**: the same single-process run with and without checkpoints (`--checkpoints 0`): what writing one
  checkpoint per epoch costs, and the checkpoint's size.
- **resume**: a run killed (SIGKILL) in the middle of an epoch and resumed with `--resume`: whether its final weights
  equal the uninterrupted run's, bit for bit (with `--deterministic`), and the seconds the resumed part took.

Each variant runs `--repeats` times (3 by default), alternated, and the median of its training times is reported
(with an even number of runs, the mean of the middle two).

    python benchmarks/scaling.py [--epochs 4] [--processes 2] [--repeats 3] [--json benchmarks/results/scaling-cpu.json]

`--smoke` checks the script end to end at the smallest sizes: `--epochs 3 --arch simple_cnn --size 16 --repeats 1`.
"""
import argparse, json, os, signal, statistics, subprocess, sys, tempfile, time, datetime
from pathlib import Path
import torch
from safetensors.torch import load_file
from cvkit.core import save_json, device_name, default_device

CVKIT = [sys.executable, "-m", "cvkit"]


def run(*args, env=None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    p = subprocess.run([*CVKIT, *map(str, args)], capture_output=True, text=True, env=env)
    if p.returncode: raise SystemExit(f"cvkit {' '.join(map(str, args))} failed:\n{p.stderr[-2000:]}")
    return time.perf_counter() - t0, p


def metrics(out:Path) -> dict: return json.loads((out/"metrics.json").read_text())


def same_weights(a:Path, b:Path) -> bool:
    wa, wb = load_file(a/"model.safetensors"), load_file(b/"model.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--arch", default="small_resnet")
    ap.add_argument("--size", type=int, default=None, help="image size (default: cvkit's choice for the digits)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each variant (medians reported)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--smoke", action="store_true", help="the smallest run that exercises every part: 3 epochs of simple_cnn at 16 px, once")
    a = ap.parse_args()
    if a.smoke: a.epochs, a.arch, a.size, a.repeats = 3, "simple_cnn", 16, 1
    work = Path(tempfile.mkdtemp(prefix="cvkit-scaling-"))
    common = ("--arch", a.arch, "--epochs", a.epochs, "--seed", a.seed, "--deterministic", *(("--size", a.size) if a.size else ()))
    env = dict(os.environ, MPLBACKEND="Agg")

    seconds = {"one": [], "none": [], "dp": []}
    for turn in range(a.repeats):                                     # alternated, so a busy spell hits every variant
        for name, extra in (("one", ()), ("none", ("--checkpoints", "0")), ("dp", ("--processes", a.processes))):
            run("train", *common, *extra, "--out", work/f"{name}{turn}", env=env)
            seconds[name].append(metrics(work/f"{name}{turn}")["train_seconds"])
    med = {k: statistics.median(v) for k, v in seconds.items()}
    one, none, dp = metrics(work/"one0"), metrics(work/"none0"), metrics(work/"dp0")
    ckpt = sorted((work/"one0"/"checkpoints").iterdir())[-1]

    proc = subprocess.Popen([*CVKIT, "train", *map(str, common), "--out", str(work/"killed")], text=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    stamps = []
    for line in proc.stdout:
        if line.startswith("epoch "): stamps.append(time.perf_counter())
        if len(stamps) == 2: break
    time.sleep(0.5*(stamps[1] - stamps[0]))                           # half an epoch into the third
    proc.send_signal(signal.SIGKILL); proc.wait()
    from cvkit.train.checkpoint import CheckpointFolder
    state, path = CheckpointFolder(work/"killed"/"checkpoints").latest()
    run("train", "--resume", work/"killed", env=env)
    resumed = metrics(work/"killed")

    res = {"benchmark": "scaling", "device": device_name(default_device()), "torch": torch.__version__,
           "date": datetime.date.today().isoformat(), "args": vars(a), "cpu_count": os.cpu_count(),
           "data_parallel": {"processes": a.processes, "accuracy_1": one["accuracy"], "accuracy_n": dp["accuracy"],
                             "accuracy_gap": dp["accuracy"] - one["accuracy"], "train_seconds_1": med["one"],
                             "train_seconds_n": med["dp"], "speedup": med["one"]/med["dp"], "all_seconds": seconds, "bs_global": dp["bs"]},
           "checkpoints": {"train_seconds_with": med["one"], "train_seconds_without": med["none"],
                           "overhead": med["one"]/med["none"] - 1, "checkpoint_bytes": ckpt.stat().st_size,
                           "same_weights_with_and_without": same_weights(work/"one0", work/"none0")},
           "resume": {"resumed_from": state["position"], "bit_identical": same_weights(work/"one0", work/"killed"),
                      "same_accuracy": resumed["accuracy"] == one["accuracy"], "resumed_train_seconds": resumed["train_seconds"],
                      "uninterrupted_train_seconds": one["train_seconds"]}}
    d, c, r = res["data_parallel"], res["checkpoints"], res["resume"]
    print(f"data parallel: accuracy {d['accuracy_1']:.4f} (1 process) vs {d['accuracy_n']:.4f} ({a.processes}); "
          f"training {d['train_seconds_1']:.1f} s vs {d['train_seconds_n']:.1f} s (x{d['speedup']:.2f}) on {os.cpu_count()} cores "
          f"(medians of {a.repeats} run(s))")
    print(f"checkpoints: {c['checkpoint_bytes']/1e6:.2f} MB each; training {c['train_seconds_with']:.1f} s with, "
          f"{c['train_seconds_without']:.1f} s without ({100*c['overhead']:+.1f} %); same weights: {c['same_weights_with_and_without']}")
    print(f"resume after SIGKILL (from the checkpoint at {r['resumed_from']}): bit-identical weights {r['bit_identical']}, "
          f"same accuracy {r['same_accuracy']}; the resumed part trained {r['resumed_train_seconds']:.1f} s")
    if a.json: save_json(res, a.json); print(f"wrote {a.json}")


if __name__ == "__main__": main()
