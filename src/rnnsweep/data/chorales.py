"""Bach chorales as 88-key piano rolls: next-frame prediction (Chung et al. 2014 task family).

The music21 corpus ships the chorales; parsing them is slow, so `prepare_chorales` converts
them once into a compact cache and this module only reads that cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from rnnsweep.data.base import (
    SplitDataConfig,
    TensorDataModule,
    check_data_seed,
    unique_indices,
)
from rnnsweep.data.paths import resolve_path
from rnnsweep.data.sizes import train_count
from rnnsweep.data.spec import TaskSpec
from rnnsweep.errors import ConfigError, DataError

N_KEYS = 88
LOWEST_MIDI = 21  # A0, the lowest piano key
PREPARE_COMMAND = "python -m rnnsweep.data.prepare_chorales"


@dataclass
class ChoralesDataConfig(SplitDataConfig):
    """The split fractions count chorales (not frames): no chorale is split across sets."""

    _target_: str = "rnnsweep.data.chorales.ChoralesDataModule"
    task: str = "chorales"
    cache: str = "data/cache/chorales.npz"
    # Use only the first N chorales of the cache (tests and smoke runs); null = all.
    max_chorales: int | None = None
    batch_size: int = 16

    def __post_init__(self) -> None:
        self.check_fractions()
        if self.max_chorales is not None and self.max_chorales < 3:
            raise ConfigError(f"data.max_chorales={self.max_chorales} is invalid: "
                              "must be >= 3 (one chorale per split) or null")
        check_data_seed(self.seed)


# -- conversion (used by prepare_chorales) --------------------------------------------------
def transposition_to_c(score) -> int:  # noqa: ANN001 (music21 Score)
    """Semitones that move the analysed key to C major or A minor, the smallest shift."""
    key = score.analyze("key")
    target = 0 if key.mode == "major" else 9  # C or A
    shift = (target - key.tonic.pitchClass) % 12
    return shift - 12 if shift > 6 else shift


def piano_roll(score, frame: float = 0.5) -> np.ndarray:  # noqa: ANN001 (music21 Score)
    """(frames, 88) uint8: key k sounds in frame t if a note overlaps [t*frame, (t+1)*frame).

    Overlap (not onset sampling) keeps notes shorter than a frame; frames where every voice
    rests stay as all-zero rows, so the timeline keeps its length.
    """
    shift = transposition_to_c(score)
    n_frames = int(np.ceil(float(score.highestTime) / frame - 1e-9))
    roll = np.zeros((n_frames, N_KEYS), dtype=np.uint8)
    for n in score.flatten().notes:
        start = float(n.offset)
        end = start + float(n.quarterLength)
        if end <= start:  # grace notes take no time
            continue
        first = int(np.floor(start / frame + 1e-9))
        last = int(np.ceil(end / frame - 1e-9))
        for p in n.pitches:
            key = p.midi + shift - LOWEST_MIDI
            if 0 <= key < N_KEYS:
                roll[first:last, key] = 1
    return roll


def chorale_names() -> list[str]:
    """The 371 Riemenschneider chorales of the bundled corpus, in their catalogue order."""
    from music21.corpus import chorales

    return list(chorales.Iterator(returnType="filename"))


def drop_duplicate_rolls(
    names: list[str], rolls: list[np.ndarray]
) -> tuple[list[str], list[np.ndarray], int]:
    """Keep the first of identical piano rolls: music21's chorale iterator lists some files
    twice, and a copy on both sides of a split would reward memorising."""
    keys = [hashlib.sha1(r.shape.__repr__().encode() + np.ascontiguousarray(r).tobytes())
            .hexdigest() for r in rolls]
    keep, dropped = unique_indices(keys)
    return [names[i] for i in keep], [rolls[i] for i in keep], dropped


def save_cache(path: Path, names: list[str], rolls: list[np.ndarray],
               duplicates_dropped: int = 0) -> None:
    """One compressed .npz: all frames concatenated plus per-chorale offsets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.cumsum([0] + [len(r) for r in rolls]).astype(np.int64)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, frames=np.concatenate(rolls), offsets=offsets,
                        names=np.array(names), duplicates_dropped=np.int64(duplicates_dropped))
    tmp.replace(path)  # never leave a half-written cache behind


