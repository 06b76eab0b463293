"""Planted-noise harness: planting invariants, AUC / AP against brute-force oracles, paired statistics,
DVR diagnostics, CLI parsing and smoke runs (planted and clean data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dvr_jax.data.dataset import Dataset
from dvr_jax.noise import (
    average_precision,
    drop_planted,
    format_paired,
    format_pvalue,
    paired_comparison,
    plant_random_pairs,
    roc_auc,
    within_user_rank,
)


def _pairs(rng, n_users, n_items, per_user):
    rows = [(u, i) for u in range(n_users) for i in rng.choice(n_items, size=per_user[u], replace=False)]
    return np.array(rows, np.int64).reshape(-1, 2)


def tiny_dataset(seed: int = 0, n_users: int = 30, n_items: int = 40) -> Dataset:
    """A synthetic dataset: each user has 3-12 distinct items split train / valid / test."""
    rng = np.random.default_rng(seed)
    per_user = rng.integers(3, 13, size=n_users)
    pairs = _pairs(rng, n_users, n_items, per_user)
    split = np.zeros(len(pairs), np.int8)
    starts = np.r_[0, np.cumsum(per_user)[:-1]]
    split[starts] = 1  # one valid and one test pair per user, the rest train
    split[starts + 1] = 2
    sort = lambda p: p[np.lexsort((p[:, 1], p[:, 0]))].astype(np.int32)  # noqa: E731
    return Dataset(
        name="tiny", n_users=n_users, n_items=n_items,
        train=sort(pairs[split == 0]), valid=sort(pairs[split == 1]), test=sort(pairs[split == 2]),
        user_ids=np.array([str(u) for u in range(n_users)], object),
        item_ids=np.array([str(i) for i in range(n_items)], object), source_hash="abc123",
    )  # fmt: skip


def _codes(pairs, n_items):
    return pairs[:, 0].astype(np.int64) * n_items + pairs[:, 1]


@pytest.mark.parametrize("mode", ["add", "replace"])
@pytest.mark.parametrize("share", [0.1, 0.5])
def test_planting_invariants(mode, share):
    clean = tiny_dataset()
    new, planted = plant_random_pairs(clean, share, seed=3, mode=mode)
    n_plant = round(share * len(clean.train))
    assert planted.dtype == bool and planted.shape == (len(new.train),)
    assert planted.sum() == n_plant
    assert len(new.train) == len(clean.train) + (n_plant if mode == "add" else 0)
    assert new.train.dtype == np.int32 and new.train.shape[1] == 2
    codes = _codes(new.train, clean.n_items)
    assert np.all(np.diff(codes) > 0)  # sorted by (user, item), no duplicates
    clean_codes = _codes(clean.train, clean.n_items)
    other = np.concatenate([clean_codes, _codes(clean.valid, clean.n_items), _codes(clean.test, clean.n_items)])
    assert not np.isin(codes[planted], other).any()  # planted pairs collide with no split
    real = codes[~planted]
    assert np.isin(real, clean_codes).all()  # labels aligned: unplanted rows are the real pairs
    if mode == "add":
        np.testing.assert_array_equal(real, clean_codes)
    else:
        assert len(real) == len(clean_codes) - n_plant
    assert set(np.unique(new.train[:, 0])) == set(range(clean.n_users))  # every user keeps a pair
    assert np.bincount(new.train[:, 0], minlength=clean.n_users).max() < clean.n_items
    np.testing.assert_array_equal(new.valid, clean.valid)
    np.testing.assert_array_equal(new.test, clean.test)
    assert new.name == clean.name and (new.n_users, new.n_items) == (clean.n_users, clean.n_items)


def test_replace_keeps_every_user_at_the_maximum_share():
    clean = tiny_dataset(seed=1)
    n_removable = len(clean.train) - clean.n_users
    new, planted = plant_random_pairs(clean, (n_removable - 0.4) / len(clean.train), seed=0, mode="replace")
    np.testing.assert_array_equal(np.sort(new.train[~planted, 0]), np.arange(clean.n_users))  # one real pair each
    with pytest.raises(ValueError, match="cannot replace"):
        plant_random_pairs(clean, (n_removable + 1) / len(clean.train), seed=0, mode="replace")


@pytest.mark.parametrize("mode", ["add", "replace"])
def test_drop_planted_keeps_exactly_the_real_pairs(mode):
    clean = tiny_dataset()
    noisy, planted = plant_random_pairs(clean, 0.3, seed=2, mode=mode)
    kept = drop_planted(noisy, planted)
    np.testing.assert_array_equal(kept.train, noisy.train[~planted])
    if mode == "add":  # the clean split itself
        np.testing.assert_array_equal(kept.train, clean.train)
    else:  # the clean split less the pairs swapped out
        assert len(kept.train) == len(clean.train) - planted.sum()
        assert np.isin(_codes(kept.train, clean.n_items), _codes(clean.train, clean.n_items)).all()
    assert kept.source_hash not in (noisy.source_hash, clean.source_hash)
    np.testing.assert_array_equal(kept.test, clean.test)
    with pytest.raises(ValueError, match="bool"):
        drop_planted(noisy, planted[1:])
    lonely = np.zeros(len(noisy.train), bool)
    lonely[noisy.train[:, 0] == 0] = True  # every pair of user 0
    with pytest.raises(ValueError, match="user index 0"):
        drop_planted(noisy, lonely)


def test_source_hash_deterministic_per_seed():
    clean = tiny_dataset()
    a, la = plant_random_pairs(clean, 0.2, seed=5)
    b, lb = plant_random_pairs(clean, 0.2, seed=5)
    c, _ = plant_random_pairs(clean, 0.2, seed=6)
    d, _ = plant_random_pairs(clean, 0.2, seed=5, mode="replace")
    e, _ = plant_random_pairs(clean, 0.3, seed=5)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(la, lb)
    assert a.source_hash == b.source_hash != clean.source_hash
    assert len({a.source_hash, c.source_hash, d.source_hash, e.source_hash}) == 4
    assert all(len(x.source_hash) == 64 and int(x.source_hash, 16) >= 0 for x in (a, c, d, e))
    assert not np.array_equal(a.train, c.train)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"share": 0.0}, "share"), ({"share": 1.0}, "share"), ({"share": -0.1}, "share"),
        ({"share": 0.1, "mode": "swap"}, "mode"), ({"share": 0.001}, "plants no pair"),
    ],
)  # fmt: skip
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plant_random_pairs(tiny_dataset(), seed=0, **kwargs)


def _explicit_dataset(train, valid, test, n_items=5):
    as_pairs = lambda rows: np.array(rows, np.int32).reshape(-1, 2)  # noqa: E731
    return Dataset(name="explicit", n_users=2, n_items=n_items, train=as_pairs(train), valid=as_pairs(valid),
                   test=as_pairs(test), user_ids=np.array(["a", "b"], object),
                   item_ids=np.array([str(i) for i in range(n_items)], object))  # fmt: skip


def test_free_pairs_and_capacity():
    # user 0: train 0 1 2 3, nothing else -> item 4 is free but would leave no negative: capacity 0.
    # user 1: train 0 1, valid 2, test 3 -> item 4 is the only free pair.
    clean = _explicit_dataset([(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)], [(1, 2)], [(1, 3)])
    new, planted = plant_random_pairs(clean, 0.2, seed=0)  # round(1.2) = 1 pair
    np.testing.assert_array_equal(new.train[planted], [[1, 4]])
    with pytest.raises(ValueError, match="cannot plant 2 pairs: only 1 free"):
        plant_random_pairs(clean, 0.3, seed=0)


def auc_oracle(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return total / (len(pos) * len(neg))


def ap_oracle(scores, labels):
    ap, previous_recall = 0.0, 0.0
    for threshold in sorted(set(scores.tolist()), reverse=True):
        chosen = scores >= threshold
        tp = np.sum(labels & chosen)
        precision, recall = tp / chosen.sum(), tp / labels.sum()
        ap += (recall - previous_recall) * precision
        previous_recall = recall
    return ap


@pytest.mark.parametrize("seed", range(6))
def test_auc_ap_match_oracles_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 120))
    scores = rng.integers(0, [3, 10, 50, 1000, 5, 20][seed], size=n).astype(np.float64)  # many ties
    if seed == 5:
        scores[:4] = [np.inf, -np.inf, -np.inf, np.inf]
    labels = rng.random(n) < 0.3
    labels[:2] = [True, False]
    assert roc_auc(scores, labels) == pytest.approx(auc_oracle(scores, labels), abs=1e-12)
    assert average_precision(scores, labels) == pytest.approx(ap_oracle(scores, labels), abs=1e-12)


def test_auc_ap_hand_computed():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([False, False, True, True])
    assert roc_auc(scores, labels) == pytest.approx(0.75)  # sklearn's doc example
    assert average_precision(scores, labels) == pytest.approx(0.8333333333)  # (1/2)(1) + (1/2)(2/3)
    assert roc_auc([1, 2, 3], [0, 1, 1]) == 1.0 and roc_auc([3, 2, 1], [0, 1, 1]) == 0.0
    assert average_precision([3, 2, 1], [1, 0, 0]) == 1.0
    assert roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5  # all tied: half credit
    assert average_precision([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5  # one threshold: precision 1/2
    # one tie between a positive and a negative: AUC = (1 + 0.5 + 1 + 1) / 4, AP = 1/2 * 1 + 1/2 * 2/3
    assert roc_auc([3, 2, 2, 1], [1, 1, 0, 0]) == pytest.approx(0.875)
    assert average_precision([3, 2, 2, 1], [1, 1, 0, 0]) == pytest.approx(0.5 + 1 / 3)


def _within_user_rank_oracle(scores, users) -> np.ndarray:
    """Slow reference: per pair, (1 + #lower + #tied others / 2) / n_u within its user."""
    out = np.empty(len(scores))
    for index, (score, user) in enumerate(zip(scores, users, strict=True)):
        mine = scores[users == user]
        out[index] = (np.sum(mine < score) + (np.sum(mine == score) + 1) / 2.0) / len(mine)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_within_user_rank_matches_its_oracle(seed):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 7, 60)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    np.testing.assert_allclose(within_user_rank(scores, users), _within_user_rank_oracle(scores, users), atol=1e-12)
    # hand-computed: user 0 holds 0.1, 0.1, 0.5, 0.9 (ranks 1.5, 1.5, 3, 4 of 4); user 1 holds 1, 2, 2, 3
    got = within_user_rank([0.5, 0.1, 0.9, 0.1, 3.0, 2.0, 2.0, 1.0], [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(got, [0.75, 0.375, 1.0, 0.375, 1.0, 0.625, 0.625, 0.25])
    with pytest.raises(ValueError, match="NaN"):
        within_user_rank([np.nan, 1.0], [0, 0])


def test_auc_ap_reject_bad_input():
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 2], [True, True])
    with pytest.raises(ValueError, match="both classes"):
        average_precision([1, 2], [0, 0])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([np.nan, 1], [0, 1])
    with pytest.raises(ValueError, match="length"):
        roc_auc([1, 2, 3], [0, 1])


