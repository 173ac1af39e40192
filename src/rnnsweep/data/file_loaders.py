"""Read and check a user's dataset file (.npz or long-format .csv) into padded arrays.

Every problem becomes a DataError whose one line names the file and what is wrong, so a
sweep stops in its preflight instead of failing inside a trial. This module needs numpy
only (pandas for a .csv, imported when one is read): train.py's first preflight pass runs
probe_sequence_file before torch is imported (rnnsweep.cli).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnsweep.errors import DataError

SPLITS = ("train", "val", "test")
CSV_KEYS = ("sequence_id", "step", "target")


@dataclass(frozen=True)
class SequenceFile:
    """x (N, T, F) float32 zero-padded, lengths (N,), y (N,) labels or (N, K) float targets."""

    path: Path
    x: np.ndarray
    lengths: np.ndarray
    y: np.ndarray
    split: np.ndarray | None  # (N,) of "train"/"val"/"test", or None
    classification: bool
    has_lengths: bool
    digest: str  # content hash: a changed file gets a new study


ALLOWED = "data.path: an .npz or a long-format .csv file, relative to the project root"


def probe_sequence_file(path: Path) -> None:
    """The checks that need no array read: the file exists, is not empty, has a supported
    type, and opens as one (an .npz with arrays x and y; a .csv with the required columns).
    Cheap enough for every job of a sweep before anything is imported; load_sequence_file
    runs it too, so both give the same message."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file ({ALLOWED})")
    if not path.exists():
        raise DataError(f"{path}: file not found ({ALLOWED})")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file ({ALLOWED})")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        _probe_npz(path)
    elif suffix == ".csv":
        _probe_csv(path)
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r}: allowed: .npz, .csv")


def load_sequence_file(path: Path) -> SequenceFile:
    """Load and check `path`; cached per (path, size, mtime) so a sweep reads it once."""
    probe_sequence_file(path)
    st = path.stat()
    return _load_cached(str(path), st.st_size, st.st_mtime_ns)


def _py(value: object) -> object:
    """A numpy scalar as the plain Python value, so messages read 3, not np.int64(3)."""
    return value.item() if isinstance(value, np.generic) else value


@functools.lru_cache(maxsize=4)
def _load_cached(path_str: str, size: int, mtime_ns: int) -> SequenceFile:
    path = Path(path_str)
    # Only a .npz or .csv gets here: load_sequence_file probed the suffix first.
    read = _read_npz if path.suffix.lower() == ".npz" else _read_csv
    x, lengths, y, split = read(path)
    has_lengths = lengths is not None
    x, lengths, y, split, classification = _check(path, x, lengths, y, split)
    digest = hashlib.sha1(path.read_bytes()).hexdigest()[:8]
    return SequenceFile(path, x, lengths, y, split, classification, has_lengths, digest)


def _probe_npz(path: Path) -> None:
    """An .npz archive (a zip) whose member list names x and y; no array is read."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror}") from None
    if magic == b"\x93NUMPY":
        raise DataError(f"{path}: holds one .npy array, not an .npz archive; save the arrays "
                        "with np.savez(path, x=..., y=...)")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an .npz archive (a zip of .npy arrays): the file is "
                        "truncated or in another format")
    try:
        with zipfile.ZipFile(path) as archive:
            names = {n.removesuffix(".npy") for n in archive.namelist()}
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        raise DataError(f"{path}: cannot read as .npz: {err}") from None
    _require_arrays(path, names)


def _require_arrays(path: Path, names: set[str]) -> None:
    for key in ("x", "y"):
        if key not in names:
            raise DataError(f"{path}: missing array {key!r} (found: "
                            f"{', '.join(sorted(names)) or 'none'}); an .npz needs x and y")


def _probe_csv(path: Path) -> None:
    """The header line (the first non-blank one) names the required columns."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            header = next((line for line in handle if line.strip()), None)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file (bytes that are not UTF-8)") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    if header is None:
        raise DataError(f"{path}: no header line and no rows (empty CSV)")
    columns = next(csv.reader([header]), [])  # as pandas names them: spaces kept
    _require_columns(path, columns)


def _require_columns(path: Path, columns: list[str]) -> None:
    missing = [c for c in CSV_KEYS if c not in columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; a long-format CSV "
                        "needs sequence_id, step, feature columns, target[, split]")


def _read_npz(path: Path) -> tuple[np.ndarray, ...]:
    _probe_npz(path)
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                try:
                    arrays[key] = z[key]
                except ValueError as err:
                    if "allow_pickle" in str(err):
                        raise DataError(f"{path}: array {key!r} holds Python objects "
                                        "(pickled); save numbers or strings") from None
                    raise DataError(f"{path}: array {key!r} is damaged: {err}") from None
                except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                    raise DataError(f"{path}: array {key!r} is damaged (truncated file?): "
                                    f"{err}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{path}: cannot read as .npz: {err}") from None
    _require_arrays(path, set(arrays))
    return arrays["x"], arrays.get("lengths"), arrays["y"], arrays.get("split")


