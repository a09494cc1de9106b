"""Bad input: broken image files are reported and skipped; unusable data stops with a one-line error (exit 1)."""
from __future__ import annotations
import csv, os, re, shutil, subprocess, sys, tarfile, zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import (CVKIT, FAST, SHAPE_CLASSES, check_metrics_consistent, check_one_line_error, check_outputs,
                      cli_env, copy_classes, error_lines, image_files, jpeg_bytes, read_metrics, run_cli)


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


def case_empty_folder(root, shapes_dir):
    (root/"data").mkdir()
    return [root/"data"], ["has no class sub-folders"]


def case_csv_file_with_two_labels(root, shapes_dir):
    data = root/"csv"; data.mkdir()
    files = _good_pngs(shapes_dir)
    for f in files: shutil.copy2(f, data/f.name)
    rows = [(f.name, "a" if i % 2 else "b") for i, f in enumerate(files)] + [(files[0].name, "a")]
    _write_csv(data/"labels.csv", rows)
    return [data/"labels.csv"], [files[0].name, "listed twice with different labels", "'b' (line 2)", "'a' (line 6)"]


ERROR_CASES = {f.__name__[5:]: f for f in (case_missing_path, case_empty_class_folder, case_single_class,
                                            case_csv_missing_file, case_csv_empty_label, case_empty_folder,
                                            case_csv_file_with_two_labels)}
# absolute paths, hard links, device files and member limits are tested on `extract_archive` (nbs/02_datasets.ipynb)
ARCHIVE_CASES = {f.__name__[5:]: f for f in (case_zip_traversal, case_tar_traversal, case_tar_symlink_out)}


def case_class_all_unreadable(root, shapes_dir):
    "Every image of one class is broken: training without that class would be a wrong classifier."
    data = copy_classes(shapes_dir, root/"data", classes=["circle", "square"], limit=5)
    (data/"triangle").mkdir()
    for i in range(2): (data/"triangle"/f"{i}.png").write_text("not a picture\n")
    return [data], ["['triangle']", "lost all their images"]

LOUD_CASES = {"class_all_unreadable": case_class_all_unreadable}   # the error comes after the list of skipped files


@pytest.fixture(scope="module")
def error_runs(shapes_dir, tmp_path_factory):
    """Run every error case (and one with --debug) concurrently: each is mostly interpreter start-up.
    Archive cases get their own $CVKIT_CACHE inside their folder, so anything they wrongly write is seen."""
    jobs = {}
    for name, make in {**ERROR_CASES, **ARCHIVE_CASES, **LOUD_CASES}.items():
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


def test_class_losing_every_image_is_an_error(error_runs):
    "The skipped files are listed, then a one-line error names the class; no model is written."
    job = error_runs["class_all_unreadable"]
    rc, stdout, stderr = job["result"]
    assert rc == 1, stderr
    assert "Traceback" not in stderr
    n, total, entries = _parse_skipped(stderr)
    assert n == 2 and all("not an image" in why for why in entries.values())
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("cvkit: error: ") and all(needle in last for needle in job["needles"]), last
    assert len(error_lines(stderr)) == 1
    assert not (job["root"]/"work"/"out"/"model.safetensors").exists()


def test_debug_shows_traceback(error_runs):
    rc, stdout, stderr = error_runs["single_class_debug"]["result"]
    assert rc == 1, stderr
    assert "Traceback (most recent call last)" in stderr
    assert "DataError" in stderr
    assert stderr.strip().splitlines()[-1].startswith("cvkit: error:"), "the one-line error should still come last"
    assert "only one class" in stderr.strip().splitlines()[-1]




# ---------------------------------------------------------------- hostile and odd input data

def _png_header(path:Path, width:int, height:int):
    "A PNG that only declares its size (an RGB header for width x height, no pixels): a decompression bomb's first bytes."
    import struct, zlib
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b""))


def _odd_images(src:Path, cls:Path) -> dict[str, Path]:
    "Good images in every mode and shape Pillow reads, written into class folder `cls` from the RGB picture `src`."
    import numpy as np
    from PIL import Image
    rgb = Image.open(src).convert("RGB")
    grey = np.asarray(rgb.convert("L"))
    made = {}
    def save(name, im, **kw): im.save(cls/name, **kw); made[name] = cls/name
    a = np.array(rgb.convert("RGBA")); a[:4, :4, 3] = 0; save("rgba.png", Image.fromarray(a))
    pal = rgb.quantize(16); pal.info["transparency"] = 0; save("palette-transparent.png", pal)
    save("palette.gif", rgb.quantize(16)); save("grey-alpha.png", rgb.convert("LA")); save("one-bit.png", rgb.convert("1"))
    save("cmyk.jpg", rgb.convert("CMYK")); save("deep16.png", Image.fromarray(grey.astype(np.uint16)*200))
    save("float.tif", Image.fromarray(grey.astype(np.float32)/1000))
    exif = Image.Exif(); exif[0x0112] = 6; save("sideways.jpg", rgb, exif=exif.tobytes())
    save("png-named.jpg", rgb, format="PNG")                       # the extension lies; the content is a good PNG
    save("dot.png", rgb.resize((1, 1))); save("thread.png", rgb.resize((1, 5000)))
    save("été 🐱 with space.png", rgb); save("new\nline.png", rgb)
    frames = dict(save_all=True, append_images=[rgb.transpose(Image.Transpose.ROTATE_90)], duration=100)
    save("animated.gif", rgb, **frames); save("animated.png", rgb, **frames); save("animated.webp", rgb, lossless=True, **frames)
    return made


