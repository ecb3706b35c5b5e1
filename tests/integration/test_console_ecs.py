"""The console follows an ECS service and rolls deployments through its target group,
against moto_server's ECS, ELBv2 and IAM, with real cap-agent processes standing in for the
tasks.

moto gives each awsvpc task a random 10.x.y.z address that nothing here can listen on
without root. So moto_server runs with its ECS address picker replaced (MOTO_WRAPPER
below): tasks get consecutive addresses in a random 127.A.B.0/24, which Linux routes to the
loopback interface, and each task's agent listens on its own address with the same ports,
as Fargate tasks do. Everything else is moto's own: the console's SigV4-signed JSON 1.1
and query calls, IAM authorisation of the deploy user, the target group's registrations.
Between the console and moto sits a recording proxy (AwsRecorder), which logs each call's
action and, at each ELBv2 Deregister/RegisterTargets, what the agent at that address
serves, so the order of the steps is checked from outside the console.
"""

import http.client
import http.server
import json
import os
import secrets
import socket
import socketserver
import tempfile
import threading
import time
import unittest
import urllib.parse
import urllib.request

from agent_harness import (Agent, closed_port, configuration, hello_config, http_request,
                           ruleset)
from console_harness import Console
from s3_harness import (_moto_python, moto_api, moto_server_path,
                        run_under_moto_python_if_needed, start_moto_server, stop_process)
from test_api_spec import check_operation, load

REGION = "eu-west-1"
CLUSTER = "cap-cluster"
SERVICE = "cap-svc"

MOTO_WRAPPER = """
import itertools, os, sys
import moto.ecs.models as ecs_models
_net = os.environ["CAP_TEST_TASK_NET"]
_next = itertools.count(11)
ecs_models.random_private_ip = lambda *a, **k: _net + "." + str(next(_next))
from moto.server import main
sys.exit(main())
"""



