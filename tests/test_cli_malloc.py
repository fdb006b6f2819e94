"""The console scripts set the malloc policy in their own process (mallopt) instead of starting
Python a second time, and hand it to the processes they start through the environment."""
from __future__ import annotations

import os
import sys

import pytest

from imalys_stac import cli
from imalys_stac.settings import MALLOC_ENV


@pytest.fixture(autouse=True)
def _no_malloc_variables(monkeypatch):
    """Each test starts as a console script started by hand: none of the variables set. (Set
    first, so that the monkeypatch restores their absence: a variable only deleted when missing is
    not recorded, and what the code under test puts in os.environ then stayed for the rest of the
    worker — every Dask worker a later test started kept its freed memory and paused.)"""
    for k in MALLOC_ENV:
        monkeypatch.setenv(k, "")
        monkeypatch.delenv(k)


def test_the_policy_is_set_without_a_second_start(monkeypatch):
    """(mallopt itself is faked here: set in the test process, it would keep every freed buffer of
    the rest of the run, and an in-process Dask worker measuring that RSS pauses. Its real call is
    checked in a fresh interpreter in tests/test_startup.py.)"""
    monkeypatch.delenv("IMALYS_NO_MALLOC_TUNING", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(cli, "_mallopt", lambda: True)
    started = []
    monkeypatch.setattr(os, "execve", lambda *a: started.append(a))
    cli._with_malloc_tuning("main")
    assert started == []
    assert {k: os.environ[k] for k in MALLOC_ENV} == MALLOC_ENV


def test_without_mallopt_the_script_starts_again_with_the_variables(monkeypatch):
    monkeypatch.delenv("IMALYS_NO_MALLOC_TUNING", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(cli, "_mallopt", lambda: False)
    started = []
    monkeypatch.setattr(os, "execve", lambda exe, argv, env: started.append(env))
    cli._with_malloc_tuning("main")
    assert len(started) == 1 and all(started[0][k] == v for k, v in MALLOC_ENV.items())
    assert not any(k in os.environ for k in MALLOC_ENV)


def test_opting_out_sets_nothing(monkeypatch):
    monkeypatch.setenv("IMALYS_NO_MALLOC_TUNING", "1")
    monkeypatch.setattr(cli, "_mallopt", lambda: pytest.fail("mallopt called"))
    cli._with_malloc_tuning("main")
    assert not any(k in os.environ for k in MALLOC_ENV)

