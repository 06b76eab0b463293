"""Named presets for `--config`: the paper's hyper-parameters and a CPU smoke test.

Each preset is a dict of `RunConfig` fields; flags given on the command line override it.
`paper` follows the authors' budget (docs/algorithm.md §11): 2000 epochs without early
stopping, Adam 1e-3, validation every 10 epochs (the batch size keeps its
reward-dependent default: 5000, or 1000 for DVR-Loss). `smoke` is the tiny budget used
by tests and CI. `authors` is the protocol of the authors' released code, for measuring what it
adds (docs/departures.md §22): a DVR preset (with another `--method` its DVR options are refused),
and *test-leaky* — the reward reads 10 % of the test users at K = 10 and the checkpoint is the
maximum over epochs of test Recall@20 — so every run under it is marked leaky in `config.json`,
`results.json`, its printed summary and the tables. Its other ingredients: the C_compat slot
valuator with a frozen encoder, the code's value map γ(φ − min φ) with the probabilities as loss
weights (`dot`), the `R · mean log w` surrogate without a baseline, the MSE on the full batch only
(no loss game), the triplet's own loss as the valuator's input, the plain summed loss of the
weighted batch, and for DVR-Loss the pre-update
batch loss as the reward.
"""

PRESETS: dict[str, dict] = {
    "paper": dict(epochs=2000, learning_rate=1e-3, valid_interval=10, patience=None),
    "authors": dict(
        valuator="slot",
        slot_variant="C_compat",
        freeze_encoder=True,
        value_map="code",
        weight_mode="dot",
        pg_mode="code",
        estimator="none",
        mse_target="batch",
        loss_game_weight=0.0,
        loss_negatives=1,
        update_scale="sum",
        influence=False,
        reward_split="test",
        reward_fraction=0.1,
        reward_k=10,
        loss_reward="batch",
        select_split="test",
    ),
    "smoke": dict(epochs=4, batch_size=1024, valid_interval=2, patience=None, checkpoint_every=2, plots=False),
}
