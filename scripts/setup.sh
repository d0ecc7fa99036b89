#!/usr/bin/env bash
# Make ./.venv with celebae (editable) and its test tools. A torch that is already installed is kept:
# the venv sees the system's packages, and torch is only installed when none imports.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv --system-site-packages .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # Prefer a torch wheel this machine already holds (pip's find-links, e.g. a CPU build);
  # otherwise the registry's build for this platform.
  .venv/bin/python -m pip install -q --no-index --no-deps torch 2>/dev/null \
    || .venv/bin/python -m pip install -q "torch>=2.4"
fi
.venv/bin/python -m pip install -q -e ".[test]"
