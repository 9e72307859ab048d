"""What reading and pricing LLM answers costs the client's event loop, per answer.

An aiohttp upstream in a child process on 127.0.0.1 answers OpenAI chat
completions (about 1 KB, 20 KB and 200 KB), an Anthropic message (about 5 KB)
and an OpenAI SSE stream (40 chunks, usage in the last one). Each answer kind
goes through bare aiohttp, through ``sw.session()`` on a route of
``Policy.for_llm(llm=False)`` and of ``Policy.for_llm()`` (priced), in
interleaved rounds. Reported: the client's CPU per answer (``time.process_time``
over a batch of 16 concurrent callers: on one event loop, that is its loop
time), medians over rounds, and what pricing adds (priced minus ``llm=False``,
median of per-round pairs). A second table times the accounting alone, in
process: ``usage_from_json`` (decoding and reading the usage) and
``costs.account`` (pricing and adding up), per answer.

    python benchmarks/llm_costs.py [--rounds 9] [--requests 400] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import attrs

import seawall
from seawall import costs

SERVER = """
import sys, json
from aiohttp import web
bodies = json.loads(sys.stdin.read())
async def answer(request):
    name = request.match_info["name"]
    if name == "sse":
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for line in bodies["sse"]:
            await resp.write(line.encode())
        await resp.write_eof()
        return resp
    return web.Response(body=bodies[name].encode(), content_type="application/json")
app = web.Application()
app.router.add_post("/{name}", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *_: print("up", flush=True))
"""

_WORDS = "The quick brown fox jumps over the lazy dog. "


def _text(size: int) -> str:
    return (_WORDS * (size // len(_WORDS) + 1))[:size]


def openai_answer(size: int) -> bytes:
    """A chat completion of about ``size`` bytes (its content makes up the size)."""
    usage = {
        "prompt_tokens": 1117,
        "completion_tokens": 46 + size // 4,
        "total_tokens": 1163 + size // 4,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    message = {"role": "assistant", "content": _text(max(0, size - 760)), "refusal": None}
    return json.dumps(
        {
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": 1741569952,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "message": message | {"annotations": []},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_fc9f1d7035",
        }
    ).encode()


def anthropic_answer(size: int) -> bytes:
    """A message of about ``size`` bytes."""
    return json.dumps(
        {
            "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": _text(max(0, size - 420))}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 2095,
                "output_tokens": 503,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "service_tier": "standard",
            },
        }
    ).encode()


def openai_stream(chunks: int) -> list[str]:
    """An SSE stream of ``chunks`` deltas, then the usage chunk and ``[DONE]``."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}
    lines = []
    for number in range(chunks):
        delta = {"index": 0, "delta": {"content": f"word{number} "}, "finish_reason": None}
        lines.append(f"data: {json.dumps(base | {'choices': [delta]})}\n\n")
    usage = {"prompt_tokens": 900, "completion_tokens": chunks, "total_tokens": 900 + chunks}
    lines.append(f"data: {json.dumps(base | {'choices': [], 'usage': usage})}\n\n")
    lines.append("data: [DONE]\n\n")
    return lines


def answers() -> dict[str, Any]:
    return {
        "openai-1k": openai_answer(1_000).decode(),
        "openai-20k": openai_answer(20_000).decode(),
        "openai-200k": openai_answer(200_000).decode(),
        "anthropic-5k": anthropic_answer(5_000).decode(),
        "sse": openai_stream(40),
    }


def _sessions() -> dict[str, Callable[[], aiohttp.ClientSession]]:
    route = "127.0.0.1"
    plain = seawall.Seawall(routes={route: seawall.Policy.for_llm(llm=False)}, entrypoints=False)
    priced = seawall.Seawall(routes={route: seawall.Policy.for_llm()}, entrypoints=False)
    found: dict[str, Callable[[], aiohttp.ClientSession]] = {
        "bare aiohttp": aiohttp.ClientSession,
        "seawall llm=False": plain.session,
        "seawall priced": priced.session,
    }
    if "costs" in attrs.fields_dict(seawall.Policy):  # not before the switch came
        unpriced = seawall.Policy.for_llm(costs=False)
        found["seawall costs=False"] = seawall.Seawall(
            routes={route: unpriced}, entrypoints=False
        ).session
    return found


async def _batch(session: aiohttp.ClientSession, url: str, total: int) -> float:
    """Client CPU seconds per answer over ``total`` answers, 16 callers at a time."""
    gate = asyncio.Semaphore(16)

    async def one() -> None:
        async with gate, session.post(url, json={"model": "gpt-4o", "messages": []}) as resp:
            async for _chunk in resp.content.iter_any():
                pass

    start = time.process_time()
    await asyncio.gather(*(one() for _ in range(total)))
    return (time.process_time() - start) / total


