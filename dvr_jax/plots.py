"""Training-curve plots of one run directory: read its JSON logs, lay out panels, write a PNG.

A run directory (what `loop.train_and_evaluate` writes) holds `metrics.jsonl`, one record per
validation check (`{"epoch", "loss", "seconds", "valid": {metric: value}}`), `train_log.jsonl`,
one record per epoch (`{"epoch", "loss"}`, plus `reward`, `advantage`, `selected`, ... for DVR),
and `config.json` / `results.json`. The work is split in three pure steps so each can be tested
on its own: `read_run` (files -> `RunCurves` of NumPy arrays), `plan_panels` (curves -> the
`Panel`s that have data) and `draw_panels` (panels -> a matplotlib `Figure`); `plot_run` chains
them and writes `<run>/plots/curves.png` atomically.

matplotlib is an optional extra (`pip install -e '.[plots]'`). It is imported only when a figure
is drawn, through its object API and the Agg canvas, so the caller's pyplot backend and global
state are left alone.
"""

from __future__ import annotations

import io
import json
import math
import pathlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from dvr_jax.data.atomic import write_bytes_atomic

DEFAULT_METRICS = ("recall@20", "ndcg@20")
# Width and height of one panel in inches; the figure is COLUMNS panels wide.
PANEL_INCHES = (6.0, 3.5)
COLUMNS = 2
# "best" asked for explicitly: left as the default, matplotlib logs a warning whenever placing takes > 1 s
LEGEND = {"loc": "best", "fontsize": "small"}
PLOTS_DIR = "plots"
CURVES_FILE = "curves.png"

# Panels drawn from train_log.jsonl: (key, title, y label, series keys). A panel appears when at
# least one of its series has a finite value; all but "loss" exist only in DVR runs.
TRAIN_PANELS = (
    ("loss", "training loss", "loss (epoch mean)", ("loss",)),
    ("reward", "validation reward", "reward (epoch mean)", ("reward",)),
    ("advantage", "REINFORCE advantage", "advantage (epoch mean)", ("advantage",)),
    ("selection", "selected share", "share of the batch", ("selected", "mean_prob")),
    ("values", "data values", "share of samples", ("zero_fraction", "tied_fraction", "null_fraction")),
    ("diagnostics", "value diagnostics", "correlation / cosine", ("spearman_influence", "cosine")),
)


