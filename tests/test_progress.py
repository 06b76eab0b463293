"""Progress display: bars only on a terminal; lines always reach stderr."""

from __future__ import annotations

import io

from dvr_jax import progress


def test_without_a_terminal_only_lines_are_printed(capsys):
    with progress.TrainingProgress(True, 5) as bars:
        assert not bars.enabled
        bars.update(0, 1, 3)
        bars.line("epoch 1: loss 0.5")
    with progress.GridProgress(2) as grid:
        grid.advance("cell")
    assert capsys.readouterr().err == "epoch 1: loss 0.5\n"


def test_on_a_terminal_bars_count_steps_and_epochs(monkeypatch):
    stream = io.StringIO()
    stream.isatty = lambda: True
    monkeypatch.setattr(progress.sys, "stderr", stream)
    bars = progress.TrainingProgress(True, 4, label="dvr", start_epoch=1)
    assert bars.enabled
    for done in (1, 2, 3):
        bars.update(1, done, 3)
    tasks = {task.description: task for task in bars._progress.tasks}
    assert tasks["dvr epochs"].completed == 2 and tasks["dvr epochs"].total == 4
    assert tasks["  steps"].completed == 3 and tasks["  steps"].total == 3
    bars.close()
    bars.close()  # idempotent
    assert bars._progress is None


def test_evaluation_bars_follow_the_chunks_and_hide_when_done(monkeypatch):
    assert progress.EvaluationProgress(True).evaluation("test") is None  # no terminal: no bar, no per-chunk wait
    stream = io.StringIO()
    stream.isatty = lambda: True
    monkeypatch.setattr(progress.sys, "stderr", stream)
    with progress.TrainingProgress(True, 2) as bars:
        on_chunk = bars.evaluation("valid")
        on_chunk(1, 3)
        task = next(t for t in bars._progress.tasks if t.description == "  valid users")
        assert (task.completed, task.total, task.visible) == (1, 3, True)
        on_chunk(3, 3)
        assert not task.visible
        bars.evaluation("valid")(1, 5)  # the next validation reuses the bar
        assert len(bars._progress.tasks) == 3 and (task.completed, task.total) == (1, 5)
    with progress.EvaluationProgress(True) as bars:
        bars.evaluation("test")(2, 4)
        (task,) = bars._progress.tasks
        assert (task.description, task.completed, task.total) == ("  test users", 2, 4)
