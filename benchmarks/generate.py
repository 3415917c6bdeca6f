"""Both generators at the sizes issue 2 names, each size in a fresh process.

    python benchmarks/generate.py            # Canvas 2,000 + 1,000,000 (with the naive seed
                                             # baseline at 200); district 50,000 + 1,000,000 x 1 year
    python benchmarks/generate.py --quick    # Canvas 2,000 and district 50,000 only

Prints seconds and peak RSS per run (see generate_canvas.py and generate_district.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    args = parser.parse_args()
    canvas = ["--students", "2000"] if args.quick else []
    district = ["--students", "50000"] if args.quick else []
    runs = [
        [sys.executable, str(HERE / "generate_canvas.py"), *canvas],
        [sys.executable, str(HERE / "generate_district.py"), *district],
    ]
    status = 0
    for command in runs:
        print(f"$ {' '.join(Path(c).name if c.endswith('.py') else c for c in command)}", flush=True)
        status |= subprocess.run(command, check=False).returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main())
