"""Every measured figure that README.md and nbs/index.ipynb quote, rendered from the results it comes from.

A figure in the text sits between two markers, `<!-- fig:NAME -->93.0 % ± 1.4 %<!-- /fig -->`, which do not show
when the Markdown is displayed. `FIGURES` says, for each NAME, which results file it comes from
(`benchmarks/results/*.json`, or the metadata of a bundled weights file) and how it is written. So a figure can
only change by measuring again:

    python tools/figures.py            # rewrite every marked figure from the results (`make figures`; `make bench` runs it)
    python tools/figures.py --check    # say which figures differ from their results, exit 1 if any do

`tests/test_figures.py` fails when a figure differs from its results, when a marker names no figure, and when a
measured-looking number (a percentage, seconds, a ratio, images/s, ...) stands in the text without a marker.
"""
from __future__ import annotations
import argparse, json, math, re, struct, sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cvkit.core import CvkitError

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO/"benchmarks"/"results"
WEIGHTS = REPO/"cvkit"/"weights"
DOCS = ("README.md", "nbs/index.ipynb")                   # the files whose figures are rendered
MARKER = re.compile(r"<!-- fig:([\w.-]+) -->(.*?)<!-- /fig -->", re.S)


class FigureError(CvkitError):
    "A marker names no known figure, or a results file lacks what a figure is rendered from."


@dataclass(frozen=True)
class Fig:
    source: str                                           # a file in benchmarks/results, or "weights:NAME"
    render: Callable[[dict], str]                         # the source's content -> the text in the document
    part: str|None = None                                 # the top-level key it needs (a script can write some parts only)


# ------------------------------------------------------------------ how figures are written

def pct(x:float, nd:int=1) -> str: return f"{100*x:.{nd}f} %"
def pm(mean:float, std:float) -> str: return f"{pct(mean)} ± {pct(std)}"
def points(x:float) -> str: return f"{x:+.1f} points"
def secs(x:float, nd:int=1) -> str: return f"{x:.{nd}f} s"
def ordinal(n:int) -> str: return ["first", "second", "third", "fourth", "fifth", "sixth"][n - 1] if 0 < n <= 6 else f"{n}th"
def words(n:int) -> str: return ["no", "one", "two", "three", "four", "five", "six", "seven", "eight"][n] if 0 <= n <= 8 else f"{n:,}"


def _final(run:dict) -> float: return run["epochs_log"][-1][1]


def _fastai_end(d:dict) -> str:
    f, t = d["fastai"], d["target"]
    if f["time_to_target_s"] is None: return f"ending at {pct(_final(f))}, short of {pct(t)}"
    return f"reaching {pct(t)} after {secs(f['time_to_target_s'])} and ending at {pct(_final(f))}"


def _swing(d:dict) -> str:
    "The largest distance of a single turn from its set-up's median, over all set-ups."
    return f"{max(abs(r/d['images_per_second'][k] - 1) for k, rs in d['runs'].items() for r in rs):.0%}".replace("%", " %")


def _setup(d:dict, key:str) -> dict: return d["setups"][d[key]] if key in d else d["setups"][key]


def _min_score(d:dict) -> str:
    "The lowest precision or recall over the planted checks, rounded down to a tenth (the claim 'at least ...')."
    c = d["planted"]["checks"]
    return f"{math.floor(10*min(min(v['precision'], v['recall']) for v in c.values()) + 1e-9)/10:.1f}"


def _label_issues(d:dict) -> dict:
    "The digits row of the label-issues benchmark with cleanlab's default filter ('both')."
    return next(r for r in d["labels"]["results"] if r["data"] == "digits" and r["filter_by"] == "both")


def _recall_words(r:dict) -> str: return "none" if r["hits"] == 0 else f"{r['recall']:.0%}".replace("%", " %")


def _resume(d:dict) -> str:
    r = d["resume"]
    weights = "bit-identical weights" if r["bit_identical"] else "weights that differ from the uninterrupted run's"
    acc = "the same accuracy" if r["same_accuracy"] else "a different accuracy"
    return f"{weights} and {acc}"


