"""LightGCN propagation kernels: forward and forward+backward time of K layers on one graph.

    python benchmarks/bench_propagation.py                       # Gowalla-sized, ~1M nonzeros
    python benchmarks/bench_propagation.py --users 300 --items 400 --pairs 5000 --repeats 2

The graph is synthetic with the shape of Gowalla (30k users, 41k items, 500k unique pairs,
so 1M directed nonzeros in `Ã = D^-1/2 A D^-1/2`), with power-law item popularity. Each
kernel computes the LightGCN layer mean `(1 / (K+1)) Σ_k Ã^k E` (K = 3, D = 64); "fwd" times
the jitted forward, "fwd+bwd" the jitted value and gradient of `sum(out²)` w.r.t. E (graph
arrays passed as arguments, as in the train step). Compile time is
reported separately; times are the median of `--repeats` calls after two warm-up calls, with
`block_until_ready` before every clock read. The winner is `propagation.spmm` (BCSR with a
custom VJP over the pre-built transpose, the kernel the backbones use); the losers stay here
so the choice can be re-measured (e.g. on GPU). The last line is one JSON object.

Measured (CPU, 2 cores shared with other jobs, load average 3-5, repeats 3), fwd / fwd+bwd:
bcsr_custom_vjp 271 / 397 ms, bcsr_autodiff 208 / 764 ms, scipy_csr_callback 364 / 601 ms,
segment_sum 382 / 980 ms, bcoo 561 / 1016 ms. The quiet-machine numbers of docs/engineering.md §8:
76 / 122 ms for BCSR custom VJP against 254 / 454 ms for segment_sum.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import emit, peak_rss_mb
from dvr_jax.backbones import propagation


def synthetic_pairs(rng: np.random.Generator, n_users: int, n_items: int, n_pairs: int) -> np.ndarray:
    """About `n_pairs` unique pairs: uniform users, power-law item popularity (p ∝ rank^-0.8)."""
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    users = rng.integers(0, n_users, int(n_pairs * 1.15))
    items = rng.permutation(n_items)[rng.choice(n_items, users.size, p=weights / weights.sum())]
    pairs = np.unique(np.stack([users, items], 1), axis=0)
    return pairs[rng.permutation(len(pairs))[:n_pairs]]


def make_kernels(op: propagation.SparseOp) -> dict:
    """name -> (graph arrays, `matmul(graph, x)` computing `Ã @ x`), differentiable in x.

    The graph is a jit *argument*, never a closure constant (a constant graph lets XLA
    constant-fold the whole backward pass of this linear map).
    """
    indptr = np.asarray(op.matrix.indptr)
    segment_graph = (
        op.matrix.data,
        op.matrix.indices,
        jnp.asarray(np.repeat(np.arange(op.shape[0]), np.diff(indptr)), jnp.int32),
    )
    n = op.shape[0]

    def segment_sum(graph, x):
        # jraph GraphConvolution style: gather senders, scatter-add into sorted receivers.
        vals, cols, rows = graph
        return jax.ops.segment_sum(vals[:, None] * x[cols], rows, n, indices_are_sorted=True)

    kernels = {
        "bcsr_custom_vjp": (op, propagation.spmm),
        "bcsr_autodiff": (op.matrix, lambda m, x: m @ x),
        "bcoo": (op.matrix.to_bcoo(), lambda m, x: m @ x),
        "segment_sum": (segment_graph, segment_sum),
    }
    try:
        import scipy.sparse as sp
    except ImportError:
        return kernels
    host = sp.csr_matrix((np.asarray(op.matrix.data), np.asarray(op.matrix.indices), indptr), shape=op.shape)

    @jax.custom_vjp
    def scipy_callback(x):
        spec = jax.ShapeDtypeStruct(x.shape, x.dtype)
        return jax.pure_callback(lambda v: (host @ np.asarray(v)).astype(np.float32), spec, x)

    # Ã is symmetric, so the backward is the same host product.
    scipy_callback.defvjp(lambda x: (scipy_callback(x), None), lambda _, g: (scipy_callback(g),))
    kernels["scipy_csr_callback"] = (None, lambda graph, x: scipy_callback(x))
    return kernels


def time_fn(fn, args: tuple, repeats: int) -> tuple[float, float]:
    """(compile + first call seconds, median steady-state seconds)."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    for _ in range(2):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=29858)
    p.add_argument("--items", type=int, default=40981)
    p.add_argument("--pairs", type=int, default=500_000)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--kernels", default="all", help="comma-separated subset, or 'all'")
    args = p.parse_args()

    rng = np.random.default_rng(0)
    pairs = synthetic_pairs(rng, args.users, args.items, args.pairs)
    start = time.perf_counter()
    op = propagation.normalized_bipartite_adjacency(pairs, args.users, args.items)
    build_s = time.perf_counter() - start
    nnz = int(op.matrix.nse)
    n = args.users + args.items
    ego = jnp.asarray(rng.normal(0, 0.1, (n, args.dim)), jnp.float32)
    kernels = make_kernels(op)
    if args.kernels != "all":
        kernels = {k: v for k, v in kernels.items() if k in args.kernels.split(",")}

    results, reference = {}, None
    for name, (graph, matmul) in kernels.items():

        def forward(graph, e, matmul=matmul):
            layer, total = e, e
            for _ in range(args.layers):
                layer = matmul(graph, layer)
                total = total + layer
            return total / (args.layers + 1)

        def loss(graph, e, forward=forward):
            return jnp.sum(forward(graph, e) ** 2)

        fwd = jax.jit(forward)
        fwd_bwd = jax.jit(jax.value_and_grad(loss, argnums=1))
        out = np.asarray(fwd(graph, ego))
        reference = out if reference is None else reference
        error = float(np.abs(out - reference).max())
        fwd_first, fwd_s = time_fn(fwd, (graph, ego), args.repeats)
        bwd_first, bwd_s = time_fn(fwd_bwd, (graph, ego), args.repeats)
        results[name] = {
            "fwd_ms": 1e3 * fwd_s, "fwd_bwd_ms": 1e3 * bwd_s,
            "fwd_first_call_s": fwd_first, "fwd_bwd_first_call_s": bwd_first, "max_abs_diff": error,
        }  # fmt: skip
        print(f"{name:>20}: fwd {1e3 * fwd_s:7.1f} ms   fwd+bwd {1e3 * bwd_s:7.1f} ms   "
              f"(first calls {fwd_first:.2f} / {bwd_first:.2f} s, |diff| {error:.1e})", flush=True)  # fmt: skip

    best = min(results, key=lambda k: results[k]["fwd_bwd_ms"])
    print(f"nodes {n}, nonzeros {nnz}, layers {args.layers}, dim {args.dim}, graph build {build_s:.2f} s; "
          f"fastest fwd+bwd: {best}")  # fmt: skip
    emit({
        "bench": "propagation", "nodes": n, "nonzeros": nnz, "layers": args.layers, "dim": args.dim,
        "graph_build_s": build_s, "kernels": results, "fastest_fwd_bwd": best, "peak_rss_mb": peak_rss_mb(),
    })  # fmt: skip


if __name__ == "__main__":
    main()
