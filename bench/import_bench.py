"""Peak memory and time of `slice subscribers import` for 10,000 and 100,000 rows.

    .venv/bin/python bench/import_bench.py [--sizes 10000,100000] [--old-tree DIR]

Writes a CSV list of distinct named addresses, then, each in a fresh process
(so that peak RSS is its own), for each size:

  csv       the baseline: Python's csv module reading the same file, nothing kept
  import    `slice subscribers import --confirmed FILE` into a new SQLite project
  old       the same command from another checkout (``--old-tree``, e.g. one made
            with `git archive <commit> | tar -x -C DIR`), when given

and prints seconds, rows/s, peak RSS (VmHWM) and the ratios to the baseline.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import peak_rss_mb, run_phase

ROOT = Path(__file__).resolve().parents[1]


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write("email,name\n")
        for n in range(rows):
            fh.write(f"person{n}@example{n % 97}.com,Person Number {n}\n")


def phase(name: str, csv_path: Path, project: Path) -> dict[str, float]:
    start = time.perf_counter()
    if name == "csv":
        import csv

        with csv_path.open(encoding="utf-8", newline="") as fh:
            rows = sum(1 for _ in csv.reader(fh)) - 1
    else:
        from typer.testing import CliRunner

        from newsletter.cli import app

        command = ["subscribers", "import", "--confirmed", str(csv_path)]
        result = CliRunner().invoke(
            app,
            ["--config", str(project / "slice.toml"), *command],
            env={"SLICE_SECRET_KEY": "bench-secret-0123456789abcdef"},
        )
        assert result.exit_code == 0, result.output
        rows = int(result.stdout.split(": ", 1)[1].split(" added")[0])
    return {"rows": rows, "seconds": time.perf_counter() - start, "peak_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--old-tree", type=Path, help="A checkout of the code to compare with.")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.file, args.project)))
        return

    from newsletter.core.project import init_project

    print(f"{'rows':>8} {'phase':<7} {'seconds':>8} {'rows/s':>8} {'peak RSS MB':>12} {'x csv':>6}")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            csv_path = Path(tmp) / "list.csv"
            write_csv(csv_path, size)
            trees = [("csv", ROOT), ("import", ROOT)]
            if args.old_tree:
                trees.append(("old", args.old_tree.resolve()))
            figures: dict[str, dict[str, float]] = {}
            for name, tree in trees:
                project = Path(tmp) / f"project-{name}"
                init_project(project, name="Bench Weekly")
                phase_name = "csv" if name == "csv" else "import"
                figures[name] = run_phase(
                    __file__, tree, phase_name, "--file", str(csv_path), "--project", str(project)
                )
                assert figures[name]["rows"] == size, figures[name]
            base = figures["csv"]
            for name, fig in figures.items():
                print(
                    f"{size:>8} {name:<7} {fig['seconds']:>8.2f} {size / fig['seconds']:>8.0f} "
                    f"{fig['peak_mb']:>12.1f} {fig['peak_mb'] / base['peak_mb']:>6.1f}"
                )


if __name__ == "__main__":
    main()
