"""Credentials in URLs are masked wherever text leaves the process."""

from __future__ import annotations

import logging

import pytest

from rnnsweep.redact import RedactFilter, redact, redact_files

SECRET = "s3cretpw"


@pytest.mark.parametrize("url", [
    f"postgresql://user:{SECRET}@127.0.0.1:5432/db",
    f"postgresql+psycopg2://user:{SECRET}@db.example.org/optuna",
    f"http://admin:{SECRET}@tracking:5000",
    f"mysql://u:{SECRET}@h/db?ssl=true",
])
def test_password_in_url_is_masked_and_the_rest_kept(url):
    text = f"search.storage={url} and more"
    masked = redact(text)
    assert SECRET not in masked
    assert masked == text.replace(f":{SECRET}@", ":***@")


def test_urls_without_password_are_unchanged():
    for text in ("sqlite:////tmp/mlruns/optuna.db", "http://127.0.0.1:5000",
                 "postgresql://user@host/db", "lr=0.001 at 12:30"):
        assert redact(text) == text


def test_log_filter_masks_message_and_arguments(caplog):
    logger = logging.getLogger("rnnsweep.test_redaction")
    logger.addFilter(RedactFilter())
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("storage %s", f"postgresql://u:{SECRET}@h/db")
    assert SECRET not in caplog.text and "u:***@h/db" in caplog.text


def test_saved_override_files_are_rewritten_masked(tmp_path):
    saved = tmp_path / "overrides.yaml"
    saved.write_text(f"- search.storage=postgresql://u:{SECRET}@h/db\n")
    redact_files([saved, tmp_path / "missing.yaml"])
    assert saved.read_text() == "- search.storage=postgresql://u:***@h/db\n"


# -- every accepted scheme, passwords and user names with the characters parsers split on ----
import json  # noqa: E402
import random  # noqa: E402
import shlex  # noqa: E402
import string  # noqa: E402
import urllib.parse  # noqa: E402

import yaml  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from rnnsweep.redact import forget_all, remember  # noqa: E402

# The characters URL parsers split user info on, raw and percent-encoded.
SPLITTERS = ["/", "@", ":", "%2F", "#", "?", "%40", "%3A", "%23", "%3F"]
OTHERS = string.ascii_letters + string.digits + "-._~!$&*+,;="
HOST = "db.example.org"


def generated(rng: random.Random, marker: str, n_pieces: int) -> str:
    """`marker` then a random mix of splitters and ordinary characters."""
    pieces = [rng.choice(SPLITTERS) if rng.random() < 0.4 else rng.choice(OTHERS)
              for _ in range(n_pieces)]
    return marker + "".join(pieces)


def accepted_urls(user: str, password: str) -> list[str]:
    """One URL per scheme the project accepts: SQLAlchemy's (Optuna storage, MLflow's
    database stores) and MLflow's REST forms."""
    userinfo = f"{user}:{password}"
    return [
        f"postgresql://{userinfo}@{HOST}:5432/optuna",
        f"postgresql+psycopg2://{userinfo}@{HOST}/optuna?sslmode=require",
        f"mysql://{userinfo}@{HOST}/optuna",
        f"mysql+pymysql://{userinfo}@{HOST}:3306/optuna?charset=utf8mb4",
        f"sqlite://{userinfo}@/{HOST}/optuna.db",
        f"http://{userinfo}@{HOST}:5000",
        f"https://{userinfo}@{HOST}/mlflow",
    ]


def contexts(url: str) -> dict[str, str]:
    """How a URL reaches text that leaves the process."""
    return {
        "bare": url,
        "override": f"search.storage={url}",
        "error line": f"error: search.storage={url}: cannot connect: (psycopg2.OperationalError)"
                      " connection to server failed",
        "config.yaml": OmegaConf.to_yaml(OmegaConf.create({"search": {"storage": url}})),
        "overrides.yaml": yaml.dump([f"search.storage={url}", "cell=lstm"]),
        "reproduce": shlex.join(["python", "train.py", "search=none", f"search.storage={url}",
                                 "seed=3"]),
        "repr": repr({"storage": url, "uri": "http://127.0.0.1:5000"}),
        "json": json.dumps({"storage": url, "n": 3}),
        "sweep list": f"search.storage={url},{url.replace('optuna', 'other')}",
        "log line": f"[INFO] - opened {url}\nnext line",
    }


def parsed_passwords(url: str) -> list[str]:
    """What the stores' own parsers read as the password: SQLAlchemy's make_url, urllib."""
    found = []
    if url.startswith("http"):
        split = urllib.parse.urlsplit(url)
        found += [split.password, urllib.parse.unquote(split.password or "")]
    else:
        try:
            found.append(make_url(url).password)
        except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse at all
            pass
    return [p for p in found if p]