def test_paired_comparison_hand_computed():
    # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3 with 2 df, whose CDF is
    # 1/2 + t / (2 sqrt(2 + t^2)): two-sided p = 1 - t / sqrt(2 + t^2) = 1 - sqrt(12 / 14).
    # Signed ranks all positive: W = min(W+, W-) = 0, exact two-sided p = 2 / 2^3.
    out = paired_comparison([1.5, 2.0, 3.25], [0.5, 0.0, 0.25])
    assert out["n"] == 3 and out["differences"] == [1.0, 2.0, 3.0] and out["mean_difference"] == 2.0
    assert out["t_statistic"] == pytest.approx(2 * np.sqrt(3), rel=1e-12)
    assert out["t_pvalue"] == pytest.approx(1 - np.sqrt(12 / 14), rel=1e-10)
    assert out["wilcoxon_statistic"] == 0.0 and out["wilcoxon_pvalue"] == pytest.approx(0.25)
    negative = paired_comparison([0.5, 0.0, 0.25], [1.5, 2.0, 3.25])  # sign flips, p-values do not
    assert negative["t_statistic"] == pytest.approx(-2 * np.sqrt(3)) and negative["mean_difference"] == -2.0
    assert negative["t_pvalue"] == pytest.approx(out["t_pvalue"]) and negative["wilcoxon_pvalue"] == 0.25


