"""Regenerate the benchmark tables of docs/benchmarks.md from the tracked results in benchmarks/results/.

    python -m benchmarks.readme            # rewrite every generated block of docs/benchmarks.md
    python -m benchmarks.readme --check    # exit 1 if a block differs from its results file

A generated block starts with ``<!-- generated from benchmarks/results/NAME.json by python -m
benchmarks.readme -->`` and ends with ``<!-- end of generated block -->``; what is between is
the rendering of that file (the suite's tables, or the summary of a single benchmark).
"""

import argparse
import json
import re
import sys
from pathlib import Path

from benchmarks import bf16_agreement, ensemble_tta, step1_throughput
from benchmarks.suite import format_table

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "benchmarks.md"
BLOCK = re.compile(
    r"(<!-- generated from (benchmarks/results/[\w.-]+\.json) by python -m benchmarks\.readme -->\n)"
    r"(.*?)"
    r"(<!-- end of generated block -->)",
    re.DOTALL,
)


def render(result: dict) -> str:
    """The Markdown of one results file, by the benchmark that wrote it."""
    if result.get("suite") == "geoseg benchmarks":
        return format_table(result)
    kind = result.get("benchmark")
    if kind == "ensemble_tta":
        return ensemble_tta.summary(result)
    if kind == "step1_throughput":
        return step1_throughput.table(result)
    if kind == "bf16_agreement":
        return bf16_agreement.summary(result)
    raise ValueError(f"unknown results file (no 'suite' or known 'benchmark' key): {kind!r}")


def regenerate(text: str, root: Path = REPO) -> str:
    """``text`` with every generated block re-rendered from its results file."""

    def block(match: re.Match) -> str:
        result = json.loads((root / match[2]).read_text())
        return f"{match[1]}\n{render(result).strip()}\n\n{match[4]}"

    return BLOCK.sub(block, text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, exit 1 on a difference")
    parser.add_argument("--readme", type=Path, default=PAGE, help="the page to rewrite")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    blocks = len(BLOCK.findall(text))
    updated = regenerate(text, REPO)
    if args.check:
        if updated != text:
            sys.exit(
                f"{args.readme}: a benchmark table differs from its results file; run "
                "python -m benchmarks.readme"
            )
        print(f"{args.readme}: {blocks} generated blocks match their results files")
        return
    args.readme.write_text(updated)
    print(f"{args.readme}: {blocks} generated blocks rewritten")


if __name__ == "__main__":
    main()
