"""The LLM examples run end to end against the fake provider they start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "hits"),
    [("openai_sdk.py", "called 4 times"), ("anthropic_sdk.py", "called 3 times")],
)
def test_example_runs(script, hits) -> None:
    """The example prints an answer, streamed chunks and costs; the fake saw the retries."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=EXAMPLES.parent,
    )
    assert done.returncode == 0, done.stderr
    assert "answer: Hello from the fake." in done.stdout
    assert "chunk: chunk0" in done.stdout
    assert "calls: 2, cost: $" in done.stdout
    assert hits in done.stdout
