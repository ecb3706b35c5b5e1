"""LlmChat and AiAgent with provider bedrock against a scripted Converse endpoint: the
request shape, the Signature V4 signature (checked with botocore, an independent signer),
a tool round trip, and the AWS secret kept out of traces and logs."""

import json
import unittest
import urllib.parse

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from agent_harness import AgentTestCase, configuration, ruleset
from llm_server import LlmServer
from test_llm_stream import events

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
AWS = {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
       "session_token": "FwoGZXIvYXdzEXAMPLETOKEN", "region": "eu-west-1"}


def expected_authorization(req, host):
    """The Authorization botocore computes for the request the server received."""
    creds = Credentials(AWS["access_key_id"], AWS["secret_access_key"], AWS["session_token"])
    aws = AWSRequest(method="POST", url=f"http://{host}{req['path']}", data=req["body"],
                     headers={"Content-Type": req["headers"]["content-type"]})
    auth = SigV4Auth(creds, "bedrock", AWS["region"])
    aws.context["timestamp"] = req["headers"]["x-amz-date"]
    auth._modify_request_before_signing(aws)
    canonical = auth.canonical_request(aws)
    signature = auth.signature(auth.string_to_sign(aws, canonical), aws)
    auth._inject_signature_to_request(aws, signature)
    return aws.headers["Authorization"]


class BedrockTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.llm = LlmServer()
        self.addCleanup(self.llm.stop)
        r = self.agent.mgmt("PUT", "/v1/vault", {"aws": AWS})
        self.assertEqual(r.status, 200, r)

    def check_signed(self, req):
        host = f"127.0.0.1:{self.llm.port}"
        self.assertEqual(req["headers"]["host"], host)
        self.assertEqual(req["headers"]["x-amz-security-token"], AWS["session_token"])
        self.assertRegex(req["headers"]["x-amz-date"], r"^\d{8}T\d{6}Z$")
        self.assertIn("/eu-west-1/bedrock/aws4_request", req["headers"]["authorization"])
        self.assertEqual(req["headers"]["authorization"], expected_authorization(req, host))

    def test_llm_chat_converse(self):
        self.agent.deploy_ok(configuration("b", [ruleset("main", "ask", {
            "ask": {"rule": "LlmChat", "with": {
                "provider": "bedrock", "base_url": self.llm.base, "model": MODEL,
                "credential": "aws", "system": "Be brief.", "prompt": "${q}",
                "temperature": 0, "max_tokens": 50, "json": True},
                "then": {"ok": ["ok"], "error": ["err"]}},
            "ok": {"rule": "HttpRespond", "with": {"body": "${LLM_ANSWER.answer} ${LLM_USAGE.prompt_tokens}"}},
            "err": {"rule": "HttpRespond", "with": {"status": 502, "body": "${LLM_ERROR}"}},
        })]))
        self.agent.mgmt("POST", "/v1/trace", {"count": 1})
        self.llm.answer('{"answer": "yes"}', prompt_tokens=21)
        r = self.agent.web("GET", "/?q=" + urllib.parse.quote_plus("Is it signed?"))
        self.assertEqual((r.status, r.text()), (200, "yes 21"), r)
        req = self.llm.requests[0]
        self.assertEqual(req["path"], "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse")
        self.assertEqual(req["json"], {
            "messages": [{"role": "user", "content": [{"text": "Is it signed?"}]}],
            "system": [{"text": "Be brief.\n\nAnswer with a single JSON object and nothing else."}],
            "inferenceConfig": {"temperature": 0, "maxTokens": 50}})
        self.check_signed(req)
        everything = json.dumps(self.agent.mgmt("GET", "/v1/trace").json()) + self.agent.log_text()
        self.assertNotIn(AWS["secret_access_key"], everything)
        self.assertNotIn(AWS["session_token"], everything)

    def deploy_doubling_agent(self, **with_):
        """An AiAgent on Bedrock whose one tool, `double`, doubles a number."""
        tool = ruleset("double", "d", {
            "d": {"rule": "SetVariable", "with": {"name": "RESULT", "value": "${n * 2}"}}})
        tool["description"] = "Doubles a number."
        tool["params"] = [{"name": "n", "type": "number", "required": True}]
        self.agent.deploy_ok(configuration("b", [ruleset("main", "agent", {
            "agent": {"rule": "AiAgent", "with": {
                "provider": "bedrock", "base_url": self.llm.base, "model": MODEL,
                "credential": "aws", "prompt": "Double 21", "tools": ["double"], **with_},
                "then": {"answered": ["ok"], "error": ["err"]}},
            "ok": {"rule": "HttpRespond", "with": {"body": "${AI_ANSWER}"}},
            "err": {"rule": "HttpRespond", "with": {"status": 502, "body": "${AI_ERROR}"}},
        }), tool]))

    def test_ai_agent_tool_round_trip(self):
        self.deploy_doubling_agent()
        self.llm.tool_call(("double", {"n": 21}))
        self.llm.answer("42")
        r = self.agent.web("GET", "/")
        self.assertEqual((r.status, r.text()), (200, "42"), r)
        first, second = self.llm.requests
        self.assertEqual(first["json"]["toolConfig"], {"tools": [{"toolSpec": {
            "name": "double", "description": "Doubles a number.",
            "inputSchema": {"json": {"type": "object", "properties": {"n": {"type": "number"}},
                                     "required": ["n"], "additionalProperties": False}}}}]})
        msgs = second["json"]["messages"]
        self.assertEqual([m["role"] for m in msgs], ["user", "assistant", "user"])
        use = msgs[1]["content"][0]["toolUse"]
        self.assertEqual((use["name"], use["input"]), ("double", {"n": 21}))
        self.assertEqual(msgs[2]["content"], [{"toolResult": {
            "toolUseId": use["toolUseId"], "content": [{"text": "42"}], "status": "success"}}])
        for req in self.llm.requests:
            self.check_signed(req)

    def test_ai_agent_streamed_from_converse(self):
        self.deploy_doubling_agent(stream=True)
        self.llm.tool_call(("double", {"n": 21}), prompt_tokens=9, completion_tokens=2)
        self.llm.answer("It is 42.", prompt_tokens=15, completion_tokens=4)
        r = self.agent.web("GET", "/")
        self.assertEqual((r.status, r.headers["content-type"]), (200, "text/event-stream"), r)
        got = events(r.text())
        use_id = self.llm.requests[1]["json"]["messages"][1]["content"][0]["toolUse"]["toolUseId"]
        self.assertEqual(got, [
            ("tool_call", {"step": 1, "id": use_id, "name": "double", "arguments": {"n": 21}}),
            ("tool_result", {"step": 1, "id": use_id, "name": "double", "result": "42", "error": False}),
            ("message", {"delta": "It is 42."}),
            ("done", {"steps": 2, "tool_calls": 1, "prompt_tokens": 24, "completion_tokens": 6,
                      "finish_reason": "stop"})])
        # Converse (not ConverseStream): the requests are the same as without stream.
        self.assertNotIn("stream", self.llm.requests[0]["json"])
        for req in self.llm.requests:
            self.check_signed(req)

    def test_incomplete_credential(self):
        r = self.agent.mgmt("PUT", "/v1/vault", {"aws": {"access_key_id": "AKID"}})
        self.assertEqual(r.status, 200, r)
        self.agent.deploy_ok(configuration("b", [ruleset("main", "ask", {
            "ask": {"rule": "LlmChat", "with": {"provider": "bedrock", "base_url": self.llm.base,
                                                 "model": MODEL, "credential": "aws", "prompt": "x"},
                    "then": {"error": ["err"]}},
            "err": {"rule": "HttpRespond", "with": {"status": 502, "body": "${LLM_ERROR}"}},
        })]))
        r = self.agent.web("GET", "/")
        self.assertEqual((r.status, r.text()), (502, "vault credential 'aws' needs the fields "
                                                     "access_key_id and secret_access_key for bedrock"))
        self.assertEqual(self.llm.requests, [])


if __name__ == "__main__":
    unittest.main()
