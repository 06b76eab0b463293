"""The table scripts: a grid of real runs, its mean ± std table, reuse of finished cells."""

from __future__ import annotations

import json

import numpy as np

from dvr_jax.noise import paired_comparison
from experiments import reproduce, run, tables


def test_smoke_budget_table_with_paired_tests_and_reuse_of_finished_runs(real_data_dir, tmp_path, monkeypatch):
    out = tmp_path / "table"
    argv = ["--budget", "smoke", "--datasets", "lastfm", "--backbones", "mf", "--methods", "pop", "bpr",
            "--out", str(out), "--data-dir", str(real_data_dir)]  # fmt: skip
    assert tables.main(argv) == 0

    def test_metric(method, seed, metric="recall@20"):
        path = out / f"lastfm-mf-{method}-recall-s{seed}" / "results.json"
        return json.loads(path.read_text())["test"][metric]

    assert json.loads((out / "lastfm-mf-bpr-recall-s1" / "config.json").read_text())["epochs"] == 4  # the budget's
    recalls = [test_metric("bpr", s) for s in (0, 1)]
    rows = (out / "table.md").read_text().splitlines()
    assert rows[0] == ("| dataset | backbone | method | recall@20 | ndcg@20 | Δ recall@20 vs bpr (t p, W p) "
                       "| Δ ndcg@20 vs bpr (t p, W p) |")  # fmt: skip
    bpr_row = next(r for r in rows if r.startswith("| lastfm | mf | bpr |")).split(" | ")
    assert bpr_row[3] == f"{100 * np.mean(recalls):.2f} ± {100 * np.std(recalls):.2f}" and bpr_row[5] == "–"
    pop_row = next(r for r in rows if r.startswith("| lastfm | mf | pop |")).split(" | ")
    want = paired_comparison([test_metric("pop", s) for s in (0, 1)], recalls)
    assert pop_row[5] == f"{100 * want['mean_difference']:+.2f} ({want['t_pvalue']:.3f}, {want['wilcoxon_pvalue']:.3f})"
    assert want["mean_difference"] < 0  # the popularity floor is below BPR on both seeds
    assert "seeds [0, 1]" in rows[-1]
    record = json.loads((out / "table.json").read_text())
    assert record["budget"] == "smoke" and record["rows"][0]["paired"]["recall@20"]["n"] == 2

    def no_rerun(argv):
        raise AssertionError(f"finished cell was rerun: {argv}")

    monkeypatch.setattr(run, "main", no_rerun)
    assert tables.main(argv) == 0  # every cell is reused


def test_reproduce_passes_its_grid_and_a_backbone_subset_to_tables(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(tables, "main", lambda argv: seen.append(argv) or 0)
    assert reproduce.main(["table4", "--backbones", "mf", "--seeds", "0", "--out", str(tmp_path), "--epochs", "5"]) == 0
    argv = seen[0]
    assert argv[argv.index("--backbones") + 1 : argv.index("--methods")] == ["mf"]
    assert argv[argv.index("--rewards") + 1 : argv.index("--metrics")] == ["gini"]
    assert argv[-2:] == ["--epochs", "5"]
    assert reproduce.main(["table4", "--seeds", "0", "--out", str(tmp_path)]) == 0
    assert seen[1][seen[1].index("--backbones") + 1 : seen[1].index("--methods")] == ["mf", "lightgcn"]
