#!/usr/bin/env bash
# Every pending GPU measurement, one after another, in at most 8 minutes on one NVIDIA H200.
#
#   bash benchmarks/gpu_suite.sh                 # from anywhere; it runs from the repository root
#
# Steps (in this order), each under `timeout`, each writing $SUITE_OUT/<name>-<device>.json:
#
#   step                 cap    what                                                   expected on an H200
#   gpu_checks           150 s  --deterministic: bf16/fp16/fp32 training (autocast dtype
#                               seen by hooks, scaler layout in checkpoints), mid-epoch
#                               stop + resume equal bit for bit, find_lr, export        ~60 s
#   gpu_checks_nondeterministic
#                         90 s  the same training and resumes without --deterministic:
#                               how far a resumed run lands from the uninterrupted one  ~35 s
#   cuda_notebooks       150 s  the notebooks with #| cuda cells (found by
#                               benchmarks/cuda_notebooks.py), run by nbdev-test
#                               --flags cuda, two at a time                             ~60 s
#   overhead              90 s  bare loop vs cvkit vs fastai, CIFAR-10 (10k), 3 turns   ~50 s
#   speedrun             120 s  speed recipe, CIFAR-10, 3 runs of 10 epochs             ~60 s
#   throughput            90 s  ResNet-50 at 224 px on real JPEGs: fp32, bf16, bf16+cl,
#                               and plain fastai                                        ~50 s
#   throughput_compile   rest   the bf16+cl+compile mode in its own process (compiling
#                               takes a minute or more); merged into throughput's JSON  60-120 s
#
# Expected in all: 6 to 7 minutes. cuda_notebooks needs nbdev in $PYTHON (cvkit's dev extra); gpu_checks runs with
# --deterministic, as `cvkit train --deterministic` (CUBLAS_WORKSPACE_CONFIG=:4096:8 is set before any CUDA work).
#
# A step gets min(its cap, what is left of the suite's budget, $SUITE_BUDGET = 480 s), so the whole suite
# ends within the budget even when steps hit their caps; the most expensive and least certain step
# (torch.compile) goes last and gets whatever time is left. A step that fails or times out is recorded and
# the suite goes on; one left with under 10 s is not started and recorded as no_time (a failure too). At the
# end it prints a summary, writes $SUITE_OUT/suite-<device>.json (and its whole output to suite-<device>.log)
# and exits 1 naming the failed steps. A JSON is moved into place only when its step wrote one, so a failed
# step never leaves a half-written file (a previous result, if any, is kept and the summary says so). Each
# JSON gains a "suite" entry: the step's exit code, seconds, timeout and notes.
#
# airbench94 (speedrun's reference) comes from `pip install airbench`; it is not one of cvkit's dependencies,
# so when `import airbench` fails the speedrun step runs cvkit's part alone with --no-airbench (its JSON then
# compares with airbench94's published time) and the summary says so. Installing airbench enables it:
# speedrun.py writes the tensor files airbench reads, so airbench itself needs no download.
#
# Environment:
#   PYTHON        interpreter with cvkit importable (default .venv/bin/python)
#   SUITE_DEVICE  torch device (default cuda); the JSON names end in -${SUITE_DEVICE%%:*}
#   SUITE_OUT     results folder (default benchmarks/results; in tiny mode a new temporary folder); relative
#                 paths here and in SUITE_DATA are taken from the repository root
#   SUITE_DATA    folder with cifar10-jpg.tar.gz and hymenoptera.tar (or hymenoptera-train.tar) (default ../shared/data)
#   SUITE_BUDGET  seconds for the whole suite (default 480)
#   SUITE_STEPS   the steps to run, space-separated (default: all seven)
#   SUITE_TIMEOUT_<step>  another cap for that step, in seconds (e.g. SUITE_TIMEOUT_throughput_compile=200)
#   SUITE_TINY=1  tiny sizes for a quick test (e.g. SUITE_DEVICE=cpu): digits and synthetic shapes instead of
#                 CIFAR-10 and hymenoptera, a few batches, a few seconds of speedrun; the compile step is skipped
#                 off CUDA (inductor's CPU compile alone takes minutes), and so is cuda_notebooks (its cells need CUDA)
#
# On a machine without ../shared, copy the data into an ignored folder of the repository, e.g. (hymenoptera's
# train/ alone is enough, and keeps the copy small)
#   echo /.suite-data/ >> .git/info/exclude; mkdir -p .suite-data /tmp/h
#   cp ../shared/data/cifar10-jpg.tar.gz .suite-data/
#   tar -xf ../shared/data/hymenoptera.tar -C /tmp/h hymenoptera_data/train
#   tar -cf .suite-data/hymenoptera-train.tar -C /tmp/h hymenoptera_data
# then run there: PYTHON=python3 SUITE_DATA=.suite-data SUITE_OUT=$OUT bash benchmarks/gpu_suite.sh
# (with cvkit and its dependencies installed in that Python).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-.venv/bin/python}
DEVICE=${SUITE_DEVICE:-cuda}
TAG=${DEVICE%%:*}
TINY=${SUITE_TINY:-0}
[[ $TINY == 0 || $TINY == "" ]] && TINY=0 || TINY=1
DATA=${SUITE_DATA:-../shared/data}
BUDGET=${SUITE_BUDGET:-480}
ALL_STEPS="gpu_checks gpu_checks_nondeterministic cuda_notebooks overhead speedrun throughput throughput_compile"
STEPS=${SUITE_STEPS:-$ALL_STEPS}
for s in $STEPS; do
    [[ " $ALL_STEPS " == *" $s "* ]] || { echo "gpu_suite.sh: unknown step '$s' in SUITE_STEPS ($ALL_STEPS)" >&2; exit 2; }
