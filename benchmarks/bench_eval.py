"""Full-ranking evaluation throughput: all test users of a dataset, MF with random params.

    python benchmarks/bench_eval.py --dataset gowalla [--data-dir DIR] [--chunk-size C]
    python benchmarks/bench_eval.py --synthetic          # Gowalla-shaped random data

Times `dvr_jax.evaluation.evaluate` (host driver: one jitted chunk step per chunk, mask +
matmul + top-K + metrics in one jit) and, with `--mode device` or `both`, the pure
`evaluate_on_device` under one `jax.jit` (the path DVR's rewards use). Compile seconds
(trace + lower + XLA compile, from jax.monitoring) are reported apart from the steady state:
the median of `--repeats` full passes after `--warmup` passes, each pass synced before the
clock is read. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from benchmarks.common import emit, peak_rss_mb
from dvr_jax.backbones import make_mf
from dvr_jax.data import Dataset, load_dataset
from dvr_jax.evaluation import evaluate, evaluate_on_device, make_eval_arrays

COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def synthetic_gowalla(seed: int = 0, n_users: int = 29_858, n_items: int = 40_981) -> Dataset:
    """Random Gowalla-shaped data: ~1.03M pairs, popularity-skewed items, 8:1:1 per user."""
    rng = np.random.default_rng(seed)
    per_user = np.clip(rng.zipf(1.8, n_users) + 9, 10, 2000)
    per_user = (per_user * (1_030_000 / per_user.sum())).astype(np.int64).clip(10)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.choice(n_items, size=len(users), p=popularity)
    keys = np.unique(users * n_items + items)
    pairs = np.stack([keys // n_items, keys % n_items], 1).astype(np.int32)
    pairs = pairs[np.lexsort((rng.random(len(pairs)), pairs[:, 0]))]  # shuffle within users
    position = np.arange(len(pairs)) - np.searchsorted(pairs[:, 0], pairs[:, 0])
    count = np.bincount(pairs[:, 0], minlength=n_users)[pairs[:, 0]]
    n_hold = np.maximum(1, np.round(0.1 * count)).astype(np.int64)
    split = np.where(position < n_hold, 1, np.where(position < 2 * n_hold, 2, 0))
    parts = [pairs[split == s] for s in (0, 1, 2)]
    parts = [p[np.lexsort((p[:, 1], p[:, 0]))] for p in parts]
    return Dataset(
        name="synthetic-gowalla", n_users=n_users, n_items=n_items,
        train=parts[0], valid=parts[1], test=parts[2],
        user_ids=np.arange(n_users).astype(str).astype(object),
        item_ids=np.arange(n_items).astype(str).astype(object),
    )  # fmt: skip


def compile_seconds(fn):
    """(fn(), seconds spent tracing, lowering and compiling inside it)."""
    spent = [0.0]

    def listener(event: str, duration: float, **kwargs) -> None:
        if event in COMPILE_EVENTS:
            spent[0] += duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        out = jax.block_until_ready(fn())
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return out, spent[0]


def time_passes(fn, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """(wall seconds, process CPU seconds) of `repeats` synced calls after `warmup` calls.

    CPU seconds (all threads) are a load-independent work measure on a shared machine.
    """
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return times, cpu_times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="gowalla")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--synthetic", action="store_true", help="Gowalla-shaped random data")
    p.add_argument("--split", default="test", choices=["valid", "test"])
    p.add_argument("--chunk-size", type=int, default=None, help="default: default_chunk_size(I)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--ks", default="10,20")
    p.add_argument("--mode", default="host", choices=["host", "device", "both"])
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    ks = tuple(int(k) for k in args.ks.split(","))

    start = time.perf_counter()
    dataset = synthetic_gowalla() if args.synthetic else load_dataset(args.dataset, args.data_dir)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    eval_arrays = make_eval_arrays(dataset, args.split, chunk_size=args.chunk_size)
    jax.block_until_ready(eval_arrays)
    build_s = time.perf_counter() - start
    print(f"{dataset.name}: {dataset.summary()}; load {load_s:.2f} s")
    print(
        f"eval arrays ({args.split}): {eval_arrays.n_users} users in {eval_arrays.n_chunks} chunks "
        f"of {eval_arrays.chunk_size}; exclusion list {eval_arrays.exclude_rows.shape[1]}, "
        f"held-out list {eval_arrays.heldout_rows.shape[1]} per chunk; build {build_s:.2f} s"
    )
    backbone = make_mf(dataset.n_users, dataset.n_items, dim=args.dim)
    params = backbone.init(jax.random.key(0))

    runs = {
        "host": lambda: evaluate(backbone, params, None, eval_arrays, ks=ks),
    }
    if args.mode in ("device", "both"):
        on_device = jax.jit(lambda prm, ea: evaluate_on_device(backbone, backbone.encode(prm, None), ea, ks=ks))
        runs["device"] = lambda: on_device(params, eval_arrays)
    if args.mode == "device":
        del runs["host"]

    result = {
        "bench": "eval", "dataset": dataset.name, "split": args.split, "n_users": eval_arrays.n_users,
        "n_items": dataset.n_items, "chunk_size": eval_arrays.chunk_size, "dim": args.dim, "ks": list(ks),
        "build_s": round(build_s, 3),
    }  # fmt: skip
    for mode, fn in runs.items():
        metrics, compile_s = compile_seconds(fn)
        times, cpu_times = time_passes(fn, args.warmup, args.repeats)
        median, cpu_median = statistics.median(times), statistics.median(cpu_times)
        rate = eval_arrays.n_users / median
        print(
            f"[{mode}] compile {compile_s:.2f} s; full pass median {median:.3f} s "
            f"(min {min(times):.3f}, max {max(times):.3f}) -> {rate:,.0f} users/s; "
            f"CPU {cpu_median:.2f} s per pass; "
            f"recall@20 {float(metrics['recall@20']):.5f} gini@20 {float(metrics['gini@20']):.4f}"
        )
        suffix = "" if mode == "host" else "_device"
        result.update({
            f"users_per_s{suffix}": round(rate, 1), f"compile_s{suffix}": round(compile_s, 3),
            f"pass_s{suffix}": round(median, 4), f"pass_times{suffix}": [round(t, 4) for t in times],
            f"pass_cpu_s{suffix}": round(cpu_median, 4),
        })  # fmt: skip
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(f"peak RSS {result['peak_rss_mb']:.0f} MiB")
    emit(result)


if __name__ == "__main__":
    main()
