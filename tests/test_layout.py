"""Packaging and architecture rules: one import name, and the dependency direction."""

import ast
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("core", "data", "vision", "speech", "apps")
# package -> lorakit packages it must never import
FORBIDDEN = {
    "core": {"data", "vision", "speech", "apps"},
    "data": {"vision", "speech", "apps"},
    "vision": {"apps", "speech"},
    "speech": {"apps", "vision"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                pkg = path.relative_to(ROOT).parent.parts
                base = pkg[: len(pkg) - (node.level - 1)]
                names.add(
                    ".".join(("lorakit", *base, *(node.module.split(".") if node.module else ())))
                )
            elif node.module:
                names.add(node.module)
    return names


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_dependency_direction(folder):
    bad = []
    for path in (ROOT / folder).rglob("*.py"):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] in FOLDERS:
                bad.append(f"{path.relative_to(ROOT)} imports bare {name!r} (use lorakit.{name})")
            if parts[0] == "lorakit" and len(parts) > 1 and parts[1] in FORBIDDEN[folder]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_every_package_folder_is_listed_in_pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    for init in ROOT.glob("*/**/__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts[0] in FOLDERS:
            assert f'"lorakit.{".".join(rel.parts)}"' in text, (
                f"{rel} is not listed in pyproject packages"
            )


def test_wheel_installs_one_import_name(tmp_path):
    """Build the wheel, install it into a fresh venv: lorakit.* imports, no top-level core/data/..."""
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheel_dir.glob("lorakit-*.whl")
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert tops == {
        "lorakit",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)  # what pip does for a pure-Python wheel
    for top in FOLDERS:
        assert not (Path(site) / top).exists(), f"wheel installs a top-level {top!r}"
    # the fresh venv sees its own lorakit first and borrows the heavy dependencies (torch, ...)
    deps = sysconfig.get_paths()["purelib"]
    code = (
        f"import sys; sys.path.append({deps!r}); import lorakit.core, lorakit.data, lorakit.vision, "
        "lorakit.speech, lorakit.apps; print(lorakit.core.__file__)"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
    ).stdout
    assert out.strip().startswith(site), out
