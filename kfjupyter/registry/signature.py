"""What a model version takes and gives: its *signature* and an *input example*.

A data scientist opening a version months later asks first what to send it. So a
registration records, as two custom properties (strings: every registry keeps them, the
Kubeflow Model Registry included):

* ``signature``: the inputs' names and types, and the output's, e.g.
  ``sepal_length: float64, sepal_width: float64 (2 columns) -> int64``, or
  ``float64[-1, 4] -> int64[-1]`` for an array;
* ``input_example``: the first rows of the example, as JSON (``{"columns": …, "data": …}``
  for a table, ``[[…], …]`` for an array), at most :data:`EXAMPLE_ROWS` rows and
  :data:`EXAMPLE_CHARS` characters.

Where from, first found first: ``input_example=`` (a DataFrame, an array, a list of rows,
a dict of columns), else the ``training_sample=`` (its columns and types only: it is
training data, not an example to show), else what the model itself knows of its inputs
(scikit-learn's ``feature_names_in_`` / ``n_features_in_``). The output's type is what
the model's ``predict`` returns for the example's rows, when the model is an object with
one; a model that fails on its own example is refused (the error names it), before
anything is stored. Set either property yourself (``custom_properties=``) to keep yours.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidOptionError

SIGNATURE = "signature"
INPUT_EXAMPLE = "input_example"
#: rows of an example kept, and the most characters of its JSON
EXAMPLE_ROWS = 3
EXAMPLE_CHARS = 2000
#: columns named in a signature before "… N more"
NAMED_COLUMNS = 12


def _table(value: Any, what: str):
    """``value`` as a DataFrame or a numpy array (a list of rows or a dict of columns too)."""
    import numpy as np

    if hasattr(value, "dtypes") and hasattr(value, "columns"):  # a DataFrame (pandas or alike)
        return value
    if isinstance(value, dict):
        import pandas as pd

        try:
            return pd.DataFrame(value)
        except (TypeError, ValueError) as exc:
            raise InvalidOptionError(f"{what} as a dict must map column names to equal-length columns: {exc}") from None
    if hasattr(value, "to_numpy") and not hasattr(value, "columns"):  # a Series: one column
        value = value.to_numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InvalidOptionError(f"{what} must be rows (a DataFrame, an array, a list of rows): {exc}") from None
    if arr.dtype == object and arr.ndim < 2 or arr.ndim == 0 or not len(arr):
        raise InvalidOptionError(f"{what} must be a non-empty table of rows, got {type(value).__name__} {arr.shape}")
    return arr


def _named(parts: list[str]) -> str:
    """``a, b, … N more (K columns)``: the first :data:`NAMED_COLUMNS` of ``parts``."""
    more = len(parts) - NAMED_COLUMNS
    text = ", ".join(parts[:NAMED_COLUMNS]) + (f", … {more} more" if more > 0 else "")
    return f"{text} ({len(parts)} column{'s' if len(parts) != 1 else ''})"


def _columns(table) -> str:
    if hasattr(table, "columns"):
        return _named([f"{name}: {dtype}" for name, dtype in zip(table.columns, table.dtypes)])
    return _array(table)


def _array(arr) -> str:
    shape = ", ".join(["-1", *(str(n) for n in arr.shape[1:])])
    return f"{arr.dtype}[{shape}]"


def _rows(table, n: int):
    return table.iloc[:n] if hasattr(table, "iloc") else table[:n]


def _example_json(table) -> str:
    """The first rows of ``table`` as JSON, cut to :data:`EXAMPLE_CHARS` characters by rows."""
    for n in range(min(EXAMPLE_ROWS, len(table)), 0, -1):
        rows = _rows(table, n)
        if hasattr(rows, "columns"):
            data = {"columns": [str(c) for c in rows.columns], "data": json.loads(rows.to_json(orient="values"))}
        else:
            data = rows.tolist()
        text = json.dumps(data, default=str)
        if len(text) <= EXAMPLE_CHARS:
            return text
    return text[: EXAMPLE_CHARS - 1] + "…"


def _output(model: Any, table) -> str | None:
    """The type of what ``model.predict`` returns for the first rows (None: no predict)."""
    import numpy as np

    predict = getattr(model, "predict", None)
    if not callable(predict) or isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        return None
    import warnings

    try:
        with warnings.catch_warnings():  # our probe's, not the user's: "fitted without feature names" …
            warnings.simplefilter("ignore")
            out = predict(_rows(table, EXAMPLE_ROWS))
    except Exception as exc:  # noqa: BLE001  (the model's own error, named)
        raise InvalidOptionError(
            f"the model's predict failed on its input example: {type(exc).__name__}: {exc} "
            "(pass an example of what it takes, or none)"
        ) from None
    out = np.asarray(out)
    return _array(out) if out.ndim else str(out.dtype)


def _from_model(model: Any) -> str | None:
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return _named([str(n) for n in names])
    count = getattr(model, "n_features_in_", None)
    return f"{count} features: [-1, {count}]" if isinstance(count, int) else None


def describe(model: Any, input_example: Any = None, training_sample: Any = None) -> dict[str, str]:
    """The ``signature`` and ``input_example`` properties of a registration (those found)."""
    props: dict[str, str] = {}
    if input_example is not None:
        table = _table(input_example, "input_example")
        output = _output(model, table)
        props[SIGNATURE] = _columns(table) + (f" -> {output}" if output else "")
        props[INPUT_EXAMPLE] = _example_json(table)
    elif training_sample is not None:
        table = _table(training_sample, "training_sample")
        props[SIGNATURE] = _columns(table)
    else:
        known = _from_model(model)
        if known:
            props[SIGNATURE] = known
    return props
