"""The environment is the locked one: scripts/install.sh installs requirements/lock-*.txt
exactly, and the locks cover what pyproject.toml asks for (scripts/lock.sh refreshes them)."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCKS = {"cpu": REPO / "requirements" / "lock-cpu.txt", "cuda": REPO / "requirements" / "lock-cuda.txt"}
#: the installers themselves, and the project (editable)
NOT_LOCKED = {"pip", "judgeeye"}
REFRESH = "run `bash scripts/lock.sh`, then `bash scripts/install.sh --dev`"


def pins(lock: Path) -> dict[str, str]:
    return {canonicalize_name(name): version
            for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", lock.read_text(), re.M)}


def lock_in_use() -> Path | None:
    """The lock scripts/install.sh installed this environment from (None: --no-lock/--latest)."""
    marker = Path(sys.prefix) / "judgeeye-lock"
    if not marker.exists():  # an environment made by hand: it should still be the CPU lock's
        return LOCKS["cpu"]
    name = marker.read_text().strip()
    return None if name == "none" else REPO / name


def test_installed_versions_are_the_locked_ones() -> None:
    lock = lock_in_use()
    if lock is None:
        pytest.skip("installed with --no-lock (the drift check): the newest allowed releases, not the lock")
    locked = pins(lock)
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}
    wrong = {name: f"{version} installed, " + (f"{locked[name]} locked" if name in locked else "not in the lock")
             for name, version in sorted(installed.items())
             if name not in NOT_LOCKED and (name not in locked or Version(version) != Version(locked[name]))}
    assert not wrong, f"not the versions of {lock.name} ({REFRESH}): {wrong}"


@pytest.mark.parametrize("variant", sorted(LOCKS))
def test_the_lock_covers_pyproject(variant: str) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"],
              *project["optional-dependencies"]["postgres"],
              *(REPO / "requirements" / "torch.in").read_text().splitlines(),
              *(REPO / "requirements" / "models.in").read_text().splitlines()]
    locked = pins(LOCKS[variant])
    missing = []
    for line in wanted:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        req = Requirement(line)
        pin = locked.get(canonicalize_name(req.name))
        if pin is None or not req.specifier.contains(Version(pin), prereleases=True):
            missing.append(f"{line} (locked: {pin})")
    assert not missing, f"{LOCKS[variant].name} does not satisfy pyproject.toml ({REFRESH}): {missing}"


def test_the_locks_differ_only_in_torch_and_its_cuda_packages() -> None:
    cpu, cuda = pins(LOCKS["cpu"]), pins(LOCKS["cuda"])
    assert Version(cpu["torch"]).public == Version(cuda["torch"]).public and cpu["torch"].endswith("+cpu")
    cuda_only = {n for n in set(cuda) - set(cpu) if not n.startswith(("nvidia-", "cuda-", "triton"))}
    differ = {n: (cpu[n], cuda[n]) for n in set(cpu) & set(cuda) if n != "torch" and cpu[n] != cuda[n]}
    assert not cuda_only and not (set(cpu) - set(cuda)) and not differ, (cuda_only, differ)
