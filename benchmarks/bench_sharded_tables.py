"""Embedding tables that outgrow one device: BPR-MF with its tables and Adam moments split over "model".

    python benchmarks/bench_sharded_tables.py                      # 1M users x 1M items x 64, 8 devices
    python benchmarks/bench_sharded_tables.py --users 20000 --items 20000 --dim 16 --steps 2   # smoke

Builds the BPR step of `--method bpr --model-shards M` (`dvr_jax.sharding`: tables and their Adam
moments `P("model", None)`, the batch over "data", the rest replicated) on a `data × model` mesh,
and compiles it twice: with the state split over "model" and with the state replicated (the
data-parallel placement, compiled only, never run). XLA's `memory_analysis()` of each compiled
program gives the per-device argument, output, alias and temp sizes; their "peak" is
argument + output - alias + temp. Then it trains `--steps` BPR steps with the split state
(created in place, no device ever holds a whole table) and reports the losses and step times.
Last, the full-ranking evaluation of `--eval-users` users against every item with the trained
tables split (`dvr_jax.evaluation.table_sharded`: local top-K per model shard, then a merge),
timed and with its compiled per-device sizes, next to the data-parallel evaluation's (tables
replicated, `ranking.evaluate_sharded` on 8 data shards; compiled only).
On a CPU the devices are simulated (`--xla_force_host_platform_device_count`, set here before
JAX starts when XLA_FLAGS does not set it). One JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

from benchmarks.common import emit, peak_rss_mb  # noqa: E402
from dvr_jax import sampler, sharding  # noqa: E402
from dvr_jax.backbones import make_mf  # noqa: E402
from dvr_jax.data.dataset import Dataset  # noqa: E402
from dvr_jax.evaluation.eval_arrays import make_eval_arrays  # noqa: E402
from dvr_jax.evaluation.ranking import evaluate_sharded, pad_chunks  # noqa: E402
from dvr_jax.evaluation.table_sharded import evaluate_table_sharded  # noqa: E402
from dvr_jax.methods import make_bpr_method  # noqa: E402
from dvr_jax.step import StepData  # noqa: E402


def synthetic_pairs(n_users: int, n_items: int, per_user: int, seed: int) -> np.ndarray:
    """`per_user` distinct random items for every user, int64[U * per_user, 2]."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    offsets = np.tile(np.arange(per_user), n_users)  # distinct per user: a random start plus 0..per_user-1
    items = (np.repeat(rng.integers(0, n_items, n_users), per_user) + offsets) % n_items
    return np.stack([users, items], 1)


def memory(compiled) -> dict[str, int]:
    """Per-device bytes of a compiled program (XLA's memory analysis)."""
    analysis = compiled.memory_analysis()
    sizes = {name: int(getattr(analysis, f"{name}_size_in_bytes")) for name in ("argument", "output", "alias", "temp")}
    sizes["peak"] = sizes["argument"] + sizes["output"] - sizes["alias"] + sizes["temp"]
    return sizes


def state_bytes_per_device(state, shardings) -> int:
    """Bytes of the state's shards on one device under `shardings` (the placement, before any compile)."""
    total = 0
    for leaf, placement in zip(jax.tree.leaves(state), jax.tree.leaves(shardings)):
        total += int(np.prod(placement.shard_shape(leaf.shape))) * leaf.dtype.itemsize
    return total


