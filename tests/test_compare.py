"""experiments/compare.py: runs of two studies paired by seed, refused on other data."""

from __future__ import annotations

import json

import pytest

from experiments import compare


def _study(root, method, recalls, source="abc", leaky=()):
    for seed, recall in recalls.items():
        run = root / f"{method}-s{seed}"
        run.mkdir(parents=True)
        metrics = {"recall@20": recall, "ndcg@20": recall / 2}
        (run / "results.json").write_text(json.dumps({"test": metrics, "valid": metrics, "leaky": list(leaky)}))
        (run / "planting.json").write_text(json.dumps({"source_hash": f"{source}{seed}"}))
    return str(root / method)


def test_paired_by_seed_over_the_common_seeds_hand_computed(tmp_path, capsys):
    reference = _study(tmp_path / "a", "bpr-continued", {0: 0.30, 1: 0.32, 2: 0.31})
    other = _study(tmp_path / "b", "dvr-loss", {0: 0.31, 1: 0.35, 7: 0.50})  # seed 7 has no partner
    out = tmp_path / "t" / "compare.md"
    assert compare.main([other, "--reference", reference, "--out", str(out)]) == 0
    row = compare.compare(compare.load_runs(other), compare.load_runs(reference), other)
    recall = row["metrics"]["test/recall@20"]
    assert row["seeds"] == [0, 1]
    assert recall["mean"] == pytest.approx(0.33) and recall["std"] == pytest.approx(0.02)
    assert recall["differences"] == pytest.approx([0.01, 0.03]) and recall["mean_difference"] == pytest.approx(0.02)
    # t = mean / (sd / sqrt(n)) = 0.02 / (0.01414 / 1.414) = 2 on 1 df: two-sided p = 0.2952
    assert recall["t_pvalue"] == pytest.approx(0.2952, abs=1e-4)
    printed = capsys.readouterr().out
    assert printed == out.read_text() and "| 0 1 | 33.00 ± 2.00 |" in printed and "+2.00 (0.295, 0.500)" in printed


def test_runs_on_other_planted_data_or_without_runs_are_refused(tmp_path, capsys):
    reference = _study(tmp_path / "a", "bpr-continued", {0: 0.30, 1: 0.32})
    other = _study(tmp_path / "b", "dvr-loss", {0: 0.31, 1: 0.35}, source="xyz")
    assert compare.main([other, "--reference", reference]) == 2
    assert "seed 0 trained on other data" in capsys.readouterr().err
    assert compare.main([str(tmp_path / "b" / "tce"), "--reference", reference]) == 2
    assert "no finished run" in capsys.readouterr().err


def test_leaky_runs_and_reference_are_named_so(tmp_path, capsys):
    reference = _study(tmp_path / "a", "bpr-continued", {0: 0.30, 1: 0.32}, leaky=["model selection on test"])
    leaky = _study(tmp_path / "b", "dvr-recall", {0: 0.31, 1: 0.35}, leaky=["model selection on test"])
    honest = _study(tmp_path / "c", "dvr-loss", {0: 0.31, 1: 0.35})
    assert compare.main([leaky, honest, "--reference", reference]) == 0
    printed = capsys.readouterr().out
    assert f"Paired against {reference} [test-leaky]" in printed
    assert f"| {leaky} [test-leaky] | 0 1 |" in printed and f"| {honest} | 0 1 |" in printed
    assert f"TEST-LEAKY: {leaky} (model selection on test); {reference} (model selection on test)." in printed
    assert compare.main([honest, "--reference", honest]) == 0
    assert "test-leaky" not in capsys.readouterr().out.lower()
