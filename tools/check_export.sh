#!/usr/bin/env bash
# Fail if the package is not what the notebooks export, or a notebook is not clean.
set -euo pipefail
cd "$(dirname "$0")/.."
snapshot() { find cvkit nbs -type f \( -name '*.py' -o -name '*.ipynb' \) -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 sha1sum; }
before=$(snapshot)
.venv/bin/nbdev-export
.venv/bin/nbdev-clean >/dev/null
after=$(snapshot)
if [ "$before" != "$after" ]; then
  echo "ERROR: nbdev-export or nbdev-clean changed these files:"
  diff <(echo "$before") <(echo "$after") | grep '^>' | awk '{print "  " $3}'
  echo "Edit the notebooks in nbs/ (never cvkit/*.py), run nbdev-export and nbdev-clean, and commit the result."
  exit 1
fi
echo "cvkit/ matches nbs/ (nbdev-export and nbdev-clean changed nothing)"