def test_paired_cells_show_points_and_small_p_values_as_below_a_thousandth():
    # differences 0.01, 0.02, 0.03 (fractions): +2.00 points, t p = 1 - sqrt(12/14) = 0.0742, W p = 0.25
    assert format_paired(paired_comparison([0.02, 0.03, 0.04], [0.01, 0.01, 0.01])) == "+2.00 (0.074, 0.250)"
    assert format_paired(None) == "–" and format_pvalue(None) == "–"
    assert format_pvalue(0.0009) == "< 0.001" and format_pvalue(0.001) == "0.001" and format_pvalue(0.0314) == "0.031"
    one_seed = format_paired(paired_comparison([0.1], [0.3]))  # no t-test with one seed
    assert one_seed == "-20.00 (–, 1.000)"


@pytest.mark.parametrize(
    "values, reference, defined",
    [
        ([0.3], [0.1], {"wilcoxon_pvalue"}),  # one seed: no t-test
        ([0.2, 0.3, 0.4], [0.2, 0.3, 0.4], set()),  # all-zero differences: nothing defined
        ([1.0, 2.0], [0.0, 1.0], {"wilcoxon_pvalue"}),  # constant differences: no t-test
        ([], [], set()),
        ([0.3, 0.1, 0.5, 0.2, 0.4], [0.1, 0.2, 0.3, 0.2, 0.1], {"t_pvalue", "wilcoxon_pvalue"}),  # one zero diff
    ],
)  # fmt: skip
def test_paired_comparison_degenerate_never_raises(values, reference, defined):
    out = paired_comparison(values, reference)
    for name in ("t_pvalue", "wilcoxon_pvalue"):
        assert (out[name] is not None) == (name in defined), name
        assert out[name] is None or 0.0 <= out[name] <= 1.0
    assert json.loads(json.dumps(out)) == out  # JSON-safe (no NaN / inf)
    with pytest.raises(ValueError, match="length"):
        paired_comparison([1.0, 2.0], [1.0])


