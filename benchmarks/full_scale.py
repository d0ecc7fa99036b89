"""Full scale: all of CelebA's 202,599 names, built from the 3,000-face sample, on this machine.

    python benchmarks/full_scale.py [--sizes 128,256] [--steps 40] [--write]

The full-size folder is 202,599 hard links (symlinks where hard links fail) to the sample's files under
CelebA's names, with the sample's own list_eval_partition.txt; it is made in a temporary folder, with its
cache, and removed afterwards. Measured, each side in this one run:

- preparation: one core's decode rate (this process, no pool) against the rate of ``celebae prepare`` on
  every core for the train split; the target is ≥ 85 % of cores × one core's rate;
- training (conv nf 16, batch 64, CPU): a ``celebae train`` process on the full train split, stopped by
  SIGTERM after ``--steps`` steps; its private memory (RssAnon from /proc, sampled every 0.1 s), the time
  from start to its first step, and its images/s over the steady steps, against the same run on the sample;
- under torchrun with 2 processes: the sum of the workers' private memory against one process's.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba-sample"
RESULTS = Path(__file__).with_name("RESULTS.md")
TRAIN_SPLIT = 162_770


def build_full_folder(root: Path) -> Path:
    """CelebA's layout with 202,599 names, each a link to one of the sample's files (cycled)."""
    images = sorted((SAMPLE / "img_align_celeba").iterdir())
    out = root / "celeba-full" / "img_align_celeba"
    out.mkdir(parents=True)
    link = os.link
    for i in range(1, 202_600):
        target, name = images[(i - 1) % len(images)], out / f"{i:06d}.jpg"
        try:
            link(target, name)
        except OSError:
            link = os.symlink
            link(target, name)
    shutil.copy(SAMPLE / "list_eval_partition.txt", out.parent)
    return out.parent


def private_kib(pids: list[int]) -> int:
    """RssAnon summed over ``pids`` (the kernel's count of a process's private, anonymous pages)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            kids = []
        todo += [int(k) for k in kids]
    return out


def one_core_rate(folder: Path, size: int, count: int = 400) -> float:
    from celebae.data.images import load_image

    files = sorted((folder / "img_align_celeba").iterdir())[:count]
    t0 = time.perf_counter()
    for f in files:
        load_image(str(f), "resize-crop", size)
    return count / (time.perf_counter() - t0)


def prepare(data: Path, size: int, cache: Path) -> float:
    """Prepare all three splits of ``data`` at ``size`` into a fresh ``cache``; seconds for the train split."""
    from celebae.data import open_source, prepare_split

    source = open_source(str(data))
    seconds = {}
    for split in ("train", "val", "test"):
        t0 = time.perf_counter()
        prepare_split(source, split, cache_dir=cache, progress=False, size=size)
        seconds[split] = time.perf_counter() - t0
    return seconds["train"]


def train_and_watch(cmd: list[str], run: Path, steps: int, cache: Path, world: int = 1) -> dict:
    """Start ``cmd``; sample the private memory of it and its children; SIGTERM it after ``steps`` steps."""
    env = {**os.environ, "CELEBAE_CACHE": str(cache)}
    if world > 1:
        env["OMP_NUM_THREADS"] = str(max(1, os.cpu_count() // world))
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, first, done = [0], [None], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], private_kib(descendants(proc.pid)))
            time.sleep(0.1)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    metrics = run / "metrics.csv"
    while proc.poll() is None:
        rows = metrics.read_text().splitlines()[1:] if metrics.exists() else []
        if rows and first[0] is None:
            first[0] = time.perf_counter() - started
        if len(rows) >= steps:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    err = proc.communicate(timeout=600)[1]
    done.set()
    watcher.join()
    # 143: celebae saved and stopped; torchrun's agent itself exits 1 after passing SIGTERM to its workers
    if proc.returncode not in (0, 143) and not (world > 1 and proc.returncode == 1):
        raise SystemExit(f"training failed ({proc.returncode}): {err[-2000:]}")
    from celebae import read_metrics

    rows = [r for r in read_metrics(run) if r["kind"] == "step"]
    steady = rows[len(rows) // 4 :]  # past the warm-up
    seconds = steady[-1]["wall_s"] - steady[0]["wall_s"]
    images = steady[-1]["images"] - steady[0]["images"]
    return {"private_gib": peak[0] / 2**20, "first_step_s": first[0], "images_per_s": images / seconds}


def train_cmd(data: Path, size: int, out: Path, world: int = 1) -> list[str]:
    head = [sys.executable, "-m", "celebae"]
    if world > 1:
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world)]
        head += ["-m", "celebae"]
    return [
        *head,
        "train",
        *("--data", str(data), "--image-size", str(size), "--model", "conv", "--nf", "16"),
        *("--batch-size", "64", "--device", "cpu", "--epochs", "1", "--log-every", "1", "--quiet"),
        *("--out", str(out)),
    ]


