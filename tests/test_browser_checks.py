"""The browser tests' check that a page shows users no internals (tests/browser.py) finds each
kind it looks for, on a static page in chromium, and passes the words that only look alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from browser import CHROMIUM, assert_shows_no_internals, browser_page

CLEAN = """<p>None fits · None of the 32 sampled traces reached the gold rating · Rating 3 · v2 · edited</p>
<div data-testid="stDataFrame"><table><tr><th>Pace (items/h)</th><th>Note</th></tr>
<tr><td>134</td><td>—</td></tr></table></div>"""
LEAKED = {
    "<p>Derived from: None</p>": "a bare None",
    "<p>splits {'train': 4, 'test': 2}</p>": "a Python dict or list",
    "<p>Splits: ['train', 'test']</p>": "a Python dict or list",
    '<pre>{"loss": 3.2}</pre>': "a Python dict or list",
    "<p>Rate the story from {scale_min} to {scale_max}.</p>": "a {placeholder}",
    "<pre>Traceback (most recent call last):</pre>": "a traceback",
    '<div data-testid="stException">StreamlitInvalidHeightError</div>': "an exception box",
    '<div data-testid="stDataFrame"><table><tr><th>pace_per_hour</th></tr><tr><td>3</td></tr></table></div>':
        "a raw column name",
    '<div data-testid="stDataFrame"><table><tr><th>Best τ</th></tr><tr><td>nan</td></tr></table></div>':
        "a missing-value cell",
}


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
def test_the_internals_check_finds_each_kind_and_passes_plain_words(tmp_path: Path) -> None:
    with browser_page(tmp_path, "checks") as page:
        page.set_content(CLEAN)
        assert_shows_no_internals(page, "a clean page")
        for html, kind in LEAKED.items():
            page.set_content(CLEAN + html)
            with pytest.raises(AssertionError, match=kind.replace("{", r"\{").replace("}", r"\}")):
                assert_shows_no_internals(page, html)
