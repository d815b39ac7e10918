"""Libraries named at the top of a module but imported on first use: torch above all.

`torch = lazy_import("torch")` binds a stand-in module; its first attribute access imports torch and takes
over its namespace, so later accesses cost what a plain module's do. Modules keep naming what they use at
the top, while importing them (the package, the families' declarations that `seqclaims check` reads, a
pytest worker that re-judges stored evidence) costs nothing until a tensor is made: torch takes about a
second to import. Nothing that runs at import time (a class's base, a decorator, a module constant) may
touch such a module; `when_called` defers a library's decorator to the first call, and
`tests/test_layers.py` holds `import seqclaims` and `seqclaims check` free of torch.
"""

from __future__ import annotations

import functools
import importlib
import types
from typing import Any, Callable, TypeVar

Function = TypeVar("Function", bound=Callable[..., Any])


class LazyModule(types.ModuleType):
    """A stand-in for the module of the same name, imported on the first attribute access."""

    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)  # from now on, attributes are found without this method
        return getattr(module, attribute)


def lazy_import(name: str) -> types.ModuleType:
    return LazyModule(name)


def when_called(make_decorator: Callable[[], Callable[[Function], Function]]) -> Callable[[Function], Function]:
    """`@when_called(lambda: torch.no_grad())`: a library's decorator applied at each call instead of at
    definition, which would import the library with the module that defines the function."""

    def decorate(function: Function) -> Function:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return make_decorator()(function)(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
