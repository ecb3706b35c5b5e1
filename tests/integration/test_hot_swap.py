"""Atomic activation: two configurations swapped 100 times while several clients send
requests without pause. Every response must be whole and from exactly one configuration:
no failure, no mix."""

import http.client
import threading
import unittest

from agent_harness import AgentTestCase, configuration, make_zip, ruleset


def swap_config(tag):
    """The answer is built by three rules in sequence, and the body repeats the tag the
    rules set at different steps, so a response mixing two configurations shows."""
    return configuration(f"swap-{tag}", [ruleset("main", "first", {
        "first": {"rule": "SetVariable", "with": {"name": "A", "value": tag},
                  "then": {"next": ["second"]}},
        "second": {"rule": "SetVariable", "with": {"name": "B", "value": "${A}-" + tag},
                   "then": {"next": ["respond"]}},
        "respond": {"rule": "HttpRespond", "with": {
            "body": "${B}-" + tag, "content_type": "text/plain",
            "headers": {"X-Config": tag}}},
    })], globals={"G": tag})


class HotSwapTest(AgentTestCase):

    def test_100_swaps_under_load(self):
        zips = {tag: make_zip(swap_config(tag)) for tag in ("A", "B")}
        expected = {"A": b"A-A-A", "B": b"B-B-B"}
        first = self.agent.mgmt("PUT", "/v1/configuration", zips["A"])
        self.assertEqual(first.status, 200, first)

        stop = threading.Event()
        problems = []
        counts = {"A": 0, "B": 0}
        lock = threading.Lock()

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", self.agent.web_port, timeout=30)
            try:
                while not stop.is_set():
                    conn.request("GET", "/swap")
                    r = conn.getresponse()
                    body = r.read()
                    tag = r.getheader("X-Config")
                    with lock:
                        if r.status != 200 or tag not in expected or body != expected[tag]:
                            problems.append((r.status, tag, body[:100]))
                        else:
                            counts[tag] += 1
            except Exception as e:  # a failed connection is a failure too
                with lock:
                    problems.append(("exception", repr(e)))
            finally:
                conn.close()

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(100):
                tag = "B" if i % 2 == 0 else "A"
                r = self.agent.mgmt("PUT", "/v1/configuration", zips[tag])
                self.assertEqual(r.status, 200, r)
                # The next request after an answered deploy gets the new configuration.
                r = self.agent.web("GET", "/swap")
                self.assertEqual(r.headers.get("x-config"), tag)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertEqual(problems, [])
        self.assertGreater(counts["A"], 0)
        self.assertGreater(counts["B"], 0)
        history = self.agent.mgmt("GET", "/v1/configuration/history").json()["configurations"]
        self.assertEqual(len(history), 10)


if __name__ == "__main__":
    unittest.main()
