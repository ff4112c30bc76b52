"""The user docs (README.md, docs/*.md) name only what exists: links and anchors resolve, every setting
is documented and every documented one exists, every `callvault` command and flag shown is real.
Newcomers copy these literally; each check here once caught a page that had drifted from the code."""

import re
from pathlib import Path

import click

from services.cli.main import cli
from services.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# decisions.md is a dated log (it may name what has since changed); the benchmark pages record runs.
USER_PAGES = [p for p in PAGES if p.name != "decisions.md" and not p.name.startswith("benchmarks")]
NOT_SETTINGS = {"CALLVAULT_UPDATE_SCREENSHOTS"}  # read by the browser tests, not by the product


def _where(page: Path, line_no: int) -> str:
    return f"{page.relative_to(ROOT)}:{line_no}"


def _prose_lines(page: Path) -> list[tuple[int, str]]:
    """Lines outside fenced code blocks (a `# comment` in a block is not a heading)."""
    lines, fenced = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats numbered."""
    anchors: set[str] = set()
    for _, line in _prose_lines(page):
        heading = re.match(r"#{1,6} +(.*?)#*\s*$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            anchor, n = slug, 0
            while anchor in anchors:
                n += 1
                anchor = f"{slug}-{n}"
            anchors.add(anchor)
    return anchors


def test_relative_links_and_their_anchors_resolve() -> None:
    broken = []
    for page in PAGES:
        for number, line in _prose_lines(page):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                    continue
                path, _, anchor = target.partition("#")
                linked = (page.parent / path).resolve() if path else page
                if not linked.exists():
                    broken.append(f"{_where(page, number)}: {target} (no such file)")
                elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                    broken.append(f"{_where(page, number)}: {target} (no such heading)")
    assert broken == []


def test_every_setting_is_documented() -> None:
    text = "\n".join(page.read_text(encoding="utf-8") for page in USER_PAGES)
    # Written in full or, in a list under "prefix CALLVAULT_", without it.
    undocumented = [
        f"CALLVAULT_{field.upper()}"
        for field in Settings.model_fields
        if not re.search(rf"(?<![A-Z_])(CALLVAULT_)?{field.upper()}(?![A-Z0-9_])", text)
    ]
    assert undocumented == [], "in services/core/config.py but in no user doc (README.md, docs/*.md)"


def test_every_documented_setting_exists() -> None:
    known = {f"CALLVAULT_{name.upper()}" for name in Settings.model_fields} | NOT_SETTINGS
    unknown = [
        f"{_where(page, number)}: {name}"
        for page in USER_PAGES
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        for name in re.findall(r"CALLVAULT_[A-Z0-9_]*[A-Z0-9]", line)
        if name not in known
    ]
    assert unknown == []


def _code(page: Path) -> list[tuple[int, str]]:
    """Code spans and fenced lines, where commands are shown to be typed."""
    code, fenced = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            code.append((number, re.split(r"(?:^|\s)#(?:\s|$)", line)[0]))  # a shell comment is prose
        else:
            code.extend((number, span) for span in re.findall(r"`([^`]+)`", line.replace("\\|", " ")))
    return code


def _documented_commands() -> list[tuple[str, list[str], list[str]]]:
    """(where, command words, flags) for each `callvault ...` shown; a command ends at a shell delimiter."""
    found = []
    for page in USER_PAGES:
        for number, code in _code(page):
            for match in re.finditer(r"(?<![\w-])callvault((?: +[a-z][^\s)\"'#;&>|`]*)(?: +[^\s)\"'#;&>|`]+)*)", code):
                words = match.group(1).split()
                if words:
                    found.append(
                        (_where(page, number), words, re.findall(r"(?<![\w-])--[a-z][a-z-]*", " ".join(words)))
                    )
    return found


def test_every_documented_command_and_flag_exists() -> None:
    wrong = []
    for where, words, flags in _documented_commands():
        command: click.Command | None = cli.commands.get(words[0])
        if command is None:
            wrong.append(f"{where}: no command `callvault {words[0]}`")
            continue
        if isinstance(command, click.Group) and len(words) > 1 and not words[1].startswith("-"):
            command = command.commands.get(words[1])
            if command is None:
                wrong.append(f"{where}: no command `callvault {words[0]} {words[1]}`")
                continue
        options = {"--help"} | {
            name for param in command.params if isinstance(param, click.Option) for name in param.opts
        }
        options |= {
            name for param in command.params if isinstance(param, click.Option) for name in param.secondary_opts
        }
        wrong.extend(
            f"{where}: `callvault {' '.join(words[:2])}` has no {flag}" for flag in flags if flag not in options
        )
    assert wrong == []


def test_every_command_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in cli.commands if f"`callvault {name}" not in readme and f"/ `{name} " not in readme]
    assert missing == [], "commands missing from README's Commands table"


def test_every_service_package_is_in_the_readme_architecture() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    packages = sorted(p.parent.name for p in (ROOT / "services").glob("*/__init__.py"))
    assert [name for name in packages if f"services/{name}/ " not in readme] == []