def _ckpt_cost(d:dict) -> str:
    o = d["checkpoints"]["overhead"]
    return "under 1 %" if o < 0.01 else f"{o:.0%}".replace("%", " %")


def _bias_lr(d:dict) -> str:
    "How many times faster the batch norms' shifts learn (`SpeedRecipe.bias_lr_mult`; results written before it was renamed say `bias_lr`)."
    r = d["recipe"]
    return f"{r['bias_lr_mult'] if 'bias_lr_mult' in r else r['bias_lr']:.0f}×"


def _params(d:dict) -> str: return f"{d['parameters']/1e6:.1f} M"


def _blur_rows(d:dict) -> list[dict]: return [r for sizes in d["blur"]["sets"].values() for r in sizes.values()]
def _blur_range(d:dict, when:str, key:str) -> str:
    "The range over the photo sets and sizes of a blur-benchmark figure, as percentages."
    v = [r[when][key] for r in _blur_rows(d)]
    lo, hi = round(100*min(v)), round(100*max(v))
    return f"{lo} %" if lo == hi else f"{lo}–{hi} %"


FIGURES: dict[str, Fig] = {
    # benchmarks/quickstart.py: time to the target accuracy on the digits, cvkit beside plain fastai
    "quickstart.target": Fig("quickstart-cpu.json", lambda d: pct(d["target"])),
    "quickstart.cvkit_time_to_target": Fig("quickstart-cpu.json", lambda d: secs(d["cvkit"]["time_to_target_s"])),
    "quickstart.cvkit_epochs": Fig("quickstart-cpu.json", lambda d: str(d["cvkit"]["epochs"])),
    "quickstart.cvkit_final_accuracy": Fig("quickstart-cpu.json", lambda d: pct(_final(d["cvkit"]))),
    "quickstart.cvkit_final_accuracy_rounded": Fig("quickstart-cpu.json", lambda d: pct(_final(d["cvkit"]), 0)),
    "quickstart.cvkit_total": Fig("quickstart-cpu.json", lambda d: secs(d["cvkit"]["total_s"])),
    "quickstart.fastai_epochs": Fig("quickstart-cpu.json", lambda d: str(d["fastai"]["epochs"])),
    "quickstart.fastai_total": Fig("quickstart-cpu.json", lambda d: secs(d["fastai"]["total_s"])),
    "quickstart.fastai_end": Fig("quickstart-cpu.json", _fastai_end),
    "quickstart.ratio": Fig("quickstart-cpu.json", lambda d: f"{d['ratio_time_to_target_vs_fastai_total']:.2f}"),
    # benchmarks/overhead.py: images/s of the training loop, bare PyTorch / cvkit / plain fastai, in turns
    "overhead.train_images": Fig("overhead-cpu.json", lambda d: f"{int(d['args']['n']*0.8):,}"),
    "overhead.bs": Fig("overhead-cpu.json", lambda d: str(d["args"]["bs"])),
    "overhead.repeats": Fig("overhead-cpu.json", lambda d: str(len(d["runs"]["bare"]))),
    "overhead.bare": Fig("overhead-cpu.json", lambda d: f"{d['images_per_second']['bare']:.0f}"),
    "overhead.cvkit": Fig("overhead-cpu.json", lambda d: f"{d['images_per_second']['cvkit']:.0f}"),
    "overhead.fastai": Fig("overhead-cpu.json", lambda d: f"{d['images_per_second']['fastai']:.0f}"),
    "overhead.cvkit_over_bare": Fig("overhead-cpu.json", lambda d: f"{d['ratios']['cvkit_over_bare']:.2f}"),
    "overhead.cvkit_over_fastai": Fig("overhead-cpu.json", lambda d: f"{d['ratios']['cvkit_over_fastai']:.2f}"),
    "overhead.swing": Fig("overhead-cpu.json", _swing),
    # benchmarks/speedrun.py on a CPU: accuracy within a training-time budget
    "speedrun.bias_lr": Fig("speedrun-cpu.json", _bias_lr),
    "speedrun.tta_accuracy": Fig("speedrun-cpu.json", lambda d: pct(d["cvkit"]["tta_accuracy"][0])),
    "speedrun.accuracy": Fig("speedrun-cpu.json", lambda d: pct(d["cvkit"]["accuracy"][0])),
    "speedrun.budget": Fig("speedrun-cpu.json", lambda d: secs(d["budget_seconds"], 0)),
    "speedrun.epochs": Fig("speedrun-cpu.json", lambda d: f"{d['cvkit']['epochs'][0]:.1f}"),
    # benchmarks/transfer.py: ants vs bees, means ± standard deviations over seeds
    "transfer.epochs": Fig("transfer-cpu.json", lambda d: str(d["total_epochs"])),
    "transfer.seeds": Fig("transfer-cpu.json", lambda d: str(len(d["args"]["seeds"]))),
    "transfer.fine_tuned": Fig("transfer-cpu.json", lambda d: pm(_setup(d, "fine_tuned")["mean"], _setup(d, "fine_tuned")["std"])),
    "transfer.fine_tuned_seconds": Fig("transfer-cpu.json", lambda d: secs(_setup(d, "fine_tuned")["seconds_per_run"], 0)),
    "transfer.scratch": Fig("transfer-cpu.json", lambda d: pm(_setup(d, "scratch")["mean"], _setup(d, "scratch")["std"])),
    "transfer.imagenet_gain": Fig("transfer-cpu.json", lambda d: points(d["gaps"]["fine_tuned_minus_scratch_points"])),
    "transfer.cifar_resnet": Fig("transfer-cpu.json", lambda d: pct(_setup(d, "cvkit fine-tuned cifar_resnet (32 px)")["mean"])),
    "transfer.cifar_speednet": Fig("transfer-cpu.json", lambda d: pct(_setup(d, "cvkit fine-tuned cifar_speednet (32 px)")["mean"])),
    "transfer.fastai": Fig("transfer-cpu.json", lambda d: pm(_setup(d, "fastai")["mean"], _setup(d, "fastai")["std"])),
    "transfer.fastai_seconds": Fig("transfer-cpu.json", lambda d: secs(_setup(d, "fastai")["seconds_per_run"], 0)),
    "transfer.cvkit_minus_fastai": Fig("transfer-cpu.json", lambda d: points(d["gaps"]["cvkit_minus_fastai_points"])),
    "transfer.time_ratio": Fig("transfer-cpu.json", lambda d: f"{d['gaps']['cvkit_over_fastai_time']:.2f}×"),
    # the bundled backbones: their model cards' test accuracies (metadata of the weights files)
    "weights.cifar_resnet.parameters": Fig("weights:cifar_resnet", _params),
    "weights.cifar_resnet.accuracy": Fig("weights:cifar_resnet", lambda d: pct(float(d["test_accuracy"]))),
    "weights.cifar_speednet.parameters": Fig("weights:cifar_speednet", _params),
    "weights.cifar_speednet.accuracy": Fig("weights:cifar_speednet", lambda d: pct(float(d["test_accuracy"]))),
    "weights.cifar_speednet.tta_accuracy": Fig("weights:cifar_speednet", lambda d: pct(float(d["tta_accuracy"]))),
    # benchmarks/audit.py: planted problems in CIFAR-10, other libraries on the same set, label issues
    "audit.images": Fig("audit-cpu.json", lambda d: f"{d['planted']['n_images']:,}", "planted"),
    "audit.min_score": Fig("audit-cpu.json", _min_score, "planted"),
    "audit.near_duplicate": Fig("audit-cpu.json", lambda d: "{:.1f} / {:.1f}".format(
        d["planted"]["checks"]["near_duplicate"]["precision_new"], d["planted"]["checks"]["near_duplicate"]["recall"]), "planted"),
    "audit.seconds_per_1000": Fig("audit-cpu.json", lambda d: secs(d["planted"]["seconds_per_1000"], 0), "planted"),
    "audit.cleanvision_blurry_recall": Fig("audit-libraries-cpu.json",
        lambda d: _recall_words(d["libraries"]["cleanvision 0.3 (defaults)"]["blurry"]), "libraries"),
    "audit.cleanvision_blurry_precision": Fig("audit-libraries-cpu.json",
        lambda d: f"{d['libraries']['cleanvision 0.3 (defaults)']['blurry']['precision']:.2f}", "libraries"),
    "audit.cleanvision_low_information_recall": Fig("audit-libraries-cpu.json",
        lambda d: _recall_words(d["libraries"]["cleanvision 0.3 (defaults)"]["low_information"]), "libraries"),
    "audit.imagededup_recall": Fig("audit-libraries-cpu.json",
        lambda d: _recall_words(d["libraries"]["imagededup PHash (distance 10)"]["near_duplicate"]), "libraries"),
    "audit.imagededup_precision": Fig("audit-libraries-cpu.json",
        lambda d: f"{d['libraries']['imagededup PHash (distance 10)']['near_duplicate']['precision']:.2f}", "libraries"),
    "audit.label_flip": Fig("audit-cpu.json", lambda d: f"{float(d['args']['flip']):.0%}".replace("%", " %"), "labels"),
    "audit.label_issues_precision": Fig("audit-cpu.json", lambda d: f"{_label_issues(d)['precision']:.2f}", "labels"),
    "audit.label_issues_recall": Fig("audit-cpu.json", lambda d: f"{_label_issues(d)['recall']:.2f}", "labels"),
    # benchmarks/audit.py --parts blur: strongly blurred copies planted among real photos (ants/bees, cards)
    "audit.blur_sizes": Fig("audit-photos-cpu.json", lambda d: " to ".join(f"{s}" for s in (min(d["blur"]["sizes"]), max(d["blur"]["sizes"]))) + " px", "blur"),
    "audit.blur_recall_before": Fig("audit-photos-cpu.json", lambda d: _blur_range(d, "before", "recall_strong"), "blur"),
    "audit.blur_recall_now": Fig("audit-photos-cpu.json", lambda d: _blur_range(d, "now", "recall_strong"), "blur"),
    "audit.blur_precision_now": Fig("audit-photos-cpu.json", lambda d: f"{min(r['now']['precision'] for r in _blur_rows(d)):.2f}", "blur"),
    # tools/ci_timing.py: a fresh clone's `bash .ci/run` (make test) on this machine, dependencies cached
    "make_test.minutes": Fig("make-test-cpu.json", lambda d: f"{round(d['total_seconds']/60)} minutes"),
    "make_test.pytest": Fig("make-test-cpu.json", lambda d: d["pytest_summary"]),
    # benchmarks/scaling.py: resume after SIGKILL, checkpoint cost, two processes against one
    "scaling.epochs": Fig("scaling-cpu.json", lambda d: str(d["args"]["epochs"])),
    "scaling.cores": Fig("scaling-cpu.json", lambda d: str(d["cpu_count"])),
    "scaling.repeats": Fig("scaling-cpu.json", lambda d: str(len(d["data_parallel"]["all_seconds"]["one"]))),
    "scaling.killed_epoch": Fig("scaling-cpu.json", lambda d: ordinal(d["resume"]["resumed_from"]["epoch"] + 1)),
    "scaling.resume_result": Fig("scaling-cpu.json", _resume),
    "scaling.checkpoint_size": Fig("scaling-cpu.json", lambda d: f"{d['checkpoints']['checkpoint_bytes']/1e6:.1f} MB"),
    "scaling.checkpoint_cost": Fig("scaling-cpu.json", _ckpt_cost),
    "scaling.processes": Fig("scaling-cpu.json", lambda d: words(d["data_parallel"]["processes"])),
    "scaling.accuracy_n": Fig("scaling-cpu.json", lambda d: pct(d["data_parallel"]["accuracy_n"])),
    "scaling.accuracy_1": Fig("scaling-cpu.json", lambda d: pct(d["data_parallel"]["accuracy_1"])),
    "scaling.faster": Fig("scaling-cpu.json", lambda d: "are faster" if d["data_parallel"]["speedup"] > 1.05 else "are not faster"),
    "scaling.speedup": Fig("scaling-cpu.json", lambda d: f"{d['data_parallel']['speedup']:.1f}×"),
}


