"""mkdocs hook: pages that say `<!-- autolora run --help -->` get the current help text in its place,
generated from the config's field metadata at build time, so the options page cannot drift from
the defaults."""

import os
import sys
from pathlib import Path

MARKER = "<!-- autolora run --help -->"
ROOT = Path(__file__).resolve().parents[1]


def run_help() -> str:
    """The text of `autolora run --help`, wrapped at 100 columns, from this checkout's sources."""
    if str(ROOT / "python") not in sys.path:
        sys.path[:0] = [str(ROOT / "python"), str(ROOT)]  # as mkdocstrings' `paths` find the API
    from autolora.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal's width
    parser = build_parser()
    (sub,) = (a for a in parser._actions if a.dest == "command")
    return sub.choices["run"].format_help()


def on_page_markdown(markdown: str, **kwargs) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, "```text\n" + run_help().rstrip() + "\n```")
