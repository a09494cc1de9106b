"""The data-quality layer in numbers: each audit check's precision and recall on planted problems, its speed, what it
flags on untouched real photos, and how well `label_issues` finds flipped labels.

1. **Planted image problems**: a CIFAR-10 subset from `../shared/data` (`--n` training images, 32 px JPEGs) split
   80/20 into train/ and valid/, with planted:
   - exact duplicates (byte copies under new names), half of them into the other split;
   - near duplicates, a third each resized (saved at 24 or 48 px), re-encoded (JPEG quality 30-50) and slightly
     cropped (1-2 px off some sides, about 3-6 % of the side, saved back at 32 px), half into the other split;
   - dark images (brightness × 0.1-0.25), blurred images (Gaussian, sigma 1.2-2 px) and near-constant images
     (the image's mean colour plus noise of 2/255), each replacing its original file.
   For each check: precision (flagged items that were planted) and recall (planted items that were flagged);
   duplicates are counted as pairs (a copy and its source), leakage as the planted pairs across the split. Also:
   seconds per 1,000 images (all checks, decode included), and what the other checks flag on the same images.
2. **Other libraries** (only if installed; cvkit does not depend on them): the same kind of planted set through
   cleanvision's `Imagelab` with its default thresholds and imagededup's perceptual hash, with precision, recall
   and time beside cvkit's.
3. **Untouched real photos**: the audit of the ants-and-bees photos (`hymenoptera.tar`) as shipped: every finding.
4. **Blurred photos** (`--parts blur`): the ants-and-bees photos and the playing-card photos, each downscaled to
   at most `--blur-sizes` px (128, 256 and 512 by default; `audit` decodes at most 256 px), with `--blur-share`
   of them *replaced* by strongly blurred copies (Gaussian radius 6 px at 128 px, scaled with the size: what a
   person calls obviously blurred) and as many by moderately blurred ones (radius 2 px at 128 px), saved as JPEG
   (quality 90). The originals are gone, so the check has to judge blur, not pairs. Precision (flagged photos that
   were blurred, either strength), recall of each strength, and milliseconds per image, of the whole audit (the
   fastest of `--blur-repeats` alternated runs) and of the sharpness measures alone: before (the Laplacian
   sharpness alone) and now (or the re-blur sharpness), on the same folders in one run.
5. **Label noise**: `--flip` of the labels moved to a wrong class, then `label_issues`:
   - digits: out-of-fold probabilities from `cross_validate` of the default config (small_resnet, 5 folds);
   - a CIFAR-10 *test* subset (`--n` images; the bundled backbone never saw them): out-of-fold probabilities of a
     logistic regression on its embeddings (scikit-learn `cross_val_predict`, 5 stratified folds), and with
     `--cifar-cnn` of the bundled `cifar_resnet` fine-tuned by `cross_validate`.
   Each with cleanlab's three rules (`filter_by`): precision and recall of the flagged images, precision among the
   k most suspicious (k = the number flipped), and how often the suggested label is the true one.

    python benchmarks/audit.py [--n 3000] [--flip 0.05] [--parts planted,photos,libraries,labels] [--cifar-cnn] [--json benchmarks/results/audit-cpu.json]
    python benchmarks/audit.py --parts blur [--blur-sizes 128,256,512] [--blur-share 0.1] [--blur-limit 0] --json benchmarks/results/audit-photos-cpu.json
    python benchmarks/audit.py --parts planted,photos --merge --json benchmarks/results/audit-cpu.json   # rerun parts, keep the others
"""
import argparse, datetime, io, platform, shutil, tempfile, time, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
import numpy as np
import pandas as pd
from PIL import Image, ImageFilter
import cvkit
from cvkit.core import save_json, log
from cvkit.audit.checks import audit
from cvkit.experiment.label_issues import label_issues
from _shared import SHARED, cifar_subset


def split_copy(src:Path, dest:Path, valid_share:float, rng)->Path:
    "Copy a folder of class folders into dest/train and dest/valid (a random `valid_share` of each class)."
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(cls.iterdir()); valid = set(rng.choice(len(files), round(len(files)*valid_share), replace=False))
        for i, f in enumerate(files):
            (dest/("valid" if i in valid else "train")/cls.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dest/("valid" if i in valid else "train")/cls.name/f.name)
    return dest


