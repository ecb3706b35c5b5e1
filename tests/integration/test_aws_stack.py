"""The CloudFormation full stack (deploy/aws/cap-fullstack.yaml): cfn-lint reports no
errors, and the template holds every parameter, output, IAM resource and property that
DESIGN.md §9 and docs/aws.md name, with the least-privilege deploy user."""

import json
import os
import shutil
import subprocess
import unittest

import yaml

SOURCE = os.environ.get("CAP_SOURCE_DIR",
                        os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATE = os.path.join(SOURCE, "deploy", "aws", "cap-fullstack.yaml")

PARAMETERS = ["VpcId", "SubnetIds", "WebAccessCidr", "ManagementCidr", "DatabaseAccessCidr",
              "DBPassword", "DBName", "AgentName", "AgentImage", "TaskCpu", "TaskMemory",
              "DesiredCount", "CertificateArn", "S3GoldMaster", "StickySessions",
              "EnableServiceDiscovery", "EnableAutoScaling", "LogRetentionDays", "ConsoleUrl",
              "ConsoleJoinToken"]
OUTPUTS = ["AgentWebURL", "AgentManagementEndpoint", "RDSEndpoint", "RDSJdbcUrl",
           "ECSClusterName", "ECSServiceName", "SnapshotBucketName", "LogGroupName",
           "DeployUserCredentialsArn", "DeployUserCredentialsCommand"]
IAM = {"TaskExecutionRole": "AWS::IAM::Role", "TaskRole": "AWS::IAM::Role",
       "SnapshotScriptLambdaRole": "AWS::IAM::Role", "DeployUser": "AWS::IAM::User"}


def _loader():
    """A YAML loader that keeps CloudFormation's short forms: !Ref X as {"Ref": X},
    !GetAtt A.B as {"Fn::GetAtt": [A, B]}, !Sub/!If/... as {"Fn::NAME": ...}."""
    class Loader(yaml.SafeLoader):
        pass

    def construct(loader, suffix, node):
        name = "Ref" if suffix == "Ref" else "Fn::" + suffix
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if suffix == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    Loader.add_multi_constructor("!", construct)
    return Loader


def load_template():
    with open(TEMPLATE, encoding="utf-8") as f:
        return yaml.load(f, Loader=_loader())


def resources_of_type(template, kind):
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def cfn_lint_path():
    for c in [os.environ.get("CFN_LINT"), shutil.which("cfn-lint"),
              "/root/.pyenv/shims/cfn-lint"]:
        if c and os.access(c, os.X_OK):
            return c
    raise AssertionError("cfn-lint not found (tried $CFN_LINT, PATH, /root/.pyenv/shims/"
                         "cfn-lint): install it with `pip install cfn-lint` into the Python "
                         "on PATH or set CFN_LINT")


class StackTemplate(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.t = load_template()

    def test_cfn_lint_reports_no_errors_or_warnings(self):
        out = subprocess.run([cfn_lint_path(), "--format", "parseable", TEMPLATE],
                             capture_output=True, text=True, timeout=120)
        # cfn-lint exit status: bit 2 errors, bit 4 warnings (informational findings: 8).
        self.assertEqual(out.returncode & 6, 0,
                         f"cfn-lint found problems:\n{out.stdout}{out.stderr}")

    def test_every_parameter_and_output_of_the_guide(self):
        for p in PARAMETERS:
            self.assertIn(p, self.t["Parameters"], p)
        for o in OUTPUTS:
            self.assertIn(o, self.t["Outputs"], o)
        for secret in ("DBPassword", "ConsoleJoinToken"):
            self.assertTrue(self.t["Parameters"][secret].get("NoEcho"), secret)
        for p, v in self.t["Parameters"].items():
            self.assertTrue(v.get("Description"), f"parameter {p} has no description")

    def test_iam_resources(self):
        for name, kind in IAM.items():
            self.assertEqual(self.t["Resources"][name]["Type"], kind, name)
        key = resources_of_type(self.t, "AWS::IAM::AccessKey")
        self.assertEqual([v["Properties"]["UserName"] for v in key.values()],
                         [{"Ref": "DeployUser"}])
        secret = self.t["Resources"]["DeployUserCredentials"]
        self.assertEqual(secret["Type"], "AWS::SecretsManager::Secret")
        self.assertEqual(self.t["Outputs"]["DeployUserCredentialsArn"]["Value"],
                         {"Ref": "DeployUserCredentials"})

    def test_deploy_user_is_least_privilege(self):
        (policy,) = self.t["Resources"]["DeployUser"]["Properties"]["Policies"]
        statements = policy["PolicyDocument"]["Statement"]
        actions = {}
        for s in statements:
            self.assertEqual(s["Effect"], "Allow")
            for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]):
                self.assertNotIn("*", a, "no wildcard actions")
                actions[a] = s
        self.assertEqual(set(actions), {
            "ecs:ListTasks", "ecs:DescribeTasks", "elasticloadbalancing:RegisterTargets",
            "elasticloadbalancing:DeregisterTargets",
            "elasticloadbalancing:DescribeTargetHealth"})
        for a in ("ecs:ListTasks", "ecs:DescribeTasks"):
            self.assertEqual(actions[a]["Condition"]["ArnEquals"]["ecs:cluster"],
                             {"Fn::GetAtt": ["Cluster", "Arn"]}, a)
        for a in ("elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"):
            self.assertEqual(actions[a]["Resource"], {"Ref": "TargetGroup"}, a)

    def test_service_and_task_definition(self):
        svc = self.t["Resources"]["Service"]["Properties"]
        self.assertEqual(svc["ServiceName"], {"Fn::Sub": "${AWS::StackName}-svc"})
        self.assertEqual(svc["LaunchType"], "FARGATE")
        task = self.t["Resources"]["TaskDefinition"]["Properties"]
        (c,) = task["ContainerDefinitions"]
        self.assertEqual({p["ContainerPort"] for p in c["PortMappings"]}, {8080, 20001})
        env, conditional = {}, {}
        for e in c["Environment"]:
            if "Fn::If" in e:
                conditional[e["Fn::If"][1]["Name"]] = e["Fn::If"][0]
                e = e["Fn::If"][1]
            env[e["Name"]] = e["Value"]
        self.assertEqual(env["S3_GOLD_MASTER"], {"Ref": "S3GoldMaster"})
        self.assertEqual(conditional, {"S3_GOLD_MASTER": "HasGoldMaster",
                                       "CAP_CONSOLE_URL": "SelfRegister"})
        for name in ("CAP_AGENT_NAME", "CAP_DB_URL", "CAP_SHARED_DIR", "CAP_MGMT_ALLOW"):
            self.assertIn(name, env)
        secrets = [s.get("Fn::If", [None, s])[1] for s in c["Secrets"]]
        self.assertEqual({s["Name"] for s in secrets},
                         {"CAP_DB_USER", "CAP_DB_PASSWORD", "CAP_MGMT_KEY", "CAP_JOIN_TOKEN"})
        self.assertEqual(c["LogConfiguration"]["LogDriver"], "awslogs")
        self.assertEqual(c["MountPoints"][0]["ContainerPath"], env["CAP_SHARED_DIR"])
        self.assertIn("EFSVolumeConfiguration", task["Volumes"][0])
        self.assertGreaterEqual(c["StopTimeout"], 26, "room for the agent's 25 s drain")

    def test_load_balancer_health_check_and_listeners(self):
        tg = self.t["Resources"]["TargetGroup"]["Properties"]
        self.assertEqual(tg["HealthCheckPath"], "/.cap/health")
        self.assertEqual(tg["Port"], 8080)
        attrs = {a["Key"]: a["Value"] for a in tg["TargetGroupAttributes"]}
        self.assertEqual(attrs["stickiness.enabled"], {"Ref": "StickySessions"})
        listeners = resources_of_type(self.t, "AWS::ElasticLoadBalancingV2::Listener")
        ports = {(v["Properties"]["Port"], v.get("Condition")) for v in listeners.values()}
        self.assertEqual(ports, {(80, "NoCertificate"), (80, "HasCertificate"),
                                 (443, "HasCertificate")})

    def test_security_groups_use_the_three_cidrs(self):
        text = json.dumps({k: v for k, v in self.t["Resources"].items()
                           if v["Type"] == "AWS::EC2::SecurityGroup"})
        for p in ("WebAccessCidr", "ManagementCidr", "DatabaseAccessCidr"):
            self.assertIn(json.dumps({"Ref": p}), text, p)

    def test_bucket_is_encrypted_versioned_private(self):
        b = self.t["Resources"]["SnapshotBucket"]
        p = b["Properties"]
        self.assertEqual(p["VersioningConfiguration"]["Status"], "Enabled")
        self.assertIn("ServerSideEncryptionConfiguration", p["BucketEncryption"])
        self.assertTrue(all(p["PublicAccessBlockConfiguration"].values()))
        self.assertEqual(len(p["PublicAccessBlockConfiguration"]), 4)
        self.assertEqual(b["DeletionPolicy"], "Retain")

    def test_storage_database_logs_and_options(self):
        r = self.t["Resources"]
        self.assertEqual(r["Database"]["Properties"]["Engine"], "postgres")
        self.assertTrue(r["Database"]["Properties"]["StorageEncrypted"])
        self.assertEqual(len(resources_of_type(self.t, "AWS::EFS::MountTarget")), 2)
        self.assertEqual(len(resources_of_type(self.t, "AWS::EFS::AccessPoint")), 1)
        self.assertEqual(r["LogGroup"]["Properties"]["RetentionInDays"],
                         {"Ref": "LogRetentionDays"})
        self.assertEqual(r["SnapshotScriptFunction"]["Properties"]["Role"],
                         {"Fn::GetAtt": ["SnapshotScriptLambdaRole", "Arn"]})
        for kind in ("AWS::ServiceDiscovery::Service", "AWS::ServiceDiscovery::PrivateDnsNamespace"):
            for v in resources_of_type(self.t, kind).values():
                self.assertEqual(v["Condition"], "UseServiceDiscovery")
        for kind in ("AWS::ApplicationAutoScaling::ScalableTarget",
                     "AWS::ApplicationAutoScaling::ScalingPolicy"):
            (v,) = resources_of_type(self.t, kind).values()
            self.assertEqual(v["Condition"], "UseAutoScaling")

    def test_guide_describes_every_parameter_output_and_role(self):
        with open(os.path.join(SOURCE, "docs", "aws.md"), encoding="utf-8") as f:
            guide = f.read()
        for name in PARAMETERS + OUTPUTS + list(IAM):
            self.assertIn(f"`{name}`", guide, f"docs/aws.md does not describe {name}")


if __name__ == "__main__":
    unittest.main()
