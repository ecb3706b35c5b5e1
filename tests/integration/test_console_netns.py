"""Three agents as separate hosts, as ECS tasks are: each in its own network namespace with
its own address, all on management port 20001 and web port 8080, joined by a bridge to the
console's namespace. They announce themselves with a join token, and the console deploys
to them by address. Needs root and `ip netns` (skipped with the reason otherwise)."""

import os
import secrets
import shutil
import subprocess
import time
import unittest

from agent_harness import Agent, hello_config, http_request
from console_harness import ConsoleTestCase


def ip(*args, ns=None):
    cmd = (["ip", "netns", "exec", ns, "ip"] if ns else ["ip"]) + list(args)
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def netns_unavailable():
    if not shutil.which("ip"):
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = "capprobe" + secrets.token_hex(3)
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return "ip netns add is not allowed here: " + r.stderr.strip()
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Hosts:
    """A bridge in this namespace (10.X.Y.1/24) and `count` namespaces at 10.X.Y.11, .12, ..."""

    def __init__(self, count):
        tag = secrets.token_hex(3)
        self.net = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
        self.bridge = "cb" + tag
        self.namespaces, self.links = [], []
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.net}.1/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i in range(1, count + 1):
            ns, outer, inner = f"capns{tag}{i}", f"cv{tag}{i}", f"cp{tag}{i}"
            subprocess.run(["ip", "netns", "add", ns], check=True)
            self.namespaces.append(ns)
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            self.links.append(outer)
            ip("link", "set", inner, "netns", ns)
            ip("link", "set", outer, "master", self.bridge)
            ip("link", "set", outer, "up")
            ip("addr", "add", f"{self.address(i)}/24", "dev", inner, ns=ns)
            ip("link", "set", inner, "up", ns=ns)
            ip("link", "set", "lo", "up", ns=ns)

    def address(self, i):
        return f"{self.net}.{10 + i}"

    @property
    def gateway(self):
        return f"{self.net}.1"

    def close(self):
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


@unittest.skipIf(netns_unavailable(), netns_unavailable())
class ThreeHosts(ConsoleTestCase):
    console_env = {"CAP_CONSOLE_ADDRESS": "0.0.0.0"}

    def test_three_agents_on_their_own_addresses_register_and_take_a_deploy(self):
        hosts = Hosts(3)
        self.addCleanup(hosts.close)
        c = self.console
        key = "fleet-key-" + secrets.token_hex(12)
        token = c.ok("POST", "/api/v1/join-tokens", {"name": "ecs", "group": "svc", "key": key})["token"]
        agents = []
        for i, ns in enumerate(hosts.namespaces, start=1):
            a = Agent(key=key, prefix=["ip", "netns", "exec", ns], env={
                "CAP_AGENT_NAME": f"task-{i}",
                "CAP_WEB_ADDRESS": "0.0.0.0", "CAP_WEB_PORT": "8080",
                "CAP_MGMT_ADDRESS": "0.0.0.0", "CAP_MGMT_PORT": "20001",
                "CAP_CONSOLE_URL": f"http://{hosts.gateway}:{c.port}",
                "CAP_JOIN_TOKEN": token,
            })
            self.addCleanup(a.cleanup)
            agents.append(a.start())
        for a in agents:
            self.assertTrue(a.wait_for_log("announced to the console", 20), a.log_text())
        listed = c.ok("GET", "/api/v1/agents")["agents"]
        self.assertEqual([(x["id"], x["host"], x["port"], x["web_port"], x["group"], x["registered"])
                          for x in listed],
                         [(f"task-{i}", hosts.address(i), 20001, 8080, "svc", "announced")
                          for i in (1, 2, 3)])
        c.wait_for(lambda: all(x["status"]["online"] for x in c.ok("GET", "/api/v1/agents")["agents"]),
                   what="all three online")
        c.ok("POST", "/api/v1/repositories", {"name": "r"})
        c.save("r", "hello", hello_config("Hi"))
        d = c.ok("POST", "/api/v1/deployments", {"configuration": "r/hello", "group": "svc"})
        self.assertTrue(d["ok"], d)
        self.assertEqual([(r["agent"], r["ready_checked"]) for r in d["results"]],
                         [("task-1", True), ("task-2", True), ("task-3", True)])
        for i in (1, 2, 3):
            r = http_request(8080, "GET", f"/hello?name=host{i}", host=hosts.address(i))
            self.assertEqual(r.text(), f"Hi, host{i}!")
        # One host goes away: the console sees it offline and refuses to deploy to it.
        agents[1].stop()
        c.wait_for(lambda: not c.ok("GET", "/api/v1/agents/task-2")["status"]["online"],
                   what="task-2 offline")
        r = c.request("POST", "/api/v1/deployments", {"configuration": "r/hello", "group": "svc"})
        self.assertEqual(r.status, 409)
        self.assertTrue(r.json()["details"][0].startswith("task-2: "), r)


if __name__ == "__main__":
    unittest.main()