done
RESERVE=15          # seconds kept back at the end: timeout's kill grace, moving files, the summary
MIN_STEP=10         # a step with less time than this left is not started
START=$SECONDS

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-suite.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if [[ $TINY == 1 ]]; then OUT=${SUITE_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-suite-out.XXXXXX")}
else OUT=${SUITE_OUT:-benchmarks/results}; fi
mkdir -p "$OUT"
LOG="$OUT/suite-$TAG.log"
: > "$LOG"
: > "$WORK/steps.tsv"
export PYTHONUNBUFFERED=1 MPLBACKEND=${MPLBACKEND:-Agg}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"     # cvkit from this checkout also where it is not installed (the device)

say() { echo "$*" | tee -a "$LOG"; }
wants() { [[ " $STEPS " == *" $1 "* ]]; }
record() {  # name status seconds timeout note
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5//$'\t'/ }" >> "$WORK/steps.tsv"
    say "--- $1: $2 (${3}s of ${4}s)${5:+: $5}"
}

# Move the step's JSON into place (when it wrote one) and add the suite's entry to it. Prints a note.
finalize() {  # partial dest name rc seconds timeout note
    "$PYTHON" - "$@" <<'EOF' 2>>"$LOG" || { [[ -f $1 ]] && mv -f "$1" "$2"; echo "JSON not annotated"; }
import json, os, sys
partial, dest, name, rc, secs, timeout, note = sys.argv[1:8]
if not os.path.isfile(partial):
    print(f"no JSON written" + (f"; the previous {dest} is kept" if os.path.isfile(dest) else ""))
    raise SystemExit
d = json.load(open(partial))
d["suite"] = {"step": name, "exit_code": int(rc), "seconds": int(secs), "timeout_s": int(timeout)} | ({"note": note} if note else {})
json.dump(d, open(partial, "w"), indent=2, default=str); open(partial, "a").write("\n")
os.replace(partial, dest)
bad = d.get("failed") or []
print(f"wrote {dest}" + (f"; failed checks: {', '.join(bad)}" if bad else ""))
EOF
}

# Run one step: `run_step NAME CAP DEST NOTE CMD...` (CMD gets --json PARTIAL). Sets STEP_STATUS.
run_step() {
    local name=$1 cap=$2 dest=$3 note=$4; shift 4
    local override="SUITE_TIMEOUT_$name"; cap=${!override:-$cap}
    local left=$(( BUDGET - (SECONDS - START) - RESERVE ))
    local t=$(( cap < left ? cap : left ))
    if (( left < MIN_STEP )); then
        STEP_STATUS=no_time; record "$name" no_time 0 "$cap" "not started: ${left}s left of the ${BUDGET}s budget"; return 0
    fi
    local partial="$WORK/$name.json" t0=$SECONDS rc
    local shown=() a
    for a in "$@"; do [[ $a == *$'\n'* ]] && shown+=("<the overhead.py wrapper>") || shown+=("$a"); done
    say ""; say "=== $name (timeout ${t}s): ${shown[*]}"
    set +e
    timeout -k 5 "$t" "$@" --json "$partial" </dev/null 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    set -e
    local secs=$(( SECONDS - t0 ))
    local written; written=$(finalize "$partial" "$dest" "$name" "$rc" "$secs" "$t" "$note")
    if (( rc == 124 || rc == 137 )); then STEP_STATUS=timed_out
    elif (( rc != 0 )); then STEP_STATUS=failed
    elif [[ $written != wrote* ]]; then STEP_STATUS=failed
    else STEP_STATUS=ok; fi
    local msg="exit $rc; $written"; [[ -n $note ]] && msg="$msg; $note"
    record "$name" "$STEP_STATUS" "$secs" "$t" "$msg"
}

say "gpu suite: device $DEVICE, python $PYTHON, results in $OUT, budget ${BUDGET}s$([[ $TINY == 1 ]] && echo ', TINY mode')"
"$PYTHON" -c "import torch, cvkit; print('torch', torch.__version__, '| cvkit', cvkit.__version__, '| cuda available:', torch.cuda.is_available(), '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" 2>&1 | tee -a "$LOG" \
    || say "warning: $PYTHON cannot import torch and cvkit; every step will fail"

# ---------------------------------------------------------------- data and per-step arguments
OVERHEAD_PY='import sys; from pathlib import Path
sys.path.insert(0, "benchmarks"); import overhead
overhead.SHARED = Path(sys.argv[1]).resolve()      # overhead.py reads CIFAR-10 from ../shared/data; the suite may point elsewhere
sys.argv = ["overhead.py", *sys.argv[2:]]; overhead.main()'
if [[ $TINY == 1 ]]; then
    TINYDATA="$WORK/shapes"
    "$PYTHON" -c "import sys; from cvkit.datasets import shapes
c = ['circle', 'square', 'triangle']
shapes(40, classes=c, size=32, seed=0, dest=sys.argv[1] + '/train'); shapes(10, classes=c, size=32, seed=1, dest=sys.argv[1] + '/test')" "$TINYDATA" 2>&1 | tee -a "$LOG" \
        || say "warning: could not write the synthetic shapes; the steps that need them will fail"
    GPU_CHECKS_ARGS=(--deterministic --epochs 2 --size 16 --lr-steps 20 --n-predict 10 --min-accuracy 0.5)
    NONDET_ARGS=(--checks train resume --epochs 2 --size 16 --min-accuracy 0.5)
    OVERHEAD_ARGS=(--data digits --bs 64 --repeats 1)
    SPEEDRUN_ARGS=(--data "$TINYDATA" --budget 3 --bs 32 --widths 8 16 16)
    THROUGHPUT_ARGS=(--data "$TINYDATA" --arch resnet18 --size 32 --bs 8 --batches 2 --warmup 1 --workers 2)
    COMPILE_ARGS=("${THROUGHPUT_ARGS[@]}" --modes fp32+cl+compile --skip-fastai)
else
    HYM="$DATA/hymenoptera.tar"; [[ -e $HYM ]] || HYM="$DATA/hymenoptera-train.tar"
    GPU_CHECKS_ARGS=(--deterministic --epochs 5 --size 32)
    NONDET_ARGS=(--checks train resume --epochs 3 --size 32 --min-accuracy 0.8)
    OVERHEAD_ARGS=(--data cifar10 --n 10000 --bs 256 --repeats 3)
    SPEEDRUN_ARGS=(--data "$DATA/cifar10-jpg.tar.gz" --runs 3 --epochs 10)
    THROUGHPUT_ARGS=(--data "$HYM" --arch resnet50 --size 224 --bs 128 --batches 30 --warmup 5)
    [[ $TAG == cuda ]] && THROUGHPUT_ARGS+=(--modes fp32 bf16 bf16+cl)
    COMPILE_ARGS=(--data "$HYM" --arch resnet50 --size 224 --bs 128 --batches 30 --warmup 5 --modes bf16+cl+compile --skip-fastai)
fi
AIRBENCH_NOTE=""
if ! "$PYTHON" -c "import airbench" >/dev/null 2>&1; then
    SPEEDRUN_ARGS+=(--no-airbench)
    AIRBENCH_NOTE="airbench is not installed: cvkit's part only, with --no-airbench; compared with airbench94's published time"
fi

# ---------------------------------------------------------------- the steps
THROUGHPUT_OK=0
for step in $ALL_STEPS; do
    wants "$step" || continue
    case $step in
    gpu_checks) run_step gpu_checks 150 "$OUT/gpu_checks-$TAG.json" "" \
                    "$PYTHON" benchmarks/gpu_checks.py --device "$DEVICE" "${GPU_CHECKS_ARGS[@]}" ;;
    gpu_checks_nondeterministic)
                run_step gpu_checks_nondeterministic 90 "$OUT/gpu_checks_nondeterministic-$TAG.json" "" \
                    "$PYTHON" benchmarks/gpu_checks.py --device "$DEVICE" "${NONDET_ARGS[@]}" ;;
    cuda_notebooks)
        if [[ $TAG != cuda ]]; then
            record cuda_notebooks skipped 0 0 "the #| cuda notebook cells need CUDA; on $TAG they are not run"
            continue
        fi
        cap=${SUITE_TIMEOUT_cuda_notebooks:-150}
        left=$(( BUDGET - (SECONDS - START) - RESERVE )); (( left < cap )) && cap=$left
        run_step cuda_notebooks 150 "$OUT/cuda_notebooks-$TAG.json" "" \
            "$PYTHON" benchmarks/cuda_notebooks.py --flag cuda --workers 2 --timeout $(( cap > 20 ? cap - 10 : 10 )) ;;
    overhead)   run_step overhead 90 "$OUT/overhead-$TAG.json" "" \
                    "$PYTHON" -c "$OVERHEAD_PY" "$DATA" --device "$DEVICE" "${OVERHEAD_ARGS[@]}" ;;
    speedrun)   run_step speedrun 120 "$OUT/speedrun-$TAG.json" "$AIRBENCH_NOTE" \
                    "$PYTHON" benchmarks/speedrun.py --device "$DEVICE" "${SPEEDRUN_ARGS[@]}" ;;
    throughput) run_step throughput 90 "$OUT/throughput-$TAG.json" "" \
                    "$PYTHON" benchmarks/throughput.py --device "$DEVICE" "${THROUGHPUT_ARGS[@]}"
                [[ $STEP_STATUS == ok ]] && THROUGHPUT_OK=1 ;;
    throughput_compile)
        if [[ $TAG != cuda ]]; then
            record throughput_compile skipped 0 0 "torch.compile is measured on CUDA only (on $TAG inductor's C++ compile alone takes minutes)"
            continue
        fi
        run_step throughput_compile 600 "$WORK/compile-final.json" "" \
            "$PYTHON" benchmarks/throughput.py --device "$DEVICE" "${COMPILE_ARGS[@]}"
        if [[ $STEP_STATUS == ok ]]; then
            if [[ $THROUGHPUT_OK == 1 ]]; then
                "$PYTHON" - "$OUT/throughput-$TAG.json" "$WORK/compile-final.json" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
