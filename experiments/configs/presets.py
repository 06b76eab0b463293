"""Named presets for `--config`: the paper's hyper-parameters and a CPU smoke test.

Each preset is a dict of `RunConfig` fields; flags given on the command line override it.
`paper` follows the authors' budget (docs/algorithm.md §11): 2000 epochs without early
stopping, Adam 1e-3, validation every 10 epochs (the batch size keeps its
reward-dependent default: 5000, or 1000 for DVR-Loss). `smoke` is the tiny budget used
by tests and CI.
"""

PRESETS: dict[str, dict] = {
    "paper": dict(epochs=2000, learning_rate=1e-3, valid_interval=10, patience=None),
    "smoke": dict(epochs=4, batch_size=1024, valid_interval=2, patience=None, checkpoint_every=2, plots=False),
}
