"""Training-curve plots: reading a run directory, the panel layout, the PNG, and the CLI."""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest

from dvr_jax import plots
from experiments import plot as plot_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DVR_KEYS = {"reward": 0.4, "advantage": -0.01, "selected": 0.5, "mean_prob": 0.5, "cosine": 0.1,
            "spearman_influence": 0.2, "zero_fraction": 0.0, "tied_fraction": 0.0}  # fmt: skip


def write_run(path, dvr=True, best_epoch=None):
    """A tiny run: validation at epochs 2 and 4 (best recall at 2), four training epochs."""
    path.mkdir(parents=True)
    checks = [{"epoch": 2, "loss": 0.6, "seconds": 1.5, "valid": {"recall@20": 0.30, "ndcg@20": 0.20}},
              {"epoch": 4, "loss": 0.5, "seconds": 3.0, "valid": {"recall@20": 0.25, "ndcg@20": 0.22}}]  # fmt: skip
    log = [{"epoch": e, "loss": 0.7 - 0.05 * e, **(DVR_KEYS if dvr else {})} for e in range(1, 5)]
    if dvr:
        log[1]["spearman_influence"] = None  # a null value reads as NaN
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in checks))
    (path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    config = {"dataset": "tiny", "method": "dvr" if dvr else "bpr", "backbone": "mf", "seed": 3,
              "select_metric": "recall@20"}  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))
    if best_epoch is not None:
        (path / "results.json").write_text(json.dumps({"best_epoch": best_epoch}))
    return path


def test_read_run_returns_the_written_numbers(tmp_path):
    curves = plots.read_run(write_run(tmp_path / "run"))
    np.testing.assert_array_equal(curves.valid_epochs, [2, 4])
    np.testing.assert_allclose(curves.valid["recall@20"], [0.30, 0.25])
    np.testing.assert_allclose(curves.valid["ndcg@20"], [0.20, 0.22])
    np.testing.assert_allclose(curves.valid_seconds, [1.5, 3.0])
    np.testing.assert_array_equal(curves.train_epochs, [1, 2, 3, 4])
    np.testing.assert_allclose(curves.train["loss"], [0.65, 0.6, 0.55, 0.5])
    np.testing.assert_allclose(curves.train["reward"], [0.4] * 4)
    assert np.isnan(curves.train["spearman_influence"][1]) and curves.train["spearman_influence"][0] == 0.2
    assert curves.best_epoch == 2 and curves.select_metric == "recall@20"  # first maximum, no results.json
    assert curves.title == "run | tiny | dvr | mf | seed 3"


