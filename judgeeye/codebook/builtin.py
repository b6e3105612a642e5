"""The built-in original codebooks shipped in ``judgeeye/assets/codebooks/<name>.json``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from judgeeye.codebook.io import load_codebook_file
from judgeeye.codebook.model import CodebookNotFoundError, CodebookSpec

ASSETS_ENV = "JUDGEEYE_ASSETS"
#: shipped inside the package: sample project, original codebooks, licences
PACKAGE_ASSETS = Path(__file__).resolve().parents[1] / "assets"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def assets_dir() -> Path:
    """The ``assets`` folder: ``$JUDGEEYE_ASSETS`` if set, else the one inside the package
    (installed with it as package data)."""
    env = os.environ.get(ASSETS_ENV)
    if env:
        path = Path(env).expanduser().resolve()
        if not path.is_dir():
            raise CodebookNotFoundError(f"${ASSETS_ENV} points to {path}, which is not a folder")
        return path
    path = PACKAGE_ASSETS
    if not (path / "codebooks").is_dir():
        raise CodebookNotFoundError(f"the JudgeEye assets folder {path} is missing (a broken install?); "
                                    f"set ${ASSETS_ENV} to a folder holding codebooks/")
    return path


def codebooks_dir() -> Path:
    return assets_dir() / "codebooks"


def list_builtin() -> list[str]:
    """Names of the built-in codebooks, sorted (e.g. ``hanna_complexity``)."""
    return sorted(p.stem for p in codebooks_dir().glob("*.json"))


def builtin_path(name: str) -> Path:
    stem = name[:-5] if name.endswith(".json") else name
    if not _NAME.match(stem) or ".." in stem:
        raise CodebookNotFoundError(f"invalid built-in codebook name {name!r}")
    path = codebooks_dir() / f"{stem}.json"
    if not path.is_file():
        raise CodebookNotFoundError(
            f"no built-in codebook {stem!r}; available: {', '.join(list_builtin()) or '(none)'}"
        )
    return path


def load_builtin(name: str) -> CodebookSpec:
    """Load and validate a built-in codebook by name (with or without ``.json``)."""
    return load_codebook_file(builtin_path(name))
