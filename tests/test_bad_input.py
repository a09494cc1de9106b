"""Bad input: broken image files are reported and skipped; unusable data stops with a one-line error (exit 1)."""
from __future__ import annotations
import csv, re, shutil, tarfile, zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import (FAST, SHAPE_CLASSES, check_metrics_consistent, check_one_line_error, check_outputs,
                      cli_env, copy_classes, image_files, jpeg_bytes, run_cli)


# ---------------------------------------------------------------- the acceptance case: broken files are skipped

def _parse_skipped(stderr:str) -> tuple[int, int, dict[str, str]]:
    "From cvkit's warning 'skipped N of M files:' and its indented lines, return (N, M, {file: reason})."
    lines = stderr.splitlines()
    heads = [i for i, l in enumerate(lines) if re.search(r"skipped \d+ of \d+ files:", l)]
    assert len(heads) == 1, f"expected one 'skipped N of M files:' warning on stderr, got:\n{stderr}"
    i = heads[0]
    n, total = map(int, re.search(r"skipped (\d+) of (\d+) files:", lines[i]).groups())
    entries = {}
    for l in lines[i + 1:]:
        if not l.startswith("  "): break
        f, _, why = l.strip().partition(": ")          # the reason may itself contain ": "
        entries[f] = why
    return n, total, entries


@pytest.fixture(scope="module")
def broken_files_run(shapes_dir, tmp_path_factory):
    "Good images plus a zero-byte .jpg, a text file named x.jpg and a truncated JPEG inside the class folders."
    root = tmp_path_factory.mktemp("broken")
    data = copy_classes(shapes_dir, root/"data", limit=20)
    good = image_files(data)
    empty = data/"circle"/"empty.jpg"; empty.write_bytes(b"")
    text = data/"square"/"x.jpg"; text.write_text("this is a text file, not a JPEG\n" * 10)
    full = jpeg_bytes(image_files(shapes_dir/"triangle")[-1])
    trunc = data/"triangle"/"cut.jpg"; trunc.write_bytes(full[:int(len(full)*0.6)])
    out = root/"out"
    rc, stdout, stderr = run_cli("train", data, *FAST, "--out", out, cwd=root)
    return dict(rc=rc, stdout=stdout, stderr=stderr, out=out, good=good,
                bad={"empty": empty, "text": text, "truncated": trunc})


def test_broken_files_are_skipped_and_named(broken_files_run):
    r = broken_files_run
    assert r["rc"] == 0, f"training with 3 broken files failed:\n{r['stderr']}"
    assert "Traceback" not in r["stderr"]
    n, total, entries = _parse_skipped(r["stderr"])
    assert n == 3 and len(entries) == 3, r["stderr"]
    assert total == len(r["good"]) + 3
    named = {Path(f).resolve() for f in entries}
    assert named == {p.resolve() for p in r["bad"].values()}, f"stderr names {sorted(entries)}"
    why = {Path(f).resolve(): reason for f, reason in entries.items()}
    assert re.search(r"empty|0 bytes", why[r["bad"]["empty"].resolve()])
    assert "not an image" in why[r["bad"]["text"].resolve()]
    assert "truncated" in why[r["bad"]["truncated"].resolve()]
    for g in r["good"]: assert g.name not in entries and str(g) not in r["stderr"]


def test_broken_files_in_metrics(broken_files_run):
    r = broken_files_run
    assert r["rc"] == 0, r["stderr"]
    m = check_outputs(r["out"])
    check_metrics_consistent(m)
    assert len(m["skipped"]) == 3
    assert {Path(s["file"]).resolve() for s in m["skipped"]} == {p.resolve() for p in r["bad"].values()}
    assert all(s["reason"] for s in m["skipped"])
    assert m["n_train"] + m["n_valid"] == len(r["good"]), "broken files must not be trained or evaluated on"
    assert m["classes"] == sorted(SHAPE_CLASSES)


# ---------------------------------------------------------------- data errors: exit 1, one line, no traceback

def _good_pngs(shapes_dir:Path, n:int=4) -> list[Path]:
    return image_files(shapes_dir/"circle")[:n]


def _write_csv(path:Path, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f); w.writerow(("file", "label")); w.writerows(rows)


def case_missing_path(root, shapes_dir):
    return [root/"no"/"such"/"folder"], ["does not exist"]


def case_empty_class_folder(root, shapes_dir):
    data = copy_classes(shapes_dir, root/"data", classes=["circle", "square"], limit=5)
    (data/"hexagon").mkdir()
    (data/"hexagon"/"README.txt").write_text("no images here\n")
    return [data], ["contains no image files", "hexagon"]


def case_single_class(root, shapes_dir):
    data = copy_classes(shapes_dir, root/"data", classes=["circle"], limit=6)
    return [data], ["only one class", "circle"]


def case_csv_missing_file(root, shapes_dir):
    data = root/"csv"; data.mkdir()
    files = _good_pngs(shapes_dir)
    for f in files: shutil.copy2(f, data/f.name)
    rows = [(f.name, "a" if i % 2 else "b") for i, f in enumerate(files)]
    rows.insert(1, ("ghost.png", "a"))                  # data row 2 = line 3 of the file (header is line 1)
    _write_csv(data/"labels.csv", rows)
    return [data/"labels.csv"], ["does not exist", "ghost.png", "line 3"]