def _read_csv(path: Path) -> tuple[np.ndarray, ...]:
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: no header line and no rows (empty CSV)") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file (bytes that are not UTF-8)") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    except ValueError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: cannot read as CSV: {reason}") from None
    _require_columns(path, [str(c) for c in df.columns])
    if df.empty:
        raise DataError(f"{path}: a header line but no rows")
    features = [c for c in df.columns if c not in (*CSV_KEYS, "split")]
    if not features:
        raise DataError(f"{path}: no feature columns besides sequence_id, step, target, split")
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise DataError(f"{path}: feature column {bad[0]!r} is not numeric")
    if df["target"].isna().any() or df[features].isna().any().any():
        raise DataError(f"{path}: empty cells (NaN) in feature or target columns")
    if not pd.api.types.is_integer_dtype(df["step"]):
        raise DataError(f"{path}: column 'step' must hold integers")
    df = df.sort_values(["sequence_id", "step"], kind="stable")
    groups = df.groupby("sequence_id", sort=False)
    first = groups["step"].transform("min")
    rank = groups.cumcount()
    gaps = df[df["step"] - first != rank]
    if len(gaps):
        sid = _py(gaps["sequence_id"].iloc[0])
        raise DataError(f"{path}: sequence {sid!r} has missing or repeated steps "
                        "(steps must be consecutive integers)")
    for col in ("target", "split") if "split" in df.columns else ("target",):
        varying = groups[col].nunique() > 1
        if varying.any():
            raise DataError(f"{path}: column {col!r} varies within sequence "
                            f"{_py(varying.index[varying.argmax()])!r}; it must be one value "
                            "per sequence")
    lengths = groups.size().to_numpy()
    n, t = len(lengths), int(lengths.max())
    x = np.zeros((n, t, len(features)), dtype=np.float64)
    row = np.repeat(np.arange(n), lengths)
    x[row, rank.to_numpy()] = df[features].to_numpy(dtype=np.float64)
    y = groups["target"].first().to_numpy()
    split = groups["split"].first().to_numpy().astype(str) if "split" in df.columns else None
    return x, lengths, y, split


def _check(
    path: Path, x: np.ndarray, lengths: np.ndarray | None, y: np.ndarray,
    split: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """Shape, value and split checks; returns (x as float32, lengths, y, split,
    is_classification)."""
    if x.ndim != 3:
        raise DataError(f"{path}: x must have shape N x T x F, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{path}: x must be numeric, got dtype {x.dtype}")
    n, t, f = x.shape
    if min(n, t, f) == 0:
        raise DataError(f"{path}: x has an empty dimension, shape {x.shape}")
    x = _finite_float32(path, "x", x)
    if lengths is None:
        lengths = np.full(n, t, dtype=np.int64)
    if lengths.shape != (n,) or not np.issubdtype(lengths.dtype, np.integer):
        raise DataError(f"{path}: lengths must be integers of shape ({n},), got "
                        f"{lengths.dtype} {lengths.shape}")
    if lengths.min() < 1 or lengths.max() > t:
        raise DataError(f"{path}: lengths must be in 1..T={t}, found {_py(lengths.min())}.."
                        f"{_py(lengths.max())}")
    if y.shape[:1] != (n,) or y.ndim > 2:
        raise DataError(f"{path}: y must have shape ({n},) or ({n}, K), got {y.shape}")
    classification = not np.issubdtype(y.dtype, np.floating)
    if classification and y.ndim != 1:
        raise DataError(f"{path}: class labels y must have shape ({n},), got {y.shape}")
    if not classification:
        _finite_float32(path, "y", y)  # the training tensors are float32
    if split is not None:
        split = np.asarray(split).astype(str)
        if split.shape != (n,):
            raise DataError(f"{path}: split must have shape ({n},), got {split.shape}")
        unknown = sorted(set(split.tolist()) - set(SPLITS))
        if unknown:
            raise DataError(f"{path}: split has unknown value {unknown[0]!r}: allowed: "
                            f"{', '.join(SPLITS)}")
        check_splits(path, y, split, classification)
    return x, lengths.astype(np.int64), y, split, classification


def _finite_float32(path: Path, name: str, values: np.ndarray) -> np.ndarray:
    """`values` cast to float32, refused if any value is NaN or inf after the cast: a float64
    above float32's range (about 3.4e38) passes a check before the cast and trains as inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        cast = values.astype(np.float32)
    bad = ~np.isfinite(cast)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f"{name}[{', '.join(map(str, index))}]"
        original = values[index]
        if np.isfinite(original):
            raise DataError(f"{path}: {where} = {float(original):.4g} is outside float32's "
                            f"range (|value| <= {float(np.finfo(np.float32).max):.4g})")
        raise DataError(f"{path}: {name} contains NaN or inf (first at {where})")
    return cast


def check_splits(path: Path, y: np.ndarray, split: np.ndarray, classification: bool) -> None:
    """Every split non-empty; val/test labels must occur in train (the model has no output
    for a class it never saw)."""
    for name in SPLITS:
        if not (split == name).any():
            raise DataError(f"{path}: the {name!r} split is empty")
    if classification:
        seen = set(np.unique(y[split == "train"]).tolist())
        for name in ("val", "test"):
            extra = sorted(set(np.unique(y[split == name]).tolist()) - seen, key=str)
            if extra:
                raise DataError(f"{path}: label {extra[0]!r} appears in the {name!r} split "
                                "but not in 'train'")
