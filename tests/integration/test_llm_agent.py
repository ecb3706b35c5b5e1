"""AiAgent against a scripted model: tools that are rule sets (their schema, arguments and
results), every chain point, budget exhaustion, conversation memory, the steps in the
trace, and the API key kept out of traces and logs."""

import json
import unittest
import urllib.parse

from agent_harness import AgentTestCase, configuration, ruleset
from llm_server import LlmServer

API_KEY = "sk-agent-0a1b2c3d4e5f60718293"


def tools():
    add = ruleset("add_numbers", "sum", {
        "sum": {"rule": "SetVariable", "with": {"name": "RESULT", "value": "${a + b}"}},
    })
    add["description"] = "Adds two numbers."
    add["params"] = [
        {"name": "a", "type": "number", "required": True, "description": "The first number"},
        {"name": "b", "type": "number", "required": True},
    ]
    weather = ruleset("weather", "set", {
        "set": {"rule": "SetVariable", "with": {"name": "FORECAST",
                                                 "value": {"city": "${city}", "sky": "sunny"}},
                "then": {"next": ["days"]}},
        "days": {"rule": "IfCondition", "with": {"condition": "days > 3"},
                 "then": {"true": ["tooFar"], "false": ["near"]}},
        "tooFar": {"rule": "RuleSetExit", "with": {"name": "too_far"}},
        "near": {"rule": "RuleSetExit", "with": {"name": "ok"}},
    }, exits=["ok", "too_far"])
    weather["description"] = "The weather forecast for a city."
    weather["result"] = "FORECAST"
    weather["params"] = [
        {"name": "city", "type": "string", "required": True},
        {"name": "days", "type": "integer"},
    ]
    broken = ruleset("broken", "parse", {
        "parse": {"rule": "SetVariable", "with": {"name": "X", "value": "${RESULT / 0}"}},
    })
    broken["description"] = "Always fails."
    return [add, weather, broken]


def agent_config(llm, **with_):
    params = {"base_url": llm.url, "model": "gpt-agent", "credential": "openai",
              "system": "You are a helpful agent.", "prompt": "${q}", "retries": 0,
              "tools": ["add_numbers", "weather", "broken"], "max_steps": 4,
              "conversation": "${session}"}
    params.update(with_)
    main = ruleset("main", "agent", {
        "agent": {"rule": "AiAgent", "with": params,
                  "then": {"answered": ["answered"], "error": ["error"],
                           "budget_exceeded": ["budget"]}},
        "answered": {"rule": "HttpRespond", "with": {
            "status": 200, "body": "${AI_ANSWER}", "content_type": "text/plain",
            "headers": {"X-Usage": "${AI_USAGE.steps} ${AI_USAGE.tool_calls} ${AI_USAGE.prompt_tokens} ${AI_USAGE.completion_tokens}"}}},
        "error": {"rule": "HttpRespond", "with": {"status": 502, "body": "error: ${AI_ERROR}"}},
        "budget": {"rule": "HttpRespond", "with": {"status": 503, "body": "budget: ${AI_ERROR}"}},
    })
    return configuration("agent", [main] + tools())


class AiAgentTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.llm = LlmServer()
        self.addCleanup(self.llm.stop)
        r = self.agent.mgmt("PUT", "/v1/vault", {"openai": {"api_key": API_KEY}})
        self.assertEqual(r.status, 200, r)

    def ask(self, q, session=""):
        path = "/?q=" + urllib.parse.quote_plus(q)
        if session:
            path += "&session=" + session
        return self.agent.web("GET", path)

    def test_tool_call_then_answer(self):
        self.agent.deploy_ok(agent_config(self.llm))
        self.llm.tool_call(("add_numbers", {"a": 2, "b": 40}), prompt_tokens=50, completion_tokens=9)
        self.llm.answer("2 + 40 = 42", prompt_tokens=70, completion_tokens=6)
        r = self.ask("What is 2 + 40?")
        self.assertEqual((r.status, r.text()), (200, "2 + 40 = 42"), r)
        self.assertEqual(r.headers["x-usage"], "2 1 120 15")

        first, second = [q["json"] for q in self.llm.requests]
        # The tools the model is offered: each rule set's description and derived schema.
        offered = {t["function"]["name"]: t["function"] for t in first["tools"]}
        self.assertEqual(sorted(offered), ["add_numbers", "broken", "weather"])
        self.assertEqual(offered["add_numbers"]["description"], "Adds two numbers.")
        self.assertEqual(offered["add_numbers"]["parameters"], {
            "type": "object",
            "properties": {"a": {"type": "number", "description": "The first number"},
                           "b": {"type": "number"}},
            "required": ["a", "b"], "additionalProperties": False})
        self.assertEqual(offered["weather"]["parameters"]["properties"]["days"], {"type": "integer"})
        self.assertEqual(first["messages"], [
            {"role": "system", "content": "You are a helpful agent."},
            {"role": "user", "content": "What is 2 + 40?"}])
        # The second call carries the tool call and its result.
        call = second["messages"][2]
        self.assertEqual(call["role"], "assistant")
        self.assertEqual(call["tool_calls"][0]["function"]["name"], "add_numbers")
        self.assertEqual(json.loads(call["tool_calls"][0]["function"]["arguments"]), {"a": 2, "b": 40})
        self.assertEqual(second["messages"][3], {
            "role": "tool", "tool_call_id": call["tool_calls"][0]["id"], "content": "42"})

    def test_tool_results_exits_and_errors_go_back_to_the_model(self):
        self.agent.deploy_ok(agent_config(self.llm))
        self.llm.tool_call(("weather", {"city": "Oslo", "days": 1}),
                           ("weather", {"city": "Oslo", "days": 9}),
                           ("weather", {"days": 2}),
                           ("weather", {"city": "Oslo", "days": 1.5}),
                           ("weather", {"city": "Oslo", "when": "now"}),
                           ("broken", {}),
                           ("delete_everything", {}))
        self.llm.answer("Sunny in Oslo.")
        r = self.ask("Weather?")
        self.assertEqual((r.status, r.text()), (200, "Sunny in Oslo."), r)
        results = [m["content"] for m in self.llm.requests[1]["json"]["messages"] if m["role"] == "tool"]
        self.assertEqual(json.loads(results[0]), {"city": "Oslo", "sky": "sunny"})
        self.assertEqual(json.loads(results[1]), {"city": "Oslo", "sky": "sunny"})
        self.assertEqual(results[2], "error: missing required argument 'city'")
        self.assertEqual(results[3], "error: argument 'days' must be an integer, got a number")
        self.assertEqual(results[4], "error: unknown argument 'when'; it takes: city, days")
        self.assertTrue(results[5].startswith("error: rule set broken, node parse: "), results[5])
        self.assertEqual(results[6], "error: there is no tool named 'delete_everything'")

    def test_arguments_that_are_not_json(self):
        self.agent.deploy_ok(agent_config(self.llm))
        self.llm.tool_call(("add_numbers", {}), arguments_text='{"a": 1, "b": ')
        self.llm.answer("Sorry.")
        self.assertEqual(self.ask("Add").text(), "Sorry.")
        tool = [m for m in self.llm.requests[1]["json"]["messages"] if m["role"] == "tool"][0]
        self.assertEqual(tool["content"], 'error: the arguments are not a JSON object: {"a": 1, "b": ')

    def test_budget_exceeded(self):
        self.agent.deploy_ok(agent_config(self.llm, max_steps=3))
        for _ in range(3):
            self.llm.tool_call(("add_numbers", {"a": 1, "b": 1}))
        self.llm.answer("never reached")
        r = self.ask("Loop forever")
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.text(), "budget: no answer after 3 model calls (max_steps): the model still asked for tools")
        self.assertEqual(len(self.llm.requests), 3)
        self.assertEqual(self.llm.pending(), 1)

    def test_model_error_and_timeout_take_error(self):
        self.agent.deploy_ok(agent_config(self.llm, timeout_ms=400))
        self.llm.raw(500, b'{"error": {"message": "internal"}}')
        r = self.ask("Hi")
        self.assertEqual((r.status, r.text()), (502, "error: the model's endpoint answered 500: internal"))
        self.llm.tool_call(("add_numbers", {"a": 1, "b": 2}))
        self.llm.answer("slow", delay=3)
        r = self.ask("Hi")
        self.assertEqual((r.status, r.text()), (502, "error: timeout: no answer from the model within 400 ms"))
        self.llm.raw(200, b'{"choices": [{"message": {"role": "assistant", "content": "Hal')
        r = self.ask("Hi")
        self.assertEqual(r.status, 502)
        self.assertIn("error: the model's answer is not valid JSON", r.text())

    def test_conversation_memory(self):
        self.agent.deploy_ok(agent_config(self.llm))
        self.llm.answer("Hello Ann.")
        self.llm.tool_call(("add_numbers", {"a": 1, "b": 1}))
        self.llm.answer("Your name is Ann; 1 + 1 = 2.")
        self.llm.answer("Who are you?")
        self.assertEqual(self.ask("I am Ann", session="s1").text(), "Hello Ann.")
        self.assertEqual(self.ask("Who am I, and 1+1?", session="s1").text(), "Your name is Ann; 1 + 1 = 2.")
        self.assertEqual(self.ask("Who am I?", session="s2").text(), "Who are you?")
        msgs = self.llm.requests[1]["json"]["messages"]
        self.assertEqual([(m["role"], m.get("content")) for m in msgs], [
            ("system", "You are a helpful agent."), ("user", "I am Ann"),
            ("assistant", "Hello Ann."), ("user", "Who am I, and 1+1?")])
        # The tool exchange is remembered too.
        roles = [m["role"] for m in self.llm.requests[2]["json"]["messages"]]
        self.assertEqual(roles, ["system", "user", "assistant", "user", "assistant", "tool"])
        # Another conversation starts empty.
        self.assertEqual(len(self.llm.requests[3]["json"]["messages"]), 2)

    def test_memory_expires(self):
        self.agent.deploy_ok(agent_config(self.llm, memory_ttl_s=1))
        self.llm.answer("first")
        self.llm.answer("second")
        self.ask("one", session="s")
        import time
        time.sleep(1.5)
        self.ask("two", session="s")
        self.assertEqual(len(self.llm.requests[1]["json"]["messages"]), 2)

    def test_trace_has_every_step_and_no_secret(self):
        self.agent.deploy_ok(agent_config(self.llm))
        self.agent.mgmt("POST", "/v1/trace", {"count": 1})
        self.llm.tool_call(("add_numbers", {"a": 20, "b": 22}), prompt_tokens=40, completion_tokens=8)
        self.llm.answer("It is 42.", prompt_tokens=60, completion_tokens=4)
        self.assertEqual(self.ask("Sum please", session="t").text(), "It is 42.")
        trace = self.agent.mgmt("GET", "/v1/trace").json()["traces"][0]
        text = trace["text"]
        expected = [
            "conversation 't': 0 earlier messages",
            "step 1: prompt to gpt-agent (1 messages, 3 tools), last user: 'Sum please'",
            "step 1: tokens 40 in, 8 out, finish tool_calls",
            'step 1: tool call add_numbers {"a": 20, "b": 22}',
            "enter     add_numbers/sum SetVariable",
            "RESULT = 42",
            "step 1: tool result add_numbers 42",
            "step 2: prompt to gpt-agent (3 messages, 3 tools), last tool result: '42'",
            "step 2: tokens 60 in, 4 out, finish stop",
            "step 2: answer 'It is 42.'",
            "AI_ANSWER = 'It is 42.'",
        ]
        pos = 0
        for line in expected:
            found = text.find(line, pos)
            self.assertGreaterEqual(found, 0, f"{line!r} not in order in:\n{text}")
            pos = found
        notes = [e for e in trace["events"] if e["kind"] == "note"]
        self.assertTrue(all(e["node"] == "agent" for e in notes), notes)
        self.assertNotIn(API_KEY, json.dumps(trace) + self.agent.log_text())

    def test_counters(self):
        self.agent.deploy_ok(agent_config(self.llm))
        self.llm.tool_call(("add_numbers", {"a": 1, "b": 2}), prompt_tokens=10, completion_tokens=1)
        self.llm.answer("3", prompt_tokens=20, completion_tokens=2)
        self.ask("1+2")
        text = self.agent.mgmt("GET", "/metrics").text()
        self.assertIn('cap_rule_llm_calls_total{ruleset="main",node="agent",rule="AiAgent"} 2', text)
        self.assertIn('cap_rule_llm_prompt_tokens_total{ruleset="main",node="agent",rule="AiAgent"} 30', text)


