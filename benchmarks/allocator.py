"""Training speed and peak memory under each malloc this machine has (keras_draw/malloc.py).

    python benchmarks/allocator.py                 # train_throughput.py at the mnist preset, 3 rounds
    python benchmarks/allocator.py --quick-start   # the whole of `python train.py`, wall time
    python benchmarks/allocator.py --rounds 5 -- --batch-size 250   # flags after -- go to train_throughput.py

An allocator is chosen when a process starts, so each figure is one process: the system's malloc,
then TCMalloc and jemalloc where they are installed, one process each in turn, for `--rounds`
rounds, so that all see the same machine. Prints, per allocator, the median over rounds of
train_throughput.py's training images/s (itself a median over its steps) and of its peak memory,
or with `--quick-start` the seconds of `python train.py` from start to exit; then each
allocator's figures against the system's: the ratio of the medians, and the median of the
rounds' own ratios (each round's processes ran minutes apart at most).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # keras_draw, uninstalled

from keras_draw import malloc  # noqa: E402  (light: imports nothing but os and sys)

JEMALLOC_PATHS = ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
                  "/usr/lib64/libjemalloc.so.2")

TRAINING = re.compile(r"^training images/s over \d+ steps: median ([\d.]+)", re.MULTILINE)
PEAK = re.compile(r"^peak memory \(process max RSS\): ([\d.]+) GiB", re.MULTILINE)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="processes per allocator (default: %(default)s)")
    parser.add_argument("--quick-start", action="store_true", help="time `python train.py` instead")
    parser.add_argument("--steps", type=int, default=6, help="train_throughput.py's timed steps (default: %(default)s)")
    parser.add_argument("--allocators", default=None,
                        help="comma-separated names among system, tcmalloc, jemalloc (default: all installed)")
    parser.add_argument("extra", nargs="*", help="more flags for train_throughput.py (after --)")
    return parser.parse_args(argv)


def allocators():
    """[(name, library or None)]: the system's malloc first, then each one installed."""
    found = [("system", None)]
    for name, paths in (("tcmalloc", malloc.TCMALLOC_PATHS), ("jemalloc", JEMALLOC_PATHS)):
        library = next((path for path in paths if os.path.isfile(path)), None)
        if library:
            found.append((name, library))
    return found


def environment(library):
    """This environment with `library` preloaded (None: nothing), and train.py told not to
    preload anything itself."""
    preloaded = [path for path in os.environ.get("LD_PRELOAD", "").split(":") if path]
    return {**os.environ, malloc.VARIABLE: "system", "LD_PRELOAD": ":".join(([library] if library else []) + preloaded)}


def command(args, output_dir):
    if args.quick_start:
        return [sys.executable, os.path.join(ROOT, "train.py"), "--output-dir", output_dir]
    return [sys.executable, os.path.join(ROOT, "benchmarks", "train_throughput.py"), "--no-recurrence",
            "--steps", str(args.steps), "--warmup", "1", *args.extra]


def run_once(args, library):
    """One process's figures: {"seconds"} with `--quick-start`, else {"images_per_s", "peak_gib"}."""
    with tempfile.TemporaryDirectory() as output_dir:
        start = time.perf_counter()
        done = subprocess.run(command(args, output_dir), env=environment(library), cwd=ROOT, capture_output=True,
                              text=True)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(done.args)} failed with status {done.returncode}: {done.stderr[-2000:]}")
    if args.quick_start:
        return {"seconds": seconds}
    return {"images_per_s": float(TRAINING.search(done.stdout).group(1)),
            "peak_gib": float(PEAK.search(done.stdout).group(1))}


def summarize(rounds, names):
    """Printed lines for rounds [{name: figures}] of every allocator, the first being the system's."""
    lines = []
    baseline = names[0]
    for name in names:
        for figure in rounds[0][name]:
            values = [r[name][figure] for r in rounds]
            lines.append(f"{name}: {figure} median {statistics.median(values):.2f} over {len(values)} processes "
                         f"(min {min(values):.2f}, max {max(values):.2f})")
    for name in names[1:]:
        for figure in rounds[0][name]:
            if figure == "peak_gib":
                continue
            medians = statistics.median(r[name][figure] for r in rounds) / statistics.median(
                r[baseline][figure] for r in rounds)
            paired = statistics.median(r[name][figure] / r[baseline][figure] for r in rounds)
            if figure == "seconds":  # a speed-up is the system's time over this one's
                medians, paired = 1 / medians, statistics.median(r[baseline][figure] / r[name][figure] for r in rounds)
            lines.append(f"{name} / {baseline}, speed: {medians:.3f} (ratio of the medians), {paired:.3f} "
                         f"(median of the rounds' ratios)")
    return lines


def main(argv=None):
    args = parse_args(argv)
    found = allocators()
    if args.allocators:
        wanted = args.allocators.split(",")
        found = [(name, library) for name, library in found if name in wanted]
        if [name for name, _ in found] != wanted or wanted[0] != "system":
            raise SystemExit(f"allocator.py: error: --allocators must start with system and name installed ones "
                             f"({', '.join(name for name, _ in allocators())}). Received: {args.allocators}")
    print(f"allocators: {', '.join(f'{name} ({library})' if library else name for name, library in found)}")
    print(f"command: {' '.join(command(args, 'TMP'))}")
    rounds = []
    for number in range(args.rounds):
        rounds.append({})
        for name, library in found:
            rounds[-1][name] = run_once(args, library)
            print(f"round {number + 1}, {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in rounds[-1][name].items()),
                  flush=True)
    for line in summarize(rounds, [name for name, _ in found]):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
