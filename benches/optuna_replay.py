"""Optuna's TPE on a recorded landscape, scored and charged exactly as `servetune replay`.

Each parameter is offered to Optuna as an ordinal index into the
landscape's sorted levels (suggest_int), so TPE sees the order of the levels
as servetune's strategies do; it may only propose grid points. An
evaluation returns one recorded repeat of the point, drawn at random (the
noise), and is charged what a study would spend: the window, plus a restart
when a cold parameter (the landscape's first line says which) differs from
the running config, or a live change when only hot ones do; the run starts
on the first row's config. A seed reaches the target at the first trial
after which some evaluated point has a landscape mean that is feasible and
within the target regret of the best feasible mean; a seed that has not
within as many trials as the landscape has points has failed (infinitely
many trials and seconds in the median).

Usage: optuna_replay.py LANDSCAPE.csv --seeds 30 --slo-p99-ms 40 [--target-regret 0.03]
       [--restart-s S --hot-s S --window-s S]   (defaults: the landscape's first line)
Prints one JSON object like `servetune replay --json`.
"""
import argparse
import csv
import json
import math
import random
import statistics
from collections import defaultdict

import optuna

MEASUREMENTS = ["throughput_rps", "p50_ms", "p99_ms", "error_rate", "memory_mb"]


def header(lines):
    """The `# servetune-landscape` line: cold parameters and the costs of a move and a window."""
    cold, costs = [], {"restart_s": 12.0, "hot_s": 2.0, "window_s": 5.0}
    for line in lines:
        if line.startswith("# servetune-landscape"):
            for field in line.split()[2:]:
                key, value = field.split("=", 1)
                if key == "cold":
                    cold = [c for c in value.split(",") if c]
                elif key in costs:
                    costs[key] = float(value)
                # The rest (users, model, its features) is not a cost.
    return cold, costs


def load(path):
    with open(path) as f:
        lines = f.read().splitlines()
    cold, costs = header(l for l in lines if l.startswith("#"))
    rows = list(csv.DictReader(l for l in lines if l.strip() and not l.startswith("#")))
    params = [c for c in rows[0].keys() if c not in MEASUREMENTS]
    levels = {p: sorted({float(r[p]) for r in rows}) for p in params}
    samples = defaultdict(list)
    for r in rows:
        point = tuple(levels[p].index(float(r[p])) for p in params)
        samples[point].append({m: float(r[m]) for m in MEASUREMENTS})
    first = tuple(levels[p].index(float(rows[0][p])) for p in params)
    return params, levels, samples, cold, costs, first


def quantile(sorted_values, q):
    """Interpolated quantile; None when it involves a failed (infinite) seed."""
    position = q * (len(sorted_values) - 1)
    low, high = math.floor(position), math.ceil(position)
    if math.isinf(sorted_values[high]):
        return None
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("landscape")
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--slo-p99-ms", type=float, required=True)
    parser.add_argument("--target-regret", type=float, default=0.03)
    parser.add_argument("--max-error-rate", type=float, default=0.01)
    parser.add_argument("--restart-s", type=float)
    parser.add_argument("--hot-s", type=float)
    parser.add_argument("--window-s", type=float)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    params, levels, samples, cold, costs, first = load(args.landscape)
    for key in ("restart_s", "hot_s", "window_s"):
        if getattr(args, key) is not None:
            costs[key] = getattr(args, key)
    cold_at = [i for i, p in enumerate(params) if p in cold]

    def charge(running, point):
        seconds = costs["window_s"]
        if any(running[i] != point[i] for i in cold_at):
            return seconds + costs["restart_s"], True
        if running != point:
            return seconds + costs["hot_s"], False
        return seconds, False
    feasible = lambda p99, err: p99 <= args.slo_p99_ms and err <= args.max_error_rate
    means = {
        point: (
            statistics.fmean(s["throughput_rps"] for s in ss),
            feasible(statistics.fmean(s["p99_ms"] for s in ss), statistics.fmean(s["error_rate"] for s in ss)),
        )
        for point, ss in samples.items()
    }
    best = max(t for t, ok in means.values() if ok)
    good = {p for p, (t, ok) in means.items() if ok and t >= (1 - args.target_regret) * best}

    def loss(s):
        if feasible(s["p99_ms"], s["error_rate"]):
            return -s["throughput_rps"]
        return max(s["p99_ms"] / args.slo_p99_ms, 1.0) + 100 * max(s["error_rate"] - args.max_error_rate, 0.0)

    results, seconds_per_seed, restarts_per_seed = [], [], []
    for seed in range(args.seeds):
        noise = random.Random(seed * 7919 + 17)
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        reached, seconds, restarts, running = None, 0.0, 0, first
        for trial_number in range(1, len(samples) + 1):
            trial = study.ask()
            point = tuple(trial.suggest_int(p, 0, len(levels[p]) - 1) for p in params)
            spent, restarted = charge(running, point)
            seconds += spent
            restarts += restarted
            running = point
            if point in samples:
                value = loss(noise.choice(samples[point]))
            else:
                value = 1e9
            study.tell(trial, value)
            if point in good:
                reached = trial_number
                break
        results.append(reached)
        seconds_per_seed.append(seconds if reached is not None else None)
        restarts_per_seed.append(restarts)
    ordered = sorted(math.inf if r is None else r for r in results)
    ordered_seconds = sorted(math.inf if s is None else s for s in seconds_per_seed)
    print(json.dumps({
        "strategy": "optuna-tpe",
        "seeds": args.seeds,
        "median_trials_to_target": quantile(ordered, 0.5),
        "p90_trials_to_target": quantile(ordered, 0.9),
        "failed_seeds": sum(r is None for r in results),
        "trials_per_seed": results,
        "points": len(samples),
        "best_feasible_throughput_rps": best,
        "median_seconds_to_target": quantile(ordered_seconds, 0.5),
        "p90_seconds_to_target": quantile(ordered_seconds, 0.9),
        "seconds_per_seed": seconds_per_seed,
        "median_restarts": statistics.median(restarts_per_seed),
    }))


if __name__ == "__main__":
    main()
