"""Route patterns and ``Policy.key`` refuse the invisible characters too, naming each one.

Zero-width characters (U+200B-U+200D, U+2060, U+FEFF), the bidi marks (U+200E,
U+200F, U+061C), the line and paragraph separators (U+2028, U+2029) and the
no-break space (U+00A0): no host holds one, so a pattern holding one never
matched and its policy was silently never applied; a key holding one reads as
another. Each is refused in a file, a dict, ``Seawall(routes=...)`` and
``Policy(key=...)``, named by code point and Unicode name, never shown raw
(docs/architecture.md, "Route patterns and keys refuse the invisible
characters"). The zero-width non-joiner and joiner are taken between two non-ASCII
letters, marks or symbols (Persian and Indic words, emoji sequences, IDNA2008's
CONTEXTJ). The control and bidi controls are in ``test_route_patterns.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seawall
from seawall import Policy
from seawall._patterns import route_unseen
from seawall.cli.terminal import terminal_safe
from seawall.config import ConfigError, load_config, policy_from_dict
from tests.test_route_patterns import (
    refused_in_dicts,
    refused_in_toml,
    refused_key_in_file,
    refused_keys,
)

NOTHING = "(it shows as nothing: pasted from a web page or a document?)"
SPACE = "(it shows as a space and is not one: pasted from a web page or a document?)"
LINE = "(it breaks the line, or shows as nothing: pasted from a document?)"

#: Each character, how a message names it, and the likeliest way it came in.
INVISIBLE = [
    pytest.param("\u200b", "the zero-width character", NOTHING, id="U+200B"),
    pytest.param("\u200c", "the zero-width character", NOTHING, id="U+200C"),
    pytest.param("\u200d", "the zero-width character", NOTHING, id="U+200D"),
    pytest.param("\u2060", "the zero-width character", NOTHING, id="U+2060"),
    pytest.param("\ufeff", "the zero-width character", NOTHING, id="U+FEFF"),
    pytest.param("\u200e", "the bidi mark", NOTHING, id="U+200E"),
    pytest.param("\u200f", "the bidi mark", NOTHING, id="U+200F"),
    pytest.param("\u061c", "the bidi mark", NOTHING, id="U+061C"),
    pytest.param("\u2028", "the separator", LINE, id="U+2028"),
    pytest.param("\u2029", "the separator", LINE, id="U+2029"),
    pytest.param("\xa0", "the no-break space", SPACE, id="U+00A0"),
]

#: Refused wherever they stand (an independent list, not the code's).
ALWAYS = "\u200b\u2060\ufeff\u200e\u200f\u061c\u2028\u2029\xa0"
#: Refused but between two non-ASCII letters, marks or symbols.
JOINERS = "\u200c\u200d"

#: "mi-khaham" (Persian) and "ksha" (Devanagari, a half form): written with a joiner.
PERSIAN = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
DEVANAGARI = "\u0915\u094d\u200d\u0937"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # an emoji sequence


def named(char: str, kind: str) -> str:
    return f"{kind} U+{ord(char):04X} ({unicodedata.name(char)})"


def written(text: str, char: str) -> str:
    """What a message says to write for ``text``: the character dropped, U+00A0 a space."""
    return text.replace(char, " " if char == "\xa0" else "")


def assert_refused_route(message: str, char: str, kind: str, hint: str) -> None:
    pattern = f"api.exa{char}mple.com"
    assert char not in message  # named, never itself
    assert f"route pattern {pattern!r} would never match a host: " in message
    assert f"it holds {named(char, kind)} at index 7 {hint}" in message
    assert message.endswith(f"write {written(pattern, char)!r}")


@pytest.mark.parametrize(("char", "kind", "hint"), INVISIBLE)
def test_an_invisible_character_in_a_toml_route_pattern_is_refused(
    tmp_path: Path, char: str, kind: str, hint: str
) -> None:
    """`[routes."api.exa\\u200bmple.com"]`: a ConfigError at the route, naming the character."""
    message, text = refused_in_toml(tmp_path, f"api.exa{char}mple.com")
    assert_refused_route(message, char, kind, hint)
    assert char not in text


@pytest.mark.parametrize(("char", "kind", "hint"), INVISIBLE)
def test_an_invisible_character_in_a_dict_route_pattern_is_refused(
    char: str, kind: str, hint: str
) -> None:
    """`load_config`, `Seawall.from_config` and `Seawall(routes=...)` refuse it alike."""
    pattern = f"api.exa{char}mple.com"
    for message in refused_in_dicts(pattern):
        assert_refused_route(message, char, kind, hint)
    with pytest.raises(ValueError, match=r"^Seawall\(routes=\.\.\.\): route pattern ") as raised:
        seawall.Seawall(routes={"ok.example": Policy(), pattern: Policy()}, entrypoints=False)
    assert_refused_route(str(raised.value), char, kind, hint)


@pytest.mark.parametrize(("char", "kind", "hint"), INVISIBLE)
def test_an_invisible_character_in_policy_key_is_refused(
    tmp_path: Path, char: str, kind: str, hint: str
) -> None:
    """`Policy(key=)`, `for_llm`, `evolve`, `[default].key`, a route's key and a dict's."""
    key = f"pay{char}ments"
    expected = f"it holds {named(char, kind)} at index 3 {hint}; write {written(key, char)!r}"
    for message in refused_keys(key):
        assert char not in message
        assert message.endswith(expected)
    problems = refused_key_in_file(tmp_path, key)
    assert all(m.endswith(expected) and char not in m for m in problems)
    with pytest.raises(ConfigError) as loaded:
        policy_from_dict({"key": key}, where="payments")
    (problem,) = loaded.value.problems
    assert (problem.location, problem.message.endswith(expected)) == ("payments.key", True)


@pytest.mark.parametrize("pattern", ["\x1c", "\x85", "\x1c\x1d", "\xa0", "\u2028", " \x85 "])
def test_a_pattern_of_whitespace_characters_only_is_named_as_such(pattern: str) -> None:
    """`"\\x1c"`, `"\\x85"` (`str.strip` removes them): named, not "a route needs a host
    pattern", which a blank pattern still gets."""
    with pytest.raises(ConfigError) as info:
        load_config({"routes": {pattern: {}}})
    (problem,) = info.value.problems
    first = pattern.strip(" ")[0]
    assert f"U+{ord(first):04X}" in problem.message
    assert first not in problem.message
    assert problem.message.endswith("write the host alone, e.g. 'api.example.com'")
    assert "needs a host pattern" not in problem.message
    with pytest.raises(ConfigError, match="a route needs a host pattern"):  # as before
        load_config({"routes": {" ": {}}})


