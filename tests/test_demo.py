"""``botstate demo`` run as a user runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def botstate_command() -> list[str]:
    script = Path(sys.executable).parent / "botstate"
    found = str(script) if script.exists() else shutil.which("botstate")
    assert found, "the botstate console script is not installed (pip install -e '.[test]')"
    return [found]


def run(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*botstate_command(), *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning:botstate"},
    )


@pytest.mark.parametrize(("store", "file_name"), [("sqlite", "bot.db"), ("pickle", "bot.pickle")])
def test_demo_restores_the_conversation_after_a_kill(
    tmp_path: Path, store: str, file_name: str
) -> None:
    result = run("demo", "--dir", "demo-files", "--store", store, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Process 1 was killed with SIGKILL" in out
    assert "user_data[5000000001] = {'name': 'Ada'}" in out
    assert "conversation 'signup' of (5000000001, 5000000001) = <Step.PLAN: 2>" in out
    assert "callback data: 1 keyboard(s)" in out
    assert "bot  > Pro plan it is. How old are you?" in out
    assert "bot  > All set, Ada: pro plan, age 36." in out
    assert "{'name': 'Ada', 'plan': 'pro', 'price': 5, 'age': 36}" in out
    assert "bot_data = {'signups': 1}" in out
    assert str(tmp_path / "demo-files" / file_name) in out
    assert (tmp_path / "demo-files" / file_name).exists()
    assert result.stderr == ""

    # The closing lines suggest a look inside the store, and that command works.
    url = f"{store}://{tmp_path / 'demo-files' / file_name}"
    assert f"Look inside the store: botstate inspect {url}" in out
    inspected = run("inspect", url, cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    assert "user_data              1" in inspected.stdout
    assert "bot_data               1" in inspected.stdout

    # A second run starts over in the same folder and tells the same story.
    again = run("demo", "--dir", "demo-files", "--store", store, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "bot_data = {'signups': 1}" in again.stdout


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "bot.db").write_text("my real data")
    result = run("demo", "--dir", "mine", cwd=tmp_path)
    assert result.returncode != 0
    assert "was not made by the demo" in result.stderr
    assert (tmp_path / "mine" / "bot.db").read_text() == "my real data"


def test_demo_help_shows_an_example(tmp_path: Path) -> None:
    result = run("demo", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "Example: botstate demo" in result.stdout
