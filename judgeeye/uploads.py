"""Files users upload through the app: kept under the data folder, never anywhere else."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from judgeeye.store import data_dir

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


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


def save_upload(name: str, data: bytes) -> Path:
    """Store an upload as ``<hash8>-<name>`` so equal content is stored once and names never clash."""
    digest = hashlib.sha256(data).hexdigest()[:8]
    root = uploads_dir().resolve()
    path = root / f"{digest}-{safe_name(name)}"
    if path.resolve().parent != root:  # cannot happen with safe_name; a last guard all the same
        raise UploadPathError(f"{name!r} would be stored outside the uploads folder")
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def list_uploads() -> list[Path]:
    return sorted((p for p in uploads_dir().iterdir() if p.is_file() and not p.name.endswith(".part")),
                  key=lambda p: p.stat().st_mtime, reverse=True)


def resolve_upload(name: str) -> Path:
    """The path of an uploaded file by its stored name; anything outside the folder is refused."""
    root = uploads_dir().resolve()
    path = (root / name).resolve()
    if path.parent != root or not path.is_file():
        raise UploadPathError(f"{name!r} is not an uploaded file")
    return path
