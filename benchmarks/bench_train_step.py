"""Training throughput of one jitted train step, end to end (sampling included).

    python benchmarks/bench_train_step.py --dataset gowalla --backbone mf --method bpr --batch-size 5000
    python benchmarks/bench_train_step.py --dataset lastfm --method til-mi --option til_outer='"train"'

The method, its backbone and its step data are built by `dvr_jax.loop.build` from a
`RunConfig`, exactly as the CLI builds them (`--option NAME=VALUE` sets any other config field
by its flat name, VALUE a Python literal; DVR gets `warm_start="none"`). Runs whole epochs the way the
training loop does (epoch permutation on device, one jitted, donated step per batch), reports
compile seconds separately, and the median samples/s over timed windows after warm-up. The
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import ast
import time

import jax
import numpy as np

from benchmarks.common import emit, peak_rss_mb
from dvr_jax import loop, sampler
from dvr_jax.config import make_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="gowalla")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--backbone", default="mf")
    p.add_argument("--method", default="bpr")
    p.add_argument("--batch-size", type=int, default=5000)
    p.add_argument("--reward", default="recall", help="DVR reward")
    p.add_argument("--reward-interval", type=int, default=1, help="DVR: reward + valuator update every N steps")
    p.add_argument("--window", type=int, default=20, help="steps per timed window")
    p.add_argument("--windows", type=int, default=10)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--option", action="append", default=[], help="NAME=VALUE: a config field (flat name)")
    args = p.parse_args()

    options = {name: ast.literal_eval(value) for name, value in (o.split("=", 1) for o in args.option)}
    dvr_only = {"reward_interval": args.reward_interval} if args.method == "dvr" else {}
    cfg = make_config(dataset=args.dataset, data_dir=args.data_dir, backbone=args.backbone, method=args.method,
                      batch_size=args.batch_size, reward=args.reward, warm_start="none", progress=False,
                      **{**dvr_only, **options})  # fmt: skip
    components = loop.build(cfg)
    method, data = components.method, components.data
    train = data.train
    run_key = jax.random.key(0)
    state = method.init(run_key)
    step = jax.jit(method.step, donate_argnums=(0,))
    make_batches = jax.jit(sampler.epoch_batches, static_argnums=(1, 2))
    batches = make_batches(run_key, train.n_pairs, args.batch_size)

    start = time.perf_counter()
    state, metrics = jax.block_until_ready(step(state, run_key, batches[0], data))
    compile_seconds = time.perf_counter() - start

    done = 1  # steps run so far

    def run(n_steps):
        nonlocal state, batches, done
        for _ in range(n_steps):
            index = done % batches.shape[0]
            if index == 0:  # new epoch: permutation on device, as in the loop
                batches = make_batches(jax.random.fold_in(run_key, done), train.n_pairs, args.batch_size)
            state, out = step(state, run_key, batches[index], data)
            done += 1
        jax.block_until_ready(state)
        return out

    run(args.warmup)
    rates = []
    for _ in range(args.windows):
        start = time.perf_counter()
        out = run(args.window)
        rates.append(args.window * args.batch_size / (time.perf_counter() - start))
    median = float(np.median(rates))
    print(f"{args.dataset} {args.backbone} {args.method} B={args.batch_size}: {median:,.0f} samples/s "
          f"({1e3 * args.batch_size / median:.2f} ms/step), compile {compile_seconds:.2f}s, "
          f"loss {float(out['loss']):.4f}, peak RSS {peak_rss_mb():.0f} MiB")  # fmt: skip
    emit({
        "bench": "train_step", "dataset": args.dataset, "backbone": args.backbone, "method": args.method,
        "options": options, "batch_size": args.batch_size, "samples_per_s": median,
        **({"reward": args.reward, "reward_interval": args.reward_interval} if args.method == "dvr" else {}),
        "step_ms": 1e3 * args.batch_size / median,
        "compile_s": compile_seconds, "peak_rss_mb": peak_rss_mb(), "train_pairs": train.n_pairs,
    })  # fmt: skip


if __name__ == "__main__":
    main()