@pytest.fixture(scope="module")
def hostile_data(shapes_dir, tmp_path_factory):
    "A folder-per-class dataset with odd but good images, and hostile files that must be skipped and named."
    import os
    root = tmp_path_factory.mktemp("hostile")
    data = copy_classes(shapes_dir, root/"data", limit=10)
    good = image_files(data)
    src = image_files(shapes_dir/"circle")[-1]
    good += list(_odd_images(src, data/"circle").values())
    (root/"elsewhere").mkdir(); shutil.copy2(src, root/"elsewhere"/"shared.png")
    os.symlink(root/"elsewhere"/"shared.png", data/"triangle"/"linked-from-outside.png"); good.append(data/"triangle"/"linked-from-outside.png")
    bad = {}
    _png_header(data/"triangle"/"bomb.png", 100_000, 100_000); bad["bomb"] = data/"triangle"/"bomb.png"
    (data/"square"/"text.jpg").write_text("a text file, not a picture\n"); bad["text"] = data/"square"/"text.jpg"
    (data/"square"/"bad\nname.jpg").write_text("not a picture either\n"); bad["newline"] = data/"square"/"bad\nname.jpg"
    os.symlink("loop-b.png", data/"circle"/"loop-a.png"); os.symlink("loop-a.png", data/"circle"/"loop-b.png")
    bad["loop-a"], bad["loop-b"] = data/"circle"/"loop-a.png", data/"circle"/"loop-b.png"
    os.symlink("gone.png", data/"triangle"/"dangling.png"); bad["dangling"] = data/"triangle"/"dangling.png"
    os.symlink("..", data/"square"/"up"); bad["up"] = data/"square"/"up"
    os.mkfifo(data/"circle"/"pipe.jpg"); bad["pipe"] = data/"circle"/"pipe.jpg"
    return dict(root=root, data=data, good=good, bad=bad)


def _csv_data(shapes_dir:Path, root:Path) -> Path:
    "A CSV as a spreadsheet writes it: a byte-order mark, blank lines, classes named NA and None, a row repeated."
    data = root/"csvdata"; (data/"images").mkdir(parents=True)
    rows = []
    for label, cls in (("NA", "circle"), ("None", "square")):
        for i, f in enumerate(image_files(shapes_dir/cls)[:8]):
            shutil.copy2(f, data/"images"/f"{cls}{i}.png"); rows.append(f"images/{cls}{i}.png,{label}")
    rows.insert(3, ""); rows.insert(4, ""); rows.append(rows[0])
    (data/"labels.csv").write_bytes(("\ufefffile,label\n" + "\n".join(rows) + "\n").encode())
    return data


@pytest.fixture(scope="module")
def hostile_runs(hostile_data, shapes_dir, tmp_path_factory):
    "Train and audit on the hostile folder, and train on the odd CSV, at once."
    root = hostile_data["root"]
    csv_root = tmp_path_factory.mktemp("oddcsv")
    jobs = {"train": ("train", hostile_data["data"], *FAST, "--out", root/"out"),
            "audit": ("audit", hostile_data["data"], "--json", root/"audit.json", "--html", root/"audit.html"),
            "csv": ("train", _csv_data(shapes_dir, csv_root), *FAST, "--out", csv_root/"out")}
    with ThreadPoolExecutor(3) as ex:
        futures = {k: ex.submit(run_cli, *args, cwd=root, timeout=300) for k, args in jobs.items()}
        return {k: f.result() for k, f in futures.items()} | {"csv_out": csv_root/"out"}


def _printed(p:Path) -> str:
    "How cvkit prints a file name: control characters escaped (see `printable_path`)."
    from cvkit.data.items import printable_path
    return printable_path(p)


