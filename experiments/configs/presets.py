"""Named presets for `--config`: the paper's hyper-parameters and a CPU smoke test.

Each preset is a dict of `RunConfig` fields; flags given on the command line override it.
`paper` follows ALGORITHMS.md Appendix A (2000 epochs, B = 5000, Adam 1e-3, coupled L2
1e-3, validation every 10 epochs). `smoke` is the tiny budget used by tests and CI.
"""

PRESETS: dict[str, dict] = {
    "paper": dict(epochs=2000, batch_size=5000, learning_rate=1e-3, valid_interval=10, patience=10),
    "smoke": dict(epochs=4, batch_size=1024, valid_interval=2, patience=None, checkpoint_every=2),
}
