"""LlmChat against a scripted OpenAI-compatible model: every chain point, the request the
model receives, malformed, truncated and slow answers, retries, token counts in the
performance data and /metrics, and the API key kept out of traces and logs."""

import json
import unittest

from agent_harness import AgentTestCase, configuration, ruleset
from llm_server import LlmServer

API_KEY = "sk-test-9f8e7d6c5b4a39281706"


def chat_config(llm, **with_):
    """/ask?q=... asks the model; each chain point answers with its own status."""
    params = {"base_url": llm.url, "model": "gpt-test", "credential": "openai",
              "system": "You answer briefly.", "prompt": "Question: ${q}", "retries": 0}
    params.update(with_)
    return configuration("chat", [ruleset("main", "ask", {
        "ask": {"rule": "LlmChat", "with": params,
                "then": {"ok": ["ok"], "error": ["error"], "timeout": ["timeout"]}},
        "ok": {"rule": "HttpRespond", "with": {"status": 200, "body": "${string(LLM_ANSWER)}",
                                                "content_type": "text/plain",
                                                "headers": {"X-Tokens": "${LLM_USAGE.prompt_tokens}+${LLM_USAGE.completion_tokens}"}}},
        "error": {"rule": "HttpRespond", "with": {"status": 502, "body": "error: ${LLM_ERROR}"}},
        "timeout": {"rule": "HttpRespond", "with": {"status": 504, "body": "timeout: ${LLM_ERROR}"}},
    })])


class LlmChatTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.llm = LlmServer()
        self.addCleanup(self.llm.stop)
        r = self.agent.mgmt("PUT", "/v1/vault", {"openai": {"api_key": API_KEY}})
        self.assertEqual(r.status, 200, r)

    def ask(self, q="What is CAP?"):
        return self.agent.web("GET", "/ask?q=" + q.replace(" ", "+"))

    def test_ok_and_the_request_the_model_gets(self):
        self.agent.deploy_ok(chat_config(self.llm, temperature=0.2, max_tokens=64))
        self.llm.answer("A rules platform.", prompt_tokens=31, completion_tokens=4)
        r = self.ask()
        self.assertEqual((r.status, r.text()), (200, "A rules platform."), r)
        self.assertEqual(r.headers["x-tokens"], "31+4")
        self.assertEqual(len(self.llm.requests), 1)
        req = self.llm.requests[0]
        self.assertEqual(req["path"], "/v1/chat/completions")
        self.assertEqual(req["headers"]["authorization"], "Bearer " + API_KEY)
        self.assertEqual(req["headers"]["content-type"], "application/json")
        body = req["json"]
        self.assertEqual(body["model"], "gpt-test")
        self.assertEqual(body["messages"], [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": "Question: What is CAP?"}])
        self.assertEqual(body["temperature"], 0.2)
        self.assertEqual(body["max_tokens"], 64)
        self.assertNotIn("response_format", body)
        self.assertNotIn("tools", body)

    def test_json_answer_is_parsed(self):
        files = chat_config(self.llm, json=True)
        rs = json.loads(files["rulesets/main.json"])
        rs["rules"]["ok"]["with"]["body"] = "${LLM_ANSWER.city} has ${LLM_ANSWER.people}"
        files["rulesets/main.json"] = json.dumps(rs).encode()
        self.agent.deploy_ok(files)
        self.llm.answer('```json\n{"city": "Lyon", "people": 522000}\n```')
        r = self.ask("Biggest city")
        self.assertEqual((r.status, r.text()), (200, "Lyon has 522000"), r)
        self.assertEqual(self.llm.requests[0]["json"]["response_format"], {"type": "json_object"})

    def test_json_that_does_not_parse_takes_error(self):
        self.agent.deploy_ok(chat_config(self.llm, json=True))
        self.llm.answer("Sure! The city is Lyon.")
        r = self.ask()
        self.assertEqual(r.status, 502, r)
        self.assertIn("error: the model's answer is not valid JSON", r.text())

    def test_json_cut_off_at_max_tokens(self):
        self.agent.deploy_ok(chat_config(self.llm, json=True, max_tokens=5))
        self.llm.answer('{"city": "Ly', finish_reason="length")
        r = self.ask()
        self.assertEqual(r.status, 502, r)
        self.assertIn("not valid JSON", r.text())
        self.assertIn("cut off at max_tokens", r.text())

    def test_error_status_from_the_model(self):
        self.agent.deploy_ok(chat_config(self.llm))
        self.llm.raw(401, b'{"error": {"message": "Incorrect API key provided"}}')
        r = self.ask()
        self.assertEqual(r.status, 502, r)
        self.assertEqual(r.text(), "error: the model's endpoint answered 401: Incorrect API key provided")
        self.assertEqual(len(self.llm.requests), 1, "a 401 is not retried")

    def test_retries_after_overload_then_ok(self):
        self.agent.deploy_ok(chat_config(self.llm, retries=2))
        self.llm.raw(503, b'{"error": {"message": "overloaded"}}')
        self.llm.raw(429, b'{"error": {"message": "slow down"}}')
        self.llm.answer("third time lucky")
        r = self.ask()
        self.assertEqual((r.status, r.text()), (200, "third time lucky"), r)
        self.assertEqual(len(self.llm.requests), 3)

    def test_retries_run_out(self):
        self.agent.deploy_ok(chat_config(self.llm, retries=1))
        self.llm.raw(500, b"boom")
        self.llm.raw(500, b"boom again")
        self.llm.answer("never asked")
        r = self.ask()
        self.assertEqual((r.status, r.text()), (502, "error: the model's endpoint answered 500: boom again"))
        self.assertEqual(len(self.llm.requests), 2)

    def test_malformed_answers(self):
        self.agent.deploy_ok(chat_config(self.llm))
        cases = [
            (b"<html>gateway</html>", "the model's answer is not valid JSON (invalid JSON at byte 1: syntax error)"),
            (b'{"id": "x", "choices": []}', "the model's answer has no choices"),
            (b'{"choices": [{"finish_reason": "stop"}]}', "the model's answer has no message"),
            (b'{"choices": [{"message": {"content": 12}}]}', "the model's message content is not text"),
            (b'{"choices": [{"message": {"tool_calls": [{"id": "1"}]}}]}',
             "a tool call of the model names no function"),
        ]
        for body, message in cases:
            self.llm.raw(200, body)
            r = self.ask()
            self.assertEqual(r.status, 502, (body, r))
            self.assertEqual(r.text(), "error: " + message)

    def test_truncated_answer(self):
        self.agent.deploy_ok(chat_config(self.llm))
        self.llm.truncated()
        r = self.ask()
        self.assertEqual(r.status, 502, r)
        self.assertTrue(r.text().startswith("error: "), r.text())

    def test_slow_model_times_out(self):
        self.agent.deploy_ok(chat_config(self.llm, timeout_ms=400))
        self.llm.answer("too late", delay=3)
        r = self.ask()
        self.assertEqual((r.status, r.text()), (504, "timeout: no answer from the model within 400 ms"))

    def test_unreachable_model_is_an_error(self):
        self.agent.deploy_ok(chat_config(self.llm, base_url="http://127.0.0.1:1/v1"))
        r = self.ask()
        self.assertEqual(r.status, 502, r)
        self.assertIn("error: ", r.text())
        self.assertIn("127.0.0.1:1", r.text())

    def test_missing_credential(self):
        self.agent.deploy_ok(chat_config(self.llm, credential="nosuch"))
        r = self.ask()
        self.assertEqual((r.status, r.text()), (502, "error: vault credential 'nosuch' is not available"))
        self.assertEqual(self.llm.requests, [], "nothing is sent without the credential")

    def test_no_credential_sends_no_authorization(self):
        files = chat_config(self.llm)
        rs = json.loads(files["rulesets/main.json"])
        del rs["rules"]["ask"]["with"]["credential"]
        files["rulesets/main.json"] = json.dumps(rs).encode()
        self.agent.deploy_ok(files)
        self.llm.answer("local model")
        self.assertEqual(self.ask().text(), "local model")
        self.assertNotIn("authorization", self.llm.requests[0]["headers"])

    def test_tokens_in_stats_and_metrics(self):
        self.agent.deploy_ok(chat_config(self.llm))
        self.llm.answer("one", prompt_tokens=10, completion_tokens=2)
        self.llm.answer("two", prompt_tokens=15, completion_tokens=3)
        self.llm.raw(500, b"down")
        for _ in range(3):
            self.ask()
        stats = self.agent.mgmt("GET", "/v1/stats").json()
        nodes = {n["id"]: n for rs in stats["rules"]["rulesets"] for n in rs["nodes"]}
        self.assertEqual(nodes["ask"]["counters"], {
            "llm_calls": 3, "llm_errors": 1, "llm_timeouts": 0,
            "llm_prompt_tokens": 25, "llm_completion_tokens": 5})
        text = self.agent.mgmt("GET", "/metrics").text()
        self.assertIn('cap_rule_llm_prompt_tokens_total{ruleset="main",node="ask",rule="LlmChat"} 25', text)
        self.assertIn('cap_rule_llm_completion_tokens_total{ruleset="main",node="ask",rule="LlmChat"} 5', text)
        self.assertIn('cap_rule_llm_errors_total{ruleset="main",node="ask",rule="LlmChat"} 1', text)
        self.assertIn("# TYPE cap_rule_llm_calls_total counter", text)

    def test_trace_shows_the_exchange_and_no_secret(self):
        self.agent.deploy_ok(chat_config(self.llm))
        self.agent.mgmt("POST", "/v1/trace", {"count": 2})
        self.llm.answer("Traced answer.", prompt_tokens=9, completion_tokens=3)
        self.llm.raw(500, b'{"error": {"message": "exploded"}}')
        self.ask("first")
        self.ask("second")
        traces = self.agent.mgmt("GET", "/v1/trace").json()["traces"]
        self.assertEqual(len(traces), 2)
        text = traces[0]["text"]
        self.assertIn("prompt to gpt-test (1 messages), last user: 'Question: first'", text)
        self.assertIn("tokens 9 in, 3 out, finish stop", text)
        self.assertIn("answer 'Traced answer.'", text)
        self.assertIn("LLM_ANSWER = 'Traced answer.'", text)
        self.assertIn("error: the model's endpoint answered 500: exploded", traces[1]["text"])
        everything = json.dumps(traces) + self.agent.log_text()
        for f in ("/v1/stats", "/metrics"):
            everything += self.agent.mgmt("GET", f).text()
        self.assertNotIn(API_KEY, everything)
        self.assertNotIn(API_KEY[3:15], everything)

    def test_web_port_stays_responsive_while_the_model_thinks(self):
        # The LLM call waits on the wait pool: a slow model does not hold an event loop.
        import threading
        files = chat_config(self.llm, timeout_ms=5000)
        rs = json.loads(files["rulesets/main.json"])
        rs["start"] = "route"
        rs["rules"]["route"] = {"rule": "IfCondition", "with": {"condition": "URI == '/ask'"},
                                "then": {"true": ["ask"], "false": ["ping"]}}
        rs["rules"]["ping"] = {"rule": "HttpRespond", "with": {"body": "pong"}}
        files["rulesets/main.json"] = json.dumps(rs).encode()
        self.agent.deploy_ok(files)
        for _ in range(4):
            self.llm.answer("slow", delay=1.5)
        slow = [threading.Thread(target=self.ask) for _ in range(4)]
        for t in slow:
            t.start()
        for _ in range(5):
            self.assertEqual(self.agent.web("GET", "/ping").text(), "pong")
        for t in slow:
            t.join()


class LlmValidationTest(AgentTestCase):
    def deploy_bad(self, with_, expect):
        llm_url = "http://127.0.0.1:9/v1"
        good = {"base_url": llm_url, "model": "m", "prompt": "p"}
        ok_id = self.agent.deploy_ok(configuration("good", [ruleset("main", "a", {
            "a": {"rule": "LlmChat", "with": good}})]))
        params = dict(good)
        params.update(with_)
        r = self.agent.deploy(configuration("bad", [ruleset("main", "a", {
            "a": {"rule": "LlmChat", "with": params}})]))
        self.assertEqual(r.status, 422, r)
        self.assertIn(expect, json.dumps(r.json()))
        status = self.agent.mgmt("GET", "/v1/status").json()
        self.assertEqual(status["configuration"]["id"], ok_id, "the good one stays active")

    def test_bad_parameters(self):
        self.deploy_bad({"provider": "gemini"}, "provider")
        self.deploy_bad({"base_url": "ftp://x"}, "base_url: must start with http:// or https://")
        self.deploy_bad({"temperature": 7}, "temperature: must be a number from 0 to 2, got 7")
        self.deploy_bad({"max_tokens": 1.5}, "max_tokens: must be a whole number")
        self.deploy_bad({"timeout_ms": 0}, "timeout_ms: must be a whole number from 1")
        self.deploy_bad({"retries": 9}, "retries: must be a whole number from 0 to 5")
        self.deploy_bad({"model": None}, "model")


if __name__ == "__main__":
    unittest.main()
