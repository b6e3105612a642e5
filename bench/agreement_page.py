"""Agreement page at real scale: 20,000 items, 320,000 candidates, 8 rater runs over 4,000 test
items (32,000 predictions), 3 annotators' reviews; SQLite in a temporary folder.

Fills the store with `fill_synthetic` from `tests/synthetic_project.py` (the same data the page's
tests use), then times, in one process:

* **first view**: each data function of the page once on an empty stats cache (what the very
  first view after new data costs: bootstrap intervals, the 320,000-candidate sampling scan);
* **warm**: each data function again, `--repeats` times (the median), as every later view in any
  server process sees it (the cache lives in the store);
* **AppTest**: the whole page (app.py + judgeeye_app/views/agreement.py) rendered by Streamlit's AppTest,
  one tab at a time (the tabs are lazy: only the open one runs), in an open session; and a fresh
  session's first view (which adds AppTest's own per-session scan of installed component
  packages, about a second here, that a real server does once at start);
* the one-file HTML report.

    .venv/bin/python bench/agreement_page.py --items 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the synthetic project is test data: it lives with the tests


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keep", help="fill (or reuse) the store in this folder instead of a temporary one")
    args = ap.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="je-bench-agreement-"))
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["JUDGEEYE_DATA_DIR"] = str(folder)
    os.environ["JUDGEEYE_DB"] = f"sqlite:///{folder / 'bench.db'}"

    from sqlalchemy import func, select
    from streamlit.testing.v1 import AppTest

    from judgeeye.evaluate import cache, dashboard
    from judgeeye.evaluate.report import build_report, default_choices
    from judgeeye.store import Annotator, Project, StatsCache, get_engine, session_scope
    from synthetic_project import fill_synthetic

    get_engine()
    with session_scope() as s:
        project_id = s.scalar(select(Project.id).where(Project.name == "synthetic"))
    if project_id is None:
        started = time.perf_counter()
        with session_scope() as s:
            data = fill_synthetic(s, n_items=args.items, k=args.k)
        print(f"filled {data.n_items:,} items, {data.n_candidates:,} candidates, {data.n_predictions:,} predictions "
              f"in {time.perf_counter() - started:.1f} s ({(folder / 'bench.db').stat().st_size / 1e6:.0f} MB)")
        project_id = data.project_id
    with session_scope() as s:
        runs = dashboard.list_runs(s, project_id)
    choices = default_choices(runs)
    pair_a, pair_b, _ = dashboard.version_pairs(runs, 1, 2)

    steps: dict[str, Callable[[object], object]] = {
        "run table (τ, ICC, MSE + CIs)": lambda s: dashboard.run_table(s, project_id),
        "one run: confusion, by gold, worst": lambda s: dashboard.run_detail(s, choices.run_id),
        "before/after: two runs + tests": lambda s: dashboard.comparison(s, *choices.compare),
        "codebook v1→v2: 4 raters + tests": lambda s: dashboard.group_comparison(s, pair_a, pair_b),
        "inter-rater ICC per version": lambda s: dashboard.reliability_by_version(s, runs),
        "sampling: acceptance, utilization": lambda s: dashboard.sampling_overview(s, project_id),
        "annotators (judgeeye.review)": lambda s: dashboard.annotator_view(s, project_id),
    }

    with session_scope() as s:
        cache.drop(s, "")
    first = {}
    for name, step in steps.items():
        with session_scope() as s:
            first[name] = timed(lambda: step(s))
    warm: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            with session_scope() as s:
                warm[name].append(timed(lambda: step(s)))
    print(f"\n{'data function':40s} {'first view':>11s} {'warm median':>12s}")
    for name in steps:
        print(f"{name:40s} {first[name]:10.3f}s {statistics.median(warm[name]):11.3f}s")
    print(f"{'all data functions':40s} {sum(first.values()):10.3f}s "
          f"{sum(statistics.median(v) for v in warm.values()):11.3f}s")

    with session_scope() as s:
        lead = s.scalar(select(Annotator).where(Annotator.name == "bench-lead"))
        if lead is None:
            lead = Annotator(name="bench-lead", role="lead", active=True)
            s.add(lead)
            s.flush()
        user = {"id": lead.id, "name": lead.name, "role": lead.role}

    def fresh() -> AppTest:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
        at.session_state["judgeeye_user"] = user
        at.switch_page("judgeeye_app/views/agreement.py")
        return at

    at = fresh()
    at.run()  # warm-up: imports, first session
    assert not at.exception, at.exception
    tabs = ["Rater runs", "Before / after", "One run", "Inter-rater reliability", "Sampling", "Annotators",
            "New rater run"]
    per_tab: dict[str, list[float]] = {tab: [] for tab in tabs}
    for _ in range(args.repeats):
        for tab in tabs:  # the page's tabs are lazy: a view renders the open one
            at.session_state["ag_tab"] = tab
            per_tab[tab].append(timed(at.run))
            assert not at.exception, (tab, at.exception)
    fresh_runs = []
    for _ in range(args.repeats):
        session = fresh()
        fresh_runs.append(timed(session.run))
        assert not session.exception, session.exception
    report = []
    for _ in range(args.repeats):
        with session_scope() as s:
            report.append(timed(lambda: build_report(s, project_id, choices)))
    with session_scope() as s:
        size = len(build_report(s, project_id, choices).encode())
    print(f"\n{'AppTest render (app.py + page)':40s} {'median':>11s} {'min':>8s} {'max':>8s}")
    rows = [(f"tab '{tab}'", per_tab[tab]) for tab in tabs]
    rows += [("fresh session, first tab (+ AppTest scan)", fresh_runs), ("HTML report (library)", report)]
    for name, values in rows:
        print(f"{name:40s} {statistics.median(values):10.3f}s {min(values):7.3f}s {max(values):7.3f}s")
    print(f"report size {size / 1e6:.1f} MB (plotly.js embedded once)")
    with session_scope() as s:
        n_cache = s.scalar(select(func.count()).select_from(StatsCache))
    print(f"stats cache entries: {n_cache}; store: {folder}")


if __name__ == "__main__":
    main()
