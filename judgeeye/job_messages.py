"""A job's error and log as people read them: the error without its exception class, each traceback
in the log replaced by the error it ends with (the log file keeps the traceback, for debugging)."""

from __future__ import annotations

import re

_EXCEPTION_NAME = re.compile(r"\b(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Refused|Resume|Interrupt)\b: ?")
_CHAINED = ("The above exception was the direct cause", "During handling of the above exception")


def error_message(text: str) -> str:
    """An error for people: without the exception's class (``TrainingDataError: no traces`` ->
    ``no traces``)."""
    return _EXCEPTION_NAME.sub("", text.strip()) or text.strip()


def readable_log(text: str) -> str:
    """A job log as the pages show it: each Python traceback (the log file keeps it, for
    debugging) replaced by its last line, the error itself, as ``error: ...``."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("Traceback (most recent call last):"):
            i += 1
            while i < len(lines) and (lines[i][:1] in (" ", "\t") or not lines[i].strip()):
                i += 1
            if i < len(lines):
                out.append("error: " + error_message(lines[i]))
                i += 1
            continue
        if not line.startswith(_CHAINED):
            out.append(_EXCEPTION_NAME.sub("", line))
        i += 1
    return "\n".join(out)


__all__ = ["error_message", "readable_log"]