class Table(list):
    """Rows of the results table, each printed as soon as it is measured."""

    def append(self, row: str) -> None:
        super().append(row)
        print(row, flush=True)


def measure(size: int, steps: int, tmp: Path, full: Path, rows: Table) -> None:
    cache = tmp / f"cache-{size}"
    one = one_core_rate(full, size)
    seconds = prepare(full, size, cache)
    cores = len(os.sched_getaffinity(0))
    rate = TRAIN_SPLIT / seconds  # listing and fingerprinting included
    rows.append(
        f"| prepare {size} px, train split | {rate:,.0f} img/s on {cores} cores | one core {one:,.0f} img/s → "
        f"{rate / (cores * one):.0%} of cores × one core | ≥ 85 % |"
    )
    sample_cache = tmp / f"sample-cache-{size}"
    prepare(SAMPLE, size, sample_cache)
    small = train_and_watch(train_cmd(SAMPLE, size, tmp / f"s{size}"), tmp / f"s{size}", steps, sample_cache)
    big = train_and_watch(train_cmd(full, size, tmp / f"f{size}"), tmp / f"f{size}", steps, cache)
    split_gib = TRAIN_SPLIT * 3 * size * size / 2**30
    rows.append(
        f"| train {size} px, full split ({split_gib:.1f} GiB) | private {big['private_gib']:.2f} GiB; first step "
        f"{big['first_step_s']:.1f} s; {big['images_per_s']:.0f} img/s | sample: {small['images_per_s']:.0f} img/s "
        f"→ {big['images_per_s'] / small['images_per_s']:.0%}; private {small['private_gib']:.2f} GiB | "
        + ("< 2 GiB, ≤ 10 s, ≥ 90 % |" if size == 128 else "trains, ≤ 30 s, ≥ 80 % |")
    )
    if size == 128:
        ddp = train_and_watch(train_cmd(full, size, tmp / "ddp", 2), tmp / "ddp", steps // 2, cache, world=2)
        rows.append(
            f"| torchrun, 2 processes, {size} px full split | private {ddp['private_gib']:.2f} GiB for both | "
            f"one process: {big['private_gib']:.2f} GiB → {ddp['private_gib'] / big['private_gib']:.2f}× | "
            "does not double (< 2×, no copy of the split) |"
        )
    shutil.rmtree(cache, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--steps", type=int, default=40, help="training steps per measurement")
    parser.add_argument("--tmp", type=Path, default=None, help="where the folder and caches go (needs ~45 GB)")
    parser.add_argument("--write", action="store_true", help="record the table in benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if not (SAMPLE / "list_eval_partition.txt").exists():
        raise SystemExit(f"needs the CelebA sample at {SAMPLE}")
    tmp = Path(tempfile.mkdtemp(prefix="celebae-full-", dir=args.tmp))
    rows = Table(["| what | measured | against | target |", "|---|---|---|---|"])
    try:
        t0 = time.perf_counter()
        full = build_full_folder(tmp)
        print(f"full-size folder: 202,599 links in {time.perf_counter() - t0:.0f} s", flush=True)
        for size in map(int, args.sizes.split(",")):
            measure(size, args.steps, tmp, full, rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = "\n".join(rows)
    print(table)
    if args.write:
        head = f"## Full scale: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {date.today()}"
        text = RESULTS.read_text()
        text = text.split("\n## Full scale")[0].rstrip() + f"\n\n{head}\n\n{table}\n"
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
