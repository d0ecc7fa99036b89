"""How fast the explorer answers: each action through gradio_client against a launched server, as a page does.

    python benchmarks/explorer_latency.py RUN [RUN ...] [--data DIR] [--repeats 5] [--write]

Starts ``celebae explore``'s server in this process on 127.0.0.1 (a free port), then times every endpoint
``--repeats`` times (after one warm-up call) and prints the median and the slowest call in milliseconds; the
target is 1 s for conv nf 16 on a 2-core CPU. ``--write`` records the table in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from gradio_client import Client, handle_file
from PIL import Image

from celebae.use.app import launch
from celebae.use.explorer import Explorer

RESULTS = Path(__file__).with_name("RESULTS.md")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--data")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    ex = Explorer(args.runs, args.data, "test", args.limit, "cpu")
    start = time.perf_counter() - t0
    app, url = launch(ex, port=None, block=False)
    face = Path(tempfile.mkdtemp()) / "face.png"
    Image.fromarray(ex.face(0)).save(face)
    client = Client(url, verbose=False, analytics_enabled=False)
    n = len(ex.directions)
    calls = {
        "reconstruct (upload a face)": lambda: client.predict(handle_file(str(face)), 0, api_name="/reconstruct"),
        "take a face of the split": lambda: client.predict(5, api_name="/face"),
        f"compare {len(ex.runs)} runs on 6 faces": lambda: client.predict(None, 0, 6, api_name="/compare"),
        "interpolate (8 steps)": lambda: client.predict(0, 1, 0.5, api_name="/interpolate"),
        "neighbours (k = 8)": lambda: client.predict(handle_file(str(face)), 8, api_name="/neighbours"),
        "anomalies (8 + 8)": lambda: client.predict(8, api_name="/anomalies"),
        "walk the code space": lambda: client.predict(*[1.0] * n, api_name="/walk"),
    }
    rows = [
        f"Runs: {', '.join(ex.names)}; {len(ex.split.files):,} test faces; codes, errors and directions ready "
        f"{start:.1f} s after start ({ex.setup_seconds:.1f} s of it for the split).",
        "",
        "| action | median (ms) | slowest (ms) |",
        "|---|---|---|",
    ]
    for name, call in calls.items():
        call()  # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            call()
            times.append(1000 * (time.perf_counter() - t))
        rows.append(f"| {name} | {statistics.median(times):.0f} | {max(times):.0f} |")
        print(rows[-1], flush=True)
    app.close()
    table = "\n".join(rows)
    print(table)
    if args.write:
        head = f"## Explorer latency: {platform.machine()}, {os.cpu_count()} cores, {date.today()}"
        text = RESULTS.read_text()
        before, _, after = text.partition("\n## Explorer latency")
        rest = after.split("\n## ", 1)[1] if "\n## " in after else ""
        text = before.rstrip() + f"\n\n{head}\n\n{table}\n" + (f"\n## {rest}" if rest else "")
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
