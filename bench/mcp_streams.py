#!/usr/bin/env python3
"""MCP sessions and event streams on one agent: the memory N sessions and N open GET event
streams cost, and how long after a deploy that changes the tool list every stream has heard
notifications/tools/list_changed.

    python3 bench/mcp_streams.py [--sessions 1000]

Prints the agent's resident memory (VmRSS) at start, with the sessions, with the streams,
and the time from the deploy request to the last stream's notice (the deploy itself
included). Needs build/release/cap-agent (or CAP_AGENT). Figures are reported, never
asserted.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from agent_harness import Agent, process_memory_kb  # noqa: E402
from test_mcp import INIT, TOKEN, EventStream, tools_config  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=1000)
    n = ap.parse_args().sessions
    agent = Agent().start()
    streams = []
    try:
        agent.mgmt("PUT", "/v1/vault", {"mcp": {"token": TOKEN}})
        settings = {"max_sessions": n + 10}
        agent.deploy_ok(tools_config(mcp=settings))
        headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream"}
        start = process_memory_kb(agent.proc.pid, "VmRSS")
        ids = [agent.web("POST", "/mcp", json.dumps(INIT).encode(), headers).headers["mcp-session-id"]
               for _ in range(n)]
        with_sessions = process_memory_kb(agent.proc.pid, "VmRSS")
        for sid in ids:
            es = EventStream(agent.web_port, "GET", "/mcp", {"Authorization": headers["Authorization"],
                                                             "Accept": "text/event-stream",
                                                             "Mcp-Session-Id": sid})
            if es.status != 200:
                raise SystemExit(f"GET stream refused: {es.status}")
            streams.append(es)
        time.sleep(1)
        with_streams = process_memory_kb(agent.proc.pid, "VmRSS")
        t0 = time.monotonic()
        agent.deploy_ok(tools_config(tools=["faq"], mcp=settings))
        for es in streams:
            es.until(lambda e: e[0] == "message")
        told = time.monotonic() - t0
        print(f"sessions: {n}")
        print(f"VmRSS kB: start {start}, with the sessions {with_sessions} "
              f"(+{(with_sessions - start) / n:.2f} per session), with an event stream each "
              f"{with_streams} (+{(with_streams - with_sessions) / n:.2f} per stream)")
        print(f"deploy to the last stream's tools/list_changed: {told * 1000:.0f} ms")
    finally:
        for es in streams:
            es.close()
        agent.cleanup()


if __name__ == "__main__":
    main()