class AiAgentValidationTest(AgentTestCase):
    def deploy_bad(self, files, expect):
        r = self.agent.deploy(files)
        self.assertEqual(r.status, 422, r)
        self.assertIn(expect, json.dumps(r.json()["details"] if "details" in r.json() else r.json()))
        self.assertFalse(self.agent.mgmt("GET", "/v1/status").json().get("ready"))

    def test_bad_tools(self):
        llm_url = "http://127.0.0.1:9/v1"

        def with_tools(tool_list, extra=None, tweak=None):
            files = configuration("a", [ruleset("main", "a", {
                "a": {"rule": "AiAgent", "with": dict({"base_url": llm_url, "model": "m",
                                                       "prompt": "p", "tools": tool_list}, **(extra or {}))}})]
                                  + tools())
            if tweak:
                tweak(files)
            return files

        self.deploy_bad(with_tools(["nosuch"]), "rule set 'nosuch' does not exist")
        self.deploy_bad(with_tools("${X}"), "tools: must be a list of rule set names")
        self.deploy_bad(with_tools([3]), "tools: must hold rule set names, got 3")
        self.deploy_bad(with_tools(["weather", "weather"]), "rule set 'weather' is listed twice")
        self.deploy_bad(with_tools(["weather"], {"max_steps": 0}), "max_steps: must be a whole number from 1 to 50")

        def no_description(files):
            rs = json.loads(files["rulesets/weather.json"])
            del rs["description"]
            files["rulesets/weather.json"] = json.dumps(rs).encode()
        self.deploy_bad(with_tools(["weather"], tweak=no_description),
                        "rule set 'weather' needs a \\\"description\\\"")

        def bad_params(params):
            def tweak(files):
                rs = json.loads(files["rulesets/weather.json"])
                rs["params"] = params
                files["rulesets/weather.json"] = json.dumps(rs).encode()
            return tweak
        self.deploy_bad(with_tools(["weather"], tweak=bad_params([{"name": "city", "type": "text"}])),
                        "params.city.type: must be string, number, integer, boolean, list or map")
        self.deploy_bad(with_tools(["weather"], tweak=bad_params([{"name": "1x"}])),
                        "params[0].name: must be a variable name")
        self.deploy_bad(with_tools(["weather"], tweak=bad_params({"city": "string"})),
                        "params: must be a list")
        self.deploy_bad(with_tools(["weather"], tweak=bad_params([{"name": "c"}, {"name": "c"}])),
                        "params.c: is listed twice")


if __name__ == "__main__":
    unittest.main()
