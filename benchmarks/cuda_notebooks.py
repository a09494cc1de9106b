"""Run the notebooks that have `#| cuda` cells, with those cells included, and record each notebook's result.

`make test` skips cells flagged `#| cuda` (pyproject.toml's `tst_flags = "slow cuda"`): they need a GPU. On a GPU
machine this runs `nbdev-test --flags cuda` on every notebook in `--nbs` that has such a cell (found with nbdev's
own cell parser, so a flag in prose or in the middle of a cell does not count), one process per notebook,
`--workers` at a time, each under `--timeout` seconds. The JSON (`--json`) holds, per notebook, the number of
flagged cells, the exit code, the seconds and the end of its output; the exit code is 1 if any notebook failed or
timed out, or if no notebook has a flagged cell (nothing would have been checked).

    python benchmarks/cuda_notebooks.py [--flag cuda] [--nbs nbs] [--workers 2] [--json benchmarks/results/cuda_notebooks-cuda.json]
"""
from __future__ import annotations
import argparse, datetime, os, subprocess, sys, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NBDEV_TEST = "import sys; from nbdev.test import nbdev_test; nbdev_test(path=sys.argv[1], flags=sys.argv[2])"   # explicit arguments: with
# none, nbdev_test (a fastcore `call_parse` function) run from `python -c` would test every notebook of the project


def flagged_cells(nb:Path, flag:str="cuda")->int:
    "How many code cells of `nb` carry the directive `#| flag` (as nbdev-test reads directives)."
    from nbdev.test import nb_test_cells
    return sum(flag in (getattr(c, "directives_", None) or {}) for c in nb_test_cells(nb, [], [flag]))


def flagged_notebooks(folder:Path, flag:str="cuda")->dict:
    "The notebooks below `folder` (not in hidden or `_` folders) with cells flagged `#| flag`: {path: number of such cells}."
    found = {}
    for nb in sorted(Path(folder).rglob("*.ipynb")):
        if any(part.startswith((".", "_")) for part in nb.relative_to(folder).parts): continue
        if f"#| {flag}" not in nb.read_text(encoding="utf-8") and f"#|{flag}" not in nb.read_text(encoding="utf-8"): continue
        n = flagged_cells(nb, flag)
        if n: found[nb] = n
    return found


def tail(text:str, n:int=3000)->str: return text[-n:]


def run_notebooks(nbs:list, flag:str, python:str=sys.executable, workers:int=2, timeout:float=300, cwd:Path=REPO)->dict:
    "Run `nbdev-test --flags flag` on each notebook, `workers` at a time: {path: status, exit_code, seconds, output}."
    pending, running, results = list(nbs), {}, {}
    while pending or running:
        while pending and len(running) < workers:
            nb = pending.pop(0)
            p = subprocess.Popen([python, "-c", NBDEV_TEST, str(nb), flag], cwd=cwd, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
            running[nb] = (p, time.monotonic())
            print(f"started {nb}", flush=True)
        time.sleep(0.2)
        for nb, (p, t0) in list(running.items()):
            late = time.monotonic() - t0 > timeout
            if p.poll() is None and not late: continue
            if late and p.poll() is None:
                os.killpg(p.pid, 9)
            out = p.communicate()[0]
            rc, secs = p.returncode, round(time.monotonic() - t0, 1)
            status = "timed_out" if late else "passed" if rc == 0 and "Success." in out else "failed"
            results[nb] = {"status": status, "exit_code": rc, "seconds": secs, "output": tail(out)}
            print(f"{status}: {nb} ({secs}s, exit {rc})" + ("" if status == "passed" else f"\n{tail(out, 2000)}"), flush=True)
            del running[nb]
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flag", default="cuda", help="the nbdev test flag whose cells to include (default: %(default)s)")
    ap.add_argument("--nbs", default=str(REPO/"nbs"), help="the folder of notebooks (default: the repository's nbs/)")
    ap.add_argument("--workers", type=int, default=2, help="notebooks run at once (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds each notebook may take (default: %(default)s)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    import torch
    folder = Path(a.nbs).resolve()
    found = flagged_notebooks(folder, a.flag)
    rel = lambda p: str(p.relative_to(folder)) if p.is_relative_to(folder) else str(p)
    print(f"notebooks with #| {a.flag} cells in {folder}: " + (", ".join(f"{rel(p)} ({n})" for p, n in found.items()) or "none"), flush=True)
    t0 = time.monotonic()
    results = run_notebooks(list(found), a.flag, workers=a.workers, timeout=a.timeout)
    notebooks = {rel(p): {"flagged_cells": found[p], **results[p]} for p in found}
    failed = [k for k, r in notebooks.items() if r["status"] != "passed"]
    out = {"benchmark": "cuda_notebooks", "flag": a.flag, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
           "torch": torch.__version__, "date": datetime.date.today().isoformat(), "seconds": round(time.monotonic() - t0, 1),
           "notebooks": notebooks, "failed": failed + ([] if found else [f"no notebook in {folder} has a #| {a.flag} cell"]),
           "passed": bool(found) and not failed}
    print(f"{a.flag} notebooks: {'PASSED' if out['passed'] else 'FAILED'}" + (f" ({', '.join(out['failed'])})" if out["failed"] else ""))
    if a.json:
        sys.path.insert(0, str(REPO))
        from cvkit.core import save_json
        save_json(out, a.json)
        print(f"wrote {a.json}")
    raise SystemExit(0 if out["passed"] else 1)

if __name__ == "__main__": main()