def stack_deploy_policy():
    """The DeployUser's actions from deploy/aws/cap-fullstack.yaml: the console must need
    no other. moto's IAM checks the action only (every resource is "*" to it, conditions are
    ignored), so the statements' resources and conditions, which scope the user to this
    cluster and target group in AWS, are left out here; test_aws_stack checks them."""
    from test_aws_stack import load_template
    (policy,) = load_template()["Resources"]["DeployUser"]["Properties"]["Policies"]
    actions = []
    for st in policy["PolicyDocument"]["Statement"]:
        actions += [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": sorted(actions), "Resource": "*"}]}


ECS_ONLY_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["ecs:ListTasks", "ecs:DescribeTasks"], "Resource": "*"}]}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EcsStack:
    """moto_server with a cluster, an awsvpc task definition, a service, its running tasks
    and an IP target group holding them; an IAM deploy user allowed what the console needs
    and a user allowed nothing; authorisation on."""

    def __init__(self, tasks):
        self.tasks_wanted = tasks
        self.net = f"127.{secrets.randbelow(150) + 100}.{secrets.randbelow(250)}"
        self.web_port = free_port()
        self.mgmt_port = free_port()
        self.proc = None
        self.output = []

    def start(self):
        python = _moto_python() or "python3"
        moto_server_path()  # a clear failure when moto is not installed
        self.proc, self.endpoint = start_moto_server(
            [python, "-c", MOTO_WRAPPER], self.output,
            env=dict(os.environ, CAP_TEST_TASK_NET=self.net))
        self._moto_api("/moto-api/state-manager/set-transition",
                       {"model_name": "ecs::task",
                        "transition": {"progression": "manual", "times": 1000000}})
        self._setup()
        return self

    def _moto_api(self, path, body):
        moto_api(self.endpoint, path, json.dumps(body).encode())

    def client(self, service, key=None):
        import boto3
        key = key or ("setup", "setup-secret")
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=key[0], aws_secret_access_key=key[1])

    def _setup(self):
        ec2, ecs, elb, iam = (self.client(s) for s in ("ec2", "ecs", "elbv2", "iam"))
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(GroupName="cap", Description="cap", VpcId=vpc)["GroupId"]
        ecs.create_cluster(clusterName=CLUSTER)
        self.task_definition = ecs.register_task_definition(
            family="cap-agent", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
            cpu="256", memory="512",
            containerDefinitions=[{"name": "agent", "image": "cap-agent", "memory": 512,
                                   "cpu": 256, "portMappings": [
                                       {"containerPort": self.web_port},
                                       {"containerPort": self.mgmt_port}]}],
        )["taskDefinition"]["taskDefinitionArn"]
        self.target_group = elb.create_target_group(
            Name="cap-tg", Protocol="HTTP", Port=self.web_port, VpcId=vpc, TargetType="ip",
            HealthCheckPath="/.cap/health")["TargetGroups"][0]["TargetGroupArn"]
        self.network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [sg]}}
        ecs.create_service(cluster=CLUSTER, serviceName=SERVICE,
                           taskDefinition=self.task_definition, desiredCount=0,
                           launchType="FARGATE", networkConfiguration=self.network)
        for _ in range(self.tasks_wanted):
            self.run_task()
        # A task of another family in the same cluster: not the service's.
        ecs.run_task(cluster=CLUSTER, taskDefinition=self.task_definition, count=1,
                     launchType="FARGATE", networkConfiguration=self.network, group="family:other")
        iam.create_user(UserName="cap-deploy")
        self.deploy_policy = stack_deploy_policy()
        iam.put_user_policy(UserName="cap-deploy", PolicyName="deploy",
                            PolicyDocument=json.dumps(self.deploy_policy))
        k = iam.create_access_key(UserName="cap-deploy")["AccessKey"]
        self.deploy_key = (k["AccessKeyId"], k["SecretAccessKey"])
        iam.create_user(UserName="nobody")
        k = iam.create_access_key(UserName="nobody")["AccessKey"]
        self.denied_key = (k["AccessKeyId"], k["SecretAccessKey"])
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        k = iam.create_access_key(UserName="admin")["AccessKey"]
        self.admin_key = (k["AccessKeyId"], k["SecretAccessKey"])
        self._moto_api("/moto-api/reset-auth", 0)

    def run_task(self):
        """Starts one task of the service (registered in the target group, as ECS does);
        returns (task ARN, its IP)."""
        ecs = self.client("ecs", getattr(self, "admin_key", None))
        t = ecs.run_task(cluster=CLUSTER, taskDefinition=self.task_definition, count=1,
                         launchType="FARGATE", networkConfiguration=self.network,
                         group="service:" + SERVICE, startedBy="ecs-svc/cap")["tasks"][0]
        ip = [d["value"] for d in t["attachments"][0]["details"]
              if d["name"] == "privateIPv4Address"][0]
        self.client("elbv2", getattr(self, "admin_key", None)).register_targets(
            TargetGroupArn=self.target_group, Targets=[{"Id": ip, "Port": self.web_port}])
        return t["taskArn"], ip

    def stop_task(self, arn, ip):
        self.client("elbv2", self.admin_key).deregister_targets(
            TargetGroupArn=self.target_group, Targets=[{"Id": ip, "Port": self.web_port}])
        self.client("ecs", self.admin_key).stop_task(cluster=CLUSTER, task=arn, reason="test")

    def health(self):
        out = self.client("elbv2", self.admin_key).describe_target_health(
            TargetGroupArn=self.target_group)["TargetHealthDescriptions"]
        return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in out}

    def service_tasks(self):
        ecs = self.client("ecs", self.admin_key)
        arns = ecs.list_tasks(cluster=CLUSTER, desiredStatus="RUNNING")["taskArns"]
        tasks = ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else []
        out = []
        for t in tasks:
            if t["group"] != "service:" + SERVICE:
                continue
            ip = [d["value"] for d in t["attachments"][0]["details"]
                  if d["name"] == "privateIPv4Address"][0]
            out.append((t["taskArn"], ip))
        return sorted(out)

    def set_deploy_policy(self, policy):
        self.client("iam", self.admin_key).put_user_policy(
            UserName="cap-deploy", PolicyName="deploy", PolicyDocument=json.dumps(policy))

    def stop(self):
        stop_process(self.proc)


