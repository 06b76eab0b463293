"""Training throughput of one jitted train step, end to end (sampling included).

    python benchmarks/bench_train_step.py --dataset gowalla --backbone mf --method bpr --batch-size 5000

Runs whole epochs the way the training loop does (epoch permutation on device, one jitted,
donated step per batch), reports compile seconds separately, and the median samples/s over
timed windows after warm-up. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import emit, peak_rss_mb  # noqa: E402
from dvr_jax import sampler  # noqa: E402
from dvr_jax.backbones import make_backbone  # noqa: E402
from dvr_jax.data import load_dataset  # noqa: E402
from dvr_jax.methods import make_method  # noqa: E402
from dvr_jax.train import StepData  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="gowalla")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--backbone", default="mf")
    p.add_argument("--method", default="bpr")
    p.add_argument("--batch-size", type=int, default=5000)
    p.add_argument("--window", type=int, default=20, help="steps per timed window")
    p.add_argument("--windows", type=int, default=10)
    p.add_argument("--warmup", type=int, default=10)
    args = p.parse_args()

    dataset = load_dataset(args.dataset, args.data_dir)
    backbone = make_backbone(args.backbone, dataset.n_users, dataset.n_items)
    method = make_method(args.method, backbone)
    train = sampler.make_train_arrays(dataset.train, dataset.n_users, dataset.n_items)
    data = StepData(train, backbone.build_graph(dataset.train))
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
        "batch_size": args.batch_size, "samples_per_s": median, "step_ms": 1e3 * args.batch_size / median,
        "compile_s": compile_seconds, "peak_rss_mb": peak_rss_mb(), "train_pairs": train.n_pairs,
    })  # fmt: skip


if __name__ == "__main__":
    main()
