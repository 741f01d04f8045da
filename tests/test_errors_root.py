"""One error root: every exception class any mcresolve module defines or exports derives from
:class:`mcresolve.errors.McResolveError`, so one ``except`` catches mcresolve's errors."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

import mcresolve
import mcresolve.errors
from mcresolve.errors import McResolveError

#: Test beds and the demo are not the library: their exceptions are not caught by users.
EXCLUDED = ("mcresolve.testing", "mcresolve.demo")


def _library_modules() -> list[ModuleType]:
    modules = [mcresolve]
    for info in pkgutil.walk_packages(mcresolve.__path__, prefix="mcresolve."):
        if info.name.startswith(EXCLUDED) or info.name.endswith(".__main__"):
            continue
        modules.append(importlib.import_module(info.name))
    return modules


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in _library_modules():
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith("mcresolve")
                and not value.__module__.startswith(EXCLUDED)
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_exception_class_of_the_library_derives_from_mcresolve_error() -> None:
    classes = _exception_classes()
    # The walk must see the well-known ones, or it proves nothing.
    for known in (
        "mcresolve.consul.errors.ConsulError",
        "mcresolve.consul.errors.ConsulConfigError",
        "mcresolve.sources.target.TargetError",
        "mcresolve.errors.NoEndpointAvailable",
        "mcresolve.errors.CallFailed",
    ):
        assert known in classes
    strays = sorted(name for name, cls in classes.items() if not issubclass(cls, McResolveError))
    assert strays == []


def test_second_bases_are_kept_for_callers_that_rely_on_them() -> None:
    from mcresolve.balancer.picker import NoEndpointAvailable as FromPicker
    from mcresolve.consul.errors import ConsulConfigError, ConsulTimeout
    from mcresolve.errors import DeadlineExceeded, NoEndpointAvailable
    from mcresolve.sources.target import TargetError

    assert FromPicker is NoEndpointAvailable
    assert issubclass(NoEndpointAvailable, LookupError)
    assert issubclass(TargetError, ValueError)
    assert issubclass(ConsulConfigError, ValueError)
    assert issubclass(DeadlineExceeded, TimeoutError)
    assert issubclass(ConsulTimeout, McResolveError)


def test_errors_module_imports_nothing_else_of_the_library() -> None:
    """``mcresolve.errors`` is the root every module imports: at run time it must import no
    other mcresolve module (which could import it back: a cycle). Imports for type checking
    only are allowed."""
    tree = ast.parse(Path(mcresolve.errors.__file__ or "").read_text(encoding="utf-8"))
    runtime_imports = []
    for node in tree.body:  # module level; `if TYPE_CHECKING:` blocks are not imports
        if isinstance(node, ast.ImportFrom) and node.module:
            runtime_imports.append(node.module)
        elif isinstance(node, ast.Import):
            runtime_imports.extend(alias.name for alias in node.names)
    assert runtime_imports, "the parse found no import at all: the test is broken"
    assert [m for m in runtime_imports if m.split(".")[0] == "mcresolve"] == []
