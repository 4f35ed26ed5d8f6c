"""Import the WSGI application named by the `app` option, and other 'module:callable' hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from prefork.usercode import UserImportError, import_user_module
from prefork.wsgi.handler import WSGIApp

DEMO_APP = "prefork.demo.app:application"


class AppImportError(UserImportError):
    """The application could not be imported; the message says what to fix."""


def load_app(ref: str) -> WSGIApp:
    return cast(WSGIApp, load_callable(ref or DEMO_APP, "app"))


def load_callable(ref: str, what: str) -> Callable[..., Any]:
    """Import 'module:callable' ('module' alone means its `application`)."""
    module_name, _, attr = ref.partition(":")
    attr = attr or "application"
    try:
        module = import_user_module(module_name, what, ref)
    except UserImportError as exc:
        raise AppImportError(str(exc)) from None
    target: object = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppImportError(
                f"{what} {ref!r}: {module_name!r} has no attribute {attr!r}"
            ) from None
    if not callable(target):
        raise AppImportError(f"{what} {ref!r}: {attr!r} is not callable")
    return cast(Callable[..., Any], target)
