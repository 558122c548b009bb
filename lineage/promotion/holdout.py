"""The labelled rows a model version is judged on (see ``gates``), from CSV or Parquet.

Loading errors name the file, the column and the 1-based data row (CSV: the
file line, the header being line 1), so a bad holdout is fixed at its source.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftline.lineage.exceptions import InvalidHoldout, MetricUndefined


@dataclass(frozen=True, eq=False)
class Holdout:
    """Labelled rows a model version is judged on.

    ``features`` is C-contiguous float32 ``[rows, n]``, finite; ``labels`` int64
    0/1 ``[rows]``; ``feature_names`` the ``n`` column names in order (the
    signature gate compares them with the model's); ``source`` says where the
    rows came from, for the evidence.
    """

    features: np.ndarray
    labels: np.ndarray
    feature_names: list[str]
    source: str

    def __post_init__(self) -> None:
        where = self.source
        try:
            features = np.ascontiguousarray(self.features, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidHoldout(f"{where}: features are not numeric: {exc}") from None
        if features.ndim != 2:
            raise InvalidHoldout(f"{where}: features must be [rows, n], got {features.shape}")
        if features.shape[0] == 0:
            raise InvalidHoldout(f"{where}: the holdout has no rows; gates need labelled rows")
        names = list(self.feature_names)
        if not all(isinstance(n, str) for n in names) or len(names) != features.shape[1]:
            raise InvalidHoldout(
                f"{where}: {features.shape[1]} feature columns but feature_names {names!r}"
            )
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InvalidHoldout(f"{where}: feature names must be unique; repeated {repeated}")
        finite = np.isfinite(features)
        if not finite.all():
            row, col = (int(i) for i in np.argwhere(~finite)[0])
            raise InvalidHoldout(
                f"{where}: row {row + 1}, column {names[col]!r} is {features[row, col]}; "
                "drop or impute non-finite values before gating"
            )
        try:
            labels = binary_labels(self.labels)
        except MetricUndefined as exc:
            raise InvalidHoldout(f"{where}: {exc}") from None
        if len(labels) != features.shape[0]:
            raise InvalidHoldout(f"{where}: {features.shape[0]} rows but {len(labels)} labels")
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "feature_names", names)

    @property
    def rows(self) -> int:
        return int(self.features.shape[0])

    @property
    def label_positive_rate(self) -> float:
        """Share of labels that are 1 (class balance, for the evidence)."""
        return float(self.labels.mean())

    def summary(self) -> dict[str, Any]:
        """Where the rows came from and their shape and balance, for the evidence."""
        return {
            "source": self.source,
            "rows": self.rows,
            "n_features": len(self.feature_names),
            "feature_names": list(self.feature_names),
            "label_positive_rate": self.label_positive_rate,
        }

    @classmethod
    def from_arrays(
        cls,
        features: Any,
        labels: Any,
        feature_names: Sequence[str],
        *,
        source: str = "in-memory arrays",
    ) -> Holdout:
        return cls(np.asarray(features), np.asarray(labels), list(feature_names), source)

    @classmethod
    def from_csv(cls, path: str | Path, label_column: str = "label") -> Holdout:
        """Read a CSV whose header names the features and ``label_column``.

        Every other column is a feature, in file order. Errors name the file,
        the line (1 is the header), the column and the offending value.
        """
        path = Path(path)
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows: list[list[str]] = []
            lines: list[int] = []
            for row in reader:
                if not row:
                    continue  # a blank line, e.g. a trailing newline pair
                rows.append(row)
                lines.append(reader.line_num)
        if not header:
            raise InvalidHoldout(f"{path}: the file is empty; expected a header row of names")
        header = [name.strip() for name in header]
        label_at = _label_index(header, label_column, path)
        if not rows:
            raise InvalidHoldout(f"{path}: a header but no data rows")
        for row, line in zip(rows, lines, strict=True):
            if len(row) != len(header):
                raise InvalidHoldout(
                    f"{path}: line {line} has {len(row)} fields, the header has {len(header)}"
                )
        values = _parse_floats(rows, header, lines, path)
        _reject_nan(values, header, lines, path)
        return _holdout(cls, values, header, label_at, lines, str(path), unit="line")

    @classmethod
    def from_parquet(cls, path: str | Path, label_column: str = "label") -> Holdout:
        """Read a Parquet file: numeric feature columns and a 0/1 ``label_column``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise InvalidHoldout(f"{path}: cannot read as Parquet: {exc}") from exc
        header = list(table.column_names)
        label_at = _label_index(header, label_column, path)
        if table.num_rows == 0:
            raise InvalidHoldout(f"{path}: the table has no rows")
        columns = []
        for name, column in zip(header, table.columns, strict=True):
            kind = column.type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or kind == pa.bool_()):
                raise InvalidHoldout(f"{path}: column {name!r} is {kind}, not numeric")
            if column.null_count:
                row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
                raise InvalidHoldout(f"{path}: row {row + 1}, column {name!r} is null")
            columns.append(column.to_numpy().astype(np.float64))
        values = np.column_stack(columns)
        lines = list(range(1, table.num_rows + 1))
        _reject_nan(values, header, lines, path, unit="row")
        return _holdout(cls, values, header, label_at, lines, str(path), unit="row")


