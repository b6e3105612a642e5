"""Reading a file (CSV, TSV, JSON Lines, JSON array, Parquet; optionally gzipped) into a table.

Every value stays text so the dataset rules (scale, whole numbers, empty ids) are judged by
the validators, not guessed by a parser. Each record keeps the row number the user sees in the
file, so every later error can point at it. CSV is parsed with the standard ``csv`` module
(not pandas) because only it reports where a record starts when quoted texts span several
lines, and it notices unterminated quotes; the result is a pandas DataFrame all the same.
"""

from __future__ import annotations

import codecs
import csv
import errno
import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from judgeeye.datasets.errors import (
    MAX_ERRORS,
    DatasetError,
    DatasetValidationError,
    ErrorCollector,
)
from judgeeye.datasets.values import cell_text

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}

_SURROGATE = re.compile("[\udc80-\udcff]")
_CSV_FIELD_LIMIT = 2**31 - 1


@dataclass
class SourceTable:
    """A file's records as an all-text DataFrame plus the row number of each record.

    Cells are ``str`` ("" for blank / JSON null); in JSON sources a key absent from a record is
    ``None`` and nested values (lists, objects) are kept as Python objects for loaders.
    """

    file: str
    format: str
    frame: pd.DataFrame
    row_numbers: list[int]
    #: the header's line (CSV/TSV: 1, or later after blank lines); None for JSON and Parquet
    header_row: int | None

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def __len__(self) -> int:
        return len(self.frame)


def detect_format(path: str | Path, format: str | None = None) -> str:
    """The format named explicitly, else the one the extension says (``x.jsonl.gz`` -> jsonl)."""
    if format is not None:
        fmt = format.lower().lstrip(".")
        fmt = {"ndjson": "jsonl", "jsonlines": "jsonl", "pq": "parquet", "tab": "tsv"}.get(fmt, fmt)
        if fmt not in FORMATS:
            raise DatasetError(
                f"unknown format '{format}'; use one of {', '.join(FORMATS)}",
                file=path,
                field="format",
            )
        return fmt
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in EXTENSIONS:
        return EXTENSIONS[suffixes[-1]]
    raise DatasetError(
        f"cannot tell the format from the file name; name it .csv, .tsv, .jsonl, .json or "
        f".parquet, or pass format= one of {', '.join(FORMATS)}",
        file=path,
        field="format",
    )


def read_source(
    path: str | Path,
    format: str | None = None,
    *,
    data: bytes | None = None,
    sep: str | None = None,
    quoting: int = csv.QUOTE_MINIMAL,
    max_errors: int = MAX_ERRORS,
) -> SourceTable:
    """Read ``path`` (or ``data``, e.g. an upload, with ``path`` as its display name)."""
    file = str(path)
    fmt = detect_format(path, format)
    if data is None:
        data = _read_bytes(file)
    if str(path).lower().endswith(".gz") or data[:2] == b"\x1f\x8b":
        data = _gunzip(file, data)
    if fmt == "parquet":
        return _read_parquet(file, data, ErrorCollector(file, max_errors))
    if not data.strip():
        raise DatasetError("the file is empty", file=file)
    text, bad_bytes = _decode(file, data)
    if not text.strip():
        raise DatasetError("the file is empty", file=file)
    errors = ErrorCollector(file, max_errors)
    if fmt in ("csv", "tsv"):
        delimiter = sep or ("\t" if fmt == "tsv" else ",")
        return _read_delimited(file, fmt, text, delimiter, quoting, bad_bytes, errors)
    if fmt == "jsonl":
        return _read_json_lines(file, text, bad_bytes, errors)
    return _read_json(file, text, bad_bytes, errors)


# --------------------------------------------------------------------------- bytes