def test_presets_and_extras_reach_each_method_with_the_fields_it_takes(tmp_path):
    from experiments.noise import parser, run_config

    argv = ["--dataset", "lastfm", "--share", "0", "--methods", "bpr", "dvr-recall", "tce", "--config", "authors",
            "--extra", "reward_k=5", "tce_drop_rate=0.1", "--out", str(tmp_path)]  # fmt: skip
    args = parser().parse_args(argv)
    bpr, dvr, tce = (run_config(args, m, 0, tmp_path) for m in ("bpr", "dvr-recall", "tce"))
    assert bpr.select_split == dvr.select_split == tce.select_split == "test"  # RunConfig fields: every run
    assert bpr.options is None and tce.options.drop_rate == 0.1  # each method's own options only
    assert (dvr.options.slot_variant, dvr.options.reward_split, dvr.options.reward_k) == ("C_compat", "test", 5)


def test_a_finished_run_is_reused_only_with_the_same_config(tmp_path):
    from dvr_jax.config import ConfigError
    from experiments.noise import _check_reusable, parser, run_config

    args = parser().parse_args(["--dataset", "lastfm", "--methods", "dvr-loss", "--out", str(tmp_path)])
    cfg = run_config(args, "dvr-loss", 0, tmp_path)
    run = tmp_path / "dvr-loss-s0"
    run.mkdir()
    (run / "planting.json").write_text(json.dumps({"source_hash": "abc"}))
    saved = cfg.to_dict()
    (run / "config.json").write_text(json.dumps(saved))
    _check_reusable(cfg, run, {"source_hash": "abc"})  # the same: reused
    with pytest.raises(ConfigError, match="other planted data"):
        _check_reusable(cfg, run, {"source_hash": "xyz"})
    (run / "config.json").write_text(json.dumps({**saved, "loss_negatives": 1}))
    with pytest.raises(ConfigError, match=r"another config \(loss_negatives\)"):
        _check_reusable(cfg, run, {"source_hash": "abc"})
    older = {k: v for k, v in cfg.to_dict().items() if k not in ("coordinator", "loss_game_coalitions")}
    (run / "config.json").write_text(json.dumps(older))  # written before these fields: placement, default
    _check_reusable(cfg, run, {"source_hash": "abc"})
    del saved["loss_negatives"]  # runs written before it existed read each triplet's own loss (1), not 16
    (run / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=r"another config \(loss_negatives\)"):
        _check_reusable(cfg, run, {"source_hash": "abc"})


