"""Upload and export paths cannot leave their folders: a user-given file name is reduced to a
safe base name inside the uploads folder; the app's exports go under the data folder's exports/."""

from __future__ import annotations

from pathlib import Path

import pytest

from judgeeye.uploads import MAX_NAME, UploadPathError, list_uploads, resolve_upload, safe_name, save_upload

HOSTILE = [
    "../../etc/x.csv", "/abs/x.csv", "..\\..\\windows\\x.csv", "C:\\Users\\x.csv", "x\x00.csv", "\x00",
    "..", "...", ".", "", "/", "./.././", ".bashrc", "a/../../b.csv", "x" * 400 + ".csv", "名前 (1).jsonl",
    "\n\r\t.csv", "-rf.csv", "~/x.csv", "%2e%2e%2fx.csv",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_upload_names_stay_in_the_uploads_folder(data_dir: Path, name: str) -> None:
    path = save_upload(name, b"id,text\n1,a\n")
    root = (data_dir / "uploads").resolve()
    assert path.resolve().parent == root
    assert path.read_bytes() == b"id,text\n1,a\n"
    base = path.name.split("-", 1)[1]
    assert base == safe_name(name)
    assert not base.startswith(".") and "/" not in base and "\\" not in base and "\x00" not in base
    assert len(base) <= MAX_NAME
    # nothing was written anywhere else under the data folder
    assert {p.parent.resolve() for p in data_dir.rglob("*") if p.is_file()} == {root}
    assert resolve_upload(path.name) == path.resolve()


def test_safe_names_keep_what_they_can() -> None:
    assert safe_name("../../etc/x.csv") == "x.csv"
    assert safe_name("/abs/x.csv") == "x.csv"
    assert safe_name("x\x00.csv") == "x_.csv"
    assert safe_name("..") == safe_name("") == safe_name("...") == "upload"
    assert safe_name("ratings 2024.jsonl") == "ratings_2024.jsonl"
    long = safe_name("y" * 400 + ".parquet")
    assert long.endswith(".parquet") and len(long) == MAX_NAME


def test_same_content_is_stored_once_and_listed(data_dir: Path) -> None:
    a = save_upload("a.csv", b"1")
    assert save_upload("../a.csv", b"1") == a
    b = save_upload("a.csv", b"2")
    assert a != b
    assert set(list_uploads()) == {a, b}


@pytest.mark.parametrize("name", ["../test.db", "/etc/passwd", "..", "", "sub/../../x", "nope.csv"])
def test_resolving_an_upload_never_leaves_the_folder(data_dir: Path, name: str) -> None:
    save_upload("real.csv", b"x")
    (data_dir / "test.db").write_text("not an upload")
    with pytest.raises(UploadPathError):
        resolve_upload(name)


def test_app_exports_go_under_the_exports_folder(data_dir: Path) -> None:
    from judgeeye.review.export import default_export_dir

    target = default_export_dir(7)
    assert target.parent == data_dir / "exports"
    assert target.name.startswith("project-7-")
    with pytest.raises((TypeError, ValueError)):
        default_export_dir("../../x")  # type: ignore[arg-type]


def test_job_logs_and_training_runs_are_named_by_id(store_url: str, data_dir: Path) -> None:
    from judgeeye.jobs import create_job, logs_dir
    from judgeeye.store import session_scope
    from judgeeye.training.launch import run_dir, runs_root

    with session_scope() as s:
        job = create_job(s, "sample", {"run_id": "../../x"})
        log_path = Path(job.log_path)
    assert log_path.parent == logs_dir() and log_path.name == f"job-{job.id}.log"
    assert run_dir(3).parent == runs_root() and runs_root().parent == data_dir
