#!/usr/bin/env bash
# The whole test suite, twice: on SQLite (every test), then on PostgreSQL (every test that does
# not load a model; those are the same there and cost most of the time). Extra arguments go to
# both pytest runs. Without root/sudo to install PostgreSQL the second pass is skipped, loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== tests on SQLite"
.venv/bin/python -m pytest "$@"
echo "== tests on PostgreSQL"
if url=$(bash scripts/postgres.sh); then
  JUDGEEYE_TEST_PG="$url" .venv/bin/python -m pytest -m "not slow" "$@"
else
  echo "WARNING: no PostgreSQL server could be started; the PostgreSQL pass was skipped" >&2
fi
