"""Inference benchmark: batch-1 latency (median, p95) and batch-64 throughput, PyTorch eager beside ONNX Runtime.

Models are built exactly as `load_model` builds them (weights do not affect timing, so they are random here):
cvkit's small_resnet at 32 px and torchvision's resnet18 at 224 px. Both runtimes get the same 0-1 RGB input;
the normalisation is part of both models.

    python benchmarks/inference.py [--reps 50] [--json benchmarks/results/inference-cpu.json]

`--smoke` checks the script end to end in seconds: 3 repetitions, batches of 4.
"""
import argparse, json, tempfile, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import numpy as np
import torch
from cvkit.export import Predictor, build_model, export_onnx, onnx_session, _WithNormalization
from cvkit.core import save_json
from cvkit.core import device_name

def timings(fn, reps:int, warmup:int=5)->np.ndarray:
    for _ in range(warmup): fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return np.array(out)

def bench(arch:str, size:int, reps:int, batch:int)->dict:
    meta = {"arch": arch, "arch_kwargs": {}, "classes": [str(i) for i in range(10)], "size": size,
            "resize_method": "squish", "normalize": "data", "mean": [0.5]*3, "std": [0.25]*3}
    model = build_model(meta).eval()
    pred = Predictor(model, meta)
    eager = _WithNormalization(model, meta["mean"], meta["std"]).eval()
    with tempfile.TemporaryDirectory() as d:
        onnx_path = export_onnx(pred, Path(d)/"m.onnx")
        sess = onnx_session(onnx_path)
        res = {"arch": arch, "size": size}
        for n, key in ((1, "batch1"), (batch, f"batch{batch}")):
            x = torch.rand(n, 3, size, size); xn = x.numpy()
            with torch.inference_mode():
                t_pt = timings(lambda: eager(x), reps if n == 1 else max(5, reps//10))
            t_ort = timings(lambda: sess.run(None, {"image": xn}), reps if n == 1 else max(5, reps//10))
            with torch.inference_mode(): diff = float(np.abs(sess.run(None, {"image": xn})[0] - eager(x).numpy()).max())
            res[key] = {"pytorch": {"median_ms": 1e3*np.median(t_pt), "p95_ms": 1e3*np.percentile(t_pt, 95),
                                    "images_per_s": n/np.median(t_pt)},
                        "onnxruntime": {"median_ms": 1e3*np.median(t_ort), "p95_ms": 1e3*np.percentile(t_ort, 95),
                                        "images_per_s": n/np.median(t_ort)},
                        "max_abs_diff": diff}
    return res

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", default=None)
    ap.add_argument("--smoke", action="store_true", help="3 repetitions, batches of 4, to check the script")
    a = ap.parse_args()
    if a.smoke: a.reps, a.batch = 3, 4
    device = device_name("cpu")
    print(f"device: {device}; torch {torch.__version__}")
    results = [bench("small_resnet", 32, a.reps, a.batch), bench("resnet18", 224, a.reps, a.batch)]
    print(f"\n{'model':22} {'runtime':12} {'batch-1 median':>15} {'batch-1 p95':>12} {f'batch-{a.batch} img/s':>16}")
    for r in results:
        for rt in ("pytorch", "onnxruntime"):
            b1, bn = r["batch1"][rt], r[f"batch{a.batch}"][rt]
            print(f"{r['arch'] + ' @' + str(r['size']) + 'px':22} {rt:12} {b1['median_ms']:12.2f} ms {b1['p95_ms']:9.2f} ms "
                  f"{bn['images_per_s']:16.0f}")
        s1 = r["batch1"]["pytorch"]["median_ms"]/r["batch1"]["onnxruntime"]["median_ms"]
        sn = r[f"batch{a.batch}"]["onnxruntime"]["images_per_s"]/r[f"batch{a.batch}"]["pytorch"]["images_per_s"]
        print(f"{'':22} ONNX Runtime speed-up: batch-1 latency x{s1:.2f}, batch-{a.batch} throughput x{sn:.2f}; "
              f"max |difference| {max(r['batch1']['max_abs_diff'], r[f'batch{a.batch}']['max_abs_diff']):.1e}")
    if a.json:
        save_json({"benchmark": "inference", "device": device, "torch": torch.__version__, "results": results}, a.json)
        print(f"wrote {a.json}")

if __name__ == "__main__": main()