class AwsRecorder:
    """An HTTP proxy in front of moto that records each AWS call the console makes (the Host
    header passes unchanged, so signatures stay valid). At each ELBv2 DeregisterTargets and
    RegisterTargets it also notes what the agent at that target answers on /hello."""

    def __init__(self, upstream, web_port):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.web_port = web_port
        self.calls = []  # (action, target ip or None, status, what the target served)
        self.lock = threading.Lock()
        # When set: the first RegisterTargets waits for it (and sets `held` meanwhile).
        self.hold = None
        self.held = threading.Event()
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                target = self.headers.get("X-Amz-Target", "")
                form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
                action = target.split(".")[-1] if target else form.get("Action", ["?"])[0]
                ip = form.get("Targets.member.1.Id", [None])[0]
                served = None
                if ip and action in ("DeregisterTargets", "RegisterTargets"):
                    served = rec.served(ip)
                if action == "RegisterTargets" and rec.hold and not rec.held.is_set():
                    rec.held.set()
                    rec.hold.wait(120)
                conn = http.client.HTTPConnection(rec.upstream.hostname, rec.upstream.port,
                                                  timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("connection", "content-length")}
                conn.request("POST", self.path, body, headers)
                r = conn.getresponse()
                data = r.read()
                with rec.lock:
                    rec.calls.append((action, ip, r.status, served))
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("connection", "content-length", "transfer-encoding",
                                         "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def served(self, ip):
        try:
            return http_request(self.web_port, "GET", "/hello?name=x", host=ip, timeout=5).text()
        except OSError as e:
            return f"unreachable: {e}"

    def elb_steps(self):
        """The ELB writes in order: [(action, ip, what the target served then)]."""
        with self.lock:
            return [(a, ip, s) for a, ip, st, s in self.calls
                    if a in ("DeregisterTargets", "RegisterTargets")]

    def actions(self):
        with self.lock:
            return [a for a, _, _, _ in self.calls]

    def clear(self):
        with self.lock:
            self.calls.clear()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def startup_needs_file(greeting):
    """hello_config(greeting) whose startup rule set fails unless the shared folder holds
    ok.txt: an agent without it refuses the configuration."""
    files = hello_config(greeting)
    boot = ruleset("boot", "check", {
        "check": {"rule": "FileRead", "with": {"path": "ok.txt"},
                  "then": {"missing": ["fail"]}},
        "fail": {"rule": "SetVariable", "with": {"name": "X", "value": "${1 / 0}"}},
    })
    manifest = json.loads(files["cap.json"])
    manifest["startup_ruleset"] = "boot"
    files["cap.json"] = json.dumps(manifest).encode()
    files["rulesets/boot.json"] = json.dumps(boot).encode()
    return files


class EcsTestCase(unittest.TestCase):
    tasks = 3

    @classmethod
    def setUpClass(cls):
        run_under_moto_python_if_needed()

    def setUp(self):
        self.stack = EcsStack(self.tasks).start()
        self.addCleanup(self.stack.stop)
        self.key = "fleet-key-" + secrets.token_hex(12)
        self.agents = {}

    def start_agent(self, ip, shared_ok=True):
        shared = tempfile.mkdtemp(prefix="cap-shared-")
        if shared_ok:
            with open(os.path.join(shared, "ok.txt"), "w") as f:
                f.write("ok")
        a = Agent(key=self.key, env={
            "CAP_AGENT_NAME": "task-" + ip.replace(".", "-"),
            "CAP_WEB_ADDRESS": ip, "CAP_WEB_PORT": str(self.stack.web_port),
            "CAP_MGMT_ADDRESS": ip, "CAP_MGMT_PORT": str(self.stack.mgmt_port),
            "CAP_SHARED_DIR": shared,
        })
        self.addCleanup(a.cleanup)
        self.agents[ip] = a.start()
        return a

    def console_env(self, key=None, endpoint=None, **extra):
        key = key or self.stack.deploy_key
        env = {"AWS_ACCESS_KEY_ID": key[0], "AWS_SECRET_ACCESS_KEY": key[1],
               "AWS_REGION": REGION, "AWS_ENDPOINT_URL": endpoint or self.stack.endpoint,
               "CAP_ECS_CLUSTER": CLUSTER, "CAP_ECS_SERVICE": SERVICE,
               "CAP_ECS_TARGET_GROUP_ARN": self.stack.target_group,
               "CAP_ECS_AGENT_GROUP": "svc", "CAP_ECS_AGENT_KEY": self.key,
               "CAP_ECS_AGENT_PORT": str(self.stack.mgmt_port),
               "CAP_ECS_WEB_PORT": str(self.stack.web_port),
               "CAP_ECS_SYNC_MS": "0", "CAP_ECS_TARGET_POLL_MS": "100",
               "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}
        env.update(extra)
        return env

    def new_console(self, **kw):
        # The harness keeps the caller's AWS_* variables: start from none.
        saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("AWS_")}
        try:
            c = Console(env=self.console_env(**kw)).start()
        finally:
            os.environ.update(saved)
        self.addCleanup(c.cleanup)
        return c

    def ecs_agents(self, c):
        return sorted((a["id"], a["host"], a["port"], a["web_port"], a["group"], a["registered"])
                      for a in c.ok("GET", "/api/v1/agents")["agents"] if a["registered"] == "ecs")


class Discovery(EcsTestCase):
    def test_tasks_become_agents_and_follow_the_service(self):
        tasks = self.stack.service_tasks()
        self.assertEqual(len(tasks), 3)
        for _, ip in tasks:
            self.start_agent(ip)
        c = self.new_console(CAP_ECS_SYNC_MS="300")
        manual = Agent(key="manual-key-0123456789").start()
        self.addCleanup(manual.cleanup)
        c.add_agent(manual, "by-hand", group="svc")
        mp, wp = self.stack.mgmt_port, self.stack.web_port

        def expected(ts):
            return sorted(("ecs-" + arn.split("/")[-1].replace("-", "")[:12], ip, mp, wp, "svc",
                           "ecs") for arn, ip in ts)

        # The periodic sync defines the three tasks; the other family's task is not one.
        c.wait_for(lambda: self.ecs_agents(c) == expected(tasks), what="three ECS agents")
        c.wait_for(lambda: all(a["status"]["online"] for a in c.ok("GET", "/api/v1/agents")["agents"]),
                   what="all online")
        info = c.ok("GET", "/api/v1/ecs")
        self.assertEqual((info["enabled"], info["cluster"], info["service"], info["group"],
                          info["target_group_arn"], info["web_port"], info["agent_port"]),
                         (True, CLUSTER, SERVICE, "svc", self.stack.target_group, wp, mp))
        self.assertTrue(info["last_sync"]["ok"], info)
        self.assertEqual(sorted(t["ip"] for t in info["last_sync"]["tasks"]),
                         sorted(ip for _, ip in tasks))

        # A task comes and one goes: the periodic sync follows.
        new_arn, new_ip = self.stack.run_task()
        self.start_agent(new_ip)
        gone_arn, gone_ip = tasks[0]
        self.stack.stop_task(gone_arn, gone_ip)
        now = [t for t in tasks[1:]] + [(new_arn, new_ip)]
        c.wait_for(lambda: self.ecs_agents(c) == expected(now), what="the new task in, the old out")
        # An on-demand sync now finds the same and changes nothing.
        reply = c.request("POST", "/api/v1/ecs/sync")
        check_operation(self, load("console.yaml"), "/api/v1/ecs/sync", "post", reply)
        r = reply.json()
        self.assertEqual((r["ok"], r["trigger"], r["added"], r["removed"], r["updated"]),
                         (True, "manual", [], [], []))
        self.assertEqual(sorted(t["ip"] for t in r["tasks"]), sorted(ip for _, ip in now))
        check_operation(self, load("console.yaml"), "/api/v1/ecs", "get",
                        c.request("GET", "/api/v1/ecs"))
        self.assertEqual(self.ecs_agents(c), expected(now))
        # The hand-made definition is untouched.
        self.assertEqual(c.ok("GET", "/api/v1/agents/by-hand")["registered"], "manual")
        audit = c.ok("GET", "/api/v1/audit?limit=100")["entries"]
        actions = [(e["action"], e["target"]) for e in audit]
        self.assertIn(("agent.ecs_add", expected([(new_arn, new_ip)])[0][0]), actions)
        self.assertIn(("agent.ecs_remove", expected([(gone_arn, gone_ip)])[0][0]), actions)
        self.assertIn("removed ecs-", c.output())

    def test_aws_errors_are_clear_and_change_nothing(self):
        for _, ip in self.stack.service_tasks():
            self.start_agent(ip)
        c = self.new_console()
        r = c.ok("POST", "/api/v1/ecs/sync")
        self.assertEqual(sorted(a["ip"] for a in r["added"]),
                         sorted(ip for _, ip in self.stack.service_tasks()))
        before = self.ecs_agents(c)
        self.assertEqual(len(before), 3)
        # The deploy user loses its ECS rights: access denied, definitions unchanged.
        self.stack.set_deploy_policy({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "elasticloadbalancing:*", "Resource": "*"}]})
        r = c.request("POST", "/api/v1/ecs/sync")
        self.assertEqual(r.status, 502, r)
        check_operation(self, load("console.yaml"), "/api/v1/ecs/sync", "post", r)
        self.assertIn("ECS ListTasks: access denied", r.json()["error"])
        self.assertIn("the agent definitions were not changed", r.json()["details"])
        self.assertEqual(self.ecs_agents(c), before)
        last = c.ok("GET", "/api/v1/ecs")["last_sync"]
        self.assertEqual((last["ok"], last["kind"]), (False, "access denied"))
        self.assertIn("ECS sync (manual): ECS ListTasks: access denied", c.output())
        self.assertIn("agent definitions unchanged", c.output())

        # Other consoles: a user with no rights, unknown credentials, an unknown cluster,
        # an endpoint nobody answers. Each says what is wrong and defines no agent.
        cases = [
            (dict(key=self.stack.denied_key), "ECS ListTasks: access denied", "access denied"),
            (dict(key=("AKIAUNKNOWN000000000", "wrong-secret")),
             "ECS ListTasks: the credentials were refused", "credentials"),
            (dict(CAP_ECS_CLUSTER="no-such-cluster"), "ECS ListTasks: not found (ClusterNotFound",
             "not found"),
            (dict(endpoint=f"http://127.0.0.1:{closed_port()}"), "ECS ListTasks: the endpoint "
             "http://127.0.0.1:", "unreachable"),
        ]
        self.stack.set_deploy_policy(self.stack.deploy_policy)
        for kw, error, kind in cases:
            with self.subTest(kind=kind):
                other = self.new_console(**kw)
                r = other.request("POST", "/api/v1/ecs/sync")
                self.assertEqual(r.status, 502, r)
                self.assertIn(error, r.json()["error"])
                self.assertEqual(other.ok("GET", "/api/v1/ecs")["last_sync"]["kind"], kind)
                self.assertEqual(self.ecs_agents(other), [])
                self.assertNotIn("wrong-secret", other.output() + r.text())
                self.assertNotIn(self.key, other.output() + r.text())


    def test_a_periodic_failure_is_logged_once_and_its_end_too(self):
        c = self.new_console(key=self.stack.denied_key, CAP_ECS_SYNC_MS="200")
        seen = set()

        def three_failed_syncs():
            last = c.ok("GET", "/api/v1/ecs").get("last_sync")
            if last and not last["ok"]:
                seen.add(last["at"])
            return len(seen) >= 3

        c.wait_for(three_failed_syncs, what="three failed periodic syncs")
        self.assertEqual(c.output().count("ECS sync (periodic): ECS ListTasks: access denied"), 1)
        self.assertEqual(self.ecs_agents(c), [])
        # The key gets the rights: the next sync works, says so, and defines the tasks.
        iam = self.stack.client("iam", self.stack.admin_key)
        iam.put_user_policy(UserName="nobody", PolicyName="deploy",
                            PolicyDocument=json.dumps(self.stack.deploy_policy))
        c.wait_for(lambda: len(self.ecs_agents(c)) == 3, what="the tasks defined")
        self.assertIn("ECS sync (periodic): works again", c.output())

    def test_the_key_can_come_from_the_vault_and_change_there(self):
        for _, ip in self.stack.service_tasks():
            self.start_agent(ip)
        c = self.new_console(CAP_ECS_AGENT_KEY="", CAP_ECS_AGENT_KEY_VAULT="fleet-key")
        self.assertEqual(c.ok("GET", "/api/v1/ecs")["key_from"], "vault:fleet-key")
        r = c.request("POST", "/api/v1/ecs/sync")
        self.assertEqual(r.status, 409, r)
        check_operation(self, load("console.yaml"), "/api/v1/ecs/sync", "post", r)
        self.assertIn("the console's vault has no credential fleet-key", r.json()["error"])
        self.assertEqual(self.ecs_agents(c), [])
        c.ok("PUT", "/api/v1/vault/fleet-key", {"value": self.key})
        c.ok("POST", "/api/v1/ecs/sync")
        agents = c.ok("GET", "/api/v1/agents")["agents"]
        self.assertEqual([a["status"]["online"] for a in agents], [True] * 3, agents)
        # Another key in the vault: the next sync gives it to every definition (these agents
        # still have the old one, so the console now reports them refusing it).
        c.ok("PUT", "/api/v1/vault/fleet-key", {"value": "another-key-0123456789"})
        r = c.ok("POST", "/api/v1/ecs/sync")
        self.assertEqual(len(r["updated"]), 3, r)
        for a in c.ok("GET", "/api/v1/agents")["agents"]:
            self.assertFalse(a["status"]["online"], a)
            self.assertIn("is the management key right?", a["status"]["error"])
        self.assertNotIn(self.key, c.output())


