"""The generic CSV/TSV layout: `user,item[,rating[,timestamp]]` and item categories.

For a user's own data outside RecBole's atomic convention. The delimiter comes from the
caller (by file extension: `.csv` comma, `.tsv` tab); fields are not quoted. A header
line is optional and recognised by name: the first line is a header when its first
field, lowercased with `_`, spaces, quotes and any `:type` suffix removed, is a usual
user column name (`user`, `userid`, `uid`, `reviewerid`), so ids such as `user_12` are
still read as data. An optional category file holds `item<delim>cat1 cat2 ...` lines
(whitespace-separated categories; repeated items accumulate), with a header recognised
the same way (`item`, `itemid`, `iid`, `movieid`, `artistid`, `productid`, `asin`).
Empty user or item fields are rejected; a file whose first line holds another usual
separator (`;`, `|`, or tab/comma under the wrong extension) gets a hint how to load it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

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
ITEM_COLUMN_NAMES = frozenset({"item", "itemid", "iid", "movieid", "artistid", "productid", "asin"})
_SEPARATOR_NAMES = {";": "semicolon", "\t": "tab", ",": "comma", "|": "pipe"}
_EXTENSIONS = "(.csv files are read as comma-separated, .tsv files as tab-separated)"


def _check_separator(source: SourceFile, delimiter: str) -> None:
    """Raises a hint when the first line lacks `delimiter` but holds another separator.

    Such a file always fails (every line needs at least two fields), so the hint only
    replaces a bare column-count error.
    """
    head = source.data[:65536].decode("utf-8-sig", "replace").splitlines()
    number, line = next(((n, ln) for n, ln in enumerate(head, 1) if ln.strip()), (0, delimiter))
    if delimiter in line:
        return
    counts = {sep: line.count(sep) for sep in _SEPARATOR_NAMES if sep != delimiter}
    found = max(counts, key=counts.__getitem__)
    if not counts[found]:
        return
    path = Path(source.label)
    if found in ("\t", ","):
        target = path.with_suffix(".tsv" if found == "\t" else ".csv")
        how = f"rename it to {target.name} {_EXTENSIONS}"
    else:
        target = path.with_suffix(".tsv")
        if target == path:
            target = path.with_name(f"{path.stem}-tabs.tsv")
        # Semicolon-separated files usually come with decimal commas ("4,5").
        commas = found == ";" and any("," in ln for ln in head)
        old, new = (f"{found},", "\\t.") if commas else (found, "\\t")
        how = (
            f"convert it with tr '{old}' '{new}' < {shlex.quote(str(path))} > "
            f"{shlex.quote(str(target))} and load {target.name} {_EXTENSIONS}"
        )
    raise at_line(
        source.label,
        number,
        f"the file looks {_SEPARATOR_NAMES[found]}-separated; {how}",
    )


def _has_header(source: SourceFile, delimiter: str, names: frozenset[str]) -> bool:
    """Whether the first non-blank line's first field is a known column name."""
    head = source.data[:4096].decode("utf-8-sig", "replace").lstrip()
    first = head.splitlines()[0].split(delimiter)[0] if head else ""
    bare = re.sub(r"[\s_\"']", "", first.split(":")[0]).lower()
    return bare in names


def parse_csv(files: Mapping[str, SourceFile], delimiter: str, categories_delimiter: str = ",") -> Parsed:
    """Reads the interactions (role "interactions") and optional "categories" file.

    Args:
      files: role -> file; "categories" is optional.
      delimiter: field separator of the interactions file.
      categories_delimiter: field separator of the category file.

    Returns:
      The `Parsed` records; ratings (third column) are binarised later, a fourth
      (timestamp) column is ignored.

    Raises:
      DataError: fewer than 2 or more than 4 columns, another separator than
        `delimiter` (with a hint), an empty user or item field, a non-numeric rating, a
        category line naming an item absent from the interactions, or any table error.
    """
    source = files["interactions"]
    _check_separator(source, delimiter)
    header = _has_header(source, delimiter, USER_COLUMN_NAMES)
    table = text.read_table(source.data, source.label, delimiter=delimiter, header=header)
    if not 2 <= len(table.columns) <= 4:
        raise at_line(
            source.label,
            int(table.line_numbers[0]),
            f"expected 2 to 4 columns (user, item[, rating[, timestamp]]), got {len(table.columns)}",
        )
    users, items = (np.char.strip(c) for c in table.columns[:2])
    lines = table.line_numbers
    text.require_values(users, source.label, lines, "user field (column 1)")
    text.require_values(items, source.label, lines, "item field (column 2)")
    ratings = None
    if len(table.columns) >= 3:
        ratings = text.parse_floats(table.columns[2], source.label, table.line_numbers, "rating")
    parsed = Parsed(make_interactions(users, items, ratings))
    if "categories" not in files:
        return parsed
    categories = _read_categories(files["categories"], categories_delimiter, parsed.interactions, source)
    return parsed._replace(item_categories=categories)


def _read_categories(
    source: SourceFile, delimiter: str, inter: Interactions, inter_source: SourceFile
) -> dict[str, tuple[str, ...]]:
    """Reads `item<delim>categories` lines; each item must occur in the interactions."""
    _check_separator(source, delimiter)
    header = _has_header(source, delimiter, ITEM_COLUMN_NAMES)
    table = text.read_table(source.data, source.label, delimiter=delimiter, header=header, n_columns=2)
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