def measure_evaluation(args: argparse.Namespace, pairs: np.ndarray, backbone, tables, mesh) -> dict:
    """Seconds and per-device bytes of ranking every item for `args.eval_users` users, tables split or replicated.

    The held-out pair of each evaluated user is the item after its training items.
    """
    users = np.arange(args.eval_users)
    held_out = np.stack([users, (pairs[users * args.pairs_per_user, 1] + args.pairs_per_user) % args.items], 1)
    ids = np.zeros(0, object)  # no id strings are needed to rank
    dataset = Dataset("synthetic", args.users, args.items, pairs, held_out, np.zeros((0, 2), np.int64), ids, ids)
    arrays = pad_chunks(make_eval_arrays(dataset, "valid", chunk_size=args.eval_chunk), mesh.shape["data"])
    split = jax.jit(lambda t, a: evaluate_table_sharded(t, a, mesh, ks=(20,)))
    compiled = split.lower(tables, arrays).compile()
    start = time.perf_counter()
    recall = float(compiled(tables, arrays)["recall@20"])
    seconds = time.perf_counter() - start
    data_mesh = sharding.make_data_mesh(args.devices)
    replicated = jax.tree.map(
        lambda t: jax.ShapeDtypeStruct(t.shape, t.dtype, sharding=NamedSharding(data_mesh, PartitionSpec())), tables
    )
    data_arrays = pad_chunks(arrays, args.devices)
    plain = jax.jit(lambda t, a: evaluate_sharded(backbone, t, a, data_mesh, ks=(20,)))
    figures = {"sharded": memory(compiled), "replicated": memory(plain.lower(replicated, data_arrays).compile())}
    return {"users": args.eval_users, "chunk": arrays.chunk_size, "seconds": seconds, "recall@20": recall,
            "compiled_bytes_per_device": figures}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--pairs-per-user", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--model-shards", type=int, default=8)
    p.add_argument("--eval-users", type=int, default=1024, help="users ranked against every item; 0: no evaluation")
    p.add_argument("--eval-chunk", type=int, default=256, help="users per evaluation chunk")
    args = p.parse_args(argv)
    if jax.local_device_count() < args.devices or args.devices % args.model_shards:
        sys.exit(f"need {args.devices} devices divisible by {args.model_shards} model shards; "
                 f"{jax.local_device_count()} available")  # fmt: skip
    mesh = sharding.make_mesh(args.devices // args.model_shards, args.model_shards)
    pairs = synthetic_pairs(args.users, args.items, args.pairs_per_user, seed=0)
    data = StepData(sampler.make_train_arrays(pairs, args.users, args.items), None)
    data = jax.device_put(data, NamedSharding(mesh, PartitionSpec()))
    backbone = make_mf(args.users, args.items, dim=args.dim, row_multiple=args.model_shards)
    method = make_bpr_method(backbone)
    key = jax.random.key(0)
    abstract = jax.eval_shape(method.init, key)
    batch = jax.ShapeDtypeStruct((args.batch_size,), jnp.int32)
    split = sharding.table_shardings(mesh, abstract)
    replicated = jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()), abstract)
    step = sharding.shard_step(method.step, mesh, state_sharding=split)
    start = time.perf_counter()
    compiled = step.lower(abstract, key, batch, data).compile()
    compile_seconds = time.perf_counter() - start
    replicated_step = sharding.shard_step(method.step, mesh)  # the data-parallel placement: compiled, not run
    figures = {
        "sharded": memory(compiled),
        "replicated": memory(replicated_step.lower(abstract, key, batch, data).compile()),
    }
    state_bytes = {"sharded": state_bytes_per_device(abstract, split),
                   "replicated": state_bytes_per_device(abstract, replicated)}  # fmt: skip

    state = sharding.init_sharded(method.init, key, mesh)
    shard_rows = state.params["item"].addressable_shards[0].data.shape[0]
    batches = sampler.epoch_batches(key, data.train.n_pairs, args.batch_size)
    losses, seconds = [], []
    for index in range(args.steps):
        start = time.perf_counter()
        state, metrics = compiled(state, key, batches[index % batches.shape[0]], data)
        losses.append(float(metrics["loss"]))  # waits for the step
        seconds.append(time.perf_counter() - start)
    evaluation = measure_evaluation(args, pairs, backbone, state.params, mesh) if args.eval_users else None
    emit({
        "bench": "sharded_tables", "users": args.users, "items": args.items, "dim": args.dim,
        "mesh": {"data": args.devices // args.model_shards, "model": args.model_shards},
        "batch_size": args.batch_size, "train_pairs": int(data.train.n_pairs),
        "item_rows_per_device": shard_rows, "state_bytes_per_device": state_bytes,
        "compiled_bytes_per_device": figures,
        "peak_ratio": figures["sharded"]["peak"] / figures["replicated"]["peak"],
        "state_ratio": state_bytes["sharded"] / state_bytes["replicated"],
        "losses": losses, "finite": bool(np.all(np.isfinite(losses))), "compile_s": compile_seconds,
        "step_s": seconds, "evaluation": evaluation, "peak_rss_mb": peak_rss_mb(),
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