def load_cache(path: Path) -> tuple[list[str], list[np.ndarray]]:
    if not path.is_file():
        raise DataError(f"{path}: chorale cache not found; build it with `{PREPARE_COMMAND}`")
    try:
        with np.load(path) as z:
            frames, offsets, names = z["frames"], z["offsets"], z["names"]
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"{path}: not a chorale cache ({err}); rebuild it with "
                        f"`{PREPARE_COMMAND}`") from None
    rolls = [frames[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return [str(n) for n in names], rolls


# -- the data module ------------------------------------------------------------------------
def split_chorales(n: int, val_fraction: float, test_fraction: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded permutation of chorale indices into train/val/test, each non-empty."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * val_fraction))
    n_test = max(1, round(n * test_fraction))
    if n - n_val - n_test < 1:
        raise DataError(f"{n} chorales are too few for a train/val/test split")
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]


def next_frame_dataset(rolls: list[np.ndarray]) -> TensorDataset:
    """Input frames 0..L-2, targets 1..L-1, zero-padded to the longest chorale."""
    lengths = [len(r) - 1 for r in rolls]
    t = max(lengths)
    x = np.zeros((len(rolls), t, N_KEYS), dtype=np.float32)
    y = np.zeros_like(x)
    for i, r in enumerate(rolls):
        x[i, : len(r) - 1] = r[:-1]
        y[i, : len(r) - 1] = r[1:]
    return TensorDataset(torch.from_numpy(x), torch.from_numpy(y),
                         torch.tensor(lengths, dtype=torch.long))


class ChoralesDataModule(TensorDataModule):
    """Train/val/test chorales fixed by the seed; `small` trains on a prefix of the train set."""

    config = ChoralesDataConfig

    def __init__(self, cfg: ChoralesDataConfig) -> None:
        super().__init__(batch_size=cfg.batch_size)
        self.cfg = cfg
        self.path = resolve_path(cfg.cache)
        self.spec = TaskSpec(input_size=N_KEYS, output_size=N_KEYS, loss="bce",
                             per_step=True, variable_length=True)
        if not self.path.is_file():  # checked here so the preflight reports it
            raise DataError(f"{self.path}: chorale cache not found; build it with "
                            f"`{PREPARE_COMMAND}`")
        self._splits: tuple[list[np.ndarray], ...] | None = None
        self.duplicates_dropped = 0

    def _load(self) -> tuple[list[np.ndarray], ...]:
        if self._splits is None:
            names, rolls = load_cache(self.path)
            # Caches written before de-duplication still hold copies: drop them here too.
            names, rolls, self.duplicates_dropped = drop_duplicate_rolls(names, rolls)
            rolls = [r for r in rolls if len(r) >= 2][: self.cfg.max_chorales]
            tr, va, te = split_chorales(len(rolls), self.cfg.val_fraction,
                                        self.cfg.test_fraction, self.cfg.seed)
            n_small = max(1, round(len(tr) * self.cfg.small_fraction))
            tr = tr[: train_count(self.cfg.size, n_small, len(tr))]  # a prefix: nested sizes
            self._splits = tuple([rolls[i] for i in idx] for idx in (tr, va, te))
        return self._splits

    def condition(self) -> dict[str, str]:
        c = self.cfg
        digest = hashlib.sha1(self.path.read_bytes()).hexdigest()[:8]
        n = "all" if c.max_chorales is None else str(c.max_chorales)
        cond = {"task": c.task, "size": c.size, "chorales": n}
        if c.size == "small":  # a large study trains on every training chorale
            cond["small"] = str(c.small_fraction)
        elif c.size != "large":  # a curve point: the training chorales it stands for
            cond["n"] = str(len(self._load()[0]))
        return {**cond, "seed": str(c.seed), "cache": digest}

    def build(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        train, val, test = self._load()
        return next_frame_dataset(train), next_frame_dataset(val), next_frame_dataset(test)