class PlotError(ValueError):
    """A run directory that cannot be plotted; the message is one self-contained line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class PlotDependencyError(ImportError):
    """matplotlib, the `plots` extra, is not installed."""


class RunCurves(NamedTuple):
    """The curves of one run, as NumPy arrays (V validation checks, T logged epochs).

    Attributes:
      workdir: the run directory.
      title: a one-line label (directory name, dataset, method, backbone, seed).
      valid_epochs: int64[V] epochs of the validation checks.
      valid: metric name -> float64[V]; NaN where a record lacks the metric.
      valid_seconds: float64[V] cumulative training seconds at each check (NaN if absent).
      train_epochs: int64[T] epochs of train_log.jsonl (empty when the file is absent).
      train: key -> float64[T] for every numeric key of train_log.jsonl ("loss", and for DVR
        "reward", "advantage", "selected", ...); NaN where a record lacks the key or holds null.
      best_epoch: the epoch with the best validation `select_metric` (from results.json, else
        the first maximum in metrics.jsonl), or None when unknown.
      select_metric: the early-stopping metric from config.json, or None.
    """

    workdir: pathlib.Path
    title: str
    valid_epochs: np.ndarray
    valid: dict[str, np.ndarray]
    valid_seconds: np.ndarray
    train_epochs: np.ndarray
    train: dict[str, np.ndarray]
    best_epoch: int | None
    select_metric: str | None


# One curve: (label, int64[n] epochs, float64[n] values).
Series = tuple[str, np.ndarray, np.ndarray]


class Panel(NamedTuple):
    """One axes of the figure: named curves against the epoch.

    Attributes:
      key: "valid" or a key of `TRAIN_PANELS` ("loss", "reward", ...).
      title, ylabel: axis labels.
      series: (label, int64[n] epochs, float64[n] finite values) per curve, n >= 1.
      best_epoch: an epoch to mark with a vertical line, or None.
    """

    key: str
    title: str
    ylabel: str
    series: tuple[Series, ...]
    best_epoch: int | None = None


def _number(value: Any) -> float | None:
    """`value` as a float (null -> NaN), or None when it is not a number (bools included)."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _read_text(path: pathlib.Path) -> str:
    """The file's text, or PlotError naming it when it cannot be read as UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PlotError(f"{path}: cannot be read ({err})") from None


def _read_jsonl(path: pathlib.Path) -> list[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for each non-blank line; a bad line raises PlotError."""
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise PlotError(f"{path} line {number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise PlotError(f"{path} line {number}: expected a JSON object, got {type(record).__name__}")
        epoch = record.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise PlotError(f"{path} line {number}: 'epoch' is missing or not an integer")
        records.append((number, record))
    return records


def _columns(rows: list[tuple[int, dict[str, Any]]]) -> dict[str, np.ndarray]:
    """Numeric columns of `rows` (NaN where a row lacks a key); non-numeric values are skipped."""
    columns: dict[str, np.ndarray] = {}
    for index, (_, row) in enumerate(rows):
        for name, value in row.items():
            number = _number(value)
            if number is None or name == "epoch":
                continue
            columns.setdefault(name, np.full(len(rows), np.nan))[index] = number
    return columns


def _read_json(path: pathlib.Path) -> dict[str, Any]:
    """An optional JSON object file ({} when absent)."""
    if not path.exists():
        return {}
    try:
        obj = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise PlotError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(obj, dict):
        raise PlotError(f"{path}: expected a JSON object")
    return obj


def _best_epoch(results: dict, select: str | None, epochs: np.ndarray, valid: dict) -> int | None:
    """results.json's best epoch, else the first maximum of `select` (the loop's strict `>`)."""
    best = results.get("best_epoch")
    if isinstance(best, int) and not isinstance(best, bool):
        return best if best >= 0 else None
    values = valid.get(select) if select else None
    if values is None or not np.isfinite(values).any():
        return None
    return int(epochs[int(np.nanargmax(values))])


def read_run(workdir: str | pathlib.Path) -> RunCurves:
    """Reads the curves of a run directory.

    Args:
      workdir: a run directory holding `metrics.jsonl` (required), `train_log.jsonl`,
        `config.json` and `results.json` (optional).

    Returns:
      The run's `RunCurves`.

    Raises:
      PlotError: the directory or its metrics.jsonl is missing, or a file is malformed (the
        message names the file and the 1-based line).
    """
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise PlotError(f"run directory {workdir} does not exist")
    metrics_path = workdir / "metrics.jsonl"
    if not metrics_path.is_file():
        raise PlotError(f"{workdir} has no metrics.jsonl (not a run directory, or no check written yet)")
    checks = _read_jsonl(metrics_path)
    for number, record in checks:
        if not isinstance(record.get("valid", {}), dict):
            raise PlotError(f"{metrics_path} line {number}: 'valid' is not a JSON object")
    valid = _columns([(n, r.get("valid", {})) for n, r in checks])
    top = _columns(checks)
    train_path = workdir / "train_log.jsonl"
    epochs_log = _read_jsonl(train_path) if train_path.is_file() else []
    config = _read_json(workdir / "config.json")
    valid_epochs = np.asarray([r["epoch"] for _, r in checks], dtype=np.int64)
    select = config.get("select_metric") if isinstance(config.get("select_metric"), str) else None
    labels = [str(config[k]) for k in ("dataset", "method", "backbone") if k in config]
    labels += [f"seed {config['seed']}"] if "seed" in config else []
    return RunCurves(
        workdir=workdir,
        title=" | ".join([workdir.resolve().name, *labels]),
        valid_epochs=valid_epochs,
        valid=valid,
        valid_seconds=top.get("seconds", np.full(len(checks), np.nan)),
        train_epochs=np.asarray([r["epoch"] for _, r in epochs_log], dtype=np.int64),
        train=_columns(epochs_log),
        best_epoch=_best_epoch(_read_json(workdir / "results.json"), select, valid_epochs, valid),
        select_metric=select,
    )


def _series(label: str, epochs: np.ndarray, values: np.ndarray) -> tuple[Series, ...]:
    """The finite points of one curve, as a 0- or 1-tuple of (label, epochs, values)."""
    keep = np.isfinite(values)
    return ((label, epochs[keep], values[keep]),) if keep.any() else ()


def plan_panels(curves: RunCurves, metrics: Sequence[str] = DEFAULT_METRICS) -> list[Panel]:
    """The panels that have data: validation `metrics`, then the `TRAIN_PANELS` in order.

    Args:
      curves: from `read_run`.
      metrics: validation metric names for the first panel (empty: no such panel).

    Returns:
      The panels, each with at least one series; DVR panels appear only for DVR logs.

    Raises:
      PlotError: the run has validation checks but none of them holds a requested metric.
    """
    panels = []
    if len(curves.valid_epochs) and metrics:
        missing = [m for m in metrics if m not in curves.valid]
        if missing:
            available = ", ".join(sorted(curves.valid)) or "none"
            raise PlotError(f"{curves.workdir / 'metrics.jsonl'} has no metric {', '.join(missing)} "
                            f"(available: {available})")  # fmt: skip
        series = sum((_series(m, curves.valid_epochs, curves.valid[m]) for m in metrics), ())
        if series:
            panels.append(Panel("valid", "validation", "metric", series, curves.best_epoch))
    for key, title, ylabel, names in TRAIN_PANELS:
        present = [n for n in names if n in curves.train]
        series = sum((_series(n, curves.train_epochs, curves.train[n]) for n in present), ())
        if series:
            panels.append(Panel(key, title, ylabel, series))
    return panels


def _matplotlib() -> tuple[Any, Any]:
    """(Figure, FigureCanvasAgg), or PlotDependencyError naming the extra to install."""
    try:
        import matplotlib  # noqa: F401  # first, so a blocked matplotlib fails here
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise PlotDependencyError("plotting needs matplotlib, the 'plots' extra: pip install -e '.[plots]'") from err
    return Figure, FigureCanvasAgg


def new_figure(size: tuple[float, float], dpi: int = 100) -> Any:
    """An empty matplotlib Figure on an Agg canvas (no display needed), constrained layout.

    Raises:
      PlotDependencyError: matplotlib is not installed.
    """
    figure_cls, canvas_cls = _matplotlib()
    fig = figure_cls(figsize=size, dpi=dpi, layout="constrained")
    canvas_cls(fig)
    return fig


def save_png(fig: Any, path: str | pathlib.Path, dpi: int = 100) -> pathlib.Path:
    """Writes `fig` to `path` as PNG, atomically; returns the path."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    path = pathlib.Path(path)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def draw_panels(panels: Sequence[Panel], title: str = "", dpi: int = 100) -> Any:
    """Draws `panels` on a grid of `COLUMNS` columns, one `PANEL_INCHES` cell each.

    Returns:
      A matplotlib `Figure` (Agg canvas) with one axes per panel, of
      `COLUMNS * PANEL_INCHES[0] * dpi` by `rows * PANEL_INCHES[1] * dpi` pixels.

    Raises:
      PlotDependencyError: matplotlib is not installed.
    """
    rows = max(1, math.ceil(len(panels) / COLUMNS))
    fig = new_figure((COLUMNS * PANEL_INCHES[0], rows * PANEL_INCHES[1]), dpi)
    grid = fig.subplots(rows, COLUMNS, squeeze=False).ravel()
    for ax in grid[len(panels) :]:
        fig.delaxes(ax)
    for ax, panel in zip(grid, panels):
        for label, epochs, values in panel.series:
            ax.plot(epochs, values, marker="o" if len(values) <= 30 else None, markersize=3, label=label)
        if panel.best_epoch is not None:
            ax.axvline(panel.best_epoch, color="grey", linestyle="--", label=f"best epoch {panel.best_epoch}")
        if panel.key == "advantage":
            ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set(title=panel.title, xlabel="epoch", ylabel=panel.ylabel)
        ax.grid(alpha=0.3)
        if len(panel.series) > 1 or panel.best_epoch is not None:
            ax.legend(**LEGEND)
    if title:
        fig.suptitle(title)
    return fig


def write_plots(curves: RunCurves, out_dir: str | pathlib.Path, metrics: Sequence[str] = DEFAULT_METRICS,
                dpi: int = 100) -> list[pathlib.Path]:  # fmt: skip
    """Writes `out_dir/curves.png` (atomically) and returns the written paths.

    Raises:
      PlotError: nothing to plot, or a requested metric is missing (see `plan_panels`).
      PlotDependencyError: matplotlib is not installed.
    """
    panels = plan_panels(curves, metrics)
    if not panels:
        raise PlotError(f"{curves.workdir}: nothing to plot (no validation checks and no training log)")
    return [save_png(draw_panels(panels, curves.title, dpi), pathlib.Path(out_dir) / CURVES_FILE, dpi)]


def plot_run(workdir: str | pathlib.Path, out_dir: str | pathlib.Path | None = None,
             metrics: Sequence[str] = DEFAULT_METRICS) -> list[pathlib.Path]:  # fmt: skip
    """Reads a run directory and writes its training-curve PNG, and for a DVR run its values histogram.

    Args:
      workdir: the run directory (see `read_run`).
      out_dir: where to write (default `<workdir>/plots`).
      metrics: validation metrics of the first panel.

    Returns:
      The written files: `[<out_dir>/curves.png]`, plus `<out_dir>/values.png` (the per-pair
      values of `pair_values.npz`) when the run has them.

    Raises:
      PlotError: bad or missing run files, a missing metric, or nothing to plot.
      PlotDependencyError: matplotlib is not installed.
    """
    out = pathlib.Path(workdir) / PLOTS_DIR if out_dir is None else pathlib.Path(out_dir)
    written = write_plots(read_run(workdir), out, metrics)
    values = pathlib.Path(workdir) / "pair_values.npz"
    if values.exists():
        with np.load(values) as npz:
            written.append(write_value_histogram(npz["value"], out / VALUES_FILE, title=pathlib.Path(workdir).name))
    return written


VALUES_FILE = "values.png"


def write_value_histogram(values, path: str | pathlib.Path, planted=None, title: str = "", dpi: int = 100,
                          bins: int = 60) -> pathlib.Path:  # fmt: skip
    """A histogram of per-pair data values as PNG (atomically); real and planted pairs apart when known.

    Args:
      values: f[P] per-pair values (NaN rows, never valued, are left out).
      path: the PNG to write.
      planted: optional bool[P], True for planted pairs: two density histograms on shared bins.
      title: the figure title.

    Returns:
      `path`.

    Raises:
      PlotError: no finite value to draw.
      PlotDependencyError: matplotlib is not installed.
    """
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        raise PlotError(f"{path}: no finite data value to draw")
    ax = new_figure(PANEL_INCHES, dpi).subplots()
    fig = ax.figure
    edges = np.histogram_bin_edges(values[finite], bins=bins)
    if planted is None:
        ax.hist(values[finite], bins=edges, color="tab:blue")
        ax.set_ylabel("pairs")
    else:
        planted = np.asarray(planted, bool)
        for mask, label, color in ((~planted, "real", "tab:blue"), (planted, "planted", "tab:red")):
            chosen = values[finite & mask]
            if len(chosen):
                ax.hist(chosen, bins=edges, density=True, alpha=0.55, color=color, label=f"{label} ({len(chosen)})")
        ax.set_ylabel("density")
        ax.legend(**LEGEND)
    ax.set(title=title or "data values", xlabel="mean data value of a training pair")
    ax.grid(alpha=0.3)
    return save_png(fig, path, dpi)