def test_the_bpr_run_and_the_warm_start_are_trained_once(tmp_path):
    import shutil
    from types import SimpleNamespace

    from dvr_jax import warm_start
    from experiments.noise import parser, run_config, share_bpr_run

    def configs(*flags):
        args = parser().parse_args(["--dataset", "lastfm", "--methods", "bpr", "dvr-loss", "--out", str(tmp_path),
                                    "--extra", "valid_interval=5", *flags])  # fmt: skip
        return run_config(args, "bpr", 0, tmp_path), run_config(args, "dvr-loss", 0, tmp_path)

    bpr, dvr = configs()
    dataset, planting = SimpleNamespace(train=np.zeros((40_000, 2)), source_hash="abc"), {"source_hash": "abc"}
    folder, run = warm_start.pretrained_dir(dvr, dataset), tmp_path / "bpr-s0"
    assert not share_bpr_run(bpr, dvr, dataset, planting)  # nothing finished
    (run / "checkpoints" / "best").mkdir(parents=True)
    for name, content in (("config.json", bpr.to_dict()), ("results.json", {}), ("run.lock", {})):
        (run / name).write_text(json.dumps(content))
    assert share_bpr_run(bpr, dvr, dataset, planting)  # bpr finished first: it becomes the warm start
    assert (folder / "checkpoints" / "best").is_dir() and not (folder / "run.lock").exists()
    assert json.loads((folder / "config.json").read_text())["out"] == str(folder)
    assert not share_bpr_run(bpr, dvr, dataset, planting)  # both finished
    shutil.rmtree(run)
    assert share_bpr_run(bpr, dvr, dataset, planting)  # the warm start finished first: it becomes bpr
    assert json.loads((run / "planting.json").read_text()) == planting
    assert json.loads((run / "config.json").read_text())["out"] == str(run)
    shutil.rmtree(run)
    other, _ = configs("--batch-size", "1024")  # not the warm start's batch: trained on its own
    assert not share_bpr_run(other, dvr, dataset, planting) and not run.exists()
    assert not list(tmp_path.glob("*.copying")) and not list(folder.parent.glob("*.copying"))


def test_cli_options_parse():
    from dvr_jax.config import ConfigError
    from experiments.noise import default_out, default_reference, method_fields, parse_extra, run_dir_name

    assert method_fields("bpr") == {"method": "bpr", "warm_start": "none"}
    assert method_fields("bpr-continued") == {"method": "bpr", "warm_start": "auto"}
    assert method_fields("dvr-recall") == {"method": "dvr", "reward": "recall", "warm_start": "auto"}
    assert method_fields("dvr-loss:scratch") == {"method": "dvr", "reward": "loss", "warm_start": "none"}
    assert method_fields("tce") == {"method": "tce", "warm_start": "none"}
    for bad in ("dvr-bogus", "dvr", "pop", "nope", "dvr-loss:warm", "dvr-loss:", "bpr:scratch",
                "bpr-continued:scratch", "tce:scratch", "dvr-bogus:scratch"):  # fmt: skip
        with pytest.raises(ConfigError):
            method_fields(bad)
    assert run_dir_name("dvr-recall:scratch", 3) == "dvr-recall-scratch-s3"
    assert run_dir_name("bpr-continued", 0) == "bpr-continued-s0"
    assert str(default_out("lastfm", "add", 0.0)) == "runs/noise/lastfm-clean"
    assert str(default_out("lastfm", "replace", 0.1)) == "runs/noise/lastfm-replace0.1"
    assert default_reference(["bpr", "dvr-loss", "bpr-continued"]) == "bpr-continued"
    assert default_reference(["dvr-loss", "bpr"]) == "bpr"
    assert default_reference(["dvr-loss", "tce"]) is None
    parsed = parse_extra(["estimator=loo", "patience=none", "num-masks=8", "lambda_explore=0.5", "influence=false",
                          "ks=10,20,50"])  # fmt: skip
    assert parsed == {"estimator": "loo", "patience": None, "num_masks": 8, "lambda_explore": 0.5,
                      "influence": False, "ks": (10, 20, 50)}  # fmt: skip
    for bad in ("estimator", "bogus=1", "seed=3", "num_masks=x", "warm_start=auto"):
        with pytest.raises(ConfigError):
            parse_extra([bad])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--warm-start", "none"], "method name"), (["--share", "1.0"], "share"), (["--share", "-0.1"], "share"),
        (["--methods", "bpr", "dvr-loss", "--reference", "bpr-continued"], "reference"),
        (["--methods", "dvr-loss:warm"], "suffix"),
        (["--methods", "bpr-oracle", "--share", "0"], "bpr-oracle"),
    ],
)  # fmt: skip
def test_bad_flags_fail_before_loading_data(argv, message, capsys):
    from experiments.noise import main

    assert main([*argv, "--data-dir", "/nonexistent"]) == 2
    assert message in capsys.readouterr().err


