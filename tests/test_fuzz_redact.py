"""Property-based tests of redaction (``seawall.redact``), a parser of free text.

Exception messages are anyone's text: redaction must read any of it in time
linear in its length and mask every secret value it recognises.
"""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from seawall.redact import _QUOTED_PAIR, MASK, redact_head, redact_text

# No timing deadline (a loaded 2-core machine), no example database in the tree.
FUZZ = settings(max_examples=200, deadline=None, database=None)

#: The quoted-pair pattern before it was made linear: a backslash in a value could
#: match two ways, so an unterminated value cost 2**backslashes. The reference for
#: what the pattern matches, on inputs short enough for it.
_EXPONENTIAL_QUOTED_PAIR = re.compile(
    r"""(?P<q>['"]?)(?P<name>[A-Za-z0-9_.-]{1,64})(?P=q)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<v>['"])(?P<value>(?:\\.|(?!(?P=v)).)*)(?P=v)"""
)

#: The characters the quoted-pair pattern turns on.
_TRICKY = st.text(alphabet="k_=: \"'\\\na", max_size=14)


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [m.span() for m in pattern.finditer(text)]


@FUZZ
@given(_TRICKY)
@example('k="\\"')
@example('k="a\\"b\\"')
@example("k='\n'")
def test_quoted_pairs_are_the_ones_the_old_pattern_found(text: str) -> None:
    """The linear pattern finds the very pairs the exponential one found."""
    assert _spans(_QUOTED_PAIR, text) == _spans(_EXPONENTIAL_QUOTED_PAIR, text)


@FUZZ
@given(
    st.sampled_from(["api_key", "token", "x-api-key", "password"]),
    st.sampled_from(['"', "'"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60),
    st.booleans(),
)
def test_a_quoted_secret_is_masked_whatever_it_holds(
    name: str, quote: str, secret: str, as_dict: bool
) -> None:
    """A secret written as a quoted, escaped string (as repr and JSON write it), as a
    keyword argument or a dict's item, is masked whole."""
    escaped = secret.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")
    named = f"{quote}{name}{quote}: " if as_dict else f"{name}="
    text = f"failed with {named}{quote}{escaped}{quote} (status 401)"
    assert redact_text(text) == f"failed with {named}{quote}{MASK}{quote} (status 401)"


@FUZZ
@given(
    st.lists(st.sampled_from(["\\", "\\\\", "d0", "x", " ", ":"]), min_size=20, max_size=400),
    st.sampled_from(['file="', "path='", "'dir': '", 'api_key="']),
)
def test_an_unterminated_quoted_value_is_read_in_linear_time(parts: list[str], head: str) -> None:
    """Hundreds of backslashes in a value that never closes: nothing to mask, and an
    answer at all (the exponential pattern would not finish for any of these)."""
    text = "open failed: " + head + "".join(parts) + " (unterminated"
    assert redact_text(text) == text


_FORMS = st.sampled_from(
    [
        'api_key="{}"',
        "{{'x-api-key': '{}'}}",
        "{{'token': \"{}\"}}",
        "Authorization: Bearer {}",
        "header was 'Token {}' - forbidden",
        "x-api-key: {}\nnext",
        "GET https://h.example/x?access_token={}&page=2",
        "https://user:{}@h.example/x",
        "key sk-{} refused",
        "failed: api_key={} (retry)",
    ]
)


@FUZZ
@given(
    _FORMS,
    st.integers(0, 900),
    st.integers(0, 1500),
    st.sampled_from("aZ9_-"),
    st.integers(1, 600),
    st.integers(0, 800),
)
def test_the_head_never_shows_what_redact_text_masks(
    form: str, lead: int, length: int, char: str, limit: int, masked: int
) -> None:
    """A secret ``redact_text`` masks is not shown by ``redact_head`` either, wherever
    the cut falls in it (also when an earlier secret, masked, pulled it towards the
    start); and the head is at most ``limit`` characters."""
    earlier = f"password='{'w' * masked}' " if masked else ""
    text = earlier + "." * lead + form.format("Zq81" + char * length) + " more text"
    shown = redact_head(text, limit)
    assert len(shown) <= limit
    if "Zq8" not in redact_text(text):
        assert "Zq8" not in shown
