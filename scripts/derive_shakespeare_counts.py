"""Derive the shipped tiny-Shakespeare counts (docs/science.md §2, default source).

Usage (from the repository root):

    .venv/bin/python scripts/derive_shakespeare_counts.py [TEXT] [--out JSON]

TEXT defaults to ``../shared/data/tinyshakespeare.txt`` relative to the repository root; the
output defaults to ``src/inductionlab/data/shakespeare_counts.json``. Only the counts are
written (``inductionlab.tasks.sources.derive_counts``), never the text. A test re-derives them
and checks they equal the shipped file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inductionlab.tasks.sources import derive_counts

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEXT = REPO_ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
DEFAULT_OUT = REPO_ROOT / "src" / "inductionlab" / "data" / "shakespeare_counts.json"


def format_counts(counts: dict) -> str:
    """Compact JSON with one bigram row per line, so diffs of the file stay readable."""
    rows = ",\n".join("  " + json.dumps(row, separators=(",", ":")) for row in counts["bigram_counts"])
    return (
        "{\n"
        f' "vocab": {json.dumps(counts["vocab"])},\n'
        f' "n_chars": {counts["n_chars"]},\n'
        f' "unigram_counts": {json.dumps(counts["unigram_counts"], separators=(",", ":"))},\n'
        f' "bigram_counts": [\n{rows}\n ]\n'
        "}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", nargs="?", type=Path, default=DEFAULT_TEXT, help="the tiny Shakespeare text")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the counts JSON")
    args = parser.parse_args()
    counts = derive_counts(args.text.read_text(encoding="utf-8"))
    serialised = format_counts(counts)
    assert json.loads(serialised) == counts, "formatted JSON does not round-trip"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(serialised, encoding="utf-8")
    print(f"{args.out}: N = {len(counts['vocab'])}, {counts['n_chars']} characters")


if __name__ == "__main__":
    main()
