"""Removal curves: the lowest-scored pairs go first, no user is emptied, and the CLI end to end."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from dvr_jax.noise import remove_lowest
from experiments import noise as study
from experiments import removal
from tests.evaluation import oracles


def _remove_lowest_oracle(users: np.ndarray, scores: np.ndarray, n_remove: int) -> np.ndarray:
    """Slow reference: walk the pairs from the lowest score up, skip a user's last pair."""
    left = np.bincount(users).astype(int)
    removed = np.zeros(len(users), bool)
    for row in sorted(range(len(users)), key=lambda r: (scores[r], r)):
        if removed.sum() == n_remove:
            break
        if left[users[row]] > 1:
            removed[row], left[users[row]] = True, left[users[row]] - 1
    return removed


@pytest.mark.parametrize("share", [0.0, 0.1, 0.5, 0.9])
def test_remove_lowest_matches_its_oracle_and_keeps_every_user(rng, share):
    dataset = oracles.synthetic_dataset(rng)
    scores = rng.integers(0, 4, len(dataset.train)).astype(float)  # ties: the earlier row goes first
    kept, removed = remove_lowest(dataset, scores, share, tag="t")
    users = np.asarray(dataset.train)[:, 0]
    np.testing.assert_array_equal(removed, _remove_lowest_oracle(users, scores, round(share * len(users))))
    np.testing.assert_array_equal(kept.train, np.asarray(dataset.train)[~removed])
    assert set(np.unique(kept.train[:, 0])) == set(np.unique(users))  # no user left without training pairs
    assert kept.valid is dataset.valid and kept.source_hash != dataset.source_hash


def test_remove_lowest_hand_computed_and_bad_input():
    dataset = dataclasses.replace(oracles.synthetic_dataset(np.random.default_rng(0)), n_users=2,
                                  train=np.array([[0, 1], [0, 2], [0, 3], [1, 4]], np.int32))  # fmt: skip
    kept, removed = remove_lowest(dataset, [0.5, -np.inf, 0.2, -5.0], 0.5)
    assert removed.tolist() == [False, True, True, False]  # user 1's only pair stays though it scores lowest
    with pytest.raises(ValueError, match="NaN"):
        remove_lowest(dataset, [np.nan, 0, 0, 0], 0.1)
    with pytest.raises(ValueError, match="4 training pairs"):
        remove_lowest(dataset, [0.0], 0.1)
    with pytest.raises(ValueError, match="share"):
        remove_lowest(dataset, [0.0] * 4, 1.0)


def test_removal_summary_pairs_each_share_with_the_seeds_0_percent_run():
    from experiments.removal import summary_markdown

    def row(scorer, share, seed, test, planted=0, removed=1):
        return {"scorer": scorer, "share": share, "seed": seed, "removed": removed, "planted_removed": planted,
                "valid_recall@20": test, "test_recall@20": test}  # fmt: skip

    rows = [row("none", 0.0, 0, 0.30), row("none", 0.0, 1, 0.40),
            row("random", 0.1, 0, 0.31, 1, 4), row("random", 0.1, 1, 0.43, 2, 4)]  # fmt: skip
    markdown = summary_markdown(rows, ["random"], [0.0, 0.1])
    # differences +1 and +3 points: mean +2, t = 2 / (sqrt(2) / sqrt(2)) = 2 on 1 df, p = 0.295; planted 1/4, 2/4
    assert "| random (Δ test Recall@20 (p); planted among removed) | – | +2.00 (0.295); 38 % |" in markdown
    assert "| random (test Recall@20) | 35.00 ± 5.00 | 37.00 ± 6.00 |" in markdown


@pytest.mark.slow
def test_removal_cli_smoke(real_data_dir, tmp_path):
    source = tmp_path / "noise"
    argv = ["--dataset", "ml-100k", "--data-dir", str(real_data_dir), "--methods", "bpr", "dvr-loss", "--seeds", "0",
            "--quick", "--epochs", "2", "--batch-size", "2048", "--out", str(source)]  # fmt: skip
    assert study.main(argv) == 0
    out = tmp_path / "removal"
    argv = ["--from", str(source), "--seeds", "0", "--shares", "0", "0.2", "--out", str(out), "--extra", "epochs=1",
            "--scorers", "dvr_value", "model_score", "random"]  # fmt: skip
    assert removal.main(argv) == 0
    rows = list(csv.DictReader((out / "removal.csv").open()))
    assert [(r["scorer"], r["share"]) for r in rows] == [("none", "0.0")] + [
        (s, "0.2") for s in ("dvr_value", "model_score", "random")
    ]
    n_train = 42216 + round(0.1 * 42216)
    assert all(int(r["removed"]) == round(0.2 * n_train) for r in rows[1:]) and rows[0]["removed"] == "0"
    assert all(0 <= int(r["planted_removed"]) <= int(r["removed"]) and 0 < float(r["test_recall@20"]) < 1
               for r in rows)  # fmt: skip
    assert "dvr_value (test Recall@20)" in (out / "removal.md").read_text()
    assert (out / "removal.png").read_bytes().startswith(b"\x89PNG")
    assert removal.main(argv) == 0  # every run reused
    other = (out / "model_score-0.2-s0" / "kept.json").read_text()
    assert other != (out / "dvr_value-0.2-s0" / "kept.json").read_text()  # other pairs removed
    (out / "dvr_value-0.2-s0" / "kept.json").write_text(other)  # as if the study's values had changed
    assert removal.main(argv) == 2  # not reused on other pairs
    assert removal.main(["--from", str(tmp_path / "nothing")]) == 2
