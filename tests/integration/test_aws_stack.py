"""The CloudFormation full stack (deploy/aws/cap-fullstack.yaml): cfn-lint reports no
errors, the template holds every parameter, output, IAM resource and property that
DESIGN.md §9 and docs/aws.md name, with the least-privilege deploy user, and the stack
creates in moto_server's CloudFormation (without the resource types moto cannot create,
MOTO_SKIPS) with the resources configured as the template says."""

import copy
import json
import os
import re
import shutil
import subprocess
import unittest

import yaml

from s3_harness import S3Server

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


# Resource types moto_server's CloudFormation does not create (it warns "No Moto
# CloudFormation support for ..."), and the attributes it cannot resolve: the stack is
# created without them, references to them replaced by "skipped-NAME".
MOTO_SKIPS = {"AWS::SecretsManager::Secret", "AWS::S3::BucketPolicy",
              "AWS::ServiceDiscovery::PrivateDnsNamespace", "AWS::ServiceDiscovery::Service",
              "AWS::ApplicationAutoScaling::ScalableTarget",
              "AWS::ApplicationAutoScaling::ScalingPolicy",
              "Custom::SnapshotScript"}  # moto runs custom resources' Lambdas in Docker
MOTO_NO_GETATT = {"AWS::EFS::FileSystem", "AWS::EFS::AccessPoint"}
# moto also creates some resources without some of their properties, which these tests
# therefore check only in the template (StackTemplate above): the bucket's versioning,
# public access block and ownership controls, the target group's attributes (stickiness,
# deregistration delay), an IAM user's inline policies, the service's launch type and load balancers, the task definition's compatibilities.


def moto_variant(template):
    """`template` without MOTO_SKIPS, as JSON text; also the names of the dropped resources."""
    t = copy.deepcopy(template)
    res = t["Resources"]
    dropped = {k for k, v in res.items() if v["Type"] in MOTO_SKIPS}
    no_attr = dropped | {k for k, v in res.items() if v["Type"] in MOTO_NO_GETATT}
    for k in dropped:
        del res[k]

    def sub_ref(m):
        # moto's Fn::Sub resolves ${Res.Attr} but not ${Res.Attr.Sub} (Endpoint.Address).
        name, attr = m.group(1), m.group(2) or ""
        return f"skipped-{name}" if name in dropped or "." in attr else m.group(0)

    def fix(x):
        if isinstance(x, dict):
            if set(x) == {"Ref"} and x["Ref"] in dropped:
                return f"skipped-{x['Ref']}"
            if set(x) == {"Fn::GetAtt"} and x["Fn::GetAtt"][0] in no_attr:
                return "skipped-" + "-".join(x["Fn::GetAtt"])
            if set(x) == {"Fn::Sub"} and isinstance(x["Fn::Sub"], str):
                return {"Fn::Sub": re.sub(r"\$\{([A-Za-z0-9]+)(?:\.([A-Za-z.]+))?\}", sub_ref,
                                          x["Fn::Sub"])}
            return {k: fix(v) for k, v in x.items()}
        if isinstance(x, list):
            return [fix(v) for v in x]
        return x

    t["Resources"] = fix(res)
    t["Outputs"] = fix(t["Outputs"])
    return json.dumps(t), dropped


class MotoServer(S3Server):
    """moto_server on a free loopback port, without the S3 harness's users and bucket."""

    def _setup(self):
        pass

    def client(self, service):
        return self._client(service)


