"""How long `make test` took, and where the time went, read from its log: `benchmarks/results/make-test-cpu.json`.

    bash .ci/run 2>&1 | tee ci.log                       # or: make test 2>&1 | tee ci.log (then pass --seconds)
    python tools/ci_timing.py ci.log --json benchmarks/results/make-test-cpu.json

The log gives every notebook's time (`nbdev-test --timing`), pytest's slowest tests (`--durations`) and its summary,
and the total (`.ci/run` prints "CI finished in N s"). README.md quotes the total through `tools/figures.py`.
"""
from __future__ import annotations
import argparse, datetime, json, os, platform, re, sys
from pathlib import Path

NOTEBOOK = re.compile(r"^(\S+\.ipynb): (\d+) secs$")
DURATION = re.compile(r"^([\d.]+)s (setup|call|teardown)\s+(\S+)$")
SUMMARY = re.compile(r"^(?:=+ )?(\d+ (?:passed|failed).*?) in ([\d.]+)s")
TOTAL = re.compile(r"^CI finished in (\d+)s$")


def parse(text:str) -> dict:
    "The timings in a `make test` / `.ci/run` log."
    notebooks, tests, summary, total, pytest_seconds = [], [], None, None, None
    for line in text.splitlines():
        line = line.strip()
        if m := NOTEBOOK.match(line): notebooks.append({"notebook": m[1], "seconds": int(m[2])})
        elif m := DURATION.match(line): tests.append({"test": m[3], "phase": m[2], "seconds": float(m[1])})
        elif m := SUMMARY.match(line): summary, pytest_seconds = re.sub(r", \d+ warnings?", "", m[1]), float(m[2])
        elif m := TOTAL.match(line): total = int(m[1])
    if not notebooks: raise SystemExit("no notebook timings in the log: was nbdev-test run with --timing?")
    if summary is None: raise SystemExit("no pytest summary line in the log: did pytest run to the end?")
    return {"total_seconds": total, "pytest_seconds": pytest_seconds, "pytest_summary": summary,
            "notebooks": sorted(notebooks, key=lambda r: -r["seconds"]), "slowest_tests": sorted(tests, key=lambda r: -r["seconds"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("log", type=Path, help="the output of `bash .ci/run` (or `make test`)")
    p.add_argument("--seconds", type=int, default=None, help="the total, when the log has no 'CI finished in' line")
    p.add_argument("--json", type=Path, default=None, help="write the timings here (atomically)")
    a = p.parse_args(argv)
    res = parse(a.log.read_text(errors="replace"))
    if a.seconds is not None: res["total_seconds"] = a.seconds
    if res["total_seconds"] is None: raise SystemExit("no 'CI finished in N s' line in the log: pass --seconds")
    res = {"benchmark": "make test", "date": datetime.date.today().isoformat(), "machine": platform.machine(),
           "cpu_count": os.cpu_count(), **res}
    print(f"make test: {res['total_seconds']} s in all; pytest {res['pytest_summary']} in {res['pytest_seconds']:.0f} s")
    print("slowest notebooks: " + ", ".join(f"{r['notebook']} {r['seconds']} s" for r in res["notebooks"][:10]))
    print("slowest tests: " + ", ".join(f"{r['test']} {r['seconds']:.0f} s" for r in res["slowest_tests"][:10]))
    if a.json:
        from cvkit.core import save_json  # atomic
        save_json(res, a.json)
    return 0


if __name__ == "__main__": sys.exit(main())
