"""Every error driftline raises to its callers derives from the one root error
(``driftline.core.errors.DriftlineError``) and is declared in its package's exceptions
module, so callers find them in one place and can catch them all."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from driftline.core.errors import DriftlineError

# Signals caught inside the module that raises them; they never reach a caller.
INTERNAL_SIGNALS = {
    "driftline.schemas.specialise.Unsupported",  # a schema the code generator leaves to fastavro
    "driftline.schemas.specialise.Fallback",  # a datum the generated code leaves to fastavro
}
HOMES = ("driftline.core.errors",)


def _modules():
    for package in ("core", "schemas", "inference", "drift", "lineage", "streams"):
        root = importlib.import_module(f"driftline.{package}")
        yield root
        for info in pkgutil.walk_packages(root.__path__, root.__name__ + "."):
            if not info.name.endswith("__main__"):
                yield importlib.import_module(info.name)


def _declared_exceptions():
    for module in _modules():
        for name, cls in vars(module).items():
            if (
                inspect.isclass(cls)
                and issubclass(cls, BaseException)
                and cls.__module__ == module.__name__
                and not name.startswith("_")
            ):
                yield f"{module.__name__}.{name}", cls


def test_every_public_exception_lives_in_an_exceptions_module_under_the_root():
    declared = dict(_declared_exceptions())
    assert len(declared) > 40  # the walk found them
    strays = sorted(
        name
        for name, cls in declared.items()
        if name not in INTERNAL_SIGNALS
        and not (name.rpartition(".")[0].endswith(".exceptions") or name.startswith(HOMES))
    )
    assert strays == []
    rootless = sorted(
        name
        for name, cls in declared.items()
        if name not in INTERNAL_SIGNALS and not issubclass(cls, DriftlineError)
    )
    assert rootless == []
