"""Errors a client causes; each maps to the status the client receives."""


class HTTPError(Exception):
    """A request that cannot be served; the connection is closed after the response."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def bad_request(reason: str) -> HTTPError:
    return HTTPError(400, reason)
