"""The Cookie header as browsers send it: cookies other applications on the same domain set
(JSON, quotes, spaces, empty pairs) never cost the request its own session cookie."""

from __future__ import annotations

import pytest

from prefork.wsgi.cookies import parse_cookies

SID = "ZmFrZS1zZXNzaW9uLWlkLWZvci10ZXN0cw.mac-part_1"

# Headers as Chromium and Firefox send them, with what other apps on the domain set in front.
BROWSER_HEADERS = [
    f'pref={{"theme":"dark","lang":"en"}}; session_id={SID}',  # a JSON value
    f'consent="yes, all cookies"; session_id={SID}',  # quoted, with a space and a comma
    f"a=1;; b=2; ;session_id={SID}",  # empty pairs
    f"flag; session_id={SID}",  # a pair without '='
    f"_ga=GA1.1.123456789.1700000000; _ga_X1Y2=GS1.1.1700000000.1.0.1700000000.0.0.0; "
    f"session_id={SID}; frontend_lang=en_US; tz=Europe/Brussels; cids=1-2",
    f"cart=%7B%22items%22%3A%5B%5D%7D; name=J\xc3\xb6rg; session_id={SID}",  # UTF-8 as latin-1
    f"weird=a=b=c; session_id={SID}; after=1",  # '=' inside a value
    f"x=[1, 2]; y=back\\slash; session_id={SID}",
    f'  session_id="{SID}"  ',  # a quoted session value, stray spaces
]


@pytest.mark.parametrize("header", BROWSER_HEADERS)
def test_the_session_cookie_survives_what_browsers_send(header: str) -> None:
    assert parse_cookies(header)["session_id"] == SID


def test_values_names_and_what_is_skipped() -> None:
    cookies = parse_cookies('pref={"a":1}; q="x y"; e=; =nameless; weird=a=b')
    assert cookies == {"pref": '{"a":1}', "q": "x y", "e": "", "weird": "a=b"}
    # The first of a name wins: the browser sends the longest path's cookie first.
    assert parse_cookies("session_id=deep; session_id=root")["session_id"] == "deep"
    # A control character (never sent by a browser) skips that pair only.
    assert parse_cookies("session_id=abc\x00def; other=1") == {"other": "1"}
    assert parse_cookies("") == {} and parse_cookies(";;;") == {}
