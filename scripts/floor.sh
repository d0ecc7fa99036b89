#!/usr/bin/env bash
# The oldest torch pyproject.toml admits ("torch>=X.Y"), on a fast subset of the tests, so the declared floor
# stays true. Runs after scripts/setup.sh: ./.venv-floor holds only that torch (and what it needs); every
# other package comes from ./.venv (and the system's, as there), whose site-packages it reads after its own.
set -euo pipefail
cd "$(dirname "$0")/.."
floor=$(sed -n 's/.*"torch>=\([0-9.]*\)".*/\1/p' pyproject.toml)
[ -n "$floor" ] || { echo "no torch>= floor in pyproject.toml"; exit 1; }
[ -x .venv-floor/bin/python ] || "${PYTHON:-python3}" -m venv --system-site-packages .venv-floor
.venv-floor/bin/python -m pip install -q "torch==${floor}.*"
main_site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
floor_site=$(.venv-floor/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "import site; site.addsitedir('${main_site}')" > "${floor_site}/celebae-main-venv.pth"
.venv-floor/bin/python -c "import torch, celebae; print(f'torch {torch.__version__} (the floor), celebae from {celebae.__file__}')"
# the models and their exports, training and resume, and the API's inputs: what differs between torch versions
.venv-floor/bin/python -m pytest -q -m "not slow and not cuda" -p no:cacheprovider tests/test_models.py \
  tests/test_train.py tests/test_faults.py -k "not ctrl_c and (not test_faults or every_input_kind)" "$@"