class Settings(unittest.TestCase):
    def test_without_settings_the_endpoints_say_how_to_turn_it_on(self):
        c = Console().start()
        self.addCleanup(c.cleanup)
        self.assertEqual(c.ok("GET", "/api/v1/ecs")["enabled"], False)
        r = c.request("POST", "/api/v1/ecs/sync")
        self.assertEqual(r.status, 409, r)
        self.assertIn("CAP_ECS_CLUSTER", r.json()["details"][0])

    def test_bad_settings_stop_the_console_at_start(self):
        for env, message in [
            ({"CAP_ECS_CLUSTER": "c"}, "set CAP_ECS_SERVICE"),
            ({"CAP_ECS_CLUSTER": "c", "CAP_ECS_SERVICE": "s"}, "CAP_ECS_AGENT_KEY"),
            ({"CAP_ECS_CLUSTER": "c", "CAP_ECS_SERVICE": "s", "CAP_ECS_AGENT_KEY": "k",
              "CAP_ECS_AGENT_PORT": "0"}, "CAP_ECS_AGENT_PORT must be"),
            ({"CAP_ECS_CLUSTER": "c", "CAP_ECS_SERVICE": "s", "CAP_ECS_AGENT_KEY": "k",
              "AWS_ENDPOINT_URL_ECS": "ftp://x/y"}, "must be http[s]://host[:port]"),
            ({"CAP_ECS_CLUSTER": "c", "CAP_ECS_SERVICE": "s", "CAP_ECS_AGENT_KEY": "k",
              "CAP_ECS_AGENT_KEY_VAULT": "v"}, "give the tasks' management key one way"),
        ]:
            with self.subTest(env=env):
                c = Console(env=env)
                self.addCleanup(c.cleanup)
                c.start(wait=False)
                self.assertEqual(c.proc.wait(30), 2)
                c._reader.join(10)  # everything it printed has been read
                self.assertIn(message, c.output())


