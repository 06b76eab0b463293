"""Type aliases and the shape-symbol legend used in every docstring.

Shape symbols:
  B  batch size (triplets per step)        U  number of users
  I  number of items                       N  = U + I graph nodes
  D  embedding dimension                   E  graph edges (nonzeros)
  H  valuator width                        F  per-sample feature dimension
  C  evaluation user chunk                 K  top-k cut-off
  P  number of training (user, item) pairs L  padded list length
"""

from __future__ import annotations

from typing import Any

import jax

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree of arrays
PyTree = Any
