"""``seawall_configure``: set a new ``Seawall`` up, once, when it is built.

A plugin for an SDK whose errors carry only a message: on configure it
teaches seawall that "insufficient credits" means the account's quota is
gone (not worth retrying, escalate), and it keeps the instance so that its
own health check can read ``health()`` later.
"""

from __future__ import annotations

import asyncio
from typing import Any

import seawall


class CreditsSDK:
    """Message patterns for the SDK's errors, and a health probe."""

    def __init__(self) -> None:
        self.seawall: seawall.Seawall | None = None

    @seawall.hookimpl
    def seawall_configure(self, seawall: seawall.Seawall) -> None:
        self.seawall = seawall
        seawall.add_pattern(
            r"insufficient credits|credit balance is too low",
            _QUOTA,
        )

    def healthy(self) -> bool:
        """True unless a breaker of the instance this plugin configured is open."""
        return self.seawall is not None and self.seawall.health()["status"] == "healthy"


_QUOTA = seawall.Classification(
    category=seawall.Category.QUOTA_EXHAUSTED,
    severity=seawall.Severity.HIGH,
    escalate=True,
    reason="the account is out of credits: top it up",
)


async def main() -> dict[str, Any]:
    """A call that fails for lack of credits; return how seawall handled it."""
    calls: list[str] = []

    async def generate(prompt: str) -> str:
        calls.append(prompt)
        raise RuntimeError("402: insufficient credits for this request")

    sdk = CreditsSDK()
    sw = seawall.Seawall(plugins=[sdk], blocked=["seawall.builtin.logging_sink"], entrypoints=False)
    notes: list[str] = []
    try:
        await sw.call(generate, "hello", key="credits-api")
    except RuntimeError as exc:
        notes = list(getattr(exc, "__notes__", []))
        print(f"gave up after {len(calls)} call(s): {exc}")
        for note in notes:
            print(f"  {note}")
    finally:
        await sw.aclose()
    return {"calls": len(calls), "notes": notes, "healthy": sdk.healthy()}


if __name__ == "__main__":
    asyncio.run(main())
