"""Two commits side by side in one run: bench/rest.py against a server from each, alternating.

    .venv/bin/python bench/compare.py BEFORE AFTER [--rounds 3] [rest.py options, e.g. --creates 3000]

This machine's speed drifts by tens of percent within minutes, so figures from different runs cannot be
compared; alternating the two commits round by round in one run can. Each commit is checked out in a
temporary git worktree; its server runs from there with this virtual environment's libraries (`auth/`
and `operations/` are linked into its `fhirlead/` folder, as the installed package maps them).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(r"^\s*(create|read): .*= ([\d,]+)/s\s+p50 ([\d.]+) ms", re.M)


def checkout(rev: str, into: Path) -> Path:
    folder = into / rev.replace("/", "_")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(folder), rev],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for mapped in ("auth", "operations"):
        if (folder / mapped).is_dir() and not (folder / "fhirlead" / mapped).exists():
            (folder / "fhirlead" / mapped).symlink_to(folder / mapped, target_is_directory=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=3)
    args, rest = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="fhirlead-compare-") as temp:
        trees = {rev: checkout(rev, Path(temp)) for rev in (args.before, args.after)}
        try:
            figures: dict[str, list[tuple[str, str, str]]] = {rev: [] for rev in trees}
            for round_ in range(args.rounds):
                for rev, tree in trees.items():
                    command = [sys.executable, str(ROOT / "bench" / "rest.py"), "--source", str(tree), *rest]
                    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                    found = FIGURE.findall(out)
                    figures[rev].extend(found)
                    print(f"round {round_ + 1} {rev}: " + "; ".join(f"{k} {r}/s p50 {p} ms" for k, r, p in found),
                          flush=True)
            for rev, found in figures.items():
                for kind in ("create", "read"):
                    rates = sorted(int(r.replace(",", "")) for k, r, _ in found if k == kind)
                    print(f"{rev} {kind}: {rates[len(rates) // 2]:,}/s median of {rates}")
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                               check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
