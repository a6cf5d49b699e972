"""Every command in the README's ``bash`` blocks runs as written on a fresh copy of the
repository (tracked and not-ignored files only, sharing this checkout's ``.venv``).

The full run trains every pipeline (several minutes on 2 cores), so it is the ``readme``
marker group: ``pytest -m readme tests/test_readme.py``. The extraction and the files the
commands name are checked in the default suite.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# commands the README shows that this test does not run: the install-and-serve / the whole
# test job (that would run this test again), and the demo server (the browser tests cover it)
EXCEPTED = ("bash .ci/main", "bash .ci/run", ".venv/bin/lorakit demo")


def bash_blocks(text: str) -> list[str]:
    """The bodies of the ```bash fenced blocks, in order."""
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)


def readme_commands(text: str) -> list[str]:
    """One string per command of the ``bash`` blocks: comments dropped, ``\\`` lines joined."""
    out: list[str] = []
    for block in bash_blocks(text):
        pending = ""
        for line in block.splitlines():
            line = pending + line
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            code = strip_comment(line).strip()
            if code:
                out.append(code)
    return out


def strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` outside quotes after a space)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
    lexer.whitespace_split, lexer.commenters = True, "#"
    try:
        words = list(lexer)
    except ValueError:
        return line
    return " ".join(shlex.quote(w) for w in words)


def to_run(commands: list[str]) -> list[str]:
    return [c for c in commands if not c.startswith(EXCEPTED)]


def fresh_copy(dest: Path) -> Path:
    """The files a clone has (tracked + untracked-not-ignored), plus a link to ``.venv``."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    os.symlink(ROOT / ".venv", dest / ".venv")
    return dest


def test_readme_commands_are_found_and_name_shipped_files():
    commands = readme_commands(README.read_text())
    assert "bash .ci/main" in commands and "bash .ci/run" in commands
    runnable = to_run(commands)
    verbs = {" ".join(c.split()[1:3]) for c in runnable if c.startswith(".venv/bin/lorakit")}
    for verb in ("train clip", "predict cod", "predict clip", "predict ood", "transcribe --run"):
        assert verb in verbs, f"the README shows no `lorakit {verb}` command"
    # every repository file a command reads must ship (outputs under runs/ are made earlier)
    for cmd in runnable:
        for word in cmd.split():
            if word.startswith(("demos/", ".ci/")):
                assert (ROOT / word).is_file(), f"README command names missing file {word}: {cmd}"
    assert "../shared" not in README.read_text(), "the README links outside the repository"


def test_comment_stripping_keeps_quoted_hashes():
    assert strip_comment("lorakit x --set 'a=#1'   # note") == "lorakit x --set 'a=#1'"
    assert readme_commands("```bash\nls \\\n  -l  # list\n```\n") == ["ls -l"]


@pytest.mark.readme
def test_every_readme_command_runs_as_written(tmp_path):
    clone = fresh_copy(tmp_path / "clone")
    env = {**os.environ, "LORAKIT_RUNS": str(tmp_path / "hub-runs")}
    times = []
    for cmd in to_run(readme_commands(README.read_text())):
        t0 = time.perf_counter()
        res = subprocess.run(
            ["bash", "-c", cmd], cwd=clone, env=env, capture_output=True, text=True, timeout=1800
        )
        times.append((time.perf_counter() - t0, cmd))
        tail = (res.stdout + res.stderr)[-3000:]
        assert res.returncode == 0, f"README command failed ({res.returncode}): {cmd}\n{tail}"
    print("\n".join(f"{t:6.1f} s  {c}" for t, c in times))
