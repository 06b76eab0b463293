"""Explanations of a DVR run: pairs ranked by value with the dataset's item names, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dvr_jax import explanations
from experiments import explain

ROWS = [("2", "51", 20, -0.02, 0.57), ("2", "63", 20, 0.01, 0.58), ("2", "89", 0, np.nan, np.nan),
        ("3", "51", 19, 0.5, 0.7), ("3", "77", 18, -1.5, 0.1)]  # fmt: skip


def write_run(path, data_dir, dataset="lastfm"):
    path.mkdir(parents=True)
    lines = ["user\titem\tvisits\tvalue\tprob\tinfluence"]
    lines += [f"{u}\t{i}\t{n}\t{v:.6g}\t{p:.6g}\t0" for u, i, n, v, p in ROWS]
    (path / "pair_values.tsv").write_text("\n".join(lines) + "\n")
    (path / "config.json").write_text(json.dumps({"dataset": dataset, "data_dir": str(data_dir)}))
    return path


def test_item_names_from_the_datasets_own_files(real_data_dir):
    lastfm = explanations.item_names("lastfm", str(real_data_dir))
    assert (lastfm["51"], lastfm["63"], lastfm["1"]) == ("Duran Duran", "Enigma", "MALICE MIZER")
    movies = explanations.item_names("ml-100k", str(real_data_dir))
    assert movies["1"] == "Toy Story" and len(movies) == 1682
    assert explanations.item_names("gowalla", str(real_data_dir)) == {}  # no names shipped


def test_a_users_pairs_best_first_with_names(real_data_dir, tmp_path):
    run = write_run(tmp_path / "run", real_data_dir)
    values = explanations.read_pair_values(run)
    assert values.users.tolist() == ["2", "2", "2", "3", "3"] and values.visits.tolist() == [20, 20, 0, 19, 18]
    rows = explanations.user_rows(values, "2")
    assert values.items[rows].tolist() == ["63", "51", "89"]  # by value; never valued last
    text = explain.explain([str(run), "--user", "2"])
    lines = text.splitlines()
    assert "user 2: 3 pairs, best first" in text
    first, second, third = (line for line in lines if line.strip()[:1].isdigit() and line.split()[1] == "2")
    assert first.split()[2] == "63" and first.endswith("Enigma") and second.endswith("Duran Duran")
    assert "never" in third


def test_the_overall_ends_and_the_histogram(real_data_dir, tmp_path):
    pytest.importorskip("matplotlib")
    run = write_run(tmp_path / "run", real_data_dir)
    text = explain.explain([str(run), "--top", "1", "--histogram"])
    best, worst = text.split("the 1 least valuable pairs")
    top = best.strip().splitlines()[-1].split()
    assert top[1:3] == ["3", "51"] and top[-2:] == ["Duran", "Duran"]  # user 3's 0.5
    assert worst.splitlines()[2].split()[1:3] == ["3", "77"]  # value -1.5
    assert (run / "plots" / "values.png").read_bytes().startswith(b"\x89PNG")


def test_bad_runs_and_users_are_one_line_errors(real_data_dir, tmp_path, capsys):
    run = write_run(tmp_path / "run", real_data_dir)
    assert explain.main([str(run), "--user", "999999"]) == 2
    assert (
        capsys.readouterr().err == "error: user '999999' has no training pair in this run (ids are the dataset's own)\n"
    )
    assert explain.main([str(tmp_path / "missing")]) == 2
    assert "pair_values.tsv is missing" in capsys.readouterr().err
    (run / "pair_values.tsv").write_text("user\titem\n1\t2\n")
    assert explain.main([str(run)]) == 2
    assert "header" in capsys.readouterr().err


def test_planted_pairs_of_a_noise_run_are_marked(real_data_dir, tmp_path):
    from dvr_jax import noise
    from dvr_jax.data import load_dataset

    clean = load_dataset("ml-100k", str(real_data_dir), kcore=None, split_seed=2024)
    dataset, planted = noise.plant_random_pairs(clean, 0.1, 3, "add")
    fake, real = dataset.train[planted][0], dataset.train[~planted][0]
    run = tmp_path / "run"
    run.mkdir()
    rows = [(dataset.user_ids[p[0]], dataset.item_ids[p[1]], v) for p, v in ((fake, -1.0), (real, 0.5))]
    lines = ["user\titem\tvisits\tvalue\tprob\tinfluence"] + [f"{u}\t{i}\t3\t{v}\t0.5\t0" for u, i, v in rows]
    (run / "pair_values.tsv").write_text("\n".join(lines) + "\n")
    (run / "config.json").write_text(json.dumps({"dataset": "ml-100k", "data_dir": str(real_data_dir)}))
    planting = {"share": 0.1, "mode": "add", "seed": 3, "planted": int(planted.sum()),
                "source_hash": dataset.source_hash}  # fmt: skip
    (run / "planting.json").write_text(json.dumps(planting))
    assert len(explanations.planted_pairs(run)) == planted.sum()
    text = explain.explain([str(run), "--top", "1"])
    best, worst = text.split("least valuable")
    assert "[planted]" in worst and "[planted]" not in best
    (run / "planting.json").write_text(json.dumps({**planting, "source_hash": "other"}))
    with pytest.raises(explanations.ExplanationError, match="does not match"):
        explanations.planted_pairs(run)
