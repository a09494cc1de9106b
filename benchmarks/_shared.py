"""What the benchmark scripts share: where the shared datasets are, and CIFAR-10 subsets made from the archive."""
import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2]/"shared"/"data"


def cifar_subset(split:str, per_class:int)->Path:
    "A folder of the first `per_class` CIFAR-10 images of each class from the archive's `split` (train or test): hard links, made once."
    from cvkit.datasets import extract_archive
    archive = SHARED/"cifar10-jpg.tar.gz"
    if not archive.is_file(): raise SystemExit(f"this benchmark needs {archive} (../shared/data beside the repository)")
    root = extract_archive(archive)
    src = next(p for p in [root/split, *root.glob(f"*/{split}")] if p.is_dir())
    sub = Path(os.environ.get("CVKIT_CACHE", Path.home()/".cache"/"cvkit"))/f"bench-cifar10-{'' if split == 'train' else split + '-'}{per_class}"
    if not (sub/".complete").exists():
        for d in sorted(src.iterdir()):
            (sub/d.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(d.iterdir())[:per_class]:
                if not (sub/d.name/f.name).exists(): os.link(f, sub/d.name/f.name)
        (sub/".complete").touch()
    return sub
