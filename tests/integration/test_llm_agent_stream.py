"""AiAgent with `stream`: the steps (tool calls and their results) and the answer's words
reach the client as server-sent events while the model works; failures before the first
event take the chain points, later ones end the stream with an event; the model's tool
calls arrive streamed in pieces, or whole from an endpoint that does not stream."""

import http.client
import threading
import unittest

from agent_harness import AgentTestCase
from llm_server import LlmServer
from test_llm_agent import API_KEY, agent_config
from test_llm_stream import events


class AiAgentStreamTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.llm = LlmServer()
        self.addCleanup(self.llm.stop)
        self.assertEqual(self.agent.mgmt("PUT", "/v1/vault", {"openai": {"api_key": API_KEY}}).status, 200)

    def deploy(self, **with_):
        files = agent_config(self.llm, stream=True, **with_)
        self.agent.deploy_ok(files)

    def ask(self, q="Hi", session=""):
        return self.agent.web("GET", f"/?q={q}&session={session}")

    def test_steps_and_words_arrive_as_they_happen(self):
        self.deploy()
        self.agent.mgmt("POST", "/v1/trace", {"count": 1})
        gate = threading.Event()
        self.llm.tool_call(("add_numbers", {"a": 2, "b": 40}), say="Let me add.", prompt_tokens=30,
                           completion_tokens=8)
        self.llm.answer("2 + 40 = 42", pieces=["2 + 40 ", "= 42"], gate=gate, prompt_tokens=50,
                        completion_tokens=6)
        conn = http.client.HTTPConnection("127.0.0.1", self.agent.web_port, timeout=30)
        self.addCleanup(conn.close)
        conn.request("GET", "/?q=Sum&session=st")
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.getheader("content-type"), "text/event-stream")
        self.assertEqual(resp.getheader("cache-control"), "no-cache")
        # The model holds back the answer's second piece until the gate opens: everything
        # before it must already have reached the client.
        first = b""
        while first.count(b"\n\n") < 4:
            first += resp.read1(100)
        call_id = self.llm.requests[1]["json"]["messages"][2]["tool_calls"][0]["id"]
        self.assertEqual(events(first.decode()), [
            ("message", {"delta": "Let me add."}),
            ("tool_call", {"step": 1, "id": call_id, "name": "add_numbers", "arguments": {"a": 2, "b": 40}}),
            ("tool_result", {"step": 1, "id": call_id, "name": "add_numbers", "result": "42", "error": False}),
            ("message", {"delta": "2 + 40 "})])
        gate.set()
        rest = resp.read().decode()
        self.assertEqual(events(rest), [
            ("message", {"delta": "= 42"}),
            ("done", {"steps": 2, "tool_calls": 1, "prompt_tokens": 80, "completion_tokens": 14,
                      "finish_reason": "stop"})])

        first_req, second_req = [q["json"] for q in self.llm.requests]
        self.assertEqual((first_req["stream"], len(first_req["tools"])), (True, 3))
        # The calls streamed in pieces were put together again for the next request.
        said = second_req["messages"][2]
        self.assertEqual((said["content"], said["tool_calls"][0]["function"]),
                         ("Let me add.", {"name": "add_numbers", "arguments": '{"a": 2, "b": 40}'}))
        self.assertEqual(second_req["messages"][3], {"role": "tool", "tool_call_id": call_id, "content": "42"})
        # The answer is in AI_ANSWER for the rules after, and in the conversation.
        # (Once the trace is stored the rules finished, the conversation saved with them.)
        traces = self.agent.traces()
        self.assertTrue(traces, "no trace of the request")
        self.assertIn("AI_ANSWER = '2 + 40 = 42'", traces[0]["text"])
        self.llm.answer("Yes.")
        self.ask("Sure?", "st")
        self.assertEqual([m["role"] for m in self.llm.requests[2]["json"]["messages"]],
                         ["system", "user", "assistant", "tool", "assistant", "user"])

    def test_tool_errors_are_results_in_the_stream(self):
        self.deploy()
        self.llm.tool_call(("add_numbers", {"a": 1}), ("nope", {}))
        self.llm.answer("Sorry.")
        got = events(self.ask().text())
        self.assertEqual([(name, data.get("result"), data.get("error")) for name, data in got
                          if name == "tool_result"], [
            ("tool_result", "error: missing required argument 'b'", True),
            ("tool_result", "error: there is no tool named 'nope'", True)])
        self.assertEqual(got[-1][0], "done")

    def test_failure_before_the_first_event_takes_the_chain_points(self):
        self.deploy()
        self.llm.raw(500, b'{"error": {"message": "down"}}')
        r = self.ask()
        self.assertEqual((r.status, r.text()), (502, "error: the model's endpoint answered 500: down"))

    def test_failure_after_a_step_ends_the_stream_with_an_error_event(self):
        self.deploy()
        self.llm.tool_call(("add_numbers", {"a": 1, "b": 2}))
        self.llm.raw(500, b'{"error": {"message": "down"}}')
        r = self.ask()
        self.assertEqual(r.status, 200, r)
        got = events(r.text())
        self.assertEqual([name for name, _ in got], ["tool_call", "tool_result", "error"])
        self.assertEqual(got[-1][1], {"error": "the model's endpoint answered 500: down"})
        self.llm.tool_call(("add_numbers", {"a": 1, "b": 2}))
        self.llm.answer("Hel", pieces=["Hel", "lo"], break_after=1)
        got = events(self.ask().text())
        self.assertEqual(got[-2:], [("message", {"delta": "Hel"}),
                                    ("error", {"error": "the model's stream ended before [DONE]"})])

    def test_budget_exceeded_event(self):
        self.deploy(max_steps=2)
        self.llm.tool_call(("add_numbers", {"a": 1, "b": 1}))
        self.llm.tool_call(("add_numbers", {"a": 2, "b": 2}))
        got = events(self.ask().text())
        self.assertEqual([name for name, _ in got], ["tool_call", "tool_result", "budget_exceeded"])
        self.assertEqual(got[-1][1], {
            "error": "no answer after 2 model calls (max_steps): the model still asked for tools"})

    def test_an_endpoint_that_does_not_stream(self):
        self.deploy()
        self.llm.tool_call(("weather", {"city": "Oslo", "days": 1}), whole=True)
        self.llm.answer("Sunny.", whole=True)
        got = events(self.ask().text())
        self.assertEqual([name for name, _ in got], ["tool_call", "tool_result", "message", "done"])
        self.assertEqual(got[1][1]["result"], '{"city":"Oslo","sky":"sunny"}')
        self.assertEqual(got[2][1], {"delta": "Sunny."})

    def test_a_client_that_goes_away_stops_the_model_and_keeps_the_conversation(self):
        self.deploy()
        gate = threading.Event()
        self.llm.tool_call(("add_numbers", {"a": 1, "b": 2}))
        self.llm.answer("x", pieces=["a"] + ["b" * 100000] * 200, gate=gate)
        conn = http.client.HTTPConnection("127.0.0.1", self.agent.web_port, timeout=30)
        conn.request("GET", "/?q=Hi&session=gone")
        resp = conn.getresponse()
        first = b""
        while first.count(b"\n\n") < 3:
            first += resp.read1(100)
        self.assertEqual([name for name, _ in events(first.decode())], ["tool_call", "tool_result", "message"])
        resp.close()
        conn.close()
        gate.set()
        self.assertTrue(self.llm.stream_broken_event.wait(20),
                        "the agent kept reading the model after the client left")
        # The interrupted exchange is not part of the conversation.
        self.llm.answer("Hello again.")
        got = events(self.ask("Hi", "gone").text())
        self.assertEqual(got[0], ("message", {"delta": "Hello again."}))
        self.assertEqual([m["role"] for m in self.llm.requests[-1]["json"]["messages"]], ["system", "user"])

    def test_without_stream_the_answer_is_whole(self):
        self.agent.deploy_ok(agent_config(self.llm))
        self.llm.answer("Plain.")
        r = self.ask()
        self.assertEqual((r.status, r.text()), (200, "Plain."))
        self.assertNotIn("stream", self.llm.requests[0]["json"])


if __name__ == "__main__":
    unittest.main()
