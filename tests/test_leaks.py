"""Passwords with the characters URL parsers split on never leave the process unmasked.

One real run: a study on a PostgreSQL server whose password holds '/', ':', '?', '#' and a
percent-escape; then every place a password could land is searched for it, raw and decoded:
the console, Hydra's outputs (saved config, overrides, logs), the MLflow store (params, tags,
the `reproduce` tags) and its artifacts (config.yaml). And the preflight's refusals, for
generated passwords in each scheme: one line, the password masked, nothing created.

PostgreSQL comes from Debian's `postgresql` binaries (`make test` installs them); without them
the run is skipped locally and fails in CI (CI=true).
"""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import unquote

import pytest
import sqlalchemy
from conftest import ROOT, run_train
from servers import PG_USER as USER
from servers import free_port, postgres_cluster
from store_checks import all_runs, mlflow_url

from rnnsweep.errors import ConfigError

# As written in the URL; the server's password is its decoded form ("%2F" -> "/").
URL_PASSWORD = "Se/cret9:k?q#z%2Fw"


def files_holding(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n!r}" for n in needles if n.encode() in data]
    return hits


@pytest.mark.slow
def test_a_password_with_slashes_and_escapes_reaches_no_output(project):
    """A single run, then a -m sweep resuming the same study (multirun.yaml, job folders)."""
    secret = unquote(URL_PASSWORD)
    needles = [URL_PASSWORD, secret, "Se/cret9"]
    with postgres_cluster(URL_PASSWORD, ("optuna",)) as server:
        assert URL_PASSWORD in server  # the URL really holds the raw form
        storage = f"{server}/optuna"
        common = ["cell=lstm", "data.size=small", "experiment=smoke", "search.reeval_seeds=0",
                  f"search.storage='{storage}'"]
        single = run_train(project, *common, "search.n_trials=1")
        assert single.returncode == 0, single.stderr[-3000:]
        sweep = run_train(project, "-m", *common, "search.n_trials=2")
        assert sweep.returncode == 0, sweep.stderr[-3000:]
        # The study really ran on the server with that password, resumed by the sweep.
        engine = sqlalchemy.create_engine(storage)
        with engine.connect() as con:
            n = con.execute(sqlalchemy.text("SELECT count(*) FROM trials")).scalar()
        engine.dispose()
        assert n == 2

    for proc in (single, sweep):
        console = proc.stdout + proc.stderr
        assert [n for n in needles if n in console] == [], console[-3000:]
    # Hydra's saved config, overrides and hydra.yaml, multirun.yaml, the jobs' log files.
    outputs = project / "outputs"
    for pattern in ("runs/*/.hydra/", "sweeps/*/0/.hydra/"):
        names = {p.name for p in outputs.glob(pattern + "*.yaml")}
        assert names >= {"config.yaml", "overrides.yaml", "hydra.yaml"}, pattern
    assert list(outputs.glob("sweeps/*/multirun.yaml")) and len(list(outputs.rglob("*.log"))) == 2
    assert files_holding(outputs, needles) == []
    for saved in [*outputs.glob("*/*/.hydra/overrides.yaml"), *outputs.glob("*/*/multirun.yaml")]:
        assert f"{USER}:***@127.0.0.1" in saved.read_text(), saved
    # The MLflow store (params, tags: the database file itself) and its artifacts.
    assert files_holding(project / "mlruns", needles) == []
    runs = all_runs(mlflow_url(project))
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert len(trials) == 2
    for trial in trials:
        reproduce = trial.data.tags["reproduce"]
        assert f"{USER}:***@127.0.0.1" in reproduce and "search=none" in reproduce
    for run in runs:
        text = repr(run.data.params) + repr(run.data.tags)
        assert [n for n in needles if n in text] == [], run.info.run_name
    config = next((project / "mlruns").rglob("config.yaml")).read_text()
    assert f"storage: postgresql://{USER}:***@127.0.0.1" in config


SCHEME_URLS = [
    "postgresql://{user}:{pw}@127.0.0.1:{port}/optuna",
    "postgresql+psycopg2://{user}:{pw}@127.0.0.1:{port}/optuna?connect_timeout=5",
    "mysql://{user}:{pw}@127.0.0.1:{port}/optuna",
]
PASSWORD_CHARS = ["/", ":", "%2F", "#", "?", "%40", "%3A", "a", "Z", "9", "-", "."]


def test_refused_storage_urls_give_one_masked_line_and_create_nothing(project, monkeypatch):
    """The preflight's errors for stores that do not answer (or URLs a store would misread),
    with generated passwords in each scheme: the password is never in the message."""
    from rnnsweep.preflight import preflight

    monkeypatch.setenv("RNNSWEEP_ROOT", str(project))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rng = random.Random(7)
    port = free_port()  # nothing listens there
    messages = []
    for i, template in enumerate(SCHEME_URLS * 2):
        password = f"Pw{i}" + "".join(rng.choice(PASSWORD_CHARS) for _ in range(8))
        if i == len(SCHEME_URLS):  # one '@' in a password: refused before connecting
            password += "@x"
        user = rng.choice(["rnnsweep", "us%40er", "us@er", "u#1"])
        url = template.format(user=user, pw=password, port=port)
        with pytest.raises(ConfigError) as err:
            preflight(ROOT / "conf", ["experiment=smoke", f"search.storage='{url}'"])
        message = str(err.value)
        assert "\n" not in message and message.startswith("search.storage="), message
        assert password not in message and unquote(password) not in message, message
        assert "***@" in message
        messages.append(message)
    assert not (project / "mlruns").exists() and not (project / "outputs").exists()
    # Both kinds of refusal occurred: a store that does not answer, a URL it would misread.
    assert any("cannot connect" in m for m in messages), messages
    assert any("write @ as %40" in m for m in messages), messages


@pytest.mark.parametrize("flags", [["--cfg", "job"], ["--cfg", "all"], ["--info", "all"]])
def test_printing_the_config_masks_the_password(project, flags):
    """--cfg/--info print the config with print(), past the logging filters."""
    storage = "postgresql://rnnsweep:Se/cret9:k?q@127.0.0.1:5432/optuna"
    proc = run_train(project, *flags, f"search.storage='{storage}'", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    assert "Se/cret9" not in output
    if flags[0] == "--cfg":
        assert "rnnsweep:***@127.0.0.1:5432/optuna" in output
    assert not (project / "outputs").exists()
