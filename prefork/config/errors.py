"""The one exception every configuration mistake becomes."""


class ConfigError(Exception):
    """A bad configuration: the message names where, which key and what was expected.

    The CLI prints it as is and exits with status 2; it never carries a traceback to the user.
    """

    def __init__(self, message: str, *, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
