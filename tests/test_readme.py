"""The README's library example runs as written (with the test data directory)."""

from __future__ import annotations

from tests.conftest import REPO


def test_readme_library_example_runs(real_data_dir, capsys):
    text = (REPO / "README.md").read_text()
    start = text.index("```python\nimport jax, jax.numpy as jnp") + len("```python\n")
    code = text[start : text.index("```", start)].replace('"../shared/data"', repr(str(real_data_dir)))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    assert "recall@20" in capsys.readouterr().out
    assert namespace["phi"].shape == (256,) and namespace["probs"].shape == (256,)
