#!/usr/bin/env bash
# Set up .venv (non-editable install, see setup.sh) and run the fast test suite.
# Extra arguments go to pytest (e.g. -m slow, -k head).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
