"""Reading a benchmark's figures: after its `done in …` line, one `name: value unit` per line."""

from __future__ import annotations

import re


def figures_after_done(stdout: str, units: tuple[str, ...]) -> dict[str, float]:
    """The figures printed after the `done in` line; every such line must parse, in one of `units`."""
    figure = re.compile(rf"(.+): (\d+(?:\.\d+)?) ({'|'.join(re.escape(u) for u in units)})")
    lines = stdout.strip().splitlines()
    done = next(i for i, line in enumerate(lines) if line.startswith("done in "))
    figures = {}
    for line in lines[done + 1 :]:
        match = figure.fullmatch(line)
        assert match, f"not a `name: value unit` line: {line!r}"
        figures[match.group(1)] = float(match.group(2))
    return figures
