"""An application that configures the `prefork.access` logger itself when imported: a handler
of its own (file ACCESS_LOG_FILE), beside prefork's (the records still propagate)."""

import logging
import os

from tests.apps.testapp import echo

if os.environ.get("ACCESS_LOG_FILE"):
    _handler = logging.FileHandler(os.environ["ACCESS_LOG_FILE"], encoding="utf-8")
    _handler.setFormatter(logging.Formatter("ACCESS %(message)s"))
    logging.getLogger("prefork.access").addHandler(_handler)

app = echo
