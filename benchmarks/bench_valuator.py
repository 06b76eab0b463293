"""Benchmark of the DVR data valuator step: forward, forward + Shapley, MSE gradient.

Reference: docs/harsanyi.md §5 (Variant G at B = 5000, M = 100, L = 2, h = 10) and §8.
The authors' HarsanyiNet step takes 9-13 s per 5000-sample batch on this CPU (7.6 GB
peak); the target is <= 0.1 s. Synthetic inputs (the step cost does not depend on the
data). Reports the median over `--repeats` timed calls after `--warmup` calls
(block_until_ready before every clock read), the compile time of each jitted
function, and the peak RSS; the LAST line is one JSON object.

  python benchmarks/bench_valuator.py --batch-size 5000 --hidden 100 --layers 2
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dvr_jax.state import standard_promotion
from dvr_jax.valuator import loss_target, make_valuator


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--hidden", type=int, default=100, help="Harsanyi units per layer (M)")
    parser.add_argument("--layers", type=int, default=2, help="Harsanyi blocks (L)")
    parser.add_argument("--h-dim", type=int, default=10, help="encoder output width (H)")
    parser.add_argument("--embed-dim", type=int, default=64, help="backbone dim D (F = 3D + 1)")
    parser.add_argument(
        "--valuator",
        default="sample",
        choices=["sample", "slot"],
        help="sample: the sample game (default); slot: the paper's Harsanyi net",
    )
    parser.add_argument("--variant", default="G", choices=["G", "F", "P", "C_compat"], help="slot valuator variant")
    parser.add_argument("--children-init", default="random", choices=["random", "cover"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def _time(fn, *args, warmup: int, repeats: int) -> tuple[float, float, float]:
    """(compile + first call, median, min) seconds; min helps on a shared machine."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), min(times)


def _time_step(step, args, *, warmup: int, repeats: int) -> tuple[float, float, float]:
    """Like `_time` for a donating step: the new params/state feed the next call."""
    params, opt_state, feats, target = args
    times = []
    for _ in range(warmup + repeats):
        start = time.perf_counter()
        params, opt_state, loss, _ = step(params, opt_state, feats, target)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[warmup:]), min(times[warmup:])


def main() -> None:
    args = _parse()
    key = jax.random.key(args.seed)
    k_init, k_feats = jax.random.split(key)
    n_feats = 3 * args.embed_dim + 1
    feats = 0.1 * jax.random.normal(k_feats, (args.batch_size, n_feats), jnp.float32)
    losses = jax.nn.softplus(feats[:, -1] * 10.0)
    feats = feats.at[:, -1].set(losses)
    if args.valuator == "sample":
        valuator = make_valuator("sample")
    else:
        valuator = make_valuator(
            "slot",
            h_dim=1 if args.variant == "P" else args.h_dim,
            width=args.hidden,
            num_layers=args.layers,
            variant=args.variant,
            children_init=args.children_init,
            encoder="paper" if args.variant == "P" else "code",
        )
    start = time.perf_counter()
    params = jax.block_until_ready(jax.jit(valuator.init)(k_init, feats))
    init_s = time.perf_counter() - start
    n_params = sum(leaf.size for leaf in jax.tree.leaves(params))
    present = jnp.ones(args.batch_size, jnp.float32)
    target = loss_target(losses)
    optimizer = standard_promotion(optax.adam(1e-3))
    optimizer.init(params)

    forward = jax.jit(valuator.output)
    shapley = jax.jit(valuator.forward)

    @jax.jit
    def mse_grad(params, feats, target):
        (loss, out), grads = jax.value_and_grad(valuator.mse_loss, has_aux=True)(params, feats, target)
        return loss, out, valuator.probabilities(params, out.shapley), grads

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, feats, target):
        (loss, out), grads = jax.value_and_grad(valuator.mse_loss, has_aux=True)(params, feats, target)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, out.shapley

    timing = dict(warmup=args.warmup, repeats=args.repeats)
    fwd_first, fwd_s, fwd_min = _time(forward, params, feats, present, **timing)
    shap_first, shap_s, shap_min = _time(shapley, params, feats, **timing)
    grad_first, grad_s, grad_min = _time(mse_grad, params, feats, target, **timing)
    out = shapley(params, feats)
    efficiency_gap = abs(float(jnp.sum(out.shapley)) - float(out.prediction))
    step_args = (jax.tree.map(jnp.copy, params), optimizer.init(params), feats, target)
    step_first, step_s, step_min = _time_step(train_step, step_args, **timing)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    print(
        f"device: {jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}), jax {jax.__version__}"
    )
    print(
        f"config: valuator={args.valuator} B={args.batch_size} F={n_feats} "
        + (
            f"M={args.hidden} L={args.layers} h={args.h_dim} variant={args.variant} children_init={args.children_init} "
            if args.valuator == "slot"
            else ""
        )
        + f"params={n_params:,}"
    )
    print(f"init (jit, incl. compile):          {init_s:8.3f} s")
    rows = [
        ("forward (y_G)", fwd_s, fwd_min, fwd_first),
        ("forward + Shapley", shap_s, shap_min, shap_first),
        ("forward + Shapley + MSE gradient", grad_s, grad_min, grad_first),
        ("... + Adam update (donated step)", step_s, step_min, step_first),
    ]
    for name, median, fastest, first in rows:
        print(
            f"{name + ':':35s} {median * 1e3:8.2f} ms/step median "
            f"({fastest * 1e3:.2f} min; compile+first {first:.2f} s)"
        )
    print(f"efficiency |sum(phi) - y_G| = {efficiency_gap:.2e} (float32)")
    print(
        f"null-player fraction {float(out.null_fraction):.4f}, zero values "
        f"{float(out.zero_fraction):.4f}, tied values {float(out.tied_fraction):.4f}, "
        f"active units {float(out.active_fraction):.3f}, peak RSS {peak_mb:.0f} MB"
    )
    print(
        json.dumps(
            {
                "benchmark": "valuator",
                "batch_size": args.batch_size,
                "hidden": args.hidden,
                "layers": args.layers,
                "valuator": args.valuator,
                "h_dim": args.h_dim if args.valuator == "slot" else 32,
                "feature_dim": n_feats,
                "variant": args.variant,
                "children_init": args.children_init,
                "params": int(n_params),
                "forward_s": fwd_s,
                "shapley_s": shap_s,
                "mse_grad_s": grad_s,
                "train_step_s": step_s,
                "forward_min_s": fwd_min,
                "shapley_min_s": shap_min,
                "mse_grad_min_s": grad_min,
                "train_step_min_s": step_min,
                "compile_forward_s": fwd_first,
                "compile_shapley_s": shap_first,
                "compile_mse_grad_s": grad_first,
                "compile_train_step_s": step_first,
                "init_s": init_s,
                "peak_rss_mb": peak_mb,
                "efficiency_gap": efficiency_gap,
                "null_fraction": float(out.null_fraction),
                "zero_fraction": float(out.zero_fraction),
                "tied_fraction": float(out.tied_fraction),
                "active_fraction": float(out.active_fraction),
                "jax": jax.__version__,
                "backend": jax.default_backend(),
                "repeats": args.repeats,
                "numpy": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