def test_read_run_prefers_results_best_epoch_and_tolerates_missing_optional_files(tmp_path):
    assert plots.read_run(write_run(tmp_path / "a", best_epoch=4)).best_epoch == 4
    run = tmp_path / "b"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 5, "valid": {"recall@20": 0.1}}\n\n')
    curves = plots.read_run(run)
    assert curves.train_epochs.shape == (0,) and curves.train == {} and curves.best_epoch is None
    assert np.isnan(curves.valid_seconds).all() and curves.title == "b"


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"loss": 0.5}', "'epoch' is missing"),
        ('{"epoch": 3, "valid": 1}', "'valid' is not a JSON object"),
    ],
)
def test_a_malformed_line_names_the_file_and_line(tmp_path, line, message):
    run = write_run(tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write(line + "\n")
    with pytest.raises(plots.PlotError, match=rf"metrics\.jsonl line 3: {message}"):
        plots.read_run(run)


def test_a_malformed_train_log_line_is_located_too(tmp_path):
    run = write_run(tmp_path / "run")
    (run / "train_log.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n{"epoch": 2, "loss": \n')
    with pytest.raises(plots.PlotError, match=r"train_log\.jsonl line 2: not valid JSON"):
        plots.read_run(run)


def test_malformed_config_or_binary_log_is_located(tmp_path):
    run = write_run(tmp_path / "run")
    (run / "config.json").write_text('{\n  "seed": 0,\n  oops\n}')
    with pytest.raises(plots.PlotError, match=r"config\.json line 3: not valid JSON"):
        plots.read_run(run)
    (run / "config.json").write_text("{}")
    (run / "train_log.jsonl").write_bytes(b"\xff\xfe")
    with pytest.raises(plots.PlotError, match=r"train_log\.jsonl: cannot be read"):
        plots.read_run(run)


def test_missing_directory_and_missing_metrics_file_are_plot_errors(tmp_path):
    with pytest.raises(plots.PlotError, match="does not exist"):
        plots.read_run(tmp_path / "absent")
    with pytest.raises(plots.PlotError, match="has no metrics.jsonl"):
        plots.read_run(tmp_path)


def test_dvr_panels_appear_only_for_dvr_logs(tmp_path):
    dvr = plots.plan_panels(plots.read_run(write_run(tmp_path / "dvr")))
    bpr = plots.plan_panels(plots.read_run(write_run(tmp_path / "bpr", dvr=False)))
    assert [p.key for p in bpr] == ["valid", "loss"]
    assert [p.key for p in dvr] == ["valid", "loss", "reward", "advantage", "selection", "values", "diagnostics"]
    valid = dvr[0]
    assert [s[0] for s in valid.series] == ["recall@20", "ndcg@20"] and valid.best_epoch == 2
    diagnostics = dvr[-1].series[0]  # the null epoch is dropped, not drawn as NaN
    assert diagnostics[0] == "spearman_influence"
    np.testing.assert_array_equal(diagnostics[1], [1, 3, 4])


def test_plan_panels_rejects_an_unknown_metric_and_skips_empty_panels(tmp_path):
    curves = plots.read_run(write_run(tmp_path / "run", dvr=False))
    with pytest.raises(plots.PlotError, match=r"has no metric cc@20 \(available: ndcg@20, recall@20\)"):
        plots.plan_panels(curves, ("recall@20", "cc@20"))
    assert [p.key for p in plots.plan_panels(curves, ())] == ["loss"]
    empty = curves._replace(valid_epochs=curves.valid_epochs[:0], valid={}, train_epochs=curves.train_epochs[:0],
                            train={})  # fmt: skip
    assert plots.plan_panels(empty) == []
    with pytest.raises(plots.PlotError, match="nothing to plot"):
        plots.write_plots(empty, tmp_path / "out")


@pytest.mark.parametrize("dvr, rows", [(False, 1), (True, 4)])
def test_plot_run_writes_a_png_of_the_expected_size(tmp_path, dvr, rows):
    pytest.importorskip("matplotlib")
    from matplotlib import image

    run = write_run(tmp_path / "run", dvr=dvr)
    paths = plots.plot_run(run)
    assert paths == [run / "plots" / "curves.png"]
    data = paths[0].read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    pixels = image.imread(paths[0])
    width, height = plots.PANEL_INCHES
    assert pixels.shape[:2] == (round(rows * height * 100), round(plots.COLUMNS * width * 100))
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["curves.png"]  # no temporary left


def test_draw_panels_has_one_axes_per_panel(tmp_path):
    pytest.importorskip("matplotlib")
    for dvr, count in ((True, 7), (False, 2)):
        panels = plots.plan_panels(plots.read_run(write_run(tmp_path / str(dvr), dvr=dvr)))
        fig = plots.draw_panels(panels, "title")
        assert len(fig.axes) == count == len(panels)
        assert [ax.get_title() for ax in fig.axes] == [p.title for p in panels]


def test_plot_run_names_the_extra_when_matplotlib_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(plots.PlotDependencyError, match=r"pip install -e '\.\[plots\]'"):
        plots.plot_run(write_run(tmp_path / "run"))


def test_cli_prints_the_written_paths(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    a = write_run(tmp_path / "lastfm" / "dvr-s0")
    b = write_run(tmp_path / "ml-100k" / "dvr-s0", dvr=False)
    assert plot_cli.main([str(a), str(b)]) == 0
    assert capsys.readouterr().out.split() == [str(a / "plots" / "curves.png"), str(b / "plots" / "curves.png")]
    out = tmp_path / "plots"
    assert plot_cli.main([str(a), str(b), str(a), "--out", str(out), "--metrics", "ndcg@20"]) == 0
    expected = [out / "lastfm" / "dvr-s0" / "curves.png", out / "ml-100k" / "dvr-s0" / "curves.png"]
    assert capsys.readouterr().out.split() == [str(p) for p in expected]
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in expected)


def test_cli_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys):
    good = write_run(tmp_path / "good")
    for argv, message in (([str(tmp_path / "absent")], "does not exist"),
                          ([str(good), str(tmp_path)], "has no metrics.jsonl"),
                          ([str(good), "--metrics", "gini@20"], "has no metric gini@20")):  # fmt: skip
        assert plot_cli.main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith("error: ") and message in captured.err
        assert captured.err.count("\n") == 1
    assert not (good / "plots").exists()  # every run is checked before anything is written


def test_out_dirs_use_the_shortest_distinguishing_tail(tmp_path):
    runs = [tmp_path / "x" / "a" / "r", tmp_path / "y" / "a" / "r", tmp_path / "z" / "q"]
    assert plot_cli.out_dirs(runs, "o") == [pathlib.Path("o", *p.parts[-3:]) for p in runs]
    assert plot_cli.out_dirs(runs[2:], "o") == [pathlib.Path("o", "q")]
    assert plot_cli.out_dirs(runs[:1], None) == [runs[0] / "plots"]


def test_a_dvr_run_with_pair_values_also_gets_a_values_histogram(tmp_path):
    pytest.importorskip("matplotlib")
    run = write_run(tmp_path / "run")
    np.savez(run / "pair_values.npz", value=np.array([0.1, -0.2, np.nan, 0.3]))
    paths = plots.plot_run(run)
    assert paths == [run / "plots" / "curves.png", run / "plots" / "values.png"]
    assert paths[1].read_bytes().startswith(PNG_SIGNATURE)


def test_value_histogram_of_real_and_planted_pairs(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(0.0, 1.0, 90), rng.normal(-2.0, 1.0, 10), np.nan]
    planted = np.r_[np.zeros(90, bool), np.ones(10, bool), False]
    path = plots.write_value_histogram(values, tmp_path / "p" / "values.png", planted=planted, title="t")
    assert path.read_bytes().startswith(PNG_SIGNATURE) and len(path.read_bytes()) > 1000
    with pytest.raises(plots.PlotError, match="no finite data value"):
        plots.write_value_histogram([np.nan], tmp_path / "none.png")