async def measure(port: int, rounds: int, requests: int) -> dict[str, dict[str, list[float]]]:
    made = _sessions()
    found: dict[str, dict[str, list[float]]] = {}
    for kind in answers():
        url = f"http://127.0.0.1:{port}/{kind}"
        found[kind] = {name: [] for name in made}
        for number in range(rounds + 1):  # round 0 warms up and is dropped
            order = list(made) if number % 2 else list(reversed(made))
            for name in order:
                async with made[name]() as session:
                    cpu = await _batch(session, url, requests)
                if number:
                    found[kind][name].append(cpu)
    return found


def in_process(repeat: int) -> dict[str, tuple[float, float]]:
    """µs per answer of ``usage_from_json`` and of ``costs.account``, medians of 5 runs."""
    sw = seawall.Seawall(entrypoints=False)
    tracker = costs.CostTracker()
    out = {}
    for kind, body in answers().items():
        if kind == "sse":
            continue
        raw = body.encode()
        usage = costs.usage_from_json(raw)
        assert usage is not None, kind
        costs.account(tracker, sw.hooks, "k", "u", usage)
        parse, account = [], []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeat):
                costs.usage_from_json(raw)
            middle = time.perf_counter()
            for _ in range(repeat):
                costs.account(tracker, sw.hooks, "k", "u", usage)
            parse.append((middle - start) / repeat)
            account.append((time.perf_counter() - middle) / repeat)
        out[kind] = (statistics.median(parse) * 1e6, statistics.median(account) * 1e6)
    return out


def stream_reading(repeat: int) -> dict[str, float]:
    """µs per stream of ``StreamUsage`` fed an OpenAI stream line by line (as reads
    come), 40 and 400 chunks, medians of 5 runs: the loop time a stream's usage costs."""
    out = {}
    for chunks in (40, 400):
        lines = [line.encode() for line in openai_stream(chunks)]
        runs = []
        for _ in range(5):
            done: list[Any] = []
            start = time.perf_counter()
            for _ in range(max(repeat // chunks, 2)):
                reader = costs.StreamUsage(done.append)
                for line in lines:
                    reader(line)
                reader(b"")
            runs.append((time.perf_counter() - start) / max(repeat // chunks, 2))
            assert done
            assert done[-1].output_tokens == chunks
        out[f"sse-{chunks}"] = statistics.median(runs) * 1e6
    return out


def report(
    found: dict[str, dict[str, list[float]]],
    pieces: dict[str, tuple[float, float]],
    streams: dict[str, float],
) -> str:
    lines = [
        "answer        bare µs  llm=False µs  priced µs  costs=False µs"
        "  priced - llm=False  priced - costs=False (µs, per-round pairs)"
    ]
    for kind, by_name in found.items():
        med = {name: statistics.median(values) * 1e6 for name, values in by_name.items()}

        def added(other: str, by_name: dict[str, list[float]] = by_name) -> str:
            if other not in by_name:
                return "-"
            pairs = zip(by_name["seawall priced"], by_name[other], strict=True)
            return f"{statistics.median(p - q for p, q in pairs) * 1e6:.0f}"

        off = med.get("seawall costs=False")
        lines.append(
            f"{kind:<12}{med['bare aiohttp']:>9.0f}{med['seawall llm=False']:>14.0f}"
            f"{med['seawall priced']:>11.0f}{'-' if off is None else f'{off:.0f}':>16}"
            f"{added('seawall llm=False'):>20}{added('seawall costs=False'):>22}"
        )
    lines.append("")
    lines.append("in process    usage_from_json µs  costs.account µs")
    for kind, (parse, account) in pieces.items():
        lines.append(f"{kind:<12}{parse:>20.1f}{account:>18.1f}")
    lines.append("")
    lines.append("in process    StreamUsage µs per stream")
    for kind, spent in streams.items():
        lines.append(f"{kind:<12}{spent:>20.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--port", type=int, default=0, help="0: a free one")
    parser.add_argument("--quick", action="store_true", help="a tiny run that proves it works")
    args = parser.parse_args(argv)
    rounds, requests, repeat = (1, 20, 20) if args.quick else (args.rounds, args.requests, 2000)
    if not args.port:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            args.port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    try:
        assert server.stdin is not None
        assert server.stdout is not None
        server.stdin.write(json.dumps(answers()))
        server.stdin.close()
        server.stdout.readline()  # "up"
        found = asyncio.run(measure(args.port, rounds, requests))
    finally:
        server.terminate()
        server.wait(5)
    print(report(found, in_process(repeat), stream_reading(repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
