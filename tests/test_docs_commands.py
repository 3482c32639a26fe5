"""Every ``sam2rt`` command line in README.md and docs/*.md parses with the real CLI parser.

The commands are taken from the fenced ``bash`` blocks as written (continuation lines joined, comments
dropped, ``;``/``&&``/``||`` split, ``VAR=value`` prefixes and ``.venv/bin/`` stripped), then given to
``sam2rt.cli.parse_args`` (what ``sam2rt`` runs): an unknown subcommand, a renamed flag or a bad value fails here
instead of in a user's shell. Nothing is executed.
"""

from __future__ import annotations

import io
import re
import shlex
from contextlib import redirect_stderr
from pathlib import Path

import pytest

from sam2rt.cli import parse_args

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"```(?:bash|sh|shell)\n(.*?)```", re.S)
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")


def _split(line: str) -> list[str]:
    words = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    words.whitespace_split = True
    words.commenters = "#"
    return list(words)


def _shell_lines(text: str) -> list[list[str]]:
    """The tokenised logical lines of every bash block: continuations joined, quotes spanning lines kept
    together, comments removed."""
    out = []
    for block in _FENCE.findall(text):
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            pending = f"{pending}\n{line}" if pending else line
            try:
                tokens = _split(pending)
            except ValueError:  # a quote continues on the next line
                continue
            pending = ""
            if tokens:
                out.append(tokens)
        assert not pending, f"unbalanced quotes in {pending!r}"
    return out


def _commands(tokens: list[str]) -> list[list[str]]:
    """``sam2rt`` argument lists in one tokenised line (``a && b; c || d`` gives up to four)."""
    found, current = [], []
    for tok in tokens + [";"]:
        if tok in (";", "&&", "||", "|", "&"):
            while current and _ENV.match(current[0]):
                current = current[1:]
            if current[:1] in (["do"], ["then"]):
                current = current[1:]
            if current and current[0].endswith("sam2rt"):
                found.append(current[1:])
            elif current[:3] in (["python", "-m", "sam2rt"], [".venv/bin/python", "-m", "sam2rt"]):
                found.append(current[3:])
            current = []
        else:
            current.append(tok)
    return found


def _all_commands() -> list[tuple[str, list[str]]]:
    cases = []
    for doc in DOCS:
        for tokens in _shell_lines(doc.read_text(encoding="utf-8")):
            for argv in _commands(tokens):
                cases.append((f"{doc.relative_to(REPO)}: sam2rt {' '.join(argv)}", argv))
    return cases


CASES = _all_commands()


def test_docs_have_commands() -> None:
    """The extraction finds the README's commands (an empty list would make the next test vacuous)."""
    readme = [c for c, _ in CASES if c.startswith("README.md")]
    assert len(readme) >= 5, readme
    assert {argv[0] for _, argv in CASES} >= {"export", "track", "verify"}


@pytest.mark.parametrize("argv", [argv for _, argv in CASES], ids=[c[:120] for c, _ in CASES])
def test_command_parses(argv: list[str]) -> None:
    err = io.StringIO()
    try:
        with redirect_stderr(err):
            parse_args(argv)
    except SystemExit as e:
        assert e.code == 0, f"sam2rt {' '.join(argv)}\n{err.getvalue()}"


def test_extraction_handles_shell_forms() -> None:
    text = ("```bash\nOMP_WAIT_POLICY=PASSIVE .venv/bin/sam2rt bench --model m \\\n    --frames 3  # c\n"
            "for m in a b; do\n  sam2rt export --model $m --out x || break\ndone\nmake test\n```\n")
    cmds = [c for tokens in _shell_lines(text) for c in _commands(tokens)]
    assert cmds == [["bench", "--model", "m", "--frames", "3"], ["export", "--model", "$m", "--out", "x"]]
