#!/usr/bin/env bash
# Make ./.venv ready: Python with cvkit (editable, from this clone) and all its dependencies.
#
# The dependencies (torch, fastai, jupyterlab: several GB) are installed once into a cache folder
# outside the clone, keyed by a hash of the dependency lists in pyproject.toml:
#     ${CVKIT_VENV_CACHE:-~/.cache/cvkit/venvs}/venv-<hash>
# Each clone's .venv is a small virtual environment that sees those packages (through a .pth file)
# and holds only its own editable cvkit, so several clones (and CI) share one install safely.
# A change of dependencies makes a new cache entry; a fresh machine simply builds it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
cache=${CVKIT_VENV_CACHE:-$HOME/.cache/cvkit/venvs}
quiet_pip() { grep -v "is ignored: it is neither a file nor a directory" || true; }

key=$("$PYTHON" - <<'PY'
import hashlib, json, sys, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = [p["dependencies"], p.get("optional-dependencies"), p.get("requires-python"), sys.version.split()[0]]
print(hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest()[:12])
PY
)
deps="$cache/venv-$key"

# 1. the shared dependency environment (once per dependency set)
mkdir -p "$cache"
exec 9>"$cache/.lock"; flock 9                      # one installer at a time
if [ ! -f "$deps/.complete" ]; then
  echo "Installing dependencies into $deps (first time only; torch is large: this takes minutes)"
  rm -rf "$deps"
  "$PYTHON" -m venv "$deps"
  "$deps/bin/python" -m pip install -q --upgrade pip 2>&1 | quiet_pip
  "$PYTHON" - > "$deps/requirements.txt" <<'PY'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))
PY
  "$deps/bin/python" -m pip install -q -r "$deps/requirements.txt" 2>&1 | quiet_pip
  "$deps/bin/python" -c "import torch, fastai, nbdev"
  touch "$deps/.complete"
fi
flock -u 9

# 2. this clone's .venv on top of it
if [ -L .venv ] || [ "$(cat .venv/.cvkit-deps 2>/dev/null)" != "$deps" ]; then
  rm -rf .venv
  "$PYTHON" -m venv --without-pip .venv
  site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  dsite=$("$deps/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "import site; site.addsitedir('$dsite')" > "$site/_cvkit_deps.pth"
  # the dependencies' commands (pytest, nbdev-*, jupyter, ...), re-pointed at this .venv's python
  for f in "$deps"/bin/*; do
    name=$(basename "$f")
    [ -f "$f" ] && [ ! -e ".venv/bin/$name" ] || continue
    case "$(head -n 1 "$f")" in
      "#!$deps/bin/python"*) { echo "#!$PWD/.venv/bin/python"; tail -n +2 "$f"; } > ".venv/bin/$name"; chmod +x ".venv/bin/$name";;
    esac
  done
  echo "$deps" > .venv/.cvkit-deps
fi
# Jupyter's data and config (JupyterLab extensions such as the ipywidgets front end, kernel specs) live under
# the environment's prefix: point this .venv's share/ and etc/ at the dependency environment's
for d in share etc; do
  if [ -d "$deps/$d" ] && [ "$(readlink .venv/$d 2>/dev/null)" != "$deps/$d" ]; then rm -rf ".venv/$d"; ln -s "$deps/$d" ".venv/$d"; fi
done
# cvkit itself, editable, from this clone (cheap; done every time so the entry points stay current)
if ! out=$(.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1); then
  echo "$out" | quiet_pip; echo "tools/venv.sh: installing cvkit (editable) failed" >&2; exit 1
fi