def _label_index(header: list[str], label_column: str, path: Path) -> int:
    if label_column not in header:
        raise InvalidHoldout(
            f"{path}: no label column {label_column!r}; columns are {header}. "
            "Pass label_column= with the name of the 0/1 outcome column"
        )
    return header.index(label_column)


def _parse_floats(
    rows: list[list[str]], header: list[str], lines: list[int], path: Path
) -> np.ndarray:
    """All cells as float64 in one NumPy call; on failure, find the first bad cell."""
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        pass
    for row, line in zip(rows, lines, strict=True):
        for name, cell in zip(header, row, strict=True):
            try:
                float(cell)
            except ValueError:
                raise InvalidHoldout(
                    f"{path}: line {line}, column {name!r}: {cell!r} is not a number"
                ) from None
    raise InvalidHoldout(f"{path}: cannot parse the values as numbers")  # pragma: no cover


def _reject_nan(
    values: np.ndarray, header: list[str], lines: list[int], path: Path, unit: str = "line"
) -> None:
    finite = np.isfinite(values)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise InvalidHoldout(
            f"{path}: {unit} {lines[row]}, column {header[col]!r} is {values[row, col]}; "
            "drop or impute missing values before gating"
        )


def _holdout(
    cls: type[Holdout],
    values: np.ndarray,
    header: list[str],
    label_at: int,
    lines: list[int],
    source: str,
    *,
    unit: str,
) -> Holdout:
    """Split the label column off a parsed table and check it is 0/1."""
    labels = values[:, label_at]
    bad = ~((labels == 0) | (labels == 1))
    if bad.any():
        row = int(np.argmax(bad))
        raise InvalidHoldout(
            f"{source}: {unit} {lines[row]}, label column {header[label_at]!r} is "
            f"{labels[row]:g}; labels must be 0 or 1"
        )
    names = [name for i, name in enumerate(header) if i != label_at]
    features = np.delete(values, label_at, axis=1)
    return cls(features, labels.astype(np.int64), names, source)


def binary_labels(labels: Any) -> np.ndarray:
    """Labels as int64 0/1, or an error naming the first row that is neither."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise MetricUndefined(f"labels must be one-dimensional, got shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.number):
        raise MetricUndefined(f"labels must be numeric 0/1, got dtype {array.dtype}")
    bad = ~((array == 0) | (array == 1))
    if bad.any():
        row = int(np.argmax(bad))
        raise MetricUndefined(
            f"labels must be 0 or 1; index {row} has {array[row].item()!r}; "
            "map the positive class to 1 and every other class to 0"
        )
    return array.astype(np.int64)
