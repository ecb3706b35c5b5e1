#!/usr/bin/env python3
"""AiAgent end to end: a real cap-agent serving examples/support-agent (on a SQLite file)
against the scripted model of the tests (tests/integration/llm_server.py), asked the same
question with 0, 1 and 4 FAQ tool calls before the answer (1, 2 and 5 model calls).

    python3 bench/ai_agent_steps.py [--requests 100]

Prints the median and 90th percentile request latency for each, the cost of each extra
model call (the slope), and the scripted model's own round trip measured directly from
this script with a request of the same size: the slope minus that round trip is what the
agent adds per step (its HTTP client, the JSON it builds and reads, the tool rule set).
Timings are reported, never asserted.
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from agent_harness import Agent  # noqa: E402
from llm_server import LlmServer  # noqa: E402
from test_llm_example import example_files  # noqa: E402


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def timed_requests(agent, llm, tool_steps, n):
    conn = http.client.HTTPConnection("127.0.0.1", agent.web_port, timeout=30)
    out = []
    for _ in range(n):
        for _ in range(tool_steps):
            llm.tool_call(("faq", {"topic": "returns"}))
        llm.answer("You can return it within 30 days; the label is free.")
        start = time.perf_counter()
        conn.request("GET", "/ask?q=Can+I+return+my+shoes%3F")
        r = conn.getresponse()
        body = r.read()
        out.append(time.perf_counter() - start)
        if r.status != 200:
            raise SystemExit(f"unexpected answer {r.status}: {body[:300]!r}")
    conn.close()
    return out


def direct_round_trips(llm, body, n):
    conn = http.client.HTTPConnection("127.0.0.1", llm.port, timeout=30)
    out = []
    for _ in range(n):
        llm.answer("You can return it within 30 days; the label is free.")
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        conn.getresponse().read()
        out.append(time.perf_counter() - start)
    conn.close()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="cap-bench-ai-")
    llm = LlmServer()
    agent = Agent(env={"CAP_DB_URL": "sqlite://" + os.path.join(folder, "shop.sqlite")}).start()
    try:
        if agent.mgmt("PUT", "/v1/vault", {"openai": {"api_key": "sk-bench"}}).status != 200:
            raise SystemExit("cannot set the vault")
        agent.deploy_ok(example_files(llm.url))
        timed_requests(agent, llm, 1, 10)  # warm up: connections, the FAQ file
        rows = []
        for steps in (0, 1, 4):
            t = timed_requests(agent, llm, steps, args.requests)
            rows.append((steps + 1, statistics.median(t), percentile(t, 0.9)))
        # A model request of the size the agent sends at the second step.
        body = llm.requests[-1]["body"]
        direct = statistics.median(direct_round_trips(llm, body, args.requests))
    finally:
        agent.cleanup()
        llm.stop()
        shutil.rmtree(folder, ignore_errors=True)

    print(f"AiAgent on examples/support-agent, {args.requests} requests each, scripted model")
    print(f"{'model calls':>12} {'median ms':>10} {'p90 ms':>8}")
    for calls, med, p90 in rows:
        print(f"{calls:>12} {med * 1000:>10.2f} {p90 * 1000:>8.2f}")
    slope = (rows[-1][1] - rows[0][1]) / (rows[-1][0] - rows[0][0])
    print(f"each extra model call (median slope):      {slope * 1000:.2f} ms")
    print(f"the scripted model's own round trip:        {direct * 1000:.2f} ms "
          f"({len(body)} byte request)")
    print(f"what the agent adds per step (difference): {(slope - direct) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
