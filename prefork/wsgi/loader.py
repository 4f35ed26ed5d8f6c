"""Import the WSGI application named by the `app` option, and other 'module:callable' hooks."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any, cast

from prefork.wsgi.handler import WSGIApp

DEMO_APP = "prefork.demo.app:application"


class AppImportError(Exception):
    """The application could not be imported; the message says what to fix."""


def load_app(ref: str) -> WSGIApp:
    return cast(WSGIApp, load_callable(ref or DEMO_APP, "app"))


def load_callable(ref: str, what: str) -> Callable[..., Any]:
    """Import 'module:callable' ('module' alone means its `application`)."""
    module_name, _, attr = ref.partition(":")
    attr = attr or "application"
    if "" not in sys.path:
        sys.path.insert(0, "")  # 'module:callable' is resolved from the working directory
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppImportError(f"{what} {ref!r}: no module named {exc.name!r}") from None
        raise
    target: object = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppImportError(f"{what} {ref!r}: {module_name!r} has no attribute {attr!r}") \
                from None
    if not callable(target):
        raise AppImportError(f"{what} {ref!r}: {attr!r} is not callable")
    return cast(Callable[..., Any], target)
