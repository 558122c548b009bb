"""The runnable examples in drift/'s docstrings stay true."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

from driftline import drift

MODULES = sorted(m.name for m in pkgutil.iter_modules(drift.__path__, "driftline.drift."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
