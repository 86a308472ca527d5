"""Optuna's TPE on a recorded landscape, scored exactly as `servetune replay`.

Each parameter is offered to Optuna as an ordinal index into the
landscape's sorted levels (suggest_int), so TPE sees the order of the levels
as servetune's strategies do; it may only propose grid points. An
evaluation returns one recorded repeat of the point, drawn at random (the
noise). A seed reaches the target at the first trial after which some
evaluated point has a landscape mean that is feasible and within the target
regret of the best feasible mean; a seed that has not within as many trials
as the landscape has points has failed (infinitely many trials in the median).

Usage: optuna_replay.py LANDSCAPE.csv --seeds 30 --slo-p99-ms 40 [--target-regret 0.03]
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


def load(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    params = [c for c in rows[0].keys() if c not in MEASUREMENTS]
    levels = {p: sorted({float(r[p]) for r in rows}) for p in params}
    samples = defaultdict(list)
    for r in rows:
        point = tuple(levels[p].index(float(r[p])) for p in params)
        samples[point].append({m: float(r[m]) for m in MEASUREMENTS})
    return params, levels, samples


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
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    params, levels, samples = load(args.landscape)
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

    results = []
    for seed in range(args.seeds):
        noise = random.Random(seed * 7919 + 17)
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        reached = None
        for trial_number in range(1, len(samples) + 1):
            trial = study.ask()
            point = tuple(trial.suggest_int(p, 0, len(levels[p]) - 1) for p in params)
            if point in samples:
                value = loss(noise.choice(samples[point]))
            else:
                value = 1e9
            study.tell(trial, value)
            if point in good:
                reached = trial_number
                break
        results.append(reached)
    ordered = sorted(math.inf if r is None else r for r in results)
    print(json.dumps({
        "strategy": "optuna-tpe",
        "seeds": args.seeds,
        "median_trials_to_target": quantile(ordered, 0.5),
        "p90_trials_to_target": quantile(ordered, 0.9),
        "failed_seeds": sum(r is None for r in results),
        "trials_per_seed": results,
        "points": len(samples),
        "best_feasible_throughput_rps": best,
    }))


if __name__ == "__main__":
    main()
