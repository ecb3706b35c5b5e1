"""The console with real agents on loopback ports: status and drift, rolling and parallel
deploys to several agents, a revision that fails on one agent stopping a rolling deploy,
rollback by redeploying an earlier deployment, group deploys, self-registration, and the
agents' logs, traces and metrics through the console."""

import json
import unittest

from agent_harness import Agent, configuration, hello_config, ruleset
from console_harness import ConsoleTestCase


def env_config(greeting_var):
    """Greets with the value of an environment variable, read on the agent at activation."""
    return configuration("envhello", [ruleset("main", "respond", {
        "respond": {"rule": "HttpRespond", "with": {"status": 200, "body": "${GREETING}",
                                                     "content_type": "text/plain"}},
    })], globals={"GREETING": "${env:%s}" % greeting_var})


class Deploy(ConsoleTestCase):
    def setUp(self):
        super().setUp()
        c = self.console
        self.agents = {}
        for i, group in ((1, "blue"), (2, "blue"), (3, "green")):
            a = self.new_agent(env={"CAP_AGENT_NAME": f"a{i}", "CAP_TEST_GREETING": f"env-{i}"})
            c.add_agent(a, f"a{i}", group=group)
            self.agents[f"a{i}"] = a
        c.ok("POST", "/api/v1/repositories", {"name": "shop"})
        c.save("shop", "hello", hello_config("Hello"), "first")
        c.save("shop", "hello", hello_config("Howdy"), "second")

    def greet(self, agent_id):
        return self.agents[agent_id].web("GET", "/hello?name=X").text()

    def test_status_drift_rolling_parallel_and_rollback(self):
        c = self.console
        agents = c.ok("GET", "/api/v1/agents")["agents"]
        self.assertEqual([(a["id"], a["status"]["online"], a["status"]["ready"]) for a in agents],
                         [("a1", True, False), ("a2", True, False), ("a3", True, False)])
        self.assertEqual(agents[0]["status"]["version"], "0.1.0")
        self.assertNotIn("key", agents[0])
        self.assertIsNone(agents[0]["status"]["drift"])

        # Rolling, revision 1, to all three.
        d1 = c.ok("POST", "/api/v1/deployments", {"configuration": "shop/hello", "revision": 1,
                                                  "agents": ["a1", "a2", "a3"], "strategy": "rolling"})
        self.assertTrue(d1["ok"], d1)
        self.assertEqual([r["agent"] for r in d1["results"]], ["a1", "a2", "a3"])
        self.assertTrue(all(r["ok"] and r["configuration_id"] and r["ready_checked"]
                            for r in d1["results"]))
        self.assertEqual({self.greet(a) for a in self.agents}, {"Hello, X!"})
        a1 = c.ok("GET", "/api/v1/agents/a1")
        self.assertEqual(a1["status"]["configuration"]["id"], d1["results"][0]["configuration_id"])
        self.assertIs(a1["status"]["drift"], False)
        self.assertEqual(a1["deployed"]["revision"], 1)

        # Parallel, latest revision (2), by group.
        d2 = c.ok("POST", "/api/v1/deployments", {"configuration": "shop/hello", "group": "blue",
                                                  "strategy": "parallel"})
        self.assertTrue(d2["ok"], d2)
        self.assertEqual(d2["revision"], 2)
        self.assertEqual(sorted(r["agent"] for r in d2["results"]), ["a1", "a2"])
        self.assertEqual([self.greet(a) for a in ("a1", "a2", "a3")],
                         ["Howdy, X!", "Howdy, X!", "Hello, X!"])

        # Someone deploys to a2 behind the console's back: drift.
        self.agents["a2"].deploy_ok(hello_config("Sneaky"))
        st = c.ok("GET", "/api/v1/agents/a2/status")
        self.assertIs(st["drift"], True)
        self.assertIn("another configuration", st["drift_reason"])
        self.assertIs(c.ok("GET", "/api/v1/agents/a1/status")["drift"], False)
        # The poller sees it too.
        c.wait_for(lambda: [a["status"]["drift"] for a in c.ok("GET", "/api/v1/agents")["agents"]]
                   == [False, True, False], what="drift in the list")

        # Rollback: redeploy the first deployment.
        rb = c.ok("POST", f"/api/v1/deployments/{d1['id']}/redeploy")
        self.assertTrue(rb["ok"], rb)
        self.assertEqual(rb["revision"], 1)
        self.assertEqual({self.greet(a) for a in self.agents}, {"Hello, X!"})
        hist = c.ok("GET", "/api/v1/deployments")["deployments"]
        self.assertEqual([(h["id"], h["revision"], h["ok"], h["rollback_of"]) for h in hist],
                         [(rb["id"], 1, True, d1["id"]), (d2["id"], 2, True, None),
                          (d1["id"], 1, True, None)])
        self.assertEqual(c.ok("GET", f"/api/v1/deployments/{d2['id']}")["strategy"], "parallel")
        self.assertIs(c.ok("GET", "/api/v1/agents/a2/status")["drift"], False)

    def test_a_failure_stops_a_rolling_deploy(self):
        c = self.console
        c.ok("POST", "/api/v1/deployments", {"configuration": "shop/hello", "revision": 1, "all": True})
        # Valid in the console (the environment is the agent's), but a2 lacks the variable.
        del_env = self.agents["a2"]
        del_env.stop()
        a2 = Agent(home=del_env.home, key=del_env.key, env={"CAP_AGENT_NAME": "a2"}).start()
        self.addCleanup(a2.cleanup)
        self.agents["a2"] = a2
        c.ok("PUT", "/api/v1/agents/a2", {"port": a2.mgmt_port, "web_port": a2.web_port})
        r = c.save("shop", "envhello", env_config("CAP_TEST_GREETING"))
        self.assertEqual(r.status, 201, r)
        d = c.ok("POST", "/api/v1/deployments", {"configuration": "shop/envhello",
                                                 "agents": ["a1", "a2", "a3"]})
        self.assertFalse(d["ok"])
        res = {r["agent"]: r for r in d["results"]}
        self.assertTrue(res["a1"]["ok"])
        self.assertFalse(res["a2"]["ok"])
        self.assertIn("422", res["a2"]["errors"][0])
        self.assertTrue(any("CAP_TEST_GREETING is not set" in e for e in res["a2"]["errors"]), res["a2"])
        self.assertTrue(res["a3"]["skipped"])
        # a1 runs the new one; a2 kept the old; a3 was never touched.
        self.assertEqual(self.agents["a1"].web("GET", "/").text(), "env-1")
        self.assertEqual(self.greet("a2"), "Hello, X!")
        self.assertEqual(self.greet("a3"), "Hello, X!")
        self.assertEqual(c.ok("GET", f"/api/v1/deployments/{d['id']}")["ok"], False)
        # Parallel goes on past a failure.
        d = c.ok("POST", "/api/v1/deployments", {"configuration": "shop/envhello",
                                                 "agents": ["a2", "a3"], "strategy": "parallel"})
        self.assertEqual({r["agent"]: r["ok"] for r in d["results"]}, {"a2": False, "a3": True})
        self.assertEqual(self.agents["a3"].web("GET", "/").text(), "env-3")

    def test_logs_trace_stats_and_metrics_through_the_console(self):
        c = self.console
        c.ok("POST", "/api/v1/deployments", {"configuration": "shop/hello", "agents": ["a1"]})
        files = c.ok("GET", "/api/v1/agents/a1/logs")["files"]
        self.assertTrue(files and files[0]["name"].startswith("agent-"), files)
        text = c.request("GET", f"/api/v1/agents/a1/logs/{files[0]['name']}?tail=50")
        self.assertEqual(text.status, 200)
        self.assertIn("activated configuration", text.text())
        self.assertEqual(c.request("GET", "/api/v1/agents/a1/logs/no-such.log").status, 404)
        self.assertEqual(c.request("GET", "/api/v1/agents/a1/logs/x?tail=abc").status, 400)
        armed = c.ok("POST", "/api/v1/agents/a1/trace", {"count": 2})
        self.assertEqual(armed["armed"], 2)
        self.greet("a1")
        traces = c.ok("GET", "/api/v1/agents/a1/trace")["traces"]
        self.assertEqual(traces[0]["request"], "GET /hello?name=X")
        stats = c.ok("GET", "/api/v1/agents/a1/stats")
        self.assertIn("rules", stats)
        m = c.request("GET", "/api/v1/agents/a1/metrics")
        self.assertEqual(m.status, 200)
        self.assertIn("text/plain", m.headers["content-type"])
        hist = c.ok("GET", "/api/v1/agents/a1/configuration/history")
        self.assertEqual(len(hist["configurations"]), 1)
        # An agent that is down: a clear 502.
        self.agents["a3"].stop()
        r = c.request("GET", "/api/v1/agents/a3/logs")
        self.assertEqual(r.status, 502)
        self.assertIn("cannot be reached", r.json()["error"])
        st = c.ok("GET", "/api/v1/agents/a3")["status"]
        self.assertFalse(st["online"])
        self.assertTrue(st["error"])

    def test_wrong_key_shows_offline_with_the_reason(self):
        c = self.console
        c.ok("PUT", "/api/v1/agents/a3", {"key": "not-the-right-key-000"})
        st = c.ok("GET", "/api/v1/agents/a3/status")
        self.assertFalse(st["online"])
        self.assertIn("401", st["error"])


