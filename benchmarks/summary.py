"""Rewrite benchmarks/README.md from the latest results in benchmarks/results/*.json.

python benchmarks/summary.py
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

HEADER = """# Benchmarks

Each benchmark measures against a baseline run in the same process (these machines are shared
and noisy, so most figures are ratios), writes `results/NAME.json` as
`{"figures": {...}, "targets": {...}, "met": {...}}` and prints a one-line summary last.
Run one with `.venv/bin/python benchmarks/NAME.py [--quick]`; `--quick` is a smoke run that
overwrites the same file. This page is rewritten from the result files by
`python benchmarks/summary.py`.

| benchmark | what it measures |
|---|---|
"""


def _doc_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _section(data: dict) -> str:  # type: ignore[type-arg]
    out = []
    if data.get("note"):  # why the figures below may not describe the code as it is now (e.g. run before a change)
        out.append(f"**Note:** {data['note']}\n\n")
    targets, met = data.get("targets", {}), data.get("met", {})
    if targets:  # a diagnosis (e.g. neighbour_contention) has figures but no targets
        out.append("| figure | value | target | met |\n|---|---|---|---|\n")
    for name, target in targets.items():
        value = data["figures"].get(name)
        mark = "yes" if met.get(name) else "**no**"
        out.append(f"| `{name}` | {_fmt(value)} | {target} | {mark} |\n")
    others = {
        k: v
        for k, v in data["figures"].items()
        if k not in targets and isinstance(v, (int, float, str)) and not isinstance(v, bool)
    }
    if others:
        shown = ", ".join(f"`{k}` {_fmt(v)}" for k, v in list(others.items())[:24])
        out.append(f"\nOther figures: {shown}.\n")
    return "".join(out)


def render() -> str:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != "summary.py")
    out = [HEADER]
    for s in scripts:
        out.append(f"| [`{s.name}`]({s.name}) | {_doc_line(s)} |\n")
    out.append("\n## Latest figures\n")
    for s in scripts:
        # NAME.json, then the variants a benchmark writes for another runtime or setting (NAME_<variant>.json)
        results = [HERE / "results" / f"{s.stem}.json", *sorted((HERE / "results").glob(f"{s.stem}_*.json"))]
        results = [
            r for r in results if r.exists() and not (r.stem.startswith(f"{s.stem}_") and (HERE / f"{r.stem}.py").exists())
        ]
        if not results:
            out.append(f"\n### {s.stem}\n\nNot run yet: `python benchmarks/{s.name}`.\n")
        for res in results:
            out.append(f"\n### {res.stem}\n\n")
            out.append(_section(json.loads(res.read_text())))
    return "".join(out)


def main() -> None:
    (HERE / "README.md").write_text(render())
    print(f"wrote {HERE / 'README.md'}")


if __name__ == "__main__":
    main()
