"""docs/api/console.yaml and docs/api/agent.yaml against the running servers: every
documented operation is answered with one of its documented statuses, JSON answers carry
only documented fields of the documented types, and each path's Allow header (on a method
it does not take) lists exactly the documented methods."""

import json
import os
import unittest

import yaml

from agent_harness import SOURCE_DIR, hello_config, make_zip
from console_harness import ConsoleTestCase

METHODS = ("get", "put", "post", "delete", "patch")


def load(name):
    with open(os.path.join(SOURCE_DIR, "docs", "api", name)) as f:
        return yaml.safe_load(f)


class Schema:
    def __init__(self, spec):
        self.spec = spec

    def resolve(self, s):
        while "$ref" in s:
            node = self.spec
            for part in s["$ref"].lstrip("#/").split("/"):
                node = node[part]
            s = node
        return s

    def merged(self, s):
        s = self.resolve(s)
        if "allOf" not in s:
            return s
        out = {"type": "object", "properties": {}}
        for part in s["allOf"]:
            p = self.merged(part)
            out["properties"].update(p.get("properties", {}))
        return out

    def check(self, schema, value, where, problems):
        s = self.merged(schema)
        if value is None:
            if s.get("type") and not s.get("nullable"):
                problems.append(f"{where}: null where {s.get('type')} is documented")
            return
        t = s.get("type")
        ok = {"object": isinstance(value, dict), "array": isinstance(value, list),
              "string": isinstance(value, str), "boolean": isinstance(value, bool),
              "integer": isinstance(value, int) and not isinstance(value, bool),
              "number": isinstance(value, (int, float)) and not isinstance(value, bool),
              None: True}[t]
        if not ok:
            problems.append(f"{where}: {type(value).__name__} where {t} is documented")
            return
        if "enum" in s and value not in s["enum"]:
            problems.append(f"{where}: {value!r} is not one of {s['enum']}")
        if t == "object" and "properties" in s and "additionalProperties" not in s:
            for k, v in value.items():
                if k not in s["properties"]:
                    problems.append(f"{where}: field {k!r} is not documented")
                else:
                    self.check(s["properties"][k], v, f"{where}.{k}", problems)
        if t == "array" and s.get("items"):
            for i, v in enumerate(value[:5]):
                self.check(s["items"], v, f"{where}[{i}]", problems)


def check_operation(test, spec, path, method, reply):
    schema = Schema(spec)
    op = spec["paths"][path][method]
    documented = set(op["responses"])
    test.assertIn(str(reply.status), documented,
                  f"{method.upper()} {path} answered {reply.status}: {reply.body[:300]!r}")
    if reply.status >= 400 and reply.body:
        body = reply.json()
        test.assertEqual(sorted(k for k in body if k != "warnings"), ["details", "error"], reply)
    resp = schema.resolve(op["responses"][str(reply.status)])
    content = resp.get("content", {})
    if "application/json" in content and reply.body:
        test.assertIn("application/json", reply.headers.get("content-type", ""))
        problems = []
        schema.check(content["application/json"].get("schema", {}), reply.json(),
                     f"{method.upper()} {path}", problems)
        test.assertEqual(problems, [])


def check_allow(test, spec, path, reply):
    documented = {m.upper() for m in spec["paths"][path] if m in METHODS}
    test.assertEqual(reply.status, 405, f"PATCH {path}: {reply}")
    allowed = {m.strip() for m in reply.headers.get("allow", "").split(",") if m.strip()}
    test.assertEqual(allowed, documented, f"Allow of {path}")


class ConsoleSpec(ConsoleTestCase):
    def test_console_yaml_matches_the_console(self):
        spec = load("console.yaml")
        c = self.console
        agent = self.new_agent()
        c.add_agent(agent, "a1", group="g")
        c.ok("POST", "/api/v1/repositories", {"name": "r"})
        c.save("r", "hello", hello_config("Hello"))
        c.save("r", "hello", hello_config("Howdy"))
        dep = c.ok("POST", "/api/v1/deployments", {"configuration": "r/hello", "agents": ["a1"]})
        c.ok("PUT", "/api/v1/vault/v", {"value": "secret-value"})
        manifest = {"name": "demo", "version": "1.0.0", "rules": [
            {"name": "Demo", "script": "rules/demo.lua"}]}
        c.ok("POST", "/api/v1/extensions", make_zip({"extension.json": json.dumps(manifest).encode(),
                                                      "rules/demo.lua": b"return function() end"}))
        c.ok("POST", "/api/v1/roles", {"name": "ro1", "rights": []})
        c.ok("POST", "/api/v1/users", {"username": "u1", "password": "password-of-u1"})
        c.ok("POST", "/api/v1/join-tokens", {"name": "jt1", "key": "k" * 20})
        log_file = c.ok("GET", "/api/v1/agents/a1/logs")["files"][0]["name"]

        def concrete(path):
            p = path.replace("{id}", "a1").replace("{repo}", "r").replace("{revision}", "1")
            p = p.replace("{deployment}", str(dep["id"])).replace("{username}", "u1")
            p = p.replace("{role}", "ro1").replace("{version}", "1.0.0").replace("{file}", log_file)
            for prefix, name in (("/configurations/", "hello"), ("/join-tokens/", "jt1"),
                                 ("/vault/", "v"), ("/extensions/", "demo")):
                if prefix in p:
                    p = p.replace("{name}", name)
            if path.endswith("/diff"):
                p += "?from=1&to=2"
            self.assertNotIn("{", p)
            return p

        for path in spec["paths"]:
            with self.subTest(allow=path):
                check_allow(self, spec, path, c.request("PATCH", concrete(path)))
        operations = [(p, m) for p in spec["paths"] for m in spec["paths"][p] if m in METHODS]
        operations.sort(key=lambda pm: (pm[1] == "delete", pm[0] == "/api/v1/auth/logout"))
        self.assertGreater(len(operations), 60)
        for path, method in operations:
            with self.subTest(op=f"{method.upper()} {path}"):
                body = None if method in ("get", "delete") else {}
                token = None
                if path == "/api/v1/auth/logout":
                    token = c.login("admin", c.admin_password)
                reply = c.request(method.upper(), concrete(path), body, token=token)
                check_operation(self, spec, path, method, reply)


class AgentSpec(ConsoleTestCase):
    def test_agent_yaml_matches_the_agent(self):
        spec = load("agent.yaml")
        agent = self.new_agent()
        agent.deploy_ok(hello_config())
        log_file = agent.mgmt("GET", "/v1/logs").json()["files"][0]["name"]
        operations = [(p, m) for p in spec["paths"] for m in spec["paths"][p] if m in METHODS]
        self.assertGreater(len(operations), 20)
        for path, method in operations:
            with self.subTest(op=f"{method.upper()} {path}"):
                p = path.replace("{name}", "demo").replace("{file}", log_file)
                body = b"" if method in ("get", "delete") else b"{}"
                reply = agent.mgmt(method.upper(), p, body)
                check_operation(self, spec, path, method, reply)
        for path in spec["paths"]:
            with self.subTest(allow=path):
                p = path.replace("{name}", "demo").replace("{file}", log_file)
                check_allow(self, spec, path, agent.mgmt("PATCH", p))


if __name__ == "__main__":
    unittest.main()
