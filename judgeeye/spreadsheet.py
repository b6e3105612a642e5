"""CSV that spreadsheets open as data: the one place cells are escaped against formula injection.

Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``, ``-`` or ``@``
(and, after trimming, a tab or line break) as a formula, so a text such as
``=HYPERLINK("http://evil", "click")`` in an item or a trace would become a live link or command
in whoever opens the export. Every CSV the app or the CLI writes goes through :func:`write_csv`,
which prefixes such cells with an apostrophe (OWASP's advice): the spreadsheet shows the text as
written. Numbers are left alone; a text that merely looks like a negative number is escaped too.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

#: leading characters that make a spreadsheet read a cell as a formula (fullwidth forms included:
#: some spreadsheets fold them to their ASCII twins)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def spreadsheet_safe(value: Any) -> Any:
    """A cell a spreadsheet shows as text: a text starting like a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def write_rows(fh: TextIO, header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> None:
    """Write a header and rows as CSV to an open text file, every cell escaped."""
    writer = csv.writer(fh)
    writer.writerow([spreadsheet_safe(h) for h in header])
    for row in rows:
        writer.writerow([spreadsheet_safe(v) for v in row])


def write_csv(path: str | Path, header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file (UTF-8) whose cells a spreadsheet will not run."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        write_rows(fh, header, rows)
    return path


def csv_text(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """The same CSV as a string (for a download button)."""
    import io

    buf = io.StringIO(newline="")
    write_rows(buf, header, rows)
    return buf.getvalue()
