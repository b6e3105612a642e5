#!/usr/bin/env bash
# The whole test suite, twice: on SQLite (every test), then on PostgreSQL (every test that does
# not load a model; those are the same there and cost most of the time). Extra arguments go to
# both pytest runs. Without root/sudo to install PostgreSQL the second pass is skipped, loudly.
#   bash scripts/test.sh --latest [pytest args]   the drift check (not part of CI): install the
#       newest releases pyproject.toml allows into .venv-latest/ (torch stays at TORCH_SPEC,
#       default torch==2.13.0) and run the suite there on SQLite, so that the next upgrade is a
#       decision, not a surprise. What differs from the lock is printed first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--latest" ]; then
  shift
  VENV=.venv-latest bash scripts/install.sh --dev --no-lock
  echo "== newer than requirements/lock-cpu.txt:"
  .venv-latest/bin/python - requirements/lock-cpu.txt <<'PY'
import re, sys
from importlib.metadata import distributions
from packaging.utils import canonicalize_name as name
locked = {name(n): v for n, v in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", open(sys.argv[1]).read(), re.M)}
for dist in sorted(distributions(), key=lambda d: name(d.metadata["Name"])):
    n = name(dist.metadata["Name"])
    if n not in ("judgeeye", "pip") and locked.get(n) != dist.version:
        print(f"  {n}: {locked.get(n, 'not locked')} -> {dist.version}")
PY
  echo "== tests on SQLite with the newest allowed releases"
  exec .venv-latest/bin/python -m pytest "$@"
fi
echo "== tests on SQLite"
.venv/bin/python -m pytest "$@"
echo "== tests on PostgreSQL"
if url=$(bash scripts/postgres.sh); then
  JUDGEEYE_TEST_PG="$url" .venv/bin/python -m pytest -m "not slow" "$@"
else
  echo "WARNING: no PostgreSQL server could be started; the PostgreSQL pass was skipped" >&2
fi
