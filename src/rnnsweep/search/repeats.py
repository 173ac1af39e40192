"""Independent searches of one condition: `search.repeat` (which one a job runs) and the
command line's `search.repeats=k` (rnnsweep.overrides.expand_repeats: repeats 0 .. k-1).

One Optuna search of 6-12 trials picks one configuration; which one is itself a random
draw (the sampler's seed, the trials' seeds). A verdict built on one search is conditional
on that draw. Repeat r > 0 is a study of its own that varies exactly that draw:

- its name gets `-r<r>` after the data fields (repeat 0 keeps the name it always had, so
  existing stores resume unchanged);
- its sampler seed is the configured one shifted by r x SEED_SPAN (mod 2**32);
- its training seeds (trial k: seed + k; re-evaluation seeds from seed + 1,000,000) start
  at study_seed = seed + r x SEED_SPAN, so no seed of one repeat is another repeat's;
- its parent run carries the tag `search_repeat` (every study's does: "0" for repeat 0).

The repeat is not a fixed setting (rnnsweep.search.settings): it names another study and
does not change what one study measures, so the repeats of a condition share their
`fixed_settings`, base seed included. The report pools the repeats of a condition: their
re-evaluation seeds are the replicates of its claims (rnnsweep.report.evidence).
"""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

# The parent run's (and every child run's) tag naming the repeat.
REPEAT_TAG = "search_repeat"
# The seeds one study may use: trials seed + k (k < 1,000,000), re-evaluations from
# seed + 1,000,000 (rnnsweep.search.reeval); validation.MAX_SEED leaves exactly this room.
SEED_SPAN = 2_000_000
SAMPLER_SEEDS = 2**32  # numpy's seed range, the samplers' RandomState


def search_repeat(search: DictConfig) -> int:
    """The `search` node's repeat (default in conf/search/tpe.yaml); 0 for a study's stored
    config from before the key existed (a seed round reads it back)."""
    return int(OmegaConf.select(search, "repeat", default=0) or 0)


def repeat_suffix(repeat: int) -> str:
    """'' for repeat 0 (today's name), '-r<k>' otherwise."""
    return f"-r{repeat}" if repeat else ""


def study_seed(seed: int, repeat: int) -> int:
    """The first training seed of the repeat's study (repeat 0: seed itself), which its
    trials and re-evaluations count from (StudyContext.seed). The config stored with the
    study keeps the base seed (so do its fixed settings): a seed round that reads it back
    derives the same seeds again."""
    return int(seed) + int(repeat) * SEED_SPAN


def sampler_seed(seed: int, repeat: int) -> int:
    """The repeat's sampler seed (repeat 0: seed itself); always a valid numpy seed."""
    return (int(seed) + int(repeat) * SEED_SPAN) % SAMPLER_SEEDS


def search_group(study_name: str, repeat: object) -> str:
    """The study name without its repeat suffix: the same for every repeat of one search
    (the suffix sits before an optional settings suffix -s<hash> and -matched)."""
    try:
        r = int(float(str(repeat)))
    except ValueError:
        return study_name
    if r <= 0:
        return study_name
    pattern = rf"{re.escape(repeat_suffix(r))}(?=(?:-s[0-9a-f]{{8}})?(?:-matched)?$)"
    return re.sub(pattern, "", study_name, count=1)