def _write_run(workdir, dataset, value, prob, influence, visits, log_lines):
    workdir.mkdir(parents=True)
    order = np.arange(len(dataset.train))[::-1]  # another row order than the dataset's: alignment matters
    np.savez(workdir / "pair_values.npz", users=dataset.train[order, 0], items=dataset.train[order, 1],
             value=value[order], prob=prob[order], influence=influence[order], visits=visits[order])  # fmt: skip
    (workdir / "train_log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in log_lines))


def test_dvr_diagnostics_and_scores(tmp_path):
    from experiments.noise import dvr_diagnostics, pair_value_scores

    clean = tiny_dataset()
    dataset, planted = plant_random_pairs(clean, 0.25, seed=0)
    n = len(dataset.train)
    rng = np.random.default_rng(0)
    visits = rng.integers(0, 3, size=n)
    prob = np.where(planted, 0.2, 0.8) + 0.01 * rng.random(n)
    value = rng.random(n)
    influence = 2.0 * value + 1.0  # monotone in value: Spearman 1 over the visited pairs
    influence[visits == 0] = -5.0  # unvisited pairs must not count
    logs = [{"epoch": 1, "selected": 0.1, "advantage": 9.0}, {"epoch": 2, "selected": 0.5, "advantage": -0.25,
            "spearman_influence": float("nan"), "tied_fraction": 0.0, "loss": 1.0}]  # fmt: skip
    _write_run(tmp_path / "run", dataset, value, prob, influence, visits, logs)
    diag = dvr_diagnostics(tmp_path / "run", dataset, planted)
    seen = visits > 0
    assert diag["prob_real"] == pytest.approx(prob[seen & ~planted].mean())
    assert diag["prob_planted"] == pytest.approx(prob[seen & planted].mean())
    assert diag["visited_fraction"] == pytest.approx(seen.mean())
    assert diag["spearman_value_influence"] == pytest.approx(1.0)
    assert diag["selected"] == 0.5 and diag["advantage"] == -0.25 and diag["tied_fraction"] == 0.0
    assert diag["spearman_influence"] is None and "zero_fraction" not in diag and "loss" not in diag
    assert "spearman_value_influence" not in dvr_diagnostics(tmp_path / "run", dataset, planted, influence=False)
    no_planted = dvr_diagnostics(tmp_path / "run", dataset, np.zeros(n, bool))  # clean data: no planted group
    assert "prob_planted" not in no_planted
    assert no_planted["prob_real"] == pytest.approx(prob[seen].mean())
    scores = pair_value_scores(tmp_path / "run", dataset)
    np.testing.assert_array_equal(scores["dvr_prob"], np.where(seen, prob, -np.inf))
    np.testing.assert_array_equal(scores["influence"], np.where(seen, influence, -np.inf))


def _record(method, seed, recall, valid, diagnostics=None):
    return {"method": method, "seed": seed, "planted": 0, "scorers": {}, "test": {"recall@20": recall,
            "ndcg@20": recall / 2}, "valid": {"recall@20": valid}, "diagnostics": diagnostics or {}}  # fmt: skip


def test_paired_summary_and_markdown():
    from experiments.noise import paired_summary, summarize, summary_markdown

    records = [_record("bpr-continued", s, 0.20 + 0.01 * s, 0.30) for s in range(3)]
    records += [_record("dvr-loss", s, 0.21 + 0.01 * s + 0.01 * (s == 2), 0.31 + 0.01 * s,
                        {"prob_real": 0.5 + 0.1 * s, "advantage": None}) for s in range(3)]  # fmt: skip
    records += [_record("bpr", s, 0.19, 0.29) for s in (1, 2, 5)]  # seed 5 has no partner
    paired = paired_summary(records, "bpr-continued")
    assert set(paired) == {"dvr-loss", "bpr"}
    dvr = paired["dvr-loss"]["metrics"]
    assert dvr["test/recall@20"]["differences"] == pytest.approx([0.01, 0.01, 0.02])
    assert dvr["test/ndcg@20"]["mean_difference"] == pytest.approx(0.04 / 6)
    assert dvr["valid/recall@20"]["differences"] == pytest.approx([0.01, 0.02, 0.03])
    expected = paired_comparison([0.21, 0.22, 0.24], [0.20, 0.21, 0.22])
    assert dvr["test/recall@20"]["t_pvalue"] == pytest.approx(expected["t_pvalue"])
    assert paired["bpr"]["seeds"] == [1, 2] and paired["bpr"]["metrics"]["test/recall@20"]["n"] == 2
    assert paired_summary(records, None) == {}
    summary = summarize(records)
    assert summary["dvr-loss"]["diagnostics"]["prob_real"]["mean"] == pytest.approx(0.6)
    assert summary["dvr-loss"]["diagnostics"]["advantage"] is None
    assert summary["bpr"]["valid"]["recall@20"]["mean"] == pytest.approx(0.29)
    markdown = summary_markdown(summary, paired, "# header")
    assert "## Detection" not in markdown  # clean records: no detection table
    for title in ("## Metrics", "## Paired comparison", "## DVR diagnostics", "valid recall@20"):
        assert title in markdown
    assert "| dvr-loss | bpr-continued | valid/recall@20 | 3 | +0.0200 | +0.0100 +0.0200 +0.0300 |" in markdown
    assert "| dvr-loss | advantage | – | 0 |" in markdown


def test_leaky_runs_are_named_so_in_every_table():
    from experiments.noise import paired_summary, summarize, summary_markdown

    records = [_record("bpr-continued", s, 0.20, 0.30) for s in range(2)]
    records += [{**_record("dvr-recall", s, 0.22, 0.31, {"prob_real": 0.5}), "leaky": ["reward on test users"]}
                for s in range(2)]  # fmt: skip
    summary = summarize(records)
    assert summary["dvr-recall"]["leaky"] == ["reward on test users"] and summary["bpr-continued"]["leaky"] == []
    markdown = summary_markdown(summary, paired_summary(records, "bpr-continued"), "# header")
    assert "TEST-LEAKY: dvr-recall (reward on test users)." in markdown
    assert "| dvr-recall [test-leaky] | 2 |" in markdown  # metrics
    assert "| dvr-recall [test-leaky] | bpr-continued | test/recall@20 |" in markdown  # paired
    assert "| dvr-recall [test-leaky] | prob_real |" in markdown  # diagnostics
    assert "| dvr-recall |" not in markdown and "| bpr-continued | 2 |" in markdown
    honest = [r for r in records if r["method"] == "bpr-continued"]
    assert "TEST-LEAKY" not in summary_markdown(summarize(honest), {}, "# header")


@pytest.mark.realdata
@pytest.mark.slow
def test_noise_cli_smoke(real_data_dir, tmp_path, capsys):
    from experiments.noise import main

    out = tmp_path / "noise"
    argv = ["--dataset", "ml-100k", "--data-dir", str(real_data_dir), "--methods", "bpr", "dvr-loss", "--seeds", "0",
            "--quick", "--epochs", "2", "--batch-size", "1024", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert (out / "summary.md").exists() and (out / "summary.json").exists()
    record = json.loads((out / "bpr-s0" / "noise.json").read_text())
    assert record["planted"] == round(0.1 * 42216)
    for scorer in ("model_score", "neg_loss", "user_neg_loss", "random"):
        auc = record["scorers"][scorer]["auc"]
        assert isinstance(auc, float) and 0.0 <= auc <= 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]["bpr"]["test"]) == {"recall@20", "ndcg@20"}
    dvr = json.loads((out / "dvr-loss-s0" / "noise.json").read_text())  # the DVR output contract, end to end
    assert {"dvr_value", "dvr_prob", "influence"} <= set(dvr["scorers"]) and dvr["warm_start"] == "auto"
    assert {"prob_real", "prob_planted", "spearman_value_influence", "visited_fraction"} <= set(dvr["diagnostics"])
    assert 0.0 <= dvr["diagnostics"]["prob_planted"] <= 1.0
    assert summary["reference"] == "bpr" and set(summary["paired"]) == {"dvr-loss"}
    assert "model_score" in capsys.readouterr().out
    assert main(argv) == 0  # a second call reuses results.json (no training) and rewrites the summary