def test_no_generated_password_survives_in_any_scheme_or_context():
    rng = random.Random(12)
    checked = 0
    for i in range(150):
        password = generated(rng, f"Pw{i}X", rng.randint(3, 14))
        user = generated(rng, "u", rng.randint(0, 5)).replace(":", "")
        for url in accepted_urls(user, password):
            secrets = [password, *parsed_passwords(url)]
            for name, text in contexts(url).items():
                masked = redact(text)
                for secret in secrets:
                    assert secret not in masked, (name, url, masked)
                checked += 1
            # The rest stays readable: the host and what follows it.
            assert redact(url).endswith(url[url.rindex("@"):]), url
    assert checked == 150 * 7 * 10


@pytest.mark.parametrize("user", ["rnnsweep", "us@er", "us%2Fer", "us#er", "us?er", "us/er",
                                  "us%40er"])
@pytest.mark.parametrize("password", ["se/cret9", "p@ss@word", "p:ss:word", "se%2Fcret",
                                      "pa#ss", "pa?ss", "a/b@c:d#e?f%2Fg"])
def test_the_issue_examples_are_masked_in_each_scheme(user, password):
    for url in accepted_urls(user, password):
        masked = redact(f"search.storage={url} rest")
        assert password not in masked and "***@" in masked, masked
        assert masked.endswith(url[url.rindex("@"):] + " rest")


def test_a_password_with_a_space_is_masked_once_remembered():
    """Whitespace ends a URL in free text: the command line's secrets cover that case."""
    url = "postgresql://u:my secret pw@h/db"
    try:
        remember([f"search.storage={url}", "seed=3"])
        assert "my secret pw" not in redact(f"storage: {url}")
        assert redact("the password my secret pw again") == "the password *** again"
        remember(["postgresql://u:pw@h/db"])  # too short to mask outside a URL
        assert redact("pw and pwd stay") == "pw and pwd stay"
    finally:
        forget_all()


def test_log_filter_masks_a_logged_traceback(caplog):
    logger = logging.getLogger("rnnsweep.test_redaction.tb")
    logger.addFilter(RedactFilter())
    with caplog.at_level(logging.ERROR, logger=logger.name):
        try:
            raise RuntimeError(f"cannot open mysql://u:{SECRET}/x@h/db")
        except RuntimeError:
            logger.exception("failed")
    record = caplog.records[-1]
    formatted = logging.Formatter().format(record)
    assert "RuntimeError" in formatted and SECRET not in formatted and "u:***@h/db" in formatted


def test_a_url_the_preflight_accepts_is_read_by_its_store_exactly_as_written():
    """userinfo_problem refuses exactly the URLs whose password a store would misread (and
    then show, cut, as a host or database name); the rest parse to the written password."""
    from rnnsweep.redact import userinfo_problem

    rng = random.Random(5)
    refused = accepted = 0
    for i in range(150):
        password = generated(rng, f"Pw{i}X", rng.randint(3, 14))
        user = generated(rng, "u", rng.randint(0, 5)).replace(":", "")
        for url in accepted_urls(user, password):
            problem = userinfo_problem(url)
            if url.startswith("http"):
                split = urllib.parse.urlsplit(url)
                exact = (split.username, split.password) == (user, password)
            else:
                unquote = urllib.parse.unquote
                try:
                    parsed = make_url(url)
                except ValueError:  # a port SQLAlchemy cannot read: misread too
                    exact = False
                else:
                    exact = (parsed.username, parsed.password) == (unquote(user),
                                                                   unquote(password))
            assert (problem is None) == exact, (url, problem)
            refused += problem is not None
            accepted += problem is None
    assert refused > 100 and accepted > 100  # both classes really occur


@pytest.mark.parametrize(("url", "needle"), [
    ("postgresql://u:p@ss@127.0.0.1/db", "%40"),
    ("mysql://us/er:pw@h/db", "%2F"),
    ("http://admin:se/cret@127.0.0.1:5000", "%2F"),
    ("https://admin:a#b@h", "%23"),
    ("http://ad?min:pw@h", "%3F"),
])
def test_misread_user_info_is_named_without_the_password(url, needle):
    from rnnsweep.redact import userinfo_problem

    problem = userinfo_problem(url)
    assert problem and needle in problem
    assert all(part not in problem for part in ("p@ss", "se/cret", "a#b"))


def test_libraries_own_log_handlers_mask_too():
    """Optuna and MLflow log through their own non-propagating handlers."""
    import io

    from rnnsweep.console import mask_all_handlers

    stream = io.StringIO()
    own = logging.getLogger("rnnsweep.test_redaction.library")
    own.propagate = False
    own.setLevel(logging.WARNING)  # whatever an earlier test set on "rnnsweep"
    own.addHandler(logging.StreamHandler(stream))
    mask_all_handlers()
    mask_all_handlers()  # idempotent: one filter per handler
    own.warning("storage %s failed", f"postgresql://u:{SECRET}/x@h/db")
    assert stream.getvalue() == "storage postgresql://u:***@h/db failed\n"
    assert len(own.handlers[0].filters) == 1
    optuna_handlers = logging.getLogger("optuna").handlers
    assert optuna_handlers and all(h.filters for h in optuna_handlers)
