"""SIGTERM: the agent stops accepting, finishes the requests in flight, exits 0."""

import http.client
import socket
import threading
import time
import unittest

from agent_harness import Agent, Origin, configuration, ruleset


class DrainTest(unittest.TestCase):

    def setUp(self):
        self.origin = Origin()
        self.addCleanup(self.origin.close)
        self.agent = Agent().start()
        self.addCleanup(self.agent.cleanup)

    def slow_config(self):
        # Each request waits 2 s on the origin: a slow rule set, run on the wait pool.
        return configuration("slow", [ruleset("main", "call", {
            "call": {"rule": "HttpClient", "with": {"url": self.origin.url + "/slow?ms=2000",
                                                    "output": "R"},
                     "then": {"ok": ["ok"], "error": ["err"], "timeout": ["err"]}},
            "ok": {"rule": "HttpRespond", "with": {"body": "finished: ${R.body}"}},
            "err": {"rule": "HttpRespond", "with": {"status": 502, "body": "failed"}},
        })])

    def test_sigterm_finishes_requests_in_flight(self):
        self.agent.deploy_ok(self.slow_config())
        result = {}

        def slow_request():
            try:
                r = self.agent.web("GET", "/slow", timeout=30)
                result["reply"] = (r.status, r.body)
            except Exception as e:
                result["error"] = repr(e)

        t = threading.Thread(target=slow_request)
        t.start()
        self.assertTrue(self.origin.slow_started.wait(10), "the slow request never reached the origin")
        self.agent.proc.terminate()  # SIGTERM while the request waits on the origin
        # New connections are refused once the agent stops accepting.
        deadline = time.monotonic() + 5
        refused = False
        while time.monotonic() < deadline and not refused:
            try:
                socket.create_connection(("127.0.0.1", self.agent.web_port), timeout=1).close()
                time.sleep(0.05)
            except OSError:
                refused = True
        self.assertTrue(refused, "the agent still accepts connections after SIGTERM")
        t.join(30)
        self.assertEqual(result.get("reply"), (200, b"finished: slow done"), result)
        self.assertEqual(self.agent.wait_exit(30), 0)
        self.assertIn("SIGTERM received", self.agent.log_text())
        self.assertIn('"stopped"', self.agent.log_text())

    def test_idle_agent_exits_0_at_once(self):
        started = time.monotonic()
        self.assertEqual(self.agent.stop(), 0)
        self.assertLess(time.monotonic() - started, 10)


class GoldMasterTest(unittest.TestCase):

    def test_a_gold_master_that_cannot_be_read_stops_the_agent(self):
        agent = Agent(env={"S3_GOLD_MASTER": "file:///nowhere/snapshot.zip"})
        self.addCleanup(agent.cleanup)
        agent.start(wait=False)
        self.assertNotEqual(agent.wait_exit(20), 0)
        self.assertIn("gold master file:///nowhere/snapshot.zip: cannot restore, stopping: "
                      "missing object", agent.log_text())
        self.assertNotIn("serving:", agent.log_text())


if __name__ == "__main__":
    unittest.main()
