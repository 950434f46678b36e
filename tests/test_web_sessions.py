"""Pure pieces of the web edge: signed session cookies, the session secret, and SVG charts."""

from __future__ import annotations

from runapi.web.charts import bar_chart, column_chart
from runapi.web.sessions import SESSION_MAX_AGE_S, SessionCodec, session_secret

SECRET = b"k" * 32


def test_a_cookie_round_trips_and_resists_tampering() -> None:
    codec = SessionCodec(SECRET, "customer-dashboard")
    cookie = codec.dumps({"account": "acct_1", "csrf": "t"}, now=1000)
    assert codec.loads(cookie, now=1001) == {"account": "acct_1", "csrf": "t", "iat": 1000}
    payload, _, signature = cookie.partition(".")
    assert codec.loads(payload + "." + signature[::-1], now=1001) is None
    assert codec.loads(payload[:-1] + "A" + "." + signature, now=1001) is None
    for broken in ("", "no-dot", ".", "a.b", None):
        assert codec.loads(broken) is None


def test_cookies_expire_and_do_not_cross_purposes_or_secrets() -> None:
    codec = SessionCodec(SECRET, "customer-dashboard")
    cookie = codec.dumps({"account": "acct_1"}, now=1000)
    assert codec.loads(cookie, now=1000 + SESSION_MAX_AGE_S) is not None
    assert codec.loads(cookie, now=1001 + SESSION_MAX_AGE_S) is None
    assert codec.loads(cookie, now=999) is None  # issued in the future
    assert SessionCodec(SECRET, "admin-dashboard").loads(cookie, now=1001) is None
    assert SessionCodec(b"x" * 32, "customer-dashboard").loads(cookie, now=1001) is None


def test_session_secret_is_configured_derived_or_random() -> None:
    assert session_secret({"RUNAPI_SESSION_SECRET": "s"}, "admin") == session_secret({"RUNAPI_SESSION_SECRET": "s"}, "")
    assert session_secret({}, "admin") == session_secret({}, "admin") != session_secret({}, "other")
    assert session_secret({}, "") != session_secret({}, "")


def test_charts_escape_labels_and_scale_bars() -> None:
    svg = str(column_chart([("2026-01-01", 5), ("2026-01-02", 10)], str, "spend <&>"))
    assert "spend &lt;&amp;&gt;" in svg and "<&>" not in svg
    assert svg.count('class="bar"') == 2 and 'height="148.0"' in svg  # the peak fills the plot
    bars = str(bar_chart([('<img src=x onerror="alert(1)">', 3)], str, "per model"))
    assert "<img" not in bars and "&lt;img" in bars
    assert "—" in str(bar_chart([], str, "empty"))
