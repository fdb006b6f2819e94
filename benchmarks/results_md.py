"""`benchmarks/RESULTS.md` is shared by the benchmark scripts: each owns one section between
`<!-- NAME:start -->` and `<!-- NAME:end -->` and replaces only that."""
from __future__ import annotations

import os
from pathlib import Path

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(name: str, section: str, path: Path = RESULTS_MD) -> None:
    """Replace (or append) section `name` of `path`; everything else is kept as is."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    block = f"{start}\n{section}{end}"
    if start in text and end in text.split(start, 1)[1]:
        pre, rest = text.split(start, 1)
        text = pre + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_results(path: Path, results: dict) -> None:
    """Write a benchmark's results JSON (with the machine it ran on) where `report` reads it."""
    import json
    import sys

    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