class StackInMoto(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.moto = MotoServer().start()
        try:
            ec2 = cls.moto.client("ec2")
            vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24",
                                         AvailabilityZone=f"eu-west-1{az}")["Subnet"]["SubnetId"]
                       for i, az in ((1, "a"), (2, "b"))]
            body, cls.dropped = moto_variant(load_template())
            params = {"VpcId": vpc, "SubnetIds": ",".join(subnets),
                      "ManagementCidr": "10.0.0.0/16", "DatabaseAccessCidr": "10.0.9.0/24",
                      "DBPassword": "correct-horse-battery", "AgentImage": "cap/agent:1",
                      "S3GoldMaster": "s3://gold/latest", "StickySessions": "true"}
            cf = cls.moto.client("cloudformation")
            cf.create_stack(StackName="cap", TemplateBody=body, Capabilities=["CAPABILITY_IAM"],
                            Parameters=[{"ParameterKey": k, "ParameterValue": v}
                                        for k, v in params.items()])
            cls.stack = cf.describe_stacks(StackName="cap")["Stacks"][0]
            cls.outputs = {o["OutputKey"]: o["OutputValue"] for o in cls.stack["Outputs"]}
            cls.resources = {r["LogicalResourceId"]: r for r in
                             cf.list_stack_resources(StackName="cap")["StackResourceSummaries"]}
        except BaseException:
            cls.moto.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.moto.stop()

    def test_the_stack_creates_without_only_the_skipped_types(self):
        self.assertEqual(self.stack["StackStatus"], "CREATE_COMPLETE",
                         self.stack.get("StackStatusReason"))
        t = load_template()
        expected = {k for k, v in t["Resources"].items()
                    if v.get("Condition") not in ("HasCertificate", "UseServiceDiscovery",
                                                  "UseAutoScaling", "SelfRegister")
                    and k not in self.dropped}
        self.assertEqual(set(self.resources) - {""}, expected)
        for r in self.resources.values():
            self.assertEqual(r["ResourceStatus"], "CREATE_COMPLETE", r["LogicalResourceId"])

    def test_service_and_task_definition(self):
        self.assertEqual(self.outputs["ECSServiceName"], "cap-svc")
        ecs = self.moto.client("ecs")
        (svc,) = ecs.describe_services(cluster=self.outputs["ECSClusterName"],
                                       services=["cap-svc"])["services"]
        self.assertEqual(svc["desiredCount"], 2)
        task = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
        (c,) = task["containerDefinitions"]
        # moto leaves an AWS::NoValue list element as null (CloudFormation drops it).
        env = {e["name"]: e["value"] for e in c["environment"] if e}
        self.assertEqual(env["S3_GOLD_MASTER"], "s3://gold/latest")
        self.assertEqual(env["CAP_MGMT_ALLOW"], "10.0.0.0/16")
        self.assertNotIn("CAP_CONSOLE_URL", env)
        self.assertEqual({p["containerPort"] for p in c["portMappings"]}, {8080, 20001})
        self.assertEqual(c["logConfiguration"]["options"]["awslogs-group"], "/cap/cap")

    def test_load_balancer(self):
        elb = self.moto.client("elbv2")
        (tg,) = elb.describe_target_groups(TargetGroupArns=[self.outputs["TargetGroupArn"]])[
            "TargetGroups"]
        self.assertEqual((tg["HealthCheckPath"], tg["Port"], tg["TargetType"]),
                         ("/.cap/health", 8080, "ip"))
        listeners = elb.describe_listeners(LoadBalancerArn=tg["LoadBalancerArns"][0])["Listeners"]
        self.assertEqual([(x["Port"], x["Protocol"]) for x in listeners], [(80, "HTTP")])
        self.assertTrue(self.outputs["AgentWebURL"].startswith("http://"))

    def test_bucket_and_log_group(self):
        s3 = self.moto.client("s3")
        bucket = self.outputs["SnapshotBucketName"]
        (rule,) = s3.get_bucket_encryption(Bucket=bucket)[
            "ServerSideEncryptionConfiguration"]["Rules"]
        self.assertEqual(rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"], "AES256")
        (group,) = self.moto.client("logs").describe_log_groups(
            logGroupNamePrefix=self.outputs["LogGroupName"])["logGroups"]
        self.assertEqual(group["retentionInDays"], 30)

    def test_task_role_and_the_deploy_users_key(self):
        iam = self.moto.client("iam")
        role = self.resources["TaskRole"]["PhysicalResourceId"]
        doc = iam.get_role_policy(RoleName=role, PolicyName="cap-agent")["PolicyDocument"]
        text = doc if isinstance(doc, str) else json.dumps(doc)
        bucket = self.outputs["SnapshotBucketName"]
        self.assertIn(f"arn:aws:s3:::{bucket}/*", text)
        self.assertIn("s3:GetObject", text)
        self.assertNotIn("s3:PutObject", text, "the agent only reads snapshots")
        user = self.resources["DeployUser"]["PhysicalResourceId"]
        (key,) = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        self.assertEqual(key["AccessKeyId"], self.resources["DeployUserAccessKey"]["PhysicalResourceId"])


    def test_the_helper_lambda_writes_a_capture_script(self):
        """The Lambda's code, run here against moto's S3 with the custom resource's
        properties, writes a shell script filled in for the stack (moto cannot run it)."""
        import sys
        import types
        t = load_template()
        code = t["Resources"]["SnapshotScriptFunction"]["Properties"]["Code"]["ZipFile"]
        props = dict(t["Resources"]["SnapshotScript"]["Properties"])
        bucket = self.outputs["SnapshotBucketName"]
        props.update(Region="eu-west-1", Cluster=self.outputs["ECSClusterName"],
                     Service="cap-svc", Bucket=bucket, KeySecret="arn:secret:cap/mgmt-key")
        sent = []
        fake = types.ModuleType("cfnresponse")
        fake.SUCCESS, fake.FAILED = "SUCCESS", "FAILED"
        fake.send = lambda event, context, status, data, physical_id: sent.append((status, data))
        saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                                "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
        os.environ.update(AWS_ENDPOINT_URL=self.moto.endpoint, AWS_ACCESS_KEY_ID="setup",
                          AWS_SECRET_ACCESS_KEY="setup-secret", AWS_DEFAULT_REGION="eu-west-1")
        sys.modules["cfnresponse"] = fake
        try:
            scope = {}
            exec(compile(code, "SnapshotScriptFunction", "exec"), scope)
            scope["handler"]({"RequestType": "Create", "ResourceProperties": props}, None)
            self.assertEqual(sent, [("SUCCESS", {"Key": "scripts/capture-gold-master.sh"})])
            script = self.moto.client("s3").get_object(
                Bucket=bucket, Key="scripts/capture-gold-master.sh")["Body"].read().decode()
            for line in (f"CLUSTER='{self.outputs['ECSClusterName']}'", "SERVICE='cap-svc'",
                         f"BUCKET='{bucket}'", "KEY_SECRET='arn:secret:cap/mgmt-key'",
                         "capctl snapshot capture --agent \"$IP:20001\" --key-file \"$KEYFILE\" "
                         "--to \"s3://$BUCKET/gold/\" --latest"):
                self.assertIn(line, script)
            self.assertNotIn("@", script.replace("$@", ""), "every placeholder filled in")
            self.assertTrue(script.startswith("#!/bin/sh\n"))
            check = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True)
            self.assertEqual(check.returncode, 0, check.stderr)
            # A failure is reported to CloudFormation, not raised.
            scope["handler"]({"RequestType": "Create",
                              "ResourceProperties": dict(props, Bucket="no-such-bucket")}, None)
            self.assertEqual(sent[-1][0], "FAILED")
            self.assertIn("NoSuchBucket", sent[-1][1]["Error"])
            scope["handler"]({"RequestType": "Delete", "ResourceProperties": props}, None)
            self.assertEqual(sent[-1][0], "SUCCESS")
            self.assertEqual(self.moto.client("s3").list_objects_v2(
                Bucket=bucket, Prefix="scripts/").get("KeyCount"), 0)
        finally:
            sys.modules.pop("cfnresponse", None)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


if __name__ == "__main__":
    unittest.main()
