"""The "quick" experiment preset on HANNA complexity with the embedded model: the table it produces
and its wall time against the preset's budget (15 minutes on 2 CPU cores).

Everything runs as a user runs it, in subprocesses, in a fresh store: `judgeeye import --loader
hanna` on the shared HANNA file, then `judgeeye experiment run --preset quick --project ID` (its
plan, then the experiment job in the same process: sampling, SFT on traces, the labels-only
ablation and three rater runs). The experiment's own output (plan, stages with their wall times and tokens,
the rater table with τ / ICC(3,1) / MSE and their CIs, the verdicts) is printed as it comes,
then the wall time, the CPU time of the processes and the ratio wall / budget.

    nice -n 10 .venv/bin/python bench/experiment_quick.py
    .venv/bin/python bench/experiment_quick.py --set protocol.limit=20 --tract
    .venv/bin/python bench/experiment_quick.py --llama-server   # + a black-box rater (llama.cpp on the GGUF)
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HANNA = REPO.parent / "shared" / "data" / "hanna" / "hanna_reconstructed_per_annotator.csv"
BUDGET_SECONDS = 15 * 60


def run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """A `judgeeye` command, its output echoed as it comes; (exit status, output)."""
    proc = subprocess.Popen([sys.executable, "-m", "judgeeye.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO)
    lines = []
    for line in proc.stdout:  # type: ignore[union-attr]
        print(line, end="", flush=True)
        lines.append(line)
    return proc.wait(), "".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=HANNA, help="HANNA per-annotator CSV")
    ap.add_argument("--dimension", default="complexity")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="experiment setting, section.field=value")
    ap.add_argument("--tract", action="store_true", help="also train TRACT")
    ap.add_argument("--llama-server", action="store_true",
                    help="add a black-box rater: llama.cpp's OpenAI-compatible server on the embedded GGUF")
    ap.add_argument("--data-dir", type=Path, default=None, help="store folder (default: a fresh temporary one)")
    args = ap.parse_args()
    if not args.data.is_file():
        sys.exit(f"{args.data} not found (the shared HANNA data)")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="je-bench-experiment-"))
    env = {**os.environ, "JUDGEEYE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    env.pop("JUDGEEYE_DB", None)
    print(f"store {data_dir}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}", flush=True)

    start = time.perf_counter()
    code, out = run(["import", "--loader", "hanna", str(args.data), "--dimension", args.dimension], env)
    if code:
        sys.exit(f"import failed ({code})")
    project = re.search(r"\(id (\d+)\)", out).group(1)
    imported = time.perf_counter() - start

    extra: list[str] = ["--mode", "sft", "--mode", "labels_only", "--mode", "tract"] if args.tract else []
    for value in args.sets:
        extra += ["--set", value]
    server = None
    if args.llama_server:
        sys.path.insert(0, str(REPO / "tests"))
        from llama_server import start_llama_server

        server = start_llama_server(n_threads=1)
        extra += ["--blackbox", f"openai:smollm2@{server.__enter__()}"]
    try:
        start = time.perf_counter()
        code, out = run(["experiment", "run", "--preset", "quick", "--project", project, *extra], env)
        wall = time.perf_counter() - start
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    print(f"\nimport: {imported:.0f} s; experiment ({'completed' if code == 0 else f'exit {code}'}): "
          f"wall {wall / 60:.1f} min, CPU {cpu / 60:.1f} min (all processes, import included); "
          f"wall / 15-minute budget = {wall / BUDGET_SECONDS:.2f}; load average now {os.getloadavg()[0]:.1f}")
    sys.exit(code)


if __name__ == "__main__":
    main()
