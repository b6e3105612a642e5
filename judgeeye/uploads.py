"""Files users upload through the app: kept under the data folder, never anywhere else.

An upload is stored as ``<hash8>-<safe name>``; the name the user gave it is kept beside it
(``<stored>.upload-name``) so pages show "my ratings (2).csv", never the stored name.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from judgeeye.store import data_dir

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
#: suffix of the file beside an upload that holds the user's own file name
NAME_SUFFIX = ".upload-name"
_STORED_PREFIX = re.compile(r"^[0-9a-f]{8}-")


class UploadPathError(ValueError):
    """A name that would leave the uploads folder."""


def uploads_dir() -> Path:
    path = data_dir() / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


#: longest stored name (file systems allow 255 bytes; the hash prefix and ".part" need room)
MAX_NAME = 120


def safe_name(name: str) -> str:
    """The file's own name, reduced to safe characters (no folders, no leading dots, no NUL or
    control characters) and to :data:`MAX_NAME` characters, keeping its extension."""
    base = _SAFE.sub("_", Path(name.replace("\\", "/")).name).lstrip("._")
    if len(base) > MAX_NAME:
        stem, dot, ext = base.rpartition(".")
        ext = ext[:16] if dot and stem else ""
        base = base[: MAX_NAME - len(ext) - 1].rstrip("._") + "." + ext if ext else base[:MAX_NAME]
    return base or "upload"


def display_name(name: str) -> str:
    """The user's file name as a page shows it: no folders, no control characters, not empty."""
    base = _CONTROL.sub(" ", Path(name.replace("\\", "/")).name).strip()
    return base[:255] or "upload"


def save_upload(name: str, data: bytes) -> Path:
    """Store an upload as ``<hash8>-<name>`` so equal content is stored once and names never clash;
    the user's own name is kept for :func:`upload_name`."""
    digest = hashlib.sha256(data).hexdigest()[:8]
    root = uploads_dir().resolve()
    path = root / f"{digest}-{safe_name(name)}"
    if path.resolve().parent != root:  # cannot happen with safe_name; a last guard all the same
        raise UploadPathError(f"{name!r} would be stored outside the uploads folder")
    if not path.exists():
        _write(path, data)
    _write(path.with_name(path.name + NAME_SUFFIX), display_name(name).encode("utf-8"))
    return path


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def upload_name(path: Path) -> str:
    """The name the user uploaded ``path`` under (stored uploads from before names were kept:
    the stored name without its hash prefix)."""
    try:
        return display_name(path.with_name(path.name + NAME_SUFFIX).read_text("utf-8"))
    except (OSError, UnicodeDecodeError):
        return _STORED_PREFIX.sub("", path.name)


def list_uploads() -> list[Path]:
    return sorted((p for p in uploads_dir().iterdir()
                   if p.is_file() and not p.name.endswith((".part", NAME_SUFFIX))),
                  key=lambda p: p.stat().st_mtime, reverse=True)


def resolve_upload(name: str) -> Path:
    """The path of an uploaded file by its stored name; anything outside the folder is refused."""
    root = uploads_dir().resolve()
    path = (root / name).resolve()
    if path.parent != root or not path.is_file() or path.name.endswith((".part", NAME_SUFFIX)):
        raise UploadPathError(f"{name!r} is not an uploaded file")
    return path