def _read_bytes(file: str) -> bytes:
    """The file's bytes; any reason it cannot be read is a :class:`DatasetError`."""
    try:
        return Path(file).read_bytes()
    except FileNotFoundError:
        raise DatasetError("file not found", file=file) from None
    except IsADirectoryError:
        raise DatasetError("is a folder, not a file", file=file) from None
    except PermissionError:
        raise DatasetError("cannot be read: permission denied", file=file) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DatasetError(
                "cannot be read: it is a symbolic link that leads (through other links) back "
                "to itself", file=file,
            ) from None
        raise DatasetError(f"cannot be read: {exc.strerror or exc}", file=file) from None


def _gunzip(file: str, data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except EOFError:
        raise DatasetError(
            "not a readable gzip file: it is cut off (the compressed data ends early)", file=file
        ) from None
    except gzip.BadGzipFile as exc:
        if "Not a gzipped file" in str(exc):
            raise DatasetError(
                "not a gzip file, though its name ends in .gz (rename it or compress it)",
                file=file,
            ) from None
        raise DatasetError(
            f"not a readable gzip file: the compressed data is corrupt ({exc})", file=file
        ) from None
    except zlib.error as exc:  # e.g. "Error -3 while decompressing data: invalid block type"
        detail = str(exc).split(": ", 1)[-1]
        raise DatasetError(
            f"not a readable gzip file: the compressed data is corrupt ({detail})", file=file
        ) from None


# --------------------------------------------------------------------------- decoding


def _decode(file: str, data: bytes) -> tuple[str, bool]:
    """UTF-8 text (a BOM is dropped) and whether undecodable bytes were kept as surrogates."""
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if data.startswith(bom):
            raise DatasetError(
                f"the file is {name}-encoded, not UTF-8; save it as UTF-8", file=file, row=1
            )
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DatasetError(
            "the file is not UTF-8 text: it contains NUL bytes (UTF-16 without a byte-order "
            "mark, or a binary file?); save it as UTF-8",
            file=file,
            row=data.count(b"\n", 0, nul) + 1,
        )
    try:
        return data.decode("utf-8-sig"), False
    except UnicodeDecodeError:
        return data.decode("utf-8-sig", errors="surrogateescape"), True


def bad_bytes_message(text: str, fix: str = "save the file as UTF-8") -> str:
    """Describe the first undecodable byte kept in ``text``."""
    m = _SURROGATE.search(text)
    byte = ord(m.group()) - 0xDC00 if m else 0
    latin = bytes([byte]).decode("latin-1")
    return (
        f"not UTF-8: byte 0x{byte:02X} cannot be decoded (it would be '{latin}' in Latin-1/"
        f"Windows-1252); {fix}"
    )


def _has_bad_bytes(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_bad_bytes(k) or _has_bad_bytes(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_bad_bytes(v) for v in value)
    return False


def _first_bad(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for k, v in value.items():
            if _has_bad_bytes(k):
                return k
            if _has_bad_bytes(v):
                return _first_bad(v)
    if isinstance(value, list):
        for v in value:
            if _has_bad_bytes(v):
                return _first_bad(v)
    return ""


# --------------------------------------------------------------------------- CSV / TSV


def _read_delimited(
    file: str,
    fmt: str,
    text: str,
    delimiter: str,
    quoting: int,
    bad_bytes: bool,
    errors: ErrorCollector,
) -> SourceTable:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)  # long texts are judged by the validators
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True
    )
    header: list[str] | None = None
    header_row = 1
    rows: list[list[str]] = []
    numbers: list[int] = []
    prev = 0
    try:
        for record in reader:
            start, prev = prev + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            if header is None:
                header, header_row = _header(file, record, start, bad_bytes, errors), start
                continue
            if len(record) != len(header):
                if len(record) > len(header):
                    errors.add(
                        f"the row has {len(record)} fields but the header has {len(header)} "
                        f"(an unquoted '{_show_sep(delimiter)}' inside a text?)",
                        row=start,
                    )
                else:
                    errors.add(
                        f"the row has {len(record)} fields but the header has {len(header)} "
                        "(line cut short?)",
                        row=start,
                        field=header[len(record)],
                    )
                continue
            rows.append(record)
            numbers.append(start)
    except csv.Error as exc:
        msg = str(exc)
        if "unexpected end of data" in msg:
            msg = "a quoted text is never closed (unterminated quote, or the file was cut off)"
        errors.add(f"malformed {fmt.upper()}: {msg}", row=prev + 1)
    if header is None:
        errors.add("the file is empty")
    errors.raise_if_any()
    assert header is not None
    if bad_bytes:
        for record, row in zip(rows, numbers):
            for col, cell in zip(header, record):
                if _SURROGATE.search(cell):
                    errors.add(bad_bytes_message(cell), row=row, field=col)
        errors.raise_if_any()
    if not rows:
        errors.add("no data rows: the file has only a header", row=header_row)
        errors.raise_if_any()
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    return SourceTable(file, fmt, frame, numbers, header_row)


def _show_sep(delimiter: str) -> str:
    return {"\t": "\\t"}.get(delimiter, delimiter)


def _header(
    file: str, record: list[str], row: int, bad_bytes: bool, errors: ErrorCollector
) -> list[str]:
    header = [c.strip() for c in record]
    if bad_bytes:
        for c in header:
            if _SURROGATE.search(c):
                errors.add(bad_bytes_message(c), row=row)
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name == "":
            header[i] = f"Unnamed: {i}"
            continue
        if name in seen:
            errors.add(
                f"column '{name}' appears twice in the header "
                f"(columns {seen[name] + 1} and {i + 1})",
                row=row,
                field=name,
            )
        seen[name] = i
    errors.raise_if_any()
    return header


# --------------------------------------------------------------------------- JSON


def _norm(value: Any) -> Any:
    """JSON scalars as text (null -> ''); nested lists/objects kept for loaders."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return value
    return cell_text(value)


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    columns: dict[str, None] = {}
    for rec in records:
        for key in rec:
            columns.setdefault(key, None)
    data = {c: [(_norm(r[c]) if c in r else None) for r in records] for c in columns}
    frame = pd.DataFrame(data, dtype=object)
    if not columns:
        frame = pd.DataFrame(index=range(len(records)))
    return frame


def _type_name(value: Any) -> str:
    return {list: "an array", dict: "an object", str: "a string", bool: "true/false"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else "null"
    )


def _check_record(
    obj: Any, row: int, bad_bytes: bool, errors: ErrorCollector
) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        errors.add(f"expected a JSON object {{...}}, found {_type_name(obj)}", row=row)
        return None
    if bad_bytes and _has_bad_bytes(obj):
        field = next((k for k in obj if _has_bad_bytes(obj[k])), None)
        errors.add(bad_bytes_message(_first_bad(obj)), row=row, field=field)
        return None
    return obj


def _read_json_lines(file: str, text: str, bad_bytes: bool, errors: ErrorCollector) -> SourceTable:
    stripped = text.lstrip()
    if stripped[:1] in "[{":
        whole = _try_whole_json(text)
        if isinstance(whole, list):
            raise DatasetError(
                "the file is one JSON array, not JSON Lines (one object per line); convert it "
                "to one object per line, or import it as format 'json'",
                file=file,
                row=text[: len(text) - len(stripped)].count("\n") + 1,
            )
        if isinstance(whole, dict) and "\n" in text.strip():
            raise DatasetError(
                "the file is one JSON object spread over several lines, not JSON Lines "
                "(one object per line)",
                file=file,
                row=1,
            )
    lines = text.split("\n")
    last = max((i for i, ln in enumerate(lines, 1) if ln.strip()), default=0)
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if not s:
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as exc:
            if bad_bytes and _SURROGATE.search(s):
                errors.add(bad_bytes_message(s), row=i)
            elif i == last and not text.rstrip(" \t").endswith(("\n", "}")):
                errors.add(f"malformed JSON: the last line is cut off ({exc.msg})", row=i)
            else:
                errors.add(f"malformed JSON: {exc.msg} at column {exc.colno}", row=i)
            continue
        rec = _check_record(obj, i, bad_bytes, errors)
        if rec is not None:
            records.append(rec)
            numbers.append(i)
    errors.raise_if_any()
    if not records:
        raise DatasetError("no records in the file", file=file)
    return SourceTable(file, "jsonl", _frame(records), numbers, None)


def _try_whole_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None


def _read_json(file: str, text: str, bad_bytes: bool, errors: ErrorCollector) -> SourceTable:
    """A JSON array of objects (one row per element; row = the element's line); JSON Lines too."""
    pos = len(text) - len(text.lstrip())
    if text[pos : pos + 1] != "[":
        if text[pos : pos + 1] == "{" and isinstance(_try_whole_json(text), dict):
            raise DatasetError(
                "expected a JSON array of objects, found a single object", file=file, row=1
            )
        return _read_json_lines(file, text, bad_bytes, errors)  # .json holding JSON Lines
    decoder = json.JSONDecoder()
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    line, counted = 1, 0
    pos += 1
    n = len(text)

    def skip(p: int) -> int:
        while p < n and text[p] in " \t\r\n":
            p += 1
        return p

    pos = skip(pos)
    if pos < n and text[pos] == "]":
        pos += 1
    else:
        while True:
            pos = skip(pos)
            line += text.count("\n", counted, pos)
            counted = pos
            try:
                obj, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                raise DatasetValidationError(
                    [DatasetError(f"malformed JSON: {exc.msg}", file=file, row=exc.lineno)]
                ) from None
            rec = _check_record(obj, line, bad_bytes, errors)
            if rec is not None:
                records.append(rec)
                numbers.append(line)
            pos = skip(end)
            if pos < n and text[pos] == ",":
                pos += 1
                continue
            if pos < n and text[pos] == "]":
                pos += 1
                break
            row = text.count("\n", 0, min(pos, n)) + 1
            what = "the file ends" if pos >= n else f"found '{text[pos]}'"
            raise DatasetValidationError(
                [*errors.errors, DatasetError(
                    f"malformed JSON: expected ',' or ']' after an array element, {what} "
                    "(file cut off?)", file=file, row=row
                )]
            )
    if text[skip(pos):].strip():
        errors.add("malformed JSON: extra data after the array", row=text.count("\n", 0, pos) + 1)
    errors.raise_if_any()
    if not records:
        raise DatasetError("no records: the JSON array is empty", file=file)
    return SourceTable(file, "json", _frame(records), numbers, None)


# --------------------------------------------------------------------------- Parquet


def _read_parquet(file: str, data: bytes, errors: ErrorCollector) -> SourceTable:
    """A Parquet file; row = the record's position (1, 2, ...). Binary columns (texts written
    as bytes) are decoded as UTF-8, and refused, by row and column, where they are not."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DatasetError(f"not a readable Parquet file ({exc})", file=file) from None
    if table.num_rows == 0:
        raise DatasetError("no data rows: the Parquet file is empty", file=file)
    records = table.to_pylist()
    columns = {
        c: [_norm(_utf8(r[c], row, c, errors)) for row, r in enumerate(records, 1)]
        for c in table.column_names
    }
    errors.raise_if_any()
    frame = pd.DataFrame(columns, dtype=object)
    return SourceTable(file, "parquet", frame, list(range(1, len(records) + 1)), None)


def _utf8(value: Any, row: int, column: str, errors: ErrorCollector) -> Any:
    """``value`` with every ``bytes`` in it decoded as UTF-8 (never shown as ``b'...'``)."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            errors.add(
                bad_bytes_message(
                    bytes(value).decode("utf-8", errors="surrogateescape"),
                    "write the column as UTF-8 text (a string column)",
                ),
                row=row, field=column,
            )
            return ""
    if isinstance(value, list):
        return [_utf8(v, row, column, errors) for v in value]
    if isinstance(value, dict):
        return {k: _utf8(v, row, column, errors) for k, v in value.items()}
    return value
