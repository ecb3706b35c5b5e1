"""LlmChat with `stream`: the model's answer reaches the client as server-sent events while
the model still writes it; failures before and after the first words; a client that goes
away stops the model's stream."""

import http.client
import json
import threading
import unittest

from agent_harness import AgentTestCase, configuration, ruleset
from llm_server import LlmServer


def stream_config(llm, **with_):
    params = {"base_url": llm.url, "model": "gpt-stream", "prompt": "${q}", "stream": True,
              "retries": 0}
    params.update(with_)
    return configuration("stream", [ruleset("main", "ask", {
        "ask": {"rule": "LlmChat", "with": params,
                "then": {"ok": ["after"], "error": ["error"], "timeout": ["timeout"]}},
        "after": {"rule": "SetVariable", "with": {"name": "LENGTH", "value": "${len(LLM_ANSWER)}"}},
        "error": {"rule": "HttpRespond", "with": {"status": 502, "body": "error: ${LLM_ERROR}"}},
        "timeout": {"rule": "HttpRespond", "with": {"status": 504, "body": "timeout: ${LLM_ERROR}"}},
    })])


def events(text):
    """[(event name, data as JSON)] of a server-sent event stream."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        out.append((name, data))
    return out


class LlmStreamTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.llm = LlmServer()
        self.addCleanup(self.llm.stop)

    def open(self, q="Hi"):
        conn = http.client.HTTPConnection("127.0.0.1", self.agent.web_port, timeout=30)
        conn.request("GET", "/ask?q=" + q)
        resp = conn.getresponse()
        self.addCleanup(conn.close)
        self.conn = conn
        return resp

    def test_answer_arrives_while_the_model_writes(self):
        self.agent.deploy_ok(stream_config(self.llm))
        self.agent.mgmt("POST", "/v1/trace", {"count": 1})
        gate = threading.Event()
        self.llm.answer("Hello world", pieces=["Hel", "lo ", "world"], gate=gate,
                        prompt_tokens=5, completion_tokens=3)
        resp = self.open()
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.getheader("content-type"), "text/event-stream")
        self.assertEqual(resp.getheader("cache-control"), "no-cache")
        # The model holds back its second piece until the gate opens: the first one must
        # already have reached the client.
        first = b""
        while b"\n\n" not in first:
            first += resp.read1(100)
        self.assertEqual(events(first.decode()), [("message", {"delta": "Hel"})])
        gate.set()
        rest = resp.read().decode()
        self.assertEqual(events(first.decode() + rest), [
            ("message", {"delta": "Hel"}), ("message", {"delta": "lo "}), ("message", {"delta": "world"}),
            ("done", {"prompt_tokens": 5, "completion_tokens": 3, "finish_reason": "stop"})])
        body = self.llm.requests[0]["json"]
        self.assertEqual((body["stream"], body["stream_options"]), (True, {"include_usage": True}))
        # The rules after the rule still ran, with the whole answer. They finish just after
        # the stream's end reached the client: wait for the trace they leave.
        traces = self.agent.traces()
        self.assertTrue(traces, "no trace of the request")
        trace = traces[0]["text"]
        self.assertIn("LLM_ANSWER = 'Hello world'", trace)
        self.assertIn("LENGTH = 11", trace)
        stats = self.agent.mgmt("GET", "/v1/stats").json()
        node = [n for rs in stats["rules"]["rulesets"] for n in rs["nodes"] if n["id"] == "ask"][0]
        self.assertEqual(node["counters"]["llm_completion_tokens"], 3)

    def test_failure_before_the_first_words_takes_the_chain_points(self):
        self.agent.deploy_ok(stream_config(self.llm, timeout_ms=400))
        self.llm.raw(500, b'{"error": {"message": "down"}}')
        r = self.agent.web("GET", "/ask?q=x")
        self.assertEqual((r.status, r.text()), (502, "error: the model's endpoint answered 500: down"))
        self.llm.answer("late", delay=3)
        r = self.agent.web("GET", "/ask?q=x")
        self.assertEqual((r.status, r.text()), (504, "timeout: no answer from the model within 400 ms"))

    def test_failure_midway_ends_with_an_error_event(self):
        self.agent.deploy_ok(stream_config(self.llm))
        self.llm.answer("Hello world", pieces=["Hel", "lo"], break_after=1)
        r = self.agent.web("GET", "/ask?q=x")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(events(r.text()), [("message", {"delta": "Hel"}),
                                            ("error", {"error": "the model's stream ended before [DONE]"})])
        self.llm.answer("Hello", pieces=["Hel", "lo"], stream_error="quota exceeded")
        r = self.agent.web("GET", "/ask?q=x")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(events(r.text())[-1],
                         ("error", {"error": "the model's stream reported an error: quota exceeded"}))
        stats = self.agent.mgmt("GET", "/v1/stats").json()
        node = [n for rs in stats["rules"]["rulesets"] for n in rs["nodes"] if n["id"] == "ask"][0]
        self.assertEqual(node["counters"]["llm_errors"], 2)

    def test_an_endpoint_that_does_not_stream(self):
        self.agent.deploy_ok(stream_config(self.llm))
        self.llm.answer("All at once", whole=True, prompt_tokens=2, completion_tokens=3)
        r = self.agent.web("GET", "/ask?q=x")
        self.assertEqual(events(r.text()), [
            ("message", {"delta": "All at once"}),
            ("done", {"prompt_tokens": 2, "completion_tokens": 3, "finish_reason": "stop"})])

    def test_a_client_that_goes_away_stops_the_model(self):
        self.agent.deploy_ok(stream_config(self.llm))
        gate = threading.Event()
        self.llm.answer("x" * 10, pieces=["a"] + ["b" * 100000] * 200, gate=gate)
        resp = self.open()
        first = b""
        while b"\n\n" not in first:
            first += resp.read1(100)
        resp.close()
        self.conn.close()
        gate.set()
        self.assertTrue(self.llm.stream_broken_event.wait(20),
                        "the agent kept reading the model after the client left")
        # The agent goes on serving.
        self.llm.answer("again")
        self.assertEqual(events(self.agent.web("GET", "/ask?q=x").text())[0], ("message", {"delta": "again"}))


if __name__ == "__main__":
    unittest.main()