class RollingBase(EcsTestCase):
    def setUp(self):
        super().setUp()
        self.tasks = self.stack.service_tasks()
        self.ips = [ip for _, ip in self.tasks]

    def console_with_recorder(self, **kw):
        self.recorder = AwsRecorder(self.stack.endpoint, self.stack.web_port)
        self.addCleanup(self.recorder.close)
        c = self.new_console(endpoint=self.recorder.url, **kw)
        c.ok("POST", "/api/v1/ecs/sync")
        c.ok("POST", "/api/v1/repositories", {"name": "r"})
        return c

    def roll_from_hi(self, c, files, between=None):
        """Deploys hello_config("Hi") to the group at once, then `files` rolling; returns
        the rolling deployment. `between` runs before the rolling one starts."""
        c.save("r", "hello", hello_config("Hi"))
        c.ok("POST", "/api/v1/deployments", {"configuration": "r/hello", "group": "svc",
                                              "strategy": "parallel"})
        if between:
            between()
        self.recorder.clear()
        c.save("r", "hello", files)
        return c.ok("POST", "/api/v1/deployments", {"configuration": "r/hello", "group": "svc",
                                                     "strategy": "rolling"})

    def ids_in_order(self, c):
        by_ip = {a["host"]: a["id"] for a in c.ok("GET", "/api/v1/agents")["agents"]}
        return [by_ip[ip] for ip in self.ips]