@pytest.mark.realdata
@pytest.mark.slow
def test_noise_cli_clean_smoke(real_data_dir, tmp_path):
    from experiments.noise import main

    out = tmp_path / "clean"
    argv = ["--dataset", "ml-100k", "--data-dir", str(real_data_dir), "--share", "0", "--methods", "bpr",
            "bpr-continued", "--seeds", "0", "1", "--quick", "--epochs", "1", "--batch-size", "2048",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "bpr-continued-s1" / "noise.json").read_text())
    assert record["planted"] == 0 and record["scorers"] == {} and record["ap_chance"] is None
    assert record["warm_start"] == "auto" and 0.0 <= record["valid"]["recall@20"] <= 1.0
    assert json.loads((out / "bpr-s0" / "config.json").read_text())["warm_start"] == "none"
    assert len(list((out / "pretrained").iterdir())) == 2  # one BPR checkpoint per seed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"] == "bpr-continued" and summary["mode"] is None
    assert set(summary["paired"]) == {"bpr"}
    stats = summary["paired"]["bpr"]["metrics"]
    assert set(stats) == {"test/recall@20", "test/ndcg@20", "valid/recall@20"}
    assert stats["test/recall@20"]["seeds"] == [0, 1] and len(stats["test/recall@20"]["differences"]) == 2
    markdown = (out / "summary.md").read_text()
    assert "## Detection" not in markdown and "## Paired comparison" in markdown