def other_split(f:Path)->Path:
    "The same class folder in the other split."
    split, cls = f.parent.parent.name, f.parent.name
    return f.parents[2]/("train" if split == "valid" else "valid")/cls


def near_copy(f:Path, kind:str, rng)->Image.Image:
    im = Image.open(f).convert("RGB"); w, h = im.size
    if kind == "resized": return im.resize((w*3//4, h*3//4) if rng.random() < 0.5 else (w*3//2, h*3//2), Image.BICUBIC)
    if kind == "cropped":
        l, t, r, b = (int(v) for v in rng.integers(0, 3, 4))
        if l + t + r + b == 0: l = 2
        return im.crop((l, t, w - r, h - b)).resize((w, h), Image.BICUBIC)
    return im                                            # re-encoded: saved at a low JPEG quality below


def plant(root:Path, rng, n_exact=50, n_near=50, n_dark=50, n_blur=50, n_flat=30)->dict:
    "Plant the problems in the split folder `root`; return the ground truth."
    files = sorted(root.rglob("*.jpg")); order = rng.permutation(len(files))
    take = iter(files[i] for i in order)
    truth = {"exact": [], "near": [], "dark": [], "blurry": [], "flat": []}
    for k in range(n_exact):
        f = next(take); dest = (other_split(f) if k % 2 else f.parent)/f"copy_{f.name}"
        shutil.copy(f, dest); truth["exact"].append((f, dest, bool(k % 2)))
    for k in range(n_near):
        f = next(take); kind = ("resized", "reencoded", "cropped")[k % 3]
        dest = (other_split(f) if k % 2 else f.parent)/f"near_{kind}_{f.name}"
        near_copy(f, kind, rng).save(dest, quality=int(rng.integers(30, 51)) if kind == "reencoded" else 90)
        truth["near"].append((f, dest, bool(k % 2)))
    for _ in range(n_dark):
        f = next(take); a = np.asarray(Image.open(f).convert("RGB"), np.float32)*rng.uniform(0.1, 0.25)
        Image.fromarray(a.astype(np.uint8)).save(f, quality=90); truth["dark"].append(f)
    for _ in range(n_blur):
        f = next(take); Image.open(f).convert("RGB").filter(ImageFilter.GaussianBlur(rng.uniform(1.2, 2.0))).save(f, quality=90)
        truth["blurry"].append(f)
    for _ in range(n_flat):
        f = next(take); a = np.asarray(Image.open(f).convert("RGB"), np.float32)
        flat = a.mean((0, 1)) + rng.normal(0, 2, a.shape)
        Image.fromarray(flat.clip(0, 255).astype(np.uint8)).save(f, quality=90); truth["flat"].append(f)
    return truth


def pr(found:set, planted:set)->dict:
    hits = len(found & planted)
    return {"found": len(found), "planted": len(planted), "hits": hits,
            "precision": hits/len(found) if found else float("nan"), "recall": hits/len(planted) if planted else float("nan")}


def pairs_of(report, checks, exact:bool|None=None)->set:
    rows = report.issues[report.issues["check"].isin(checks)]
    if exact is not None: rows = rows[rows["detail"].str.contains("byte-identical") == exact]
    return {frozenset((str(a), str(b))) for a, b in zip(rows["file"], rows["other"])}


def part_planted(a)->dict:
    rng = np.random.default_rng(a.seed)
    work = Path(tempfile.mkdtemp(prefix="cvkit-audit-bench-"))
    root = split_copy(cifar_subset("train", a.n//10), work/"cifar", 0.2, rng)
    before = audit(root)                                  # copies CIFAR-10 already holds are not planted ones
    existing = {frozenset(map(str, p)) for p in zip(before.issues["file"], before.issues["other"]) if isinstance(p[1], (str, Path))}
    existing_files = {c: set(map(str, before.of(c)["file"])) for c in ("dark", "blurry", "low_information")}
    truth = plant(root, rng)
    t0 = time.perf_counter(); report = audit(root); seconds = time.perf_counter() - t0
    n = len(report.images)
    planted_pairs = lambda kind, cross=None: {frozenset((str(s), str(d))) for s, d, c in truth[kind] if cross is None or c == cross}
    rows = {
        "exact_duplicate": pr(pairs_of(report, ["exact_duplicate", "leakage"], exact=True), planted_pairs("exact")),
        "near_duplicate": pr(pairs_of(report, ["near_duplicate", "leakage"], exact=False), planted_pairs("near")),
        "leakage": pr(pairs_of(report, ["leakage"]), planted_pairs("exact", True) | planted_pairs("near", True)),
        "dark": pr(set(map(str, report.of("dark")["file"])), set(map(str, truth["dark"]))),
        "blurry": pr(set(map(str, report.of("blurry")["file"])), set(map(str, truth["blurry"]))),
        "low_information": pr(set(map(str, report.of("low_information")["file"])), set(map(str, truth["flat"]))),
    }
    for check, r in rows.items():                         # precision again, leaving out what the untouched images already had
        found = (pairs_of(report, ["exact_duplicate", "leakage"], exact=True) if check == "exact_duplicate" else
                 pairs_of(report, ["near_duplicate", "leakage"], exact=False) if check == "near_duplicate" else
                 pairs_of(report, ["leakage"]) if check == "leakage" else set(map(str, report.of(check)["file"])))
        new = found - (existing if "duplicate" in check or check == "leakage" else existing_files[check])
        r["already_there"] = len(found) - len(new)
        r["precision_new"] = r["hits"]/len(new) if new else float("nan")
    table = pd.DataFrame(rows).T
    print(f"\n## planted problems in {n:,} CIFAR-10 images ({(report.images['split'] == 'valid').sum()} in valid/)")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    per_1000 = seconds/n*1000
    print(f"audit: {seconds:.1f} s for {n:,} images = {per_1000:.2f} s per 1,000 images (all checks, decoding included)")
    near_kinds = {k: pr({p for p in pairs_of(report, ['near_duplicate', 'leakage'], exact=False)},
                        {frozenset((str(s), str(d))) for s, d, _ in truth['near'] if f'near_{k}_' in d.name})["recall"]
                  for k in ("resized", "reencoded", "cropped")}
    print("near-duplicate recall by kind: " + ", ".join(f"{k} {v:.2f}" for k, v in near_kinds.items()))
    others = {c: k for c, k in report.counts.items() if k and c not in rows and c not in ("label_conflict",)}
    print(f"other findings on the same images: {others or 'none'}")
    false_pairs = pairs_of(report, ["near_duplicate", "leakage"], exact=False) - planted_pairs("near")
    print(f"near-duplicate pairs found that were not planted: {len(false_pairs)}, of which {len(false_pairs & existing)} the untouched "
          f"subset already held (CIFAR-10's own near duplicates): {[sorted(Path(f).parent.name + '/' + Path(f).name for f in p) for p in false_pairs]}")
    shutil.rmtree(work, ignore_errors=True)
    return {"n_images": n, "seconds": seconds, "seconds_per_1000": per_1000, "checks": rows, "already_in_cifar10": before.counts,
            "near_duplicate_recall_by_kind": near_kinds, "other_findings": others}


def part_libraries(a)->dict:
    "The same planted set through cleanvision (Imagelab, default settings) and imagededup (PHash), beside cvkit's audit."
    try:
        from cleanvision import Imagelab
        from imagededup.methods import PHash
    except ImportError:
        print("\n## libraries: skipped (pip install cleanvision imagededup to compare them; cvkit does not depend on them)")
        return {"skipped": "cleanvision or imagededup not installed"}
    rng = np.random.default_rng(a.seed)
    work = Path(tempfile.mkdtemp(prefix="cvkit-audit-libs-"))
    root = split_copy(cifar_subset("train", a.n//10), work/"cifar", 0.2, rng)
    truth = plant(root, rng)
    planted = lambda kind: {frozenset((str(s_), str(d))) for s_, d, _ in truth[kind]}
    files = lambda kind: set(map(str, truth[kind]))
    rows = {}
    t0 = time.perf_counter(); report = audit(root); cv_s = time.perf_counter() - t0
    rows["cvkit audit"] = {"dark": pr(set(map(str, report.of("dark")["file"])), files("dark")),
                           "blurry": pr(set(map(str, report.of("blurry")["file"])), files("blurry")),
                           "low_information": pr(set(map(str, report.of("low_information")["file"])), files("flat")),
                           "near_duplicate": pr(pairs_of(report, ["near_duplicate", "leakage"], exact=False), planted("near")),
                           "seconds_per_1000": cv_s/len(report.images)*1000}
    t0 = time.perf_counter()
    lab = Imagelab(data_path=str(root)); lab.find_issues(verbose=False)
    cl_s = time.perf_counter() - t0
    iss = lab.issues
    flagged = lambda col: {str(Path(f)) for f in iss.index[iss[col]]} if col in iss else set()
    near_sets = lab.info.get("near_duplicates", {}).get("sets", [])
    near_pairs = {frozenset((str(x), str(y))) for grp in near_sets for x in grp for y in grp if x != y}
    rows["cleanvision 0.3 (defaults)"] = {"dark": pr(flagged("is_dark_issue"), files("dark")), "blurry": pr(flagged("is_blurry_issue"), files("blurry")),
                                          "low_information": pr(flagged("is_low_information_issue"), files("flat")),
                                          "near_duplicate": pr(near_pairs, planted("near")), "seconds_per_1000": cl_s/len(iss)*1000}
    t0 = time.perf_counter()
    hasher = PHash(verbose=False)
    enc = hasher.encode_images(image_dir=str(root), recursive=True)
    dups = hasher.find_duplicates(encoding_map=enc, max_distance_threshold=10)
    ph_s = time.perf_counter() - t0
    ph_pairs = {frozenset((str(root/k), str(root/v))) for k, vs in dups.items() for v in vs}
    rows["imagededup PHash (distance 10)"] = {"near_duplicate": pr(ph_pairs, planted("near") | planted("exact")), "seconds_per_1000": ph_s/len(enc)*1000}
    print(f"\n## the same planted set ({len(report.images):,} images) through other libraries")
    flat = {lib: {(f"{k} P/R" if isinstance(v, dict) else k): (f"{v['precision']:.2f}/{v['recall']:.2f}" if isinstance(v, dict) else f"{v:.2f}")
                  for k, v in r.items()} for lib, r in rows.items()}
    print(pd.DataFrame(flat).T.fillna("-").to_string())
    shutil.rmtree(work, ignore_errors=True)
    return rows


def part_photos(a)->dict:
    from cvkit.datasets import extract_archive
    root = extract_archive(SHARED/"hymenoptera.tar")
    data = next(p for p in [root/"hymenoptera_data", root] if (p/"train").is_dir())
    t0 = time.perf_counter(); report = audit(data); seconds = time.perf_counter() - t0
    print(f"\n## untouched photos: {data.name} ({len(report.images)} images, {seconds:.1f} s)")
    print(report.summary())
    found = report.issues.assign(file=report.issues["file"].map(report.relative))[["check", "file", "score", "detail"]]
    print(found.to_string(index=False, max_colwidth=70) if len(found) else "no findings")
    return {"n_images": len(report.images), "seconds": seconds, "counts": {c: k for c, k in report.counts.items() if k},
            "findings": found.to_dict(orient="records")}


PHOTO_SETS = {"hymenoptera": "hymenoptera.tar", "pinochle_cards": "pinochle_cards.tar.gz"}


def photo_files(name:str)->list[tuple[Path,str]]:
    "The photos of one shared set with a class each: ants/bees by folder; cards by the rank of the first card listed."
    from cvkit.datasets import extract_archive
    archive = SHARED/PHOTO_SETS[name]
    if not archive.is_file(): raise SystemExit(f"this benchmark needs {archive} (../shared/data beside the repository)")
    root = extract_archive(archive)
    jpegs = lambda folder: sorted(f for f in folder.rglob("*") if f.suffix.lower() in (".jpg", ".jpeg"))
    if name == "hymenoptera": return [(f, f.parent.name) for f in jpegs(root)]
    first = pd.read_csv(root/"labels.csv").drop_duplicates("filename").set_index("filename")["class"]
    return [(f, first[f.name]) for f in jpegs(root/"images")]


def no_reblur(gray:np.ndarray)->float: return float("nan")   # "before": only the Laplacian sharpness judged blur


def blur_set(name:str, size:int, dest:Path, a, rng)->dict:
    "A folder per class of one set's photos at most `size` px, a share replaced by strongly and by moderately blurred copies."
    photos = photo_files(name)
    if a.blur_limit: photos = [photos[i] for i in np.linspace(0, len(photos) - 1, min(a.blur_limit, len(photos))).round().astype(int)]
    order = rng.permutation(len(photos)); k = max(1, round(len(photos)*a.blur_share))
    kind = {int(i): "strong" for i in order[:k]} | {int(i): "moderate" for i in order[k:2*k]}
    radius = {"strong": 6*size/128, "moderate": 2*size/128}   # Gaussian radius in px: 6 and 2 at 128 px, scaled with the size
    truth = {"strong": [], "moderate": []}
    for i, (f, cls) in enumerate(photos):
        with Image.open(f) as im:
            im.draft("RGB", (size, size)); im = im.convert("RGB"); im.thumbnail((size, size), Image.LANCZOS)
        if i in kind: im = im.filter(ImageFilter.GaussianBlur(radius[kind[i]]))
        out = dest/cls/f"{i:04d}_{f.stem}.jpg"; out.parent.mkdir(parents=True, exist_ok=True); im.save(out, quality=90)
        if i in kind: truth[kind[i]].append(str(out))
    return truth | {"radius": radius, "n_images": len(photos)}


def scan_gray(f:Path)->np.ndarray:
    "The grey image `audit` measures sharpness on (decoded as `scan_image` decodes, at most 256 px)."
    with Image.open(f) as im:
        im.draft("RGB", (256, 256)); im = im.convert("RGB"); im.thumbnail((256, 256), Image.BILINEAR)
        return np.asarray(im, np.float32)/255 @ np.array([0.299, 0.587, 0.114], np.float32)


def timed(fn, grays:list)->float:
    "Milliseconds per image of `fn` over `grays`."
    t0 = time.perf_counter()
    for g in grays: fn(g)
    return (time.perf_counter() - t0)/len(grays)*1000


def score_blur(report, truth:dict, seconds:float)->dict:
    found = set(map(str, report.of("blurry")["file"]))
    strong, moderate = set(truth["strong"]), set(truth["moderate"])
    hits = len(found & (strong | moderate))
    return {"found": len(found), "strong_planted": len(strong), "strong_found": len(found & strong),
            "moderate_planted": len(moderate), "moderate_found": len(found & moderate), "untouched_found": len(found) - hits,
            "precision": hits/len(found) if found else float("nan"), "recall_strong": len(found & strong)/len(strong),
            "recall_moderate": len(found & moderate)/len(moderate) if moderate else float("nan"),
            "seconds": seconds, "ms_per_image": seconds/len(report.images)*1000}


def part_blur(a)->dict:
    "Blurred photos among real ones: the blur check before (Laplacian sharpness) and now, on the same folders, side by side."
    import cvkit.audit.checks as audit_module
    from cvkit.audit.checks import AuditThresholds
    work = Path(tempfile.mkdtemp(prefix="cvkit-audit-blur-"))
    sizes = [int(s) for s in str(a.blur_sizes).split(",")]
    out, rows = {}, []
    now_measure = audit_module.reblur_sharpness
    for k, name in enumerate(PHOTO_SETS):
        for size in sizes:
            root = work/f"{name}-{size}"
            truth = blur_set(name, size, root, a, np.random.default_rng((a.seed, k, size)))   # the same picks whatever else runs
            for f in root.rglob("*.jpg"): f.read_bytes()    # both runs find the files in the page cache
            reports, seconds = {}, {"before": [], "now": []}
            for _ in range(a.blur_repeats):                # alternated, the fastest of each kept: a busy machine slows both alike
                for when, measure in (("before", no_reblur), ("now", now_measure)):
                    audit_module.reblur_sharpness = measure
                    try:
                        t0 = time.perf_counter(); reports[when] = audit(root); seconds[when].append(time.perf_counter() - t0)
                    finally: audit_module.reblur_sharpness = now_measure
            grays = [scan_gray(f) for f in sorted(root.rglob("*.jpg"))[:50]]
            ms = {fn.__name__: min(timed(fn, grays) for _ in range(3)) for fn in (audit_module.sharpness, now_measure)}
            res = {when: score_blur(reports[when], truth, min(seconds[when])) for when in reports}
            res["before"]["measure_ms_per_image"] = ms["sharpness"]; res["now"]["measure_ms_per_image"] = ms["sharpness"] + ms["reblur_sharpness"]
            for when in res: rows.append({"set": name, "size": size, "measure": when, "n_images": truth["n_images"]} | res[when])
            out.setdefault(name, {})[str(size)] = {"n_images": truth["n_images"], "radius": truth["radius"], "decoded_size": list(grays[0].shape)} | res
            shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    table = pd.DataFrame(rows)
    print(f"\n## blurred photos: {a.blur_share:.0%} of each set replaced by strongly blurred copies (Gaussian radius 6 px at 128 px, "
          f"scaled with the size), {a.blur_share:.0%} by moderately blurred ones (radius 2 px at 128 px); before = the Laplacian sharpness alone, now = or the re-blur sharpness")
    print(table[["set", "size", "measure", "n_images", "found", "precision", "recall_strong", "recall_moderate", "untouched_found", "ms_per_image", "measure_ms_per_image"]]
          .to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    t = AuditThresholds()
    return {"share": a.blur_share, "sizes": sizes, "before": "the Laplacian sharpness alone (blurry_z, blurry_ratio)",
            "now": "the Laplacian sharpness, or the re-blur sharpness (reblur_z, reblur_ratio)",
            "thresholds": {k: getattr(t, k) for k in ("blurry_z", "blurry_ratio", "reblur_z", "reblur_ratio")}, "sets": out}


def flip_labels(src:Path, dest:Path, share:float, rng)->dict:
    "Copy a class-folder dataset, moving `share` of the images into a random other class; return {new path: true class}."
    shutil.copytree(src, dest)
    files = sorted(p for p in dest.rglob("*") if p.is_file() and p.parent.parent == dest)
    classes = sorted(p.name for p in dest.iterdir() if p.is_dir())
    moved = {}
    for f in rng.choice(files, round(len(files)*share), replace=False):
        new = rng.choice([c for c in classes if c != f.parent.name])
        to = dest/new/f"flipped_{f.parent.name}_{f.name}"; shutil.move(f, to); moved[str(to)] = f.parent.name
    return moved


FILTERS = ("prune_by_noise_rate", "both", "confident_learning")


def score_issues(found, moved:dict)->dict:
    "Precision and recall of the flagged images against the moved ones; also precision among the len(moved) most suspicious."
    flagged = set(map(str, found.issues["file"]))
    out = pr(flagged, set(moved))
    right = [found.table.set_index(found.table["file"].map(str)).loc[f, "suggested"] == moved[f] for f in flagged & set(moved)]
    top = set(map(str, found.table.sort_values("label_quality")["file"].head(len(moved))))
    return out | {"precision_top_k": len(top & set(moved))/len(moved), "suggested_true_class": float(np.mean(right)) if right else float("nan"),
                  "outliers": len(found.outliers)}


def score_filters(name:str, model:str, moved:dict, **source)->list[dict]:
    "`label_issues` with each of cleanlab's rules, scored."
    rows = []
    for fb in FILTERS:
        t0 = time.perf_counter(); found = label_issues(filter_by=fb, **source)
        rows.append({"data": name, "model": model, "filter_by": fb} | score_issues(found, moved) | {"seconds": time.perf_counter() - t0})
    return rows


def part_labels(a)->dict:
    from cvkit.datasets import digits
    from cvkit.experiment.config import TrainConfig
    from cvkit.experiment.kfold import cross_validate
    rng = np.random.default_rng(a.seed)
    work = Path(tempfile.mkdtemp(prefix="cvkit-labels-bench-"))
    rows, models = [], {}
    moved = flip_labels(digits(), work/"digits", a.flip, rng)
    cv = cross_validate(TrainConfig(data=work/"digits", seed=a.seed), k=5)
    models["digits"] = {"model": "the default train config (small_resnet from scratch, 4 epochs), 5 stratified folds", "oof_accuracy": cv.mean, "seconds": cv.seconds}
    rows += score_filters("digits", "CNN", moved, cv=cv)
    # CIFAR-10 test images (the bundled backbone never saw them)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from cvkit.data.items import read_items
    from cvkit.data.images import decode_images
    from cvkit.models.classical import Embedder
    moved = flip_labels(cifar_subset("test", a.n//10), work/"cifar", a.flip, rng)
    items = read_items(work/"cifar")
    arrays, _ = decode_images(items.files, 32)
    t0 = time.perf_counter()
    x = Embedder("cifar_resnet")(np.stack(arrays)); y = np.array(items.labels); classes = sorted(set(y))
    probs = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000)), x, y,
                              cv=StratifiedKFold(5, shuffle=True, random_state=a.seed), method="predict_proba")
    models["cifar10_test/embeddings"] = {"model": "logistic regression on cifar_resnet embeddings, 5 stratified folds",
                                         "oof_accuracy": float((probs.argmax(1) == np.array([classes.index(c) for c in y])).mean()),
                                         "seconds": time.perf_counter() - t0}
    rows += score_filters("cifar10_test", "embeddings + logistic", moved, probs=probs, labels=list(y), files=items.files, classes=classes)
    if a.cifar_cnn:
        cv = cross_validate(TrainConfig(data=work/"cifar", pretrained=True, seed=a.seed), k=5)
        models["cifar10_test/cnn"] = {"model": "cifar_resnet fine-tuned (train's default with --pretrained), 5 stratified folds",
                                      "oof_accuracy": cv.mean, "seconds": cv.seconds}
        rows += score_filters("cifar10_test", "fine-tuned CNN", moved, cv=cv)
    print(f"\n## label issues with {a.flip:.0%} of labels flipped")
    for k, m in models.items(): print(f"{k}: {m['model']}: out-of-fold accuracy {m['oof_accuracy']:.4f} ({m['seconds']:.0f} s)")
    print(pd.DataFrame(rows)[["data", "model", "filter_by", "planted", "found", "precision", "recall", "precision_top_k", "suggested_true_class"]]
          .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    shutil.rmtree(work, ignore_errors=True)
    return {"models": models, "results": rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="CIFAR-10 images for the planted and the label-noise parts (default: %(default)s)")
    ap.add_argument("--flip", type=float, default=0.05, help="share of labels flipped (default: %(default)s)")
    ap.add_argument("--parts", default="planted,photos,blur,libraries,labels")
    ap.add_argument("--cifar-cnn", action="store_true", help="also cross-validate a fine-tuned CNN on the CIFAR-10 label-noise set (about 3 minutes)")
    ap.add_argument("--blur-sizes", default="128,256,512", help="longest sides of the blurred-photo sets (default: %(default)s)")
    ap.add_argument("--blur-share", type=float, default=0.1, help="share of each photo set blurred strongly, and again moderately (default: %(default)s)")
    ap.add_argument("--blur-limit", type=int, default=0, help="photos per set, spread over the set (default: all)")
    ap.add_argument("--blur-repeats", type=int, default=2, help="audits of each blurred-photo set, before and now alternated; the fastest counts (default: %(default)s)")
    ap.add_argument("--merge", action="store_true", help="keep the parts of an existing --json that were not run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    log.setLevel("WARNING")
    parts = a.parts.split(",")
    res = {"benchmark": "audit", "cvkit": cvkit.__version__, "date": datetime.date.today().isoformat(),
           "machine": f"{platform.processor() or platform.machine()} ({__import__('os').cpu_count()} threads)", "device": "cpu",
           "args": {k: str(v) for k, v in vars(a).items()}}
    t0 = time.perf_counter()
    known = {"planted": part_planted, "photos": part_photos, "blur": part_blur, "libraries": part_libraries, "labels": part_labels}
    unknown = [p for p in parts if p not in known]
    if unknown: raise SystemExit(f"unknown parts {unknown}; the parts are {', '.join(known)}")
    for name, fn in known.items():
        if name in parts: res[name] = fn(a)
    res["total_seconds"] = time.perf_counter() - t0
    print(f"\ntotal {res['total_seconds']:.0f} s")
    if a.merge and a.json and a.json.is_file():           # the parts not run keep their figures; each run is listed
        old = __import__("json").loads(a.json.read_text())
        runs = old.pop("runs", None) or [{k: old.get(k) for k in ("date", "cvkit", "args", "total_seconds")} | {"parts": (old.get("args") or {}).get("parts")}]
        res = old | {k: v for k, v in res.items() if k in known} | {"runs": runs + [{k: res[k] for k in ("date", "cvkit", "args", "total_seconds")} | {"parts": a.parts}]}
    if a.json: save_json(res, a.json); print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
