"""The docs site and the README: every CLI flag is in the generated
reference, every autoresearch.toml key and every bench script has its page,
no page links to or names a file that does not exist, and the README's
commands are the ones CI and the getting-started page run."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify

from ar_tui.cli import build_parser
from ar_tui.core.config import _KNOWN
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import docs_hooks  # noqa: E402  (scripts/ is not a package)

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
README = ROOT / "README.md"
MARKDOWN_FILES = [README, *PAGES]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^\s*(```|~~~)")
# A code span that names a file of this repository: it starts with one of its top-level folders.
REPO_DIRS = ("ar_tui", "bench", "tests", "scripts", "examples", "nanochat", "docs", ".ci")
REPO_PATH = re.compile(rf"^(?:{'|'.join(re.escape(d) for d in REPO_DIRS)})/[\w./-]*[\w/]$")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _prose(path: Path) -> str:
    """The page without its fenced code blocks (commands and sample output
    name run-dir files and paths on a user's machine, not this repository's)."""
    kept, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(line)
    return "\n".join(kept)


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    for name, generate in docs_hooks.GENERATORS.items():
        text = text.replace(docs_hooks.MARKER.format(name), generate())
    anchors = set()
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^#+\s+(.*?)\s*$", line)):
            anchors.add(slugify(match.group(1), "-"))
    return anchors


def test_every_flag_of_every_subcommand_is_in_the_generated_reference() -> None:
    parser = build_parser()
    reference = docs_hooks.cli_reference(parser)
    subcommands = _subcommands(parser)
    assert set(subcommands) >= {"run", "report", "attach", "status", "stop", "ls", "serve"}
    for name, sub in subcommands.items():
        section = reference.split(f"## `ar-tui {name}`", 1)[1].split("\n## ", 1)[0]
        for action in sub._actions:
            for flag in action.option_strings:
                assert f"`{flag}`" in section, f"ar-tui {name} {flag} is missing from the CLI reference"
            if not action.option_strings:
                assert f"`{action.dest.upper()}`" in section, f"ar-tui {name}'s {action.dest} is missing"


def test_the_cli_reference_holds_the_flags_the_registries_declare() -> None:
    # Run flags come from the parts' RunOptions (strategies, executors, agents,
    # the engine), not from parser lines: the reference must walk the parser
    # that holds them.
    from ar_tui.cli import part_options

    options = part_options()
    assert options, "no part declares a run option"
    run_section = docs_hooks.cli_reference().split("## `ar-tui run`", 1)[1].split("\n## ", 1)[0]
    for option in options:
        assert f"`{option.flag}`" in run_section, f"{option.flag} (a RunOption) is missing from the CLI reference"


def test_the_cli_page_takes_the_generated_reference_at_build_time() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert "scripts/docs_hooks.py" in config["hooks"]
    page = (DOCS / "reference" / "cli.md").read_text()
    assert docs_hooks.MARKER.format("cli") in page
    assert docs_hooks.MARKER.format("events") in (DOCS / "reference" / "events.md").read_text()
    rendered = docs_hooks.on_page_markdown(page, None, None, None)
    assert "--baseline-runs" in rendered and docs_hooks.MARKER.format("cli") not in rendered


def test_every_event_kind_and_field_is_in_the_events_reference() -> None:
    from ar_tui.core import events as ev

    reference = docs_hooks.events_reference()
    for kind, cls in ev._REGISTRY.items():
        section = reference.split(f"## `{kind}`: {cls.__name__}", 1)[1].split("\n## ", 1)[0]
        for name in (field.name for field in dataclasses.fields(cls)):
            assert f"| `{name}` |" in section, f"{kind}.{name} is missing from the events reference"


def test_every_autoresearch_toml_key_is_in_its_reference() -> None:
    page = (DOCS / "reference" / "autoresearch-toml.md").read_text()
    for section, keys in _KNOWN.items():
        part = page.split(f"## `[{section}]`", 1)
        assert len(part) == 2, f"[{section}] has no section in the autoresearch.toml reference"
        body = part[1].split("\n## ", 1)[0]
        for key in sorted(keys or ()):
            assert f"| `{key}` |" in body, f"{section}.{key} is missing from the autoresearch.toml reference"


def test_every_bench_script_has_a_benchmark_page_in_the_nav() -> None:
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = set(re.findall(r"[\w./-]+\.md", str(nav)))
    for script in sorted((ROOT / "bench").glob("*.py")):
        pages = [p for p in (DOCS / "benchmarks").glob("*.md") if p.read_text().startswith(f"# bench/{script.name}")]
        assert pages, f"bench/{script.name} has no page in docs/benchmarks"
        assert f"benchmarks/{pages[0].name}" in listed, f"{pages[0].name} is not in mkdocs.yml's nav"
        assert "**Command:**" in pages[0].read_text() and "**Machine:**" in pages[0].read_text()


def test_every_page_in_docs_is_in_the_nav() -> None:
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = set(re.findall(r"[\w./-]+\.md", str(nav)))
    for page in PAGES:
        assert str(page.relative_to(DOCS)) in listed, f"{page.relative_to(ROOT)} is not in mkdocs.yml's nav"


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(path: Path) -> None:
    for target in LINK.findall(_prose(path)):
        if re.match(r"^[a-z]+:", target):
            continue  # a web address: not checked offline
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        assert resolved.exists(), f"{path.relative_to(ROOT)} links to {target}, which does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{path.relative_to(ROOT)} links to {target}: no such heading"


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_repository_files_exist(path: Path) -> None:
    for span in CODE_SPAN.findall(_prose(path)):
        name = span.strip().split()[0].rstrip(".,:;)")
        if REPO_PATH.match(name) and not any(c in name for c in "<>*{}"):
            assert (ROOT / name).exists(), f"{path.relative_to(ROOT)} names {name}, which does not exist"


def _bash_blocks(path: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", path.read_text(), re.DOTALL)


def test_the_readme_is_short_and_ci_runs_its_test_command() -> None:
    assert len(README.read_text().splitlines()) <= 300
    first, second = _bash_blocks(README)[:2]
    assert "ar-tui run --headless" in first and "pytest" in second
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))]
    assert ci == [second], "the README's test command and .ci/run differ"
    getting_started = (DOCS / "getting-started.md").read_text()
    assert first in getting_started and second in getting_started
