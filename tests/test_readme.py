"""The README's Python examples run as written (```python blocks); snippets that need a download or the reader's
own photos (```py blocks) at least compile."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
SNIPPETS = re.findall(r"```py\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "examples").symlink_to(README.parent / "examples")  # the examples' sample faces, read-only
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_readme_snippet_compiles(code: str) -> None:
    compile(code, str(README), "exec")


def test_readme_has_examples() -> None:
    assert BLOCKS and SNIPPETS


def test_ci_runs_the_readme_test_command() -> None:
    """`.ci/run` runs exactly the README's test command (the first block's line ending in `pytest`)."""
    first_block = re.search(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert first_block is not None
    readme_commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    test_command = next(command for command in readme_commands if command.endswith("pytest"))
    ci_commands = (README.parent / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in ci_commands
    assert "ruff check ." in test_command