# ------------------------------------------------------------------ reading results

def weights_metadata(name:str) -> dict:
    "The metadata of a bundled weights file, with its parameter count (running statistics of batch norms not counted)."
    path = WEIGHTS/f"{name}.safetensors"
    with open(path, "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    meta = dict(header.pop("__metadata__", {}))
    meta["parameters"] = sum(math.prod(t["shape"]) for k, t in header.items()
                             if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    return meta


def load_source(source:str, results:Path=RESULTS) -> dict:
    if source.startswith("weights:"): return weights_metadata(source.split(":", 1)[1])
    path = Path(results)/source
    if not path.is_file(): raise FigureError(f"{path} not found: run the benchmark that writes it (see `make bench`)")
    return json.loads(path.read_text())


def render_figure(name:str, data:dict, where:str="") -> str:
    "The text of figure `name` from its source's content `data`."
    if name not in FIGURES: raise FigureError(f"{where}unknown figure {name!r}: add it to FIGURES in tools/figures.py")
    fig = FIGURES[name]
    try: return fig.render(data)
    except (KeyError, IndexError, TypeError, StopIteration) as e:
        raise FigureError(f"{where}figure {name!r}: {fig.source} lacks what it is rendered from ({type(e).__name__}: {e}); "
                          "rerun the benchmark, or update FIGURES in tools/figures.py") from e


def check_source(source:str, data:dict, parts:set[str]|None=None) -> dict[str, str]:
    "Render every figure that comes from `source` (only those of `parts`, when given) from `data`: what a smoke test checks."
    return {name: render_figure(name, data) for name, f in FIGURES.items()
            if f.source == source and (parts is None or f.part is None or f.part in parts)}


class Results:
    "The results files, each read once."
    def __init__(self, folder:Path=RESULTS): self.folder, self.cache = Path(folder), {}
    def __getitem__(self, source:str) -> dict:
        if source not in self.cache: self.cache[source] = load_source(source, self.folder)
        return self.cache[source]


# ------------------------------------------------------------------ rendering documents

def render_text(text:str, results:Results, where:str="") -> str:
    "`text` with every marked figure rewritten from `results`."
    def sub(m):
        name = m[1]
        if name not in FIGURES: raise FigureError(f"{where}unknown figure {name!r}: add it to FIGURES in tools/figures.py")
        return f"<!-- fig:{name} -->{render_figure(name, results[FIGURES[name].source], where)}<!-- /fig -->"
    return MARKER.sub(sub, text)


def markdown_parts(path:Path) -> list[str]:
    "The Markdown of a document: the whole file, or each Markdown cell of a notebook."
    path = Path(path)
    if path.suffix != ".ipynb": return [path.read_text()]
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown"]


def render_document(path:Path, results:Results) -> str:
    "The new content of the file at `path`, every marked figure rendered (a notebook changes in its Markdown cells only)."
    path = Path(path)
    text = path.read_text()
    if path.suffix != ".ipynb": return render_text(text, results, f"{path.name}: ")
    nb = json.loads(text)
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "markdown": continue
        src = "".join(c["source"])
        new = render_text(src, results, f"{path.name}, cell {i}: ")
        if new != src: c["source"] = new.splitlines(keepends=True)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def text_differences(text:str, results:Results) -> list[str]:
    "The marked figures of `text` whose text is not what their results say, as 'name: in the text, in the results'."
    out = []
    for m in MARKER.finditer(text):
        if m[1] not in FIGURES: out.append(f"{m[1]}: unknown figure (add it to FIGURES in tools/figures.py)"); continue
        want = render_figure(m[1], results[FIGURES[m[1]].source])
        if m[2] != want: out.append(f"{m[1]}: {m[2]!r} in the text, {want!r} from {FIGURES[m[1]].source}")
    return out


def differences(path:Path, results:Results) -> list[str]:
    "`text_differences` over a document (a notebook: its Markdown cells)."
    return [d for part in markdown_parts(path) for d in text_differences(part, results)]


def quoted(path:Path) -> set[str]:
    "The names of the figures a document quotes."
    return {m[1] for part in markdown_parts(path) for m in MARKER.finditer(part)}


# ------------------------------------------------------------------ hand-typed figures

# A number that reads as a measurement: a percentage, a time, a speed, a size, a ratio, points of accuracy.
UNIT_FIGURE = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?\s?(?:%|s\b|ms\b|×(?!\d)|x\b|MB\b|GB\b|points?\b|images/s\b)")
# ... and in the sections that report measurements, any decimal number (a precision, a ratio).
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?!\w|\.\d)")
# The sections (Markdown headings) whose prose reports measurements.
MEASURED_SECTIONS = ("How fast", "Transfer learning, offline", "Data quality: what makes a dataset lie",
                     "Reliability and scale: resume, several processes, odd input")
# Numbers that look like figures but are not measurements (settings, definitions), each with the words around it.
NOT_MEASURED = ("(mean = std = 0.5)",)


def _strip(text:str) -> str:
    "Text without marked figures, inline code and allowed phrases: what is left must hold no measured figure."
    text = MARKER.sub(" ", text)
    for phrase in NOT_MEASURED: text = text.replace(phrase, " ")
    return re.sub(r"`[^`\n]*`", " ", text)


def _sections(text:str) -> list[tuple[str, str]]:
    "(heading, body) for each `## ` section of Markdown (the text before the first heading has heading '')."
    out, head, body = [], "", []
    fence = False
    for line in text.splitlines():
        if line.startswith("```"): fence = not fence
        if not fence and re.match(r"#{1,3} ", line):
            out.append((head, "\n".join(body))); head, body = line.lstrip("#").strip(), []
        else: body.append(line)
    out.append((head, "\n".join(body)))
    return out


def unmarked_figures(text:str) -> list[str]:
    "Measured-looking numbers in `text` that are not marked figures: every unit figure, and decimals in measured sections."
    found = []
    for head, body in _sections(text):
        body = _strip(body)
        found += [f"{head or 'top'}: {m[0]!r} in {body[max(0, m.start()-40):m.end()+20]!r}" for m in UNIT_FIGURE.finditer(body)]
        if head in MEASURED_SECTIONS:
            prose = re.sub(r"```.*?```", " ", body, flags=re.S)
            found += [f"{head}: {m[0]!r} in {prose[max(0, m.start()-40):m.end()+20]!r}" for m in DECIMAL.finditer(prose)]
    return found


def unmarked_in(path:Path) -> list[str]:
    "`unmarked_figures` over a document (a notebook: its Markdown cells, each under the last heading before it)."
    return unmarked_figures("\n\n".join(markdown_parts(path)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only report figures that differ from their results (exit 1)")
    a = ap.parse_args(argv)
    results, bad = Results(), []
    for doc in DOCS:
        path = REPO/doc
        if a.check:
            bad += [f"{doc}: {d}" for d in differences(path, results)]
            bad += [f"{doc}: a figure without a marker, {u}" for u in unmarked_in(path)]
            continue
        new = render_document(path, results)
        if new != path.read_text():
            path.write_text(new); print(f"updated the figures of {doc}")
        else: print(f"{doc}: every figure matches its results")
        bad += [f"{doc}: a figure without a marker, {u}" for u in unmarked_in(path)]
    for b in bad: print(b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__": sys.exit(main())
