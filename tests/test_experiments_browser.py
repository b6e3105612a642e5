"""The Experiments page in a real browser (issue 17): a lead plans an experiment in the quick preset,
sees the grid, the plan and the CLI command, starts it, watches it to the end and opens its report.

Debian's chromium is driven by Playwright against `streamlit run app.py` on loopback and a real
store. The traces come from a scripted OpenAI-compatible server on loopback that rates the tiny
project's stories right (the paper infers traces with a strong model and fine-tunes a small one),
so the embedded model fine-tunes on accepted traces every time; everything else (two fine-tunings,
three rater runs) is the embedded model, kept tiny so it fits CI.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from browser import browser_page, enter, log_in, settled, streamlit_app
from chat_server import chat_server
from judgeeye.experiments.report import build_report
from judgeeye.store import Experiment, session_scope
from review_data import PASSWORD, make_users
from training_data import STORIES, TRACES, make_tiny_project

pytestmark = pytest.mark.slow


def tiny_sampler(prompt: str, body: dict) -> tuple[str, str]:
    """Rates each tiny story with its gold label, after a short trace."""
    gold = next((g for text, g in STORIES if text in prompt), 3)
    return f"{TRACES[gold]}\n\n<rating>{gold}</rating>", "stop"


def number(page: Any, label: str, value: int) -> None:
    from playwright.sync_api import expect

    box = page.get_by_label(label, exact=True)
    expect(box).to_have_count(1)  # a box the last rerun replaced can linger a moment
    box.fill(str(value))
    box.press("Enter")
    settled(page)


def choose(page: Any, label: str, option: str) -> None:
    """Pick ``option`` in the select box labelled ``label``."""
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).first.click()
    settled(page)


def test_a_lead_plans_starts_watches_and_opens_an_experiment(store_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    project_id = make_tiny_project(tmp_path)
    make_users(("lena", "lead"))
    with chat_server(tiny_sampler) as (url, prompts), \
            streamlit_app(tmp_path, env={"OMP_NUM_THREADS": "1"}) as server, \
            browser_page(tmp_path, "experiments") as page:
        page.goto(server)
        log_in(page, "lena", PASSWORD)
        expect(page.get_by_text("Logged in as lena")).to_be_visible()
        settled(page)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Experiments", exact=True).click()
        expect(page.get_by_role("heading", name="Experiments", level=1)).to_be_visible()
        settled(page)

        # --- plan: the quick preset, traces from the server (written ratings), everything else tiny
        choose(page, "Preset", "Quick (embedded model, minutes)")
        page.get_by_text("Infer the traces with another engine", exact=True).click()
        settled(page)
        page.get_by_text("OpenAI-compatible server", exact=True).click()
        settled(page)
        enter(page, page.get_by_label("Base URL", exact=True), url)
        enter(page, page.get_by_label("Model", exact=True), "sampler")
        number(page, "Test items", 2)
        number(page, "Tokens per rating", 4)
        page.get_by_role("tab", name="Sampling (train split)", exact=True).click()
        settled(page)
        number(page, "k (candidates per item)", 1)
        number(page, "Only the first N items", 4)
        choose(page, "Acceptance mode", "written")  # a server gives no token probabilities for a forced cue
        plan = page.get_by_text(re.compile(r"6 of 6 stages to run in one experiment job"))
        expect(plan).to_be_visible()
        command = page.locator("code").filter(has_text="judgeeye experiment run")
        expect(command).to_contain_text(f"--project {project_id} --preset quick --rate-max-tokens 4 --test-limit 2 "
                                        f"--sampler openai:sampler@{url}")
        expect(command).to_contain_text("--set sampling.acceptance=written")
        grid = page.get_by_test_id("stDataFrame").first.text_content()  # (a canvas; its accessible table)
        for rater in ("Base model (embedded)", "SFT on traces", "SFT on labels only"):
            assert rater in grid, rater
        body = page.locator("body").inner_text()
        assert "None" not in body and "Traceback" not in body

        # --- start, then watch it on the Experiments tab (the shared job panel) until it completes
        page.get_by_role("button", name="Start the experiment").click()
        expect(page.get_by_text(re.compile(r"Experiment \d+ started"))).to_be_visible()
        settled(page)
        page.get_by_role("tab", name="Experiments", exact=True).click()
        settled(page)
        expect(page.get_by_text(re.compile(r"(Running|Not started|Completed) · \d of 6 stages done"))).to_be_visible()
        expect(page.get_by_text("Completed · 6 of 6 stages done, 0 reused")).to_be_visible(timeout=1_800_000)
        settled(page)

        # --- the report: verdicts, the rater table, and the HTML file it downloads
        with session_scope() as s:
            experiment = s.scalars(select(Experiment)).one()
            report = build_report(s, experiment.id)
        assert experiment.status == "completed" and len(prompts) >= 4  # the server sampled the traces
        expect(page.get_by_role("heading", name="Verdicts")).to_be_visible()
        for comparison in report.comparisons:
            expect(page.get_by_text(comparison.verdict, exact=True)).to_be_visible()
        expect(page.get_by_text("Raters on the test split")).to_be_visible()
        with page.expect_download() as download:
            page.get_by_role("button", name="Download the HTML report").click()
        html = Path(download.value.path()).read_text(encoding="utf-8")
        assert "<h2>Verdicts</h2>" in html and "SFT on traces" in html and "Inputs" in html
        body = page.locator("body").inner_text()
        assert "Traceback" not in body and "None" not in body
