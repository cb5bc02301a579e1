"""Output helpers shared by the ``lockyard`` subcommands, following kubectl's conventions.

Tables are aligned columns with upper-case headers separated by three spaces; ages read like
kubectl's (``45s``, ``3m12s``, ``5h``, ``12d``); ``-o json`` and ``-o yaml`` print documents;
colour is used only on a terminal, and never when ``NO_COLOR`` is set or ``TERM=dumb``. Exit
codes: 0 success, 1 error, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

OUTPUT_FORMATS = ("table", "wide", "json", "yaml")

_COLORS = {"red": "31", "green": "32", "yellow": "33", "dim": "2"}


class CliError(Exception):
    """A failure to report as ``error: <message>`` with exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def use_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint(text: str, color: str | None, enabled: bool) -> str:
    if not enabled or color is None or not text:
        return text
    return f"\x1b[{_COLORS[color]}m{text}\x1b[0m"


Cell = str | tuple[str, str | None]
"""A table cell: plain text, or ``(text, colour)`` painted only on a terminal."""


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    color: bool = False,
    no_headers: bool = False,
    widths: Sequence[int] | None = None,
) -> list[str]:
    """Aligned lines (no trailing spaces), kubectl style; widths are computed on plain text."""
    plain = [[cell if isinstance(cell, str) else cell[0] for cell in row] for row in rows]
    if widths is None:
        widths = column_widths(headers, plain, no_headers=no_headers)
    lines = []
    if not no_headers:
        lines.append(_line(list(headers), [None] * len(headers), widths, False))
    for row, texts in zip(rows, plain, strict=True):
        colors = [None if isinstance(cell, str) else cell[1] for cell in row]
        lines.append(_line(texts, colors, widths, color))
    return lines


def column_widths(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, no_headers: bool = False
) -> list[int]:
    widths = [0 if no_headers else len(h) for h in headers]
    for row in rows:
        for index, text in enumerate(row):
            widths[index] = max(widths[index], len(text))
    return widths


def _line(texts: list[str], colors: list[str | None], widths: Sequence[int], color: bool) -> str:
    parts = []
    last = len(texts) - 1
    for index, (text, tint) in enumerate(zip(texts, colors, strict=True)):
        pad = "" if index == last else " " * (widths[index] - len(text) + 3)
        parts.append(paint(text, tint, color) + pad)
    return "".join(parts).rstrip()


def human_duration(seconds: float) -> str:
    """kubectl's ``HumanDuration``: ``45s``, ``3m12s``, ``25m``, ``5h3m``, ``12d``, ``2y30d``."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{hours // 24 // 365}y"


def remaining(seconds: float) -> str:
    """Time left on a lease: tenths of a second below 10 s (lock TTLs are often that short)."""
    if seconds < 10:
        return f"{max(0.0, seconds):.1f}s"
    return human_duration(seconds)


def dump(document: Any, output: str, stream: TextIO) -> None:
    """``document`` as JSON (4-space indent, as kubectl) or YAML."""
    if output == "json":
        stream.write(json.dumps(document, indent=4, ensure_ascii=False) + "\n")
        return
    import yaml

    stream.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def add_kube_arguments(parser: argparse.ArgumentParser) -> None:
    """``--kubeconfig`` and ``--context``, as kubectl spells them."""
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)",
    )
    parser.add_argument("--context", metavar="NAME", help="kubeconfig context to use")


def add_scope_arguments(parser: argparse.ArgumentParser) -> None:
    """``-A`` / ``-n NAMESPACE``."""
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="list across all namespaces"
    )
    parser.add_argument(
        "-n", "--namespace", metavar="NS", help="namespace (default: the kubeconfig context's)"
    )


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUT_FORMATS,
        default="table",
        help="output format (default: %(default)s)",
    )
    parser.add_argument("--no-headers", action="store_true", help="omit the header line of tables")


def fail(message: str, code: int = EXIT_ERROR, stream: TextIO | None = None) -> int:
    """Print ``error: message`` (kubectl's form) and return ``code``."""
    print(f"error: {message}", file=stream or sys.stderr)
    return code