def case_csv_empty_label(root, shapes_dir):
    data = root/"csv"; data.mkdir()
    files = _good_pngs(shapes_dir)
    for f in files: shutil.copy2(f, data/f.name)
    rows = [(f.name, "a" if i % 2 else "b") for i, f in enumerate(files)]
    rows[2] = (files[2].name, "")                       # data row 3 = line 4
    _write_csv(data/"labels.csv", rows)
    return [data/"labels.csv"], ["has no label", files[2].name, "line 4"]


# hostile archives: a member that climbs out of the extraction folder, a link that points out of it

def _archive_members(shapes_dir:Path):
    return [(f, f"data/{c}/{i}.png") for c in ("circle", "square") for i, f in enumerate(image_files(shapes_dir/c)[:4])]


def case_zip_traversal(root, shapes_dir):
    archive = root/"data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f, name in _archive_members(shapes_dir): z.write(f, name)
        z.writestr("../evil.png", image_files(shapes_dir/"circle")[0].read_bytes())
    return [archive], ["../evil.png"]


def case_tar_traversal(root, shapes_dir):
    archive = root/"data.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        for f, name in _archive_members(shapes_dir): t.add(f, name)
        t.add(image_files(shapes_dir/"circle")[0], "data/../../evil.png")
    return [archive], ["evil.png"]


def case_tar_symlink_out(root, shapes_dir):
    archive = root/"data.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        for f, name in _archive_members(shapes_dir): t.add(f, name)
        link = tarfile.TarInfo("data/circle/evil.png"); link.type = tarfile.SYMTYPE
        link.linkname = "../../../../../../etc/passwd"
        t.addfile(link)
    return [archive], ["data/circle/evil.png"]


ERROR_CASES = {f.__name__[5:]: f for f in (case_missing_path, case_empty_class_folder, case_single_class,
                                            case_csv_missing_file, case_csv_empty_label)}
ARCHIVE_CASES = {f.__name__[5:]: f for f in (case_zip_traversal, case_tar_traversal, case_tar_symlink_out)}


@pytest.fixture(scope="module")
def error_runs(shapes_dir, tmp_path_factory):
    """Run every error case (and one with --debug) concurrently: each is mostly interpreter start-up.
    Archive cases get their own $CVKIT_CACHE inside their folder, so anything they wrongly write is seen."""
    jobs = {}
    for name, make in {**ERROR_CASES, **ARCHIVE_CASES}.items():
        root = tmp_path_factory.mktemp(name)
        work = root/"work"; work.mkdir()
        args, needles = make(work, shapes_dir)
        before = {p for p in root.rglob("*")}
        env = cli_env(CVKIT_CACHE=root/"cache")
        jobs[name] = dict(root=root, args=["train", *args, *FAST, "--out", root/"work"/"out"], needles=needles,
                          env=env, before=before)
    single = jobs["single_class"]
    jobs["single_class_debug"] = {**single, "args": [*single["args"][:-2], "--out", single["root"]/"out-debug", "--debug"]}
    with ThreadPoolExecutor(3) as ex:
        futures = {name: ex.submit(run_cli, *j["args"], cwd=j["root"]/"work", env=j["env"]) for name, j in jobs.items()}
        for name, f in futures.items(): jobs[name]["result"] = f.result()
    return jobs


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_data_error_is_one_line(error_runs, case):
    job = error_runs[case]
    rc, stdout, stderr = job["result"]
    check_one_line_error(rc, stdout, stderr, *job["needles"])
    assert "--debug" not in stderr, "a CvkitError should not suggest --debug"
    assert not (job["root"]/"work"/"out"/"model.safetensors").exists(), "a failed run must not write a model"


@pytest.mark.parametrize("case", list(ARCHIVE_CASES))
def test_hostile_archive_is_refused(error_runs, case):
    "Exit 1 with a clear one-line reason; nothing written outside the extraction folder, nothing left behind."
    job = error_runs[case]
    rc, stdout, stderr = job["result"]
    msg = check_one_line_error(rc, stdout, stderr, *job["needles"], progress=("cvkit: extracting ",))
    assert re.search(r"refus|outside|unsafe", msg), f"the error does not say why: {msg}"
    root = job["root"]
    assert [p for p in root.rglob("evil.png")] == [], "the hostile member was written"
    new_files = [p for p in root.rglob("*") if p not in job["before"] and p.is_file()]
    assert new_files == [], f"files left behind after refusing the archive: {new_files}"


def test_debug_shows_traceback(error_runs):
    rc, stdout, stderr = error_runs["single_class_debug"]["result"]
    assert rc == 1, stderr
    assert "Traceback (most recent call last)" in stderr
    assert "DataError" in stderr
    assert stderr.strip().splitlines()[-1].startswith("cvkit: error:"), "the one-line error should still come last"
    assert "only one class" in stderr.strip().splitlines()[-1]