@pytest.mark.realdata
@pytest.mark.slow
def test_the_perfect_detector_continues_the_noisy_warm_start_without_the_planted_pairs(real_data_dir, tmp_path):
    from experiments.noise import main

    out = tmp_path / "oracle"
    argv = ["--dataset", "ml-100k", "--data-dir", str(real_data_dir), "--share", "0.1", "--mode", "replace",
            "--methods", "bpr-oracle", "--seeds", "0", "--quick", "--epochs", "1", "--batch-size", "2048",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    (warm,) = (out / "pretrained").iterdir()  # trained for it: no other method needed that warm start
    oracle = out / "bpr-oracle-s0"
    assert json.loads((oracle / "config.json").read_text())["warm_start"] == str(warm)
    trained = json.loads((oracle / "results.json").read_text())["dataset_summary"]["train"]
    noisy = json.loads((warm / "results.json").read_text())["dataset_summary"]["train"]
    record = json.loads((oracle / "noise.json").read_text())
    assert trained == noisy - record["planted"] and record["planted"] == round(0.1 * noisy)
    assert 0.0 <= record["scorers"]["model_score"]["auc"] <= 1.0  # scored on every row, the planted ones too
    finished = [(run / "results.json").stat().st_mtime_ns for run in (warm, oracle)]
    assert main(argv) == 0
    assert [(run / "results.json").stat().st_mtime_ns for run in (warm, oracle)] == finished  # reused, not retrained


@pytest.mark.realdata
@pytest.mark.slow
def test_an_interrupted_study_continues_each_run_to_the_same_result(real_data_dir, tmp_path, monkeypatch, capsys):
    from dvr_jax import loop
    from experiments.noise import main

    def argv(out):
        return ["--dataset", "ml-100k", "--data-dir", str(real_data_dir), "--methods", "bpr-continued", "--seeds", "0",
                "--quick", "--epochs", "3", "--batch-size", "2048", "--out", str(out)]  # fmt: skip

    def interrupt_in_epoch_2(of_warm_start: bool) -> None:  # after the checkpoint of epoch 1 (QUICK: every epoch)
        monkeypatch.undo()
        real = loop._train_epoch

        def train_epoch(components, step_fn, state, keys, epoch, cfg, progress):
            if epoch == 1 and ("pretrained" in cfg.out) == of_warm_start:
                raise KeyboardInterrupt
            return real(components, step_fn, state, keys, epoch, cfg, progress)

        monkeypatch.setattr(loop, "_train_epoch", train_epoch)

    assert main(argv(tmp_path / "whole")) == 0
    out = tmp_path / "parts"
    interrupt_in_epoch_2(of_warm_start=True)
    assert main(argv(out)) == 130
    assert "interrupted at epoch 1" in capsys.readouterr().err
    interrupt_in_epoch_2(of_warm_start=False)  # the warm start goes on; the run warm-started from it stops
    assert main(argv(out)) == 130
    assert "continuing its interrupted run" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(argv(out)) == 0
    assert "continuing its interrupted run" in capsys.readouterr().err
    for name in ("bpr-continued-s0", *(f"pretrained/{p.name}" for p in (out / "pretrained").iterdir())):
        whole, parts = (json.loads((root / name / "results.json").read_text()) for root in (tmp_path / "whole", out))
        assert parts["resumed"] and not whole.get("resumed")
        assert parts["test"] == whole["test"] and parts["valid"] == whole["valid"]
        assert parts["best_epoch"] == whole["best_epoch"]
