"""Fixtures shared by several test files."""

from __future__ import annotations

import gc

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Small matrices on a shared machine: one thread avoids waiting for the other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def release_models_after_the_module(request):
    """A dense universal model is ~1.4 GB in float64 and most test files build or load their
    own: dropping them when a file's tests end (its cached builders, the engine's models)
    keeps the whole run within a 24 GB machine."""
    yield
    from wasmformer.engine.models import release_models

    release_models()
    for value in vars(request.module).values():
        clear = getattr(value, "cache_clear", None)
        if callable(clear):
            clear()
    gc.collect()
