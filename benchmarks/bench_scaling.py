"""Training throughput on 1, 2, 4, 8 devices: the same step, the batch split over a data mesh.

    python benchmarks/bench_scaling.py --dataset gowalla --method bpr --batch-size 5000
    python benchmarks/bench_scaling.py --dataset lastfm --method dvr --counts 1 2 --window 3
    python benchmarks/bench_scaling.py --dataset gowalla --counts 8 --model-shards 8

Each count builds the run as the CLI does with `--devices N` (`dvr_jax.loop.build`, the step placed
by `dvr_jax.sharding.shard_step`: pair indices split over the mesh, state and step data replicated)
and reports the median samples/s over timed windows after warm-up. With `--model-shards M`
the tables and their Adam moments are split over M of the N devices as `--model-shards` does
(state created in place, `sharding.table_shardings`). On a CPU the devices are
simulated (`--xla_force_host_platform_device_count`, set here before JAX starts when
XLA_FLAGS does not set it) and share the same cores, so the figures show the overhead of the
partitioned step, not a speed-up; on a machine with several accelerators they are the real
scaling. Counts above the available devices are skipped. One JSON line per count, then a
summary line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

from benchmarks.common import emit  # noqa: E402
from dvr_jax import loop, sampler, sharding  # noqa: E402
from dvr_jax.config import make_config  # noqa: E402


def measure(args: argparse.Namespace, n: int) -> dict:
    """samples/s of the `n`-device step (median of the timed windows)."""
    cfg = make_config(dataset=args.dataset, data_dir=args.data_dir, backbone=args.backbone, method=args.method,
                      batch_size=args.batch_size, warm_start="none", progress=False, devices=n,
                      model_shards=args.model_shards)  # fmt: skip
    components = loop.build(cfg)
    method, data, key = components.method, components.data, jax.random.key(0)
    if args.model_shards > 1:
        state = sharding.init_sharded(method.init, key, components.mesh)
        data = jax.device_put(data, NamedSharding(components.mesh, PartitionSpec()))
        step = sharding.shard_step(method.step, components.mesh,
                                   state_sharding=sharding.table_shardings(components.mesh, state))  # fmt: skip
    elif components.mesh is None:
        state = method.init(key)
        step = jax.jit(method.step, donate_argnums=(0,))
    else:
        replicated = NamedSharding(components.mesh, PartitionSpec())
        state, data = jax.device_put(method.init(key), replicated), jax.device_put(data, replicated)
        step = sharding.shard_step(method.step, components.mesh)
    batches = sampler.epoch_batches(key, data.train.n_pairs, args.batch_size)
    start = time.perf_counter()
    state, _ = jax.block_until_ready(step(state, key, batches[0], data))
    compile_seconds = time.perf_counter() - start
    done, rates = 1, []
    for window in range(args.warmup_windows + args.windows):
        start = time.perf_counter()
        for _ in range(args.window):
            state, _ = step(state, key, batches[done % batches.shape[0]], data)
            done += 1
        jax.block_until_ready(state)
        if window >= args.warmup_windows:
            rates.append(args.window * args.batch_size / (time.perf_counter() - start))
    return {
        "devices": n,
        "model_shards": args.model_shards,
        "samples_per_s": float(np.median(rates)),
        "compile_s": compile_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="gowalla")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--backbone", default="mf")
    p.add_argument("--method", default="bpr")
    p.add_argument("--batch-size", type=int, default=5000, help="must divide by every count")
    p.add_argument("--counts", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--model-shards", type=int, default=1, help="split the tables over this many of the devices")
    p.add_argument("--window", type=int, default=20, help="steps per timed window")
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--warmup-windows", type=int, default=1)
    args = p.parse_args(argv)
    available = jax.local_device_count()
    results = []
    for n in args.counts:
        if n > available or n % args.model_shards:
            print(f"skipping {n} devices: {available} available, {args.model_shards} model shards", file=sys.stderr)
            continue
        row = measure(args, n)
        results.append(row)
        print(f"{n} device(s): {row['samples_per_s']:,.0f} samples/s (compile {row['compile_s']:.1f} s)", flush=True)
    emit({"bench": "scaling", "dataset": args.dataset, "backbone": args.backbone, "method": args.method,
          "batch_size": args.batch_size, "platform": jax.default_backend(), "results": results})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