class RollingUpdate(RollingBase):
    def test_each_task_leaves_the_target_group_takes_the_deploy_and_comes_back(self):
        for ip in self.ips:
            self.start_agent(ip)
        c = self.console_with_recorder()
        d = self.roll_from_hi(c, hello_config("Howdy"))
        self.assertTrue(d["ok"], d)
        ids = self.ids_in_order(c)
        self.assertEqual([r["agent"] for r in d["results"]], sorted(ids))
        for r in d["results"]:
            self.assertEqual([(s["step"], s["ok"]) for s in r["steps"]],
                             [("target_state", True), ("deregister", True), ("drain", True),
                              ("deploy", True), ("register", True), ("healthy", True)], r)
            self.assertEqual(r["steps"][2]["state"], "unused")
        # From outside: one task at a time, out of the target group while it changes.
        order = sorted(self.ips, key=lambda ip: ids[self.ips.index(ip)])
        expected = []
        for ip in order:
            expected += [("DeregisterTargets", ip, "Hi, x!"), ("RegisterTargets", ip, "Howdy, x!")]
        self.assertEqual(self.recorder.elb_steps(), expected)
        self.assertNotIn("RegisterTargets", self.recorder.actions()[:1])
        self.assertEqual(self.stack.health(), {ip: "healthy" for ip in self.ips})
        for ip in self.ips:
            self.assertEqual(http_request(self.stack.web_port, "GET", "/hello?name=y",
                                          host=ip).text(), "Howdy, y!")
        # The record kept every step.
        reply = c.request("GET", f"/api/v1/deployments/{d['id']}")
        check_operation(self, load("console.yaml"), "/api/v1/deployments/{deployment}", "get",
                        reply)
        self.assertEqual(reply.json()["results"], d["results"])

    def test_the_record_shows_each_step_while_it_runs(self):
        for ip in self.ips:
            self.start_agent(ip)
        c = self.console_with_recorder()
        self.recorder.hold = threading.Event()
        self.addCleanup(self.recorder.hold.set)
        done = {}
        t = threading.Thread(target=lambda: done.update(
            d=self.roll_from_hi(c, hello_config("Howdy"))))
        t.start()
        # The first task is deployed; its RegisterTargets waits in the recorder.
        self.assertTrue(self.recorder.held.wait(60), "no RegisterTargets came")
        dep = c.ok("GET", "/api/v1/deployments?limit=1")["deployments"][0]
        self.assertEqual((dep["strategy"], dep["ok"], dep["finished_at"]), ("rolling", None, None))
        (first,) = dep["results"]
        self.assertEqual([(s["step"], s["ok"]) for s in first["steps"]],
                         [("target_state", True), ("deregister", True), ("drain", True),
                          ("deploy", True)])
        self.recorder.hold.set()
        t.join(120)
        self.assertTrue(done["d"]["ok"], done)
        self.assertEqual(len(c.ok("GET", f"/api/v1/deployments/{dep['id']}")["results"]), 3)

    def test_a_task_that_refuses_the_configuration_stops_the_rollout_and_goes_back(self):
        # The second task in deploy order lacks the file the new startup rule set needs.
        c0 = self.new_console()
        c0.ok("POST", "/api/v1/ecs/sync")
        order = sorted(self.ips, key=lambda ip: "ecs-" + [
            arn for arn, i in self.tasks if i == ip][0].split("/")[-1].replace("-", "")[:12])
        for ip in self.ips:
            self.start_agent(ip, shared_ok=ip != order[1])
        c = self.console_with_recorder()
        d = self.roll_from_hi(c, startup_needs_file("Howdy"))
        self.assertFalse(d["ok"], d)
        first, second, third = d["results"]
        self.assertTrue(first["ok"], first)
        self.assertFalse(second["ok"])
        self.assertIn("the startup rule set failed", " ".join(second["errors"]))
        self.assertEqual(second["target_left"],
                         "registered again: it still serves its previous configuration and is ready")
        self.assertEqual([(s["step"], s["ok"]) for s in second["steps"]],
                         [("target_state", True), ("deregister", True), ("drain", True),
                          ("deploy", False), ("register", True)])
        self.assertTrue(third["skipped"])
        self.assertEqual(self.recorder.elb_steps(), [
            ("DeregisterTargets", order[0], "Hi, x!"), ("RegisterTargets", order[0], "Howdy, x!"),
            ("DeregisterTargets", order[1], "Hi, x!"), ("RegisterTargets", order[1], "Hi, x!")])
        self.assertEqual(self.stack.health(), {ip: "healthy" for ip in self.ips})
        served = [http_request(self.stack.web_port, "GET", "/hello?name=x", host=ip).text()
                  for ip in order]
        self.assertEqual(served, ["Howdy, x!", "Hi, x!", "Hi, x!"])
        self.assertIn(f"rolling deploy to {second['agent']}", c.output())

    def test_access_denied_on_the_load_balancer_stops_before_anything_changes(self):
        for ip in self.ips:
            self.start_agent(ip)
        c = self.console_with_recorder()
        d = self.roll_from_hi(c, hello_config("Howdy"),
                              between=lambda: self.stack.set_deploy_policy(ECS_ONLY_POLICY))
        self.assertFalse(d["ok"], d)
        first = d["results"][0]
        self.assertIn("ELB DescribeTargetHealth: access denied", first["errors"][0])
        self.assertEqual(first["target_left"], "untouched")
        self.assertTrue(all(r["skipped"] for r in d["results"][1:]))
        self.assertEqual(self.recorder.elb_steps(), [])
        self.assertEqual(self.stack.health(), {ip: "healthy" for ip in self.ips})
        for ip in self.ips:
            self.assertEqual(http_request(self.stack.web_port, "GET", "/hello?name=x",
                                          host=ip).text(), "Hi, x!")


class SoleTask(RollingBase):
    tasks = 1

    def test_the_only_healthy_target_takes_the_configuration_in_place(self):
        (ip,) = self.ips
        self.start_agent(ip)
        c = self.console_with_recorder()
        d = self.roll_from_hi(c, hello_config("Howdy"))
        self.assertTrue(d["ok"], d)
        (r,) = d["results"]
        self.assertEqual([(s["step"], s["ok"], s.get("skipped", False)) for s in r["steps"]],
                         [("target_state", True, False), ("deregister", True, True),
                          ("deploy", True, False), ("register", True, True)], r)
        self.assertIn("no other target is healthy", r["steps"][1]["why"])
        self.assertEqual(self.recorder.elb_steps(), [])
        self.assertIn("DescribeTargetHealth", self.recorder.actions())
        self.assertEqual(self.stack.health(), {ip: "healthy"})
        self.assertEqual(http_request(self.stack.web_port, "GET", "/hello?name=x",
                                      host=ip).text(), "Howdy, x!")


if __name__ == "__main__":
    unittest.main()