class SelfRegistration(ConsoleTestCase):
    def test_agents_with_a_join_token_register_themselves(self):
        c = self.console
        key = "shared-fleet-key-0123456789"
        jt = c.ok("POST", "/api/v1/join-tokens", {"name": "fleet", "group": "ecs", "key": key})
        self.assertEqual(len(jt["token"]), 64)
        self.assertNotIn("token", json.dumps(c.ok("GET", "/api/v1/join-tokens")["join_tokens"]).replace(
            "join_tokens", ""))
        env = {"CAP_CONSOLE_URL": c.url, "CAP_JOIN_TOKEN": jt["token"]}
        a = self.new_agent(key=key, env=dict(env, CAP_AGENT_NAME="task-1"))
        self.assertTrue(a.wait_for_log("announced to the console", 15), a.log_text())
        agents = c.ok("GET", "/api/v1/agents")["agents"]
        self.assertEqual([(x["id"], x["group"], x["registered"], x["port"], x["web_port"])
                          for x in agents], [("task-1", "ecs", "announced", a.mgmt_port, a.web_port)])
        # It can be deployed to like any other.
        c.ok("POST", "/api/v1/repositories", {"name": "r"})
        c.save("r", "hello", hello_config())
        self.assertTrue(c.ok("POST", "/api/v1/deployments", {"configuration": "r/hello", "group": "ecs"})["ok"])
        # A replacement task with the same name on other ports updates the definition.
        a.stop()
        b = self.new_agent(key=key, home=a.home, env=dict(env, CAP_AGENT_NAME="task-1"))
        self.assertTrue(b.wait_for_log("announced to the console", 15), b.log_text())
        got = c.ok("GET", "/api/v1/agents/task-1")
        self.assertEqual((got["port"], got["status"]["online"]), (b.mgmt_port, True))
        self.assertEqual(b.web("GET", "/hello?name=Z").text(), "Hello, Z!")
        # A wrong token is refused, and the agent says so.
        bad = self.new_agent(key=key, env={"CAP_CONSOLE_URL": c.url, "CAP_JOIN_TOKEN": "0" * 64,
                                           "CAP_AGENT_NAME": "intruder"})
        self.assertTrue(bad.wait_for_log("refused the announcement", 15), bad.log_text())
        # An agent whose key does not match the token's is not kept.
        other = self.new_agent(key="some-other-key-99999", env=dict(env, CAP_AGENT_NAME="wrongkey"))
        self.assertTrue(other.wait_for_log("announcing to the console .* failed", 15), other.log_text())
        self.assertEqual([x["id"] for x in c.ok("GET", "/api/v1/agents")["agents"]], ["task-1"])
        audit = c.ok("GET", "/api/v1/audit")["entries"]
        self.assertTrue(any(e["action"] == "agent.announce" and e["user"] == "(join token fleet)"
                            for e in audit))


if __name__ == "__main__":
    unittest.main()
