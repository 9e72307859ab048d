"""Redaction as plain functions (``seawall.redact``): which names are secret, and the edges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from seawall.redact import (
    HEAD_MARGIN,
    MASK,
    describe_exception,
    exception_repr,
    redact_head,
    redact_headers,
    redact_key,
    redact_text,
    redact_url,
)


@pytest.mark.parametrize("name", ["Cookie", "Set-Cookie", "X-Api-Key", "authorization"])
def test_secret_headers_are_masked_whatever_their_case(name: str) -> None:
    """Named secret headers (also those whose name says nothing of keys) are masked."""
    assert redact_headers({name: "s3cr3t", "Accept": "json"}) == {name: MASK, "Accept": "json"}


def test_headers_given_as_pairs_are_masked_too() -> None:
    """A list of (name, value) pairs works like a mapping."""
    pairs = [("Cookie", "a=b"), ("Accept", "json")]
    assert redact_headers(pairs) == {"Cookie": MASK, "Accept": "json"}


@pytest.mark.parametrize(
    "name",
    # the last six: names an audit found shown (jwt, pwd, sessionid) and their kin
    [
        *("code", "session", "sig", "token", "client_secret"),
        *("jwt", "pwd", "sessionid", "sid", "JSESSIONID", "ticket"),
        # the fourteenth session's: OAuth assertions, one-time codes, signatures by another name
        *("client_assertion", "assertion", "otp", "pin", "sas", "x-hmac", "passcode"),
        *("private_key", "x-bearer"),
    ],
)
def test_secret_query_parameters_are_masked(name: str) -> None:
    """Named secret parameters (also ``code``, ``session``, ``sig``) are masked; others stay."""
    url = redact_url(f"https://h.example/cb?{name}=s3cr3t&page=2")
    assert url is not None
    assert url.query[name] == MASK
    assert url.query["page"] == "2"


@pytest.mark.parametrize("raw", ["https://alice@h.example/x", "https://:pw@h.example/x"])
def test_a_user_or_a_password_alone_is_removed(raw: str) -> None:
    """Credentials in a URL go, even when only the user or only the password is there."""
    assert redact_url(raw) == URL("https://h.example/x")


def test_a_url_without_secrets_is_returned_as_is() -> None:
    """No credentials, no secret parameters: the same URL."""
    assert redact_url("https://h.example/x?page=2&q=a%20b") == URL(
        "https://h.example/x?page=2&q=a%20b"
    )
    assert redact_url(None) is None


@pytest.mark.parametrize("bad", ["http://[::1", 12345])
def test_a_url_that_cannot_be_read_is_masked_whole(bad: object) -> None:
    """Something that is not a URL is not shown at all."""
    assert redact_url(bad) == URL(MASK)  # type: ignore[arg-type]  # the point of the test


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{'cookie': 'abc'}", f"{{'cookie': '{MASK}'}}"),
        ("{'code': 'abc', 'page': '2'}", f"{{'code': '{MASK}', 'page': '2'}}"),
        ('x_api_key="abc" page="2"', f'x_api_key="{MASK}" page="2"'),
        ("failed: api_key=abc (retry)", f"failed: api_key={MASK} (retry)"),
        ("failed: page=abc (retry)", "failed: page=abc (retry)"),
        ("failed: mode=tokenless (retry)", "failed: mode=tokenless (retry)"),
        ("GET /x?code=abc&page=2", f"GET /x?code={MASK}&page=2"),
        ("Cookie: a=b; c=d\nnext", f"Cookie: {MASK}\nnext"),
        ("see https://bob:hunter2@h.example/x", f"see https://{MASK}@h.example/x"),
        ("Authorization: Bearer abc.def", f"Authorization: {MASK}"),
        ("bearer abc.def here", f"bearer {MASK} here"),
        ("", ""),
    ],
)
def test_redact_text_masks_exactly_the_secret_values(text: str, expected: str) -> None:
    """Each form masks the value only, keeps the name and the text around it."""
    assert redact_text(text) == expected


def test_a_key_is_shown_redacted() -> None:
    """Keys with a secret in them are shown masked; plain keys unchanged."""
    assert redact_key("https://h.example/x?key=abc") == f"https://h.example/x?key={MASK}"
    assert redact_key("payments") == "payments"


def test_an_unterminated_quoted_value_full_of_backslashes_is_read_in_linear_time() -> None:
    """A quoted value that never closes, with 40 backslashes (a Windows path cut short,
    its repr doubling them), is read once: the old pattern tried 2**40 ways."""
    text = 'open failed: file="' + "\\" * 40 + " (unterminated"
    assert redact_text(text) == text
    path = "C:\\\\" + "\\\\".join(f"d{i}" for i in range(40))  # as repr() shows it
    text = f"FileNotFoundError('cannot open api_key=\"{path}')"
    assert redact_text(text) == text


def test_a_quoted_secret_with_escapes_is_masked_whole() -> None:
    """Escaped quotes and backslashes inside a quoted secret do not end it early."""
    assert redact_text(r'api_key="a\"b\\" page="2"') == f'api_key="{MASK}" page="2"'
    assert redact_text("{'token': 'ab\\\\'}") == f"{{'token': '{MASK}'}}"


#: Secrets as they appear in messages, ``{}`` standing for the value.
_FORMS = [
    'api_key="{}"',
    "{{'x-api-key': '{}'}}",
    "Authorization: Bearer {}",
    "GET https://h.example/x?access_token={}&page=2",
    "https://user:{}@h.example/x",
    "key sk-{} refused",
    "failed: api_key={} (retry)",
    "header was 'Token {}' - forbidden",
]


@pytest.mark.parametrize("form", _FORMS)
@pytest.mark.parametrize("lead", [0, 250, 299, 300 + HEAD_MARGIN - 20])
def test_a_secret_running_past_the_cut_is_never_half_shown(form: str, lead: int) -> None:
    """``redact_head`` reads only a margin past what it shows; a secret that starts
    before the cut and ends after it is masked all the same."""
    secret = "Zq81" + "x" * 5000
    text = "." * lead + form.format(secret) + " tail"
    shown = redact_head(text, 300)
    assert len(shown) <= 300
    assert "Zq8" not in shown
    assert shown.startswith("." * min(lead, 300))


def test_a_short_text_is_redacted_whole_then_cut() -> None:
    """Within the margin nothing changes: ``redact_text`` then the cut."""
    text = 'api_key="abc" ' + "y" * 400
    assert redact_head(text, 300) == redact_text(text)[:300]


def test_a_huge_exception_message_is_described_from_its_head() -> None:
    """The repr of a 20 MB message is cut before it is escaped and redacted."""
    error = ConnectionError("upstream said: api_key=" + "Zq81" * 5_000_000)
    shown = describe_exception(error, 300)
    assert shown == f"ConnectionError('upstream said: api_key={MASK}"
    assert describe_exception(ConnectionError(111, "refused"), 300) == repr(
        ConnectionError(111, "refused")
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "header was 'Token ghp_Zq81abcdefXYZ0123456789' - forbidden",
            f"header was 'Token {MASK}' - forbidden",
        ),
        (f"token {'0123456789abcdef' * 2}01234567 rejected", f"token {MASK} rejected"),
        ("TOKEN Zq81abcdefXYZ01234 x", f"TOKEN {MASK} x"),
    ],
)
def test_the_token_auth_scheme_is_masked(text: str, expected: str) -> None:
    """``Token <credential>`` (GitHub's, Django REST framework's) is masked like ``Bearer``."""
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "token bucket empty; retry later",
        "token bucket_capacity_exceeded",
        "the token 12345 is too short",
        "a token was refused",
        "Tokens used: 1234567890123456789",
    ],
)
def test_the_word_token_in_prose_is_left_alone(text: str) -> None:
    """After ``token`` only a run of 16 or more key-like characters with a digit is a
    credential: "token bucket" and counts stay readable."""
    assert redact_text(text) == text


@pytest.mark.parametrize("form", _FORMS)
@pytest.mark.parametrize("before_cut", [1, 5, 12])
def test_a_secret_cut_short_and_pulled_into_view_is_masked(form: str, before_cut: int) -> None:
    """An earlier secret, masked, pulls the text after it forward: a secret of which the
    cut left only a few characters (fewer than its pattern wants) is then in the part
    shown, and must be masked all the same."""
    earlier = "password='" + "w" * 300 + "' "
    head = form.split("{}")[0]
    lead = 300 + HEAD_MARGIN - before_cut - len(earlier) - len(head)
    text = earlier + "." * lead + form.format("Zq81abcdefXYZ0123456789" * 20)
    assert "Zq8" not in redact_head(text, 300)


class _OwnRepr(Exception):
    def __repr__(self) -> str:
        return "<own>"


@given(
    st.lists(
        st.one_of(st.text(max_size=30), st.binary(max_size=30), st.integers(), st.none()),
        max_size=4,
    ),
    st.integers(0, 25),
)
def test_a_cut_repr_is_the_repr_of_the_exception_made_of_the_cut_arguments(
    args: list[object], cut: int
) -> None:
    """``exception_repr(exc, cut)`` with the built-in ``repr``: what ``repr`` gives for
    the same exception made of its text and bytes arguments cut to ``cut`` (one
    argument or several, as ``BaseException.__repr__`` writes each); other arguments
    and an exception with a ``__repr__`` of its own as they are."""
    short = [a[:cut] if isinstance(a, str | bytes) else a for a in args]
    for kind in (ValueError, OSError, KeyError):
        assert exception_repr(kind(*args), cut) == repr(kind(*short))
        assert exception_repr(kind(*args)) == repr(kind(*args))
    assert exception_repr(_OwnRepr(*args), cut) == "<own>"
