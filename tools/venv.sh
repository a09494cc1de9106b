#!/usr/bin/env bash
# Make ./.venv ready: a virtual environment with cvkit (editable) and its dev dependencies.
#
# The heavy part (torch, fastai, jupyterlab: several GB) is installed once into a cache folder
# outside the clone, keyed by a hash of the dependency lists in pyproject.toml, and .venv is a
# link to it. A new clone, or CI, reuses it; a change of dependencies makes a new one.
# Set CVKIT_VENV_CACHE= (empty) to build a plain .venv inside the clone instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
cache=${CVKIT_VENV_CACHE-$HOME/.cache/cvkit/venvs}

key=$("$PYTHON" - <<'PY'
import hashlib, json, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = [p["dependencies"], p.get("optional-dependencies"), p.get("requires-python")]
print(hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest()[:12])
PY
)

install_deps() {  # $1: venv folder
  "$PYTHON" -m venv "$1"
  "$1/bin/python" -m pip install -q --upgrade pip 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  # the dependencies only (cvkit itself is installed editable below, per clone)
  "$1/bin/python" - <<'PY' > "$1/requirements.txt"
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))
PY
  "$1/bin/python" -m pip install -q -r "$1/requirements.txt" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  echo "$key" > "$1/.cvkit-deps-key"
}

if [ -n "$cache" ]; then
  target="$cache/venv-$key"
  mkdir -p "$cache"
  exec 9>"$cache/.lock"; flock 9          # one installer at a time
  if [ ! -f "$target/.cvkit-deps-key" ]; then
    echo "Installing dependencies into $target (first time only; torch is large, this takes minutes)"
    rm -rf "$target"
    install_deps "$target"
  fi
  if [ "$(readlink .venv 2>/dev/null)" != "$target" ]; then rm -rf .venv; ln -s "$target" .venv; fi
else
  if [ -L .venv ]; then rm .venv; fi
  if [ "$(cat .venv/.cvkit-deps-key 2>/dev/null)" != "$key" ]; then
    echo "Installing dependencies into .venv (torch is large, this takes minutes)"
    rm -rf .venv
    install_deps .venv
  fi
fi
# cvkit itself, editable, pointing at this clone (cheap, done every time)
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
