"""The generic CSV/TSV layout: `user,item[,rating[,timestamp]]` and item categories.

For a user's own data outside RecBole's atomic convention. The delimiter comes from the
caller (by file extension: `.csv` comma, `.tsv` tab); fields are not quoted. A header
line is optional and recognised by name: the first line is a header when its first
field, lowercased with `_`, spaces, quotes and any `:type` suffix removed, is a usual
user column name (`user`, `userid`, `uid`, `reviewerid`), so ids such as `user_12` are
still read as data. An optional category file holds `item<delim>cat1 cat2 ...` lines
(whitespace-separated categories; repeated items accumulate), with a header recognised
the same way (`item`, `itemid`, `iid`, `movieid`, `artistid`, `productid`, `asin`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from dvr_jax.data import text
from dvr_jax.data.errors import at_line
from dvr_jax.data.formats import (
    Interactions,
    Parsed,
    SourceFile,
    make_interactions,
    merge_categories,
)

USER_COLUMN_NAMES = frozenset({"user", "userid", "uid", "reviewerid"})
ITEM_COLUMN_NAMES = frozenset(
    {"item", "itemid", "iid", "movieid", "artistid", "productid", "asin"}
)


def _has_header(source: SourceFile, delimiter: str, names: frozenset[str]) -> bool:
    """Whether the first non-blank line's first field is a known column name."""
    head = source.data[:4096].decode("utf-8-sig", "replace").lstrip()
    first = head.splitlines()[0].split(delimiter)[0] if head else ""
    bare = re.sub(r"[\s_\"']", "", first.split(":")[0]).lower()
    return bare in names


def parse_csv(
    files: Mapping[str, SourceFile], delimiter: str, categories_delimiter: str = ","
) -> Parsed:
    """Reads the interactions (role "interactions") and optional "categories" file.

    Args:
      files: role -> file; "categories" is optional.
      delimiter: field separator of the interactions file.
      categories_delimiter: field separator of the category file.

    Returns:
      The `Parsed` records; ratings (third column) are binarised later, a fourth
      (timestamp) column is ignored.

    Raises:
      DataError: fewer than 2 or more than 4 columns, a non-numeric rating, a category
        line naming an item absent from the interactions, or any table error.
    """
    source = files["interactions"]
    header = _has_header(source, delimiter, USER_COLUMN_NAMES)
    table = text.read_table(
        source.data, source.label, delimiter=delimiter, header=header
    )
    if not 2 <= len(table.columns) <= 4:
        raise at_line(
            source.label,
            int(table.line_numbers[0]),
            "expected 2 to 4 columns (user, item[, rating[, timestamp]]), "
            f"got {len(table.columns)}",
        )
    users, items = (np.char.strip(c) for c in table.columns[:2])
    ratings = None
    if len(table.columns) >= 3:
        ratings = text.parse_floats(
            table.columns[2], source.label, table.line_numbers, "rating"
        )
    parsed = Parsed(make_interactions(users, items, ratings))
    if "categories" not in files:
        return parsed
    categories = _read_categories(
        files["categories"], categories_delimiter, parsed.interactions, source
    )
    return parsed._replace(item_categories=categories)


def _read_categories(
    source: SourceFile, delimiter: str, inter: Interactions, inter_source: SourceFile
) -> dict[str, tuple[str, ...]]:
    """Reads `item<delim>categories` lines; each item must occur in the interactions."""
    header = _has_header(source, delimiter, ITEM_COLUMN_NAMES)
    table = text.read_table(
        source.data, source.label, delimiter=delimiter, header=header, n_columns=2
    )
    items = np.char.strip(table.columns[0])
    known = np.isin(items, inter.item_labels)
    if not known.all():
        row = int(np.argmin(known))
        raise at_line(
            source.label,
            int(table.line_numbers[row]),
            f"item {str(items[row])!r} does not occur in {inter_source.label}",
        )
    return merge_categories(items, table.columns[1])
