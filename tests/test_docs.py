"""The README's command reference agrees with the real command line."""

from __future__ import annotations

import re
from pathlib import Path

import click

from allied.cli import main

README = Path(__file__).parent.parent / "README.md"


def _usage_blocks() -> list[list[str]]:
    """Each fenced block of the README whose first line is an ``allied`` command."""
    blocks = re.findall(r"```\n(.*?)```", README.read_text(), flags=re.S)
    return [block.strip().splitlines() for block in blocks if block.startswith("allied ")]


def _command(words: list[str]) -> click.Command:
    command: click.Command = main
    for word in words:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command = command.commands[word]
    return command


def test_every_documented_command_and_option_exists() -> None:
    documented = 0
    for block in _usage_blocks():
        current: click.Command | None = None
        for line in block:
            if line.startswith("allied "):
                words = [w for w in line.split() if not w.startswith(("-", "[", "DIR"))]
                current = _command(words[1:])
                assert current is not main, line
                documented += 1
            assert current is not None
            options = {opt for param in current.params for opt in getattr(param, "opts", [])}
            options |= {"--help", "--node"}
            for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-o)\b", line):
                assert option in options, f"{option} is not an option of {current.name}: {line}"
    assert documented >= 12


def test_every_command_is_documented() -> None:
    text = README.read_text()

    def walk(group: click.Group, prefix: str) -> list[str]:
        names = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                names += walk(command, f"{prefix}{name} ")
            else:
                names.append(f"{prefix}{name}")
        return names

    for name in walk(main, ""):
        assert f" {name}" in text, f"'allied {name}' is not in the README"
