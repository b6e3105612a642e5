"""Errors that point at the exact place in the user's file.

A rating dataset is usually fixed by hand in a spreadsheet or editor, so every problem names the
file, the row as the user sees it (CSV: line number with the header as line 1; JSON Lines: line
number) and the field. An import gathers up to ``MAX_ERRORS`` of them before giving up, so the
user can fix a batch at once instead of one error per attempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

MAX_ERRORS = 20


class DatasetError(ValueError):
    """One problem in a dataset (or in how it is being imported).

    ``row`` is None when the problem concerns the whole file; ``field`` is None when no single
    column/key is at fault.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.row = row
        self.field = field
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(Path(self.file).name or self.file)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def __str__(self) -> str:
        return self._render()

    @property
    def errors(self) -> list[DatasetError]:
        """Every problem carried by this exception (one, here)."""
        return [self]

    def __reduce__(self) -> tuple[Any, ...]:
        # keep file/row/field when the error crosses a process boundary (job workers)
        return _rebuild, (type(self), self.message, self.file, self.row, self.field)


def _rebuild(
    cls: type[DatasetError], message: str, file: str | None, row: int | None, field: str | None
) -> DatasetError:
    return cls(message, file=file, row=row, field=field)


class DatasetValidationError(DatasetError):
    """Several problems found in one pass; nothing was imported.

    Subclasses :class:`DatasetError` so ``except DatasetError`` catches both; its
    file/row/field are those of the first problem.
    """

    def __init__(self, errors: Iterable[DatasetError], *, truncated: bool = False) -> None:
        self._errors = list(errors)
        if not self._errors:
            raise ValueError("DatasetValidationError needs at least one error")
        self.truncated = truncated
        first = self._errors[0]
        super().__init__(first.message, file=first.file, row=first.row, field=first.field)

    @property
    def errors(self) -> list[DatasetError]:
        return list(self._errors)

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_many, (self._errors, self.truncated)

    def _render(self) -> str:
        n = len(self._errors)
        head = f"{n} problem{'s' if n != 1 else ''} found; nothing was imported:"
        if self.truncated:
            head = f"stopped after {n} problems; nothing was imported:"
        return "\n".join([head, *(f"  {e}" for e in self._errors)])


class ErrorCollector:
    """Gathers errors for one file; raises once ``limit`` is reached or on :meth:`raise_if_any`."""

    def __init__(self, file: str | Path | None, limit: int = MAX_ERRORS) -> None:
        self.file = str(file) if file is not None else None
        self.limit = limit
        self.errors: list[DatasetError] = []

    def add(
        self,
        message: str,
        *,
        row: int | None = None,
        field: str | None = None,
        file: str | Path | None = None,
    ) -> None:
        self.errors.append(DatasetError(message, file=file or self.file, row=row, field=field))
        if len(self.errors) >= self.limit:
            raise DatasetValidationError(self.errors, truncated=True)

    def extend(self, errors: Iterable[DatasetError]) -> None:
        for e in errors:
            self.add(e.message, row=e.row, field=e.field, file=e.file)

    def for_file(self, file: str | Path) -> ErrorCollector:
        """A collector for another file that shares this one's list and limit."""
        other = ErrorCollector(file, self.limit)
        other.errors = self.errors
        return other

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self) -> None:
        if self.errors:
            raise DatasetValidationError(self.errors)


def _rebuild_many(errors: list[DatasetError], truncated: bool) -> DatasetValidationError:
    return DatasetValidationError(errors, truncated=truncated)