@pytest.mark.parametrize(
    "text",
    [
        "\u200capi.example.com",  # at an edge
        "api.example.com\u200d",
        "api.exa\u200cmple.com",  # between ASCII letters
        "\u0645\u06cc.\u200c\u062e",  # after a dot
        "\u0645\u06cc\u200c\u200c\u062e",  # beside another joiner
        "b\u00fc\u200dcher.example",  # beside an ASCII letter
    ],
)
def test_a_stray_joiner_is_refused(text: str) -> None:
    """A zero-width (non-)joiner that joins nothing: refused in a pattern and a key."""
    assert route_unseen(text) is not None
    with pytest.raises(ValueError, match=r"the zero-width character U\+200[CD]"):
        Policy(key=text)


def test_joiners_inside_words_of_other_scripts_are_taken() -> None:
    """Persian and Devanagari words, an emoji sequence, an IDN host with a joiner: taken.

    IDNA2008 (RFC 5892, CONTEXTJ) allows U+200C/U+200D in a host label there, and
    keys are written in any script. (Passes on the old code too: it pins what stays.)
    """
    for text in (PERSIAN, DEVANAGARI, FAMILY, f"{PERSIAN}.example", "bücher.example"):
        assert route_unseen(text) is None
        assert Policy(key=text).key == text
    _, routes = load_config({"routes": {f"{PERSIAN}.example": {}}, "default": {"key": FAMILY}})
    assert list(routes) == [f"{PERSIAN}.example"]


#: Ordinary host and key text: letters (any script) and digits, dots and hyphens.
ORDINARY = st.text(
    st.one_of(
        st.characters(categories=("Lu", "Ll", "Lo", "Nd")),
        st.sampled_from(".-"),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None, database=None)
@given(ORDINARY, st.sampled_from(ALWAYS + JOINERS), st.integers(min_value=0))
def test_any_refused_character_is_refused_and_ordinary_text_is_taken(
    text: str, char: str, where: int
) -> None:
    """Ordinary text (IDN letters too) passes the pattern check and is a key; with a
    refused character inserted anywhere (a joiner beside an ASCII character, a dot,
    a digit or an edge), it is refused, the character named and never shown."""
    assert route_unseen(text) is None
    assert Policy(key=text).key == text
    at = where % (len(text) + 1)
    if char in JOINERS:  # a joiner joins nothing beside ASCII, a digit or an edge
        text = text[:at] + "." + text[at:]
    mixed = text[:at] + char + text[at:]
    why = route_unseen(mixed)
    assert why is not None
    assert f"U+{ord(char):04X} ({unicodedata.name(char)})" in why
    assert char not in why
    with pytest.raises(ConfigError) as info:
        load_config({"routes": {mixed: {}}})
    assert char not in str(info.value)
    with pytest.raises(ValueError, match=r"^Policy\.key must be a name without control, bidi or"):
        Policy(key=mixed)


def test_terminal_safe_escapes_separators_and_the_no_break_space() -> None:
    """U+2028, U+2029 and U+00A0 are written as `repr` writes them; space, tab, newline,
    letters of any script are kept."""
    shown = terminal_safe("a\u2028b\u2029c\xa0d e\tf\ngü")
    assert shown == "a\\u2028b\\u2029c\\xa0d e\tf\ngü"


def test_the_command_never_writes_a_separator_raw(tmp_path: Path) -> None:
    """`seawall check` and `classify --config` in a real process, on a file whose name holds
    U+2028 and whose pattern and key hold U+2029: refused, and none reaches the terminal."""
    path = tmp_path / "pay\u2028ments.toml"
    path.write_text(
        '[default]\nkey = "k\\u2028x"\n[routes."api.example.com\\u2029"]\n', encoding="utf-8"
    )
    missing = tmp_path / "no\u2029such.toml"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    runs = [
        ["check", str(path)],
        ["check", str(missing)],
        ["classify", "--status", "503", "--config", str(path)],
    ]
    outputs = []
    for argv in runs:
        done = subprocess.run(
            [sys.executable, "-m", "seawall", *argv],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=False,
            env=env,
        )
        for raw in ("\u2028", "\u2029"):  # the file's name too, echoed before any check
            assert raw not in done.stdout
            assert raw not in done.stderr
        assert done.returncode != 0, done.stdout
        outputs.append(done)
    check = outputs[0]
    assert "pay\\u2028ments.toml" in check.stdout
    assert "the separator U+2029 (PARAGRAPH SEPARATOR) at index 15" in check.stdout
    assert "the separator U+2028 (LINE SEPARATOR) at index 1" in check.stdout
