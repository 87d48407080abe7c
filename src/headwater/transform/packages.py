"""The dbt project's packages (``packages.yml`` or ``dependencies.yml``): when ``dbt deps`` must run,
and what to say when it cannot.

``dbt deps`` runs before a build when packages are declared and either fewer are installed than
declared (what dbt itself checks before refusing to parse), or the package files changed since
Headwater's last install: a hash of ``packages.yml``, ``dependencies.yml`` and ``package-lock.yml``
is kept in ``.headwater/dbt/packages.sha256``, so deps runs once per change, not once per run.
Packages someone else installed (``dbt deps`` by hand, or ``dbt_packages/`` copied in from a
machine with network) are taken as they are the first time Headwater sees them.

Local packages (``local: ../pkg``) and git packages from a path on this machine need no network;
hub, tarball and remote git packages do, and without it the error names them and how to vendor them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from headwater.errors import ConfigError

PACKAGE_FILES = ("packages.yml", "dependencies.yml", "package-lock.yml")
STAMP = "packages.sha256"

# What a failed download says, from requests (hub, tarballs) or from git (git packages)
NETWORK_SIGNS = (
    "external connection exception",
    "failed to resolve",
    "name or service not known",
    "temporary failure in name resolution",
    "could not resolve host",
    "unable to access",
    "network is unreachable",
    "connection refused",
    "connection timed out",
    "max retries exceeded",
)


def declared_packages(project_dir: Path) -> list[dict[str, Any]]:
    """The packages the project declares; dbt reads ``dependencies.yml``'s before ``packages.yml``'s."""
    for name in ("dependencies.yml", "packages.yml"):
        data = _read_yaml(project_dir / name)
        packages = data.get("packages") if isinstance(data, dict) else None
        if packages:
            return [p for p in packages if isinstance(p, dict)]
    return []


def install_path(project_dir: Path) -> Path:
    data = _read_yaml(project_dir / "dbt_project.yml")
    folder = data.get("packages-install-path") if isinstance(data, dict) else None
    return project_dir / str(folder or "dbt_packages")


def installed_count(project_dir: Path) -> int:
    """Package folders installed, counted as dbt counts them."""
    root = install_path(project_dir)
    return sum(1 for p in root.iterdir() if p.is_dir() and not p.name.startswith("__")) if root.is_dir() else 0


def fingerprint(project_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in PACKAGE_FILES:
        path = project_dir / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"-") + b"\0")
    return digest.hexdigest()


def needs_install(project_dir: Path, work: Path) -> bool:
    """Whether ``dbt deps`` must run before the next build (records a first-seen install as current)."""
    declared = declared_packages(project_dir)
    if not declared:
        return False
    if installed_count(project_dir) < len(declared):
        return True
    stamp = work / STAMP
    if not stamp.is_file():
        record_install(project_dir, work)
        return False
    return stamp.read_text().strip() != fingerprint(project_dir)


def record_install(project_dir: Path, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / STAMP).write_text(fingerprint(project_dir) + "\n")


def describe(package: dict[str, Any]) -> str:
    for key, where in (("package", "from the dbt package hub"), ("git", "from git"), ("tarball", "a tarball"), ("private", "a private package"), ("local", "a local folder")):
        if key in package:
            return f"{package[key]} ({where})"
    return str(package)


def needs_network(package: dict[str, Any]) -> bool:
    if "local" in package:
        return False
    if "git" in package:
        url = str(package["git"])
        return not (url.startswith(("/", "file://", "./", "../")) or Path(url).expanduser().exists())
    return True


def deps_failed(project_dir: Path, packages: list[dict[str, Any]], error: str) -> ConfigError:
    """The user's error for a failed ``dbt deps``: unreachable packages named with how to vendor them,
    else dbt's own reason with the package file to fix."""
    remote = [describe(p) for p in packages if needs_network(p)]
    if remote and any(sign in error.lower() for sign in NETWORK_SIGNS):
        return ConfigError(
            f"dbt could not install {', '.join(remote)}: it needs the network, and this machine cannot reach it",
            why=error,
            fix=(
                "Vendor the package as a local one: copy its folder into the project (e.g. vendor/<name>, "
                "from dbt_packages/ on a machine where `dbt deps` ran) and declare it as `- local: vendor/<name>` "
                f"in packages.yml; or run `dbt deps` in {project_dir} where there is network and bring "
                "dbt_packages/ and package-lock.yml here."
            ),
        )
    return ConfigError(
        "dbt could not install the project's packages (dbt deps)",
        why=error,
        fix=f"Fix the package it names in packages.yml (or dependencies.yml) in {project_dir}, then run again.",
    )


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}", fix="Fix the file's YAML, then run again.") from None