main_p, comp_p = sys.argv[1:3]
m, c = json.load(open(main_p)), json.load(open(comp_p))
m["modes"].update(c["modes"])
m["compile_step"] = {"args": c["args"], "suite": c.get("suite"),
                     "note": "these modes ran in a separate process under their own timeout and were merged here"}
if "fastai" in m:
    best = max(m["modes"], key=lambda k: m["modes"][k]["cvkit"]["images_per_second"])
    m["cvkit_best_over_fastai"] = {"mode": best, "ratio": m["modes"][best]["cvkit"]["images_per_second"]/m["fastai"]["images_per_second"]}
json.dump(m, open(main_p, "w"), indent=2, default=str); open(main_p, "a").write("\n")
print(f"merged {', '.join(c['modes'])} into {main_p}")
EOF
            else
                mv -f "$WORK/compile-final.json" "$OUT/throughput-$TAG.json"
                say "throughput's other modes did not complete: $OUT/throughput-$TAG.json holds the compile mode alone"
            fi
        fi ;;
    esac
done

# ---------------------------------------------------------------- summary
TOTAL=$(( SECONDS - START ))
say ""; say "=== summary ($DEVICE, ${TOTAL}s of the ${BUDGET}s budget) ==="
FAILED=()
while IFS=$'\t' read -r name status secs limit note; do
    say "$(printf '%-19s %-10s %4ss / %4ss  %s' "$name" "$status" "$secs" "$limit" "$note")"
    [[ $status == ok || $status == skipped ]] || FAILED+=("$name")
done < "$WORK/steps.tsv"
"$PYTHON" - "$WORK/steps.tsv" "$OUT/suite-$TAG.json" "$DEVICE" "$TINY" "$BUDGET" "$TOTAL" <<'EOF' 2>&1 | tee -a "$LOG" || true
import datetime, json, sys
tsv, dest, device, tiny, budget, total = sys.argv[1:7]
steps = [dict(zip(("name", "status", "seconds", "timeout_s", "note"), l.rstrip("\n").split("\t"))) for l in open(tsv) if l.strip()]
for s in steps: s["seconds"], s["timeout_s"] = int(s["seconds"]), int(s["timeout_s"])
failed = [s["name"] for s in steps if s["status"] not in ("ok", "skipped")]
json.dump({"benchmark": "gpu_suite", "device": device, "tiny": tiny == "1", "date": datetime.date.today().isoformat(),
           "budget_seconds": int(budget), "seconds": int(total), "steps": steps, "failed": failed}, open(dest, "w"), indent=2)
open(dest, "a").write("\n")
print(f"wrote {dest}")
EOF
if (( ${#FAILED[@]} )); then say "FAILED: ${FAILED[*]}"; exit 1; fi
say "all steps ok"
