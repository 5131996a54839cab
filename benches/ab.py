#!/usr/bin/env python3
"""Two or more builds of ours (or one build under different settings), alternated in one run.

    benches/ab.py [--rounds N] [--per-layer] VARIANT VARIANT [...] -- BENCH ARGS

A VARIANT is a mobilenet binary, optionally followed by environment settings for it:
`target/release/mobilenet:MOBILENET_TUNE=subgroup-32x32`. Each round runs
`VARIANT bench --json BENCH ARGS` once per variant, in order, so that a shared machine's
slow minutes fall on every variant alike; the table gives each variant's median over the
rounds. With --per-layer every dispatch is timed in its own pass (`bench --per-layer`) and
the table has a row per step (a step that only some builds run, where they split or merge
dispatches differently, shows "-" for the others); the whole batch is still timed apart.

Copy a build elsewhere before rebuilding: `cargo build` overwrites target/release/mobilenet.
Each variant gets a kernel cache of its own (XDG_CACHE_HOME in a temporary directory, unless
the variant sets it): it tunes in its first round and runs those kernels after. A cache
file holds one build's kernels only, so builds sharing one would each discard the other's
and tune again, choosing differently, every round. Two builds may still run different
kernels; force one with MOBILENET_TUNE=<kernel> to compare the same kernel's code.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def parse_variant(text):
    binary, _, settings = text.partition(":")
    env = {}
    for pair in filter(None, settings.split(",")):
        key, sep, value = pair.partition("=")
        if not sep:
            sys.exit(f"ab.py: '{pair}' in '{text}' is not KEY=VALUE")
        env[key] = value
    if not os.access(binary, os.X_OK):
        sys.exit(f"ab.py: {binary} is not an executable (build it, or give its path)")
    return binary, env


def run_bench(binary, env, per_layer, bench_args):
    command = [binary, "bench", "--json"] + (["--per-layer"] if per_layer else []) + bench_args
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"ab.py: {' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def median_of(runs, pick):
    return statistics.median(pick(run) for run in runs)


def keyed_steps(run):
    """A run's profile as {(label, n): ms}, n counting earlier steps of the same label."""
    seen = {}
    keyed = {}
    for entry in run["profile"]:
        n = seen.get(entry["step"], 0)
        seen[entry["step"]] = n + 1
        keyed[(entry["step"], n)] = entry["ms"]
    return keyed


def step_rows(keyed):
    """Every variant's steps, in the order the first variant to run each one runs it: builds
    that split or merge dispatches differently still line up where their labels agree."""
    rows = []
    for runs in keyed:
        for key in runs[0]:
            if key not in rows:
                rows.append(key)
    return rows


def step_cell(keyed_runs, step, width):
    times = [run.get(step) for run in keyed_runs]
    if None in times:
        return "-".rjust(width)
    return f"{statistics.median(times):{width}.3f}"


def print_table(names, results, per_layer):
    # Columns are labelled A, B, ...: the variants' full names are listed below the table.
    width = 12
    labels = [chr(ord("A") + i) for i in range(len(names))]
    header = "".join(label.rjust(width) for label in labels)
    if per_layer:
        print("step".ljust(48) + header)
        keyed = [[keyed_steps(run) for run in runs] for runs in results]
        for step in step_rows(keyed):
            cells = (step_cell(runs, step, width) for runs in keyed)
            print(step[0][:47].ljust(48) + "".join(cells))
        sums = (median_of(runs, lambda r: sum(e["ms"] for e in r["profile"])) for runs in results)
        print("all steps (ms)".ljust(48) + "".join(f"{ms:{width}.3f}" for ms in sums))
    batches = (median_of(runs, lambda r: r["ms_per_batch"]) for runs in results)
    print("batch (ms, median)".ljust(48) + "".join(f"{ms:{width}.3f}" for ms in batches))
    for label, name, runs in zip(labels, names, results):
        rounds = ", ".join(f"{run['ms_per_batch']:.1f}" for run in runs)
        print(f"{label} = {name}: batches {rounds} ms")


def main():
    if "--" not in sys.argv:
        sys.exit(__doc__)
    split = sys.argv.index("--")
    parser = argparse.ArgumentParser(description="Alternate builds of ours in one run.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-layer", action="store_true")
    parser.add_argument("variants", nargs="+")
    options = parser.parse_args(sys.argv[1:split])
    if not 2 <= len(options.variants) <= 26:
        sys.exit("ab.py: give 2 to 26 variants to alternate")
    variants = [parse_variant(text) for text in options.variants]
    caches = tempfile.TemporaryDirectory(prefix="ab-kernel-caches-")
    for index, (_, env) in enumerate(variants):
        env.setdefault("XDG_CACHE_HOME", os.path.join(caches.name, str(index)))
    results = [[] for _ in variants]
    for round_index in range(options.rounds):
        for (binary, env), runs, name in zip(variants, results, options.variants):
            runs.append(run_bench(binary, env, options.per_layer, sys.argv[split + 1:]))
            print(f"round {round_index + 1}: {name} {runs[-1]['ms_per_batch']:.2f} ms",
                  file=sys.stderr, flush=True)
    print_table(options.variants, results, options.per_layer)


if __name__ == "__main__":
    main()
