"""The table scripts: a grid of real runs, its mean ± std table, reuse of finished cells."""

from __future__ import annotations

import json

import numpy as np

from experiments import reproduce, run, tables


def test_table_reports_mean_and_std_over_seeds_and_reuses_finished_runs(real_data_dir, tmp_path, monkeypatch):
    out = tmp_path / "table"
    argv = ["--datasets", "lastfm", "--backbones", "mf", "--methods", "pop", "bpr", "--seeds", "0", "1",
            "--out", str(out), "--config", "smoke", "--data-dir", str(real_data_dir)]  # fmt: skip
    assert tables.main(argv) == 0
    recalls = [json.loads((out / f"lastfm-mf-bpr-recall-s{s}" / "results.json").read_text())["test"]["recall@20"]
               for s in (0, 1)]  # fmt: skip
    rows = (out / "table.md").read_text().splitlines()
    assert rows[0] == "| dataset | backbone | method | recall@20 | ndcg@20 |"
    bpr_row = next(r for r in rows if r.startswith("| lastfm | mf | bpr |"))
    assert bpr_row.split(" | ")[3] == f"{100 * np.mean(recalls):.2f} ± {100 * np.std(recalls):.2f}"
    assert "seeds [0, 1]" in rows[-1]

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