def test_hostile_files_skipped_and_named(hostile_data, hostile_runs):
    "Odd modes, sizes, names, animations and links train; bombs, lies, loops, pipes are skipped with a reason; no hang."
    rc, stdout, stderr = hostile_runs["train"]
    assert rc == 0, stderr
    assert "Traceback" not in stderr and "DecompressionBomb" not in stderr, stderr
    n, total, entries = _parse_skipped(stderr)
    bad = hostile_data["bad"]
    assert set(entries) == {_printed(p) for p in bad.values()}, f"stderr names {sorted(entries)}"
    assert (n, total) == (len(bad), len(hostile_data["good"]) + len(bad))
    why = {k: entries[_printed(p)] for k, p in bad.items()}
    assert "too large" in why["bomb"] and "not an image" in why["text"] and "not an image" in why["newline"]
    assert "loop" in why["loop-a"] and "loop" in why["loop-b"] and "broken link" in why["dangling"]
    assert "not followed" in why["up"] and "not a regular file" in why["pipe"]
    assert "bad\\nname.jpg" in stderr, "a newline in a file name must be printed escaped, on one line"
    frames = [l for l in stderr.splitlines() if "several frames" in l]
    assert len(frames) == 1 and frames[0].startswith("cvkit: 3 of "), stderr
    m = check_outputs(hostile_data["root"]/"out")
    check_metrics_consistent(m)
    assert m["n_train"] + m["n_valid"] == len(hostile_data["good"]), "every good image (odd modes, names, links) is used"
    assert m["classes"] == sorted(SHAPE_CLASSES)


def test_audit_survives_hostile_files(hostile_data, hostile_runs):
    import json
    rc, stdout, stderr = hostile_runs["audit"]
    assert rc == 0, stderr
    assert "Traceback" not in stderr, stderr
    report = json.loads((hostile_data["root"]/"audit.json").read_text())
    text = json.dumps(report)
    for k in ("bomb", "text"): assert hostile_data["bad"][k].name in text, f"the audit does not name {k}"
    assert (hostile_data["root"]/"audit.html").stat().st_size > 0


def test_csv_as_spreadsheets_write_it(hostile_runs):
    "BOM, blank lines, classes named NA and None, a repeated row: trains on 16 images, says what it noticed."
    rc, stdout, stderr = hostile_runs["csv"]
    assert rc == 0, stderr
    assert "Traceback" not in stderr
    assert "can mean a missing value" in stderr and "repeat a file with the same label" in stderr, stderr
    m = check_outputs(hostile_runs["csv_out"])
    assert m["classes"] == ["NA", "None"], "NA and None must stay the class names"
    assert m["n_train"] + m["n_valid"] == 16, "the repeated row is used once"


CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24    # <linux/capability.h>, <linux/prctl.h>


def _without_root_file_access():
    """In the child, before it runs the command: drop the two capabilities that let root read and list anything from
    the bounding set, so the command runs as root still but file permissions bind it as they bind any user."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0): raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _run_as_user(*args, cwd:Path) -> tuple[int, str, str]:
    "`run_cli`, with file permissions applied to it even when the tests run as root."
    p = subprocess.run([str(CVKIT), *map(str, args)], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=600,
                       stdin=subprocess.DEVNULL, preexec_fn=_without_root_file_access if os.geteuid() == 0 else None)
    return p.returncode, p.stdout, p.stderr


def test_unreadable_file_and_folder(shapes_dir, tmp_path):
    "A file that cannot be read is skipped and named with the reason; a class folder that cannot be listed is an error."
    data = copy_classes(shapes_dir, tmp_path/"data", limit=6)
    locked = image_files(data/"circle")[0]; locked.chmod(0)
    probe = f"open({str(locked)!r}, 'rb')"
    try: r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            preexec_fn=_without_root_file_access if os.geteuid() == 0 else None)
    except subprocess.SubprocessError as e: pytest.skip(f"running as root, and root's file access cannot be limited here: {e}")
    assert "PermissionError" in r.stderr, f"a file with mode 000 could be read: the case below would test nothing\n{r.stderr}"
    try:
        rc, stdout, stderr = _run_as_user("train", data, *FAST, "--out", tmp_path/"out", cwd=tmp_path)
        assert rc == 0 and "Traceback" not in stderr, stderr
        n, total, entries = _parse_skipped(stderr)
        assert (n, total) == (1, 18) and set(entries) == {str(locked)}, stderr
        assert entries[str(locked)].startswith("cannot read the file (permission denied)"), entries
        assert read_metrics(tmp_path/"out")["n_train"] + read_metrics(tmp_path/"out")["n_valid"] == 17
        (data/"square").chmod(0)
        rc, stdout, stderr = _run_as_user("train", data, *FAST, "--out", tmp_path/"out2", cwd=tmp_path)
        check_one_line_error(rc, stdout, stderr, "square cannot be read (permission denied)")
    finally: (data/"square").chmod(0o755); locked.chmod(0o644)
