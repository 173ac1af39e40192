"""Chorale conversion and splits, on the first few chorales of the bundled corpus."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnnsweep.data.chorales import (
    LOWEST_MIDI,
    N_KEYS,
    ChoralesDataConfig,
    ChoralesDataModule,
    chorale_names,
    load_cache,
    piano_roll,
    transposition_to_c,
)
from rnnsweep.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def score():
    from music21 import corpus

    return corpus.parse(chorale_names()[0])


def test_piano_roll_keeps_every_note_and_every_frame(score):
    roll = piano_roll(score)
    assert roll.shape == (math.ceil(float(score.highestTime) / 0.5), N_KEYS)
    assert roll.dtype == np.uint8 and set(np.unique(roll)) <= {0, 1}
    shift = transposition_to_c(score)
    for n in score.flatten().notes:
        start, end = float(n.offset), float(n.offset + n.quarterLength)
        if end <= start:
            continue
        frames = range(int(start // 0.5), math.ceil(end / 0.5))
        for p in n.pitches:
            assert all(roll[t, p.midi + shift - LOWEST_MIDI] == 1 for t in frames)
    # Nothing sounds that the score does not hold: the count of note-frames matches.
    sounding = set()
    for n in score.flatten().notes:
        start, end = float(n.offset), float(n.offset + n.quarterLength)
        for p in n.pitches:
            for t in range(int(start // 0.5), math.ceil(end / 0.5)):
                sounding.add((t, p.midi + shift - LOWEST_MIDI))
    assert int(roll.sum()) == len(sounding)


def test_transposed_to_c_major_or_a_minor(score):
    key = score.analyze("key")
    shift = transposition_to_c(score)
    assert -6 <= shift <= 6
    assert (key.tonic.pitchClass + shift) % 12 == (0 if key.mode == "major" else 9)


def test_cache_round_trip(chorale_cache):
    names, rolls = load_cache(chorale_cache)
    assert len(names) == len(rolls) == 6 and names[0] == chorale_names()[0]
    assert all(r.shape[1] == N_KEYS and len(r) >= 2 for r in rolls)


def _module(cache, **kw) -> ChoralesDataModule:
    dm = ChoralesDataModule(ChoralesDataConfig(cache=str(cache), **kw))
    dm.setup()
    return dm


def test_split_by_chorale_is_disjoint_seeded_and_next_frame(chorale_cache):
    dm = _module(chorale_cache, size="large", val_fraction=0.2, test_fraction=0.2)
    _, rolls = load_cache(chorale_cache)
    sets = [dm.train_set, dm.val_set, dm.test_set]
    assert [len(s) for s in sets] == [4, 1, 1]

    def which(ds):  # identify chorales by their first input frames
        return {next(i for i, r in enumerate(rolls)
                     if len(r) - 1 == int(ln) and np.array_equal(r[:-1], x[:ln].numpy()))
                for x, ln in zip(ds.tensors[0], ds.tensors[2], strict=True)}

    ids = [which(s) for s in sets]
    assert set().union(*ids) == set(range(6)) and sum(len(i) for i in ids) == 6
    x, y, lengths = dm.train_set.tensors
    for i in range(len(x)):  # targets are the inputs shifted by one frame; padding is zero
        n = int(lengths[i])
        assert torch.equal(y[i, : n - 1], x[i, 1:n])
        assert x[i, n:].sum() == 0 and y[i, n:].sum() == 0
    again = _module(chorale_cache, size="large", val_fraction=0.2, test_fraction=0.2)
    assert torch.equal(again.test_set.tensors[0], dm.test_set.tensors[0])
    small = _module(chorale_cache, size="small", val_fraction=0.2, test_fraction=0.2,
                    small_fraction=0.5)
    assert len(small.train_set) == 2 and torch.equal(small.val_set.tensors[0],
                                                       dm.val_set.tensors[0])
    assert dm.spec.output_size == N_KEYS and dm.spec.per_step and dm.spec.variable_length


def test_missing_cache_names_the_command(tmp_path):
    with pytest.raises(DataError, match="prepare_chorales"):
        ChoralesDataModule(ChoralesDataConfig(cache=str(tmp_path / "none.npz")))


def test_invalid_fractions_name_the_key():
    with pytest.raises(ConfigError, match="data.val_fraction"):
        ChoralesDataConfig(val_fraction=0.0)
    with pytest.raises(ConfigError, match="data.max_chorales"):
        ChoralesDataConfig(max_chorales=1)


def test_preflight_stops_on_a_missing_cache_before_any_job(project, monkeypatch):
    from rnnsweep.preflight import preflight

    monkeypatch.setenv("RNNSWEEP_ROOT", str(project))
    with pytest.raises(DataError, match="python -m rnnsweep.data.prepare_chorales"):
        preflight(project / "conf", ["-m", "cell=lstm,gru", "data=chorales"])
    assert not (project / "mlruns").exists()


def test_study_name_has_the_small_fraction_only_for_small_data(tmp_path):
    from rnnsweep.search.study import study_name

    cache = tmp_path / "chorales.npz"
    cache.write_bytes(b"condition() only hashes the cache's bytes")

    def name(size: str, fraction: float) -> str:
        cfg = ChoralesDataConfig(cache=str(cache), size=size, small_fraction=fraction)
        return study_name(ChoralesDataModule(cfg).condition(), "gru")

    assert name("large", 0.25) == name("large", 0.5)
    assert "small" not in name("large", 0.25).split("-", 2)[2]
    assert "-small0.25-" in name("small", 0.25) and name("small", 0.5) != name("small", 0.25)
