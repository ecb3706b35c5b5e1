// The ECS and ELBv2 calls (src/store/aws_fleet.cpp): how requests are built and signed,
// how answers and errors are read, paging, retries. A scripted HttpClient stands in for
// AWS here; tests/integration/test_console_ecs.py runs the same calls against moto_server.
#include "store/aws_fleet.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>

namespace cap::store {
namespace {

/// Answers calls from a script, in order, and keeps every call it got.
class ScriptedHttp : public HttpClient {
 public:
  std::deque<HttpReply> replies;
  std::vector<HttpCall> calls;
  HttpReply call(const HttpCall& c) override {
    calls.push_back(c);
    if (replies.empty()) return HttpReply{0, {}, {}, "nothing scripted", false};
    HttpReply r = replies.front();
    replies.pop_front();
    return r;
  }
  HttpReply call_pieces(const HttpCall& c, const Pieces&) override { return call(c); }
};

HttpReply reply(int status, std::string body,
                std::vector<std::pair<std::string, std::string>> headers = {}) {
  HttpReply r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

std::string header(const HttpCall& c, std::string_view name) {
  for (auto& [k, v] : c.headers) {
    std::string lk = k;
    for (char& ch : lk) ch = char(std::tolower(uint8_t(ch)));
    if (lk == name) return v;
  }
  return {};
}

GetEnv env_of(std::map<std::string, std::string> e) {
  return [e](std::string_view name) -> std::optional<std::string> {
    auto it = e.find(std::string(name));
    if (it == e.end()) return std::nullopt;
    return it->second;
  };
}

FleetOptions test_options() {
  FleetOptions o;
  o.region = "eu-west-1";
  o.ecs_endpoint = "http://127.0.0.1:5000";
  o.elb_endpoint = "http://127.0.0.1:5001";
  return o;
}

constexpr const char* kTargetGroup =
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/cap-tg/0123456789abcdef";

TEST(AwsFleet, EcsRequestsUseTheJsonProtocol) {
  HttpCall c = ecs_request(test_options(), "ListTasks", list_tasks_body("cap", "svc", ""));
  EXPECT_EQ(c.method, "POST");
  EXPECT_EQ(c.url, "http://127.0.0.1:5000/");
  EXPECT_EQ(header(c, "x-amz-target"), "AmazonEC2ContainerServiceV20141113.ListTasks");
  EXPECT_EQ(header(c, "content-type"), "application/x-amz-json-1.1");
  EXPECT_EQ(c.body, R"({"cluster":"cap","serviceName":"svc","desiredStatus":"RUNNING"})");
  EXPECT_EQ(list_tasks_body("cap", "svc", "tok"),
            R"({"cluster":"cap","serviceName":"svc","desiredStatus":"RUNNING","nextToken":"tok"})");
  EXPECT_EQ(describe_tasks_body("cap", {"arn:a", "arn:b"}),
            R"({"cluster":"cap","tasks":["arn:a","arn:b"]})");
}

TEST(AwsFleet, ElbRequestsUseTheQueryProtocol) {
  HttpCall c = elb_request(test_options(), "DeregisterTargets",
                           target_params(kTargetGroup, "10.0.1.5", 8080));
  EXPECT_EQ(c.url, "http://127.0.0.1:5001/");
  EXPECT_EQ(header(c, "content-type"), "application/x-www-form-urlencoded; charset=utf-8");
  EXPECT_EQ(c.body,
            "Action=DeregisterTargets&Version=2015-12-01&TargetGroupArn=arn%3Aaws%3A"
            "elasticloadbalancing%3Aeu-west-1%3A123456789012%3Atargetgroup%2Fcap-tg%2F"
            "0123456789abcdef&Targets.member.1.Id=10.0.1.5&Targets.member.1.Port=8080");
}

TEST(AwsFleet, DefaultEndpointsAndEnvironment) {
  FleetOptions o;
  std::string error;
  ASSERT_TRUE(FleetOptions::from_environment(env_of({{"AWS_REGION", "ap-south-1"}}), &o, &error));
  EXPECT_EQ(o.ecs_url(), "https://ecs.ap-south-1.amazonaws.com");
  EXPECT_EQ(o.elb_url(), "https://elasticloadbalancing.ap-south-1.amazonaws.com");
  ASSERT_TRUE(
      FleetOptions::from_environment(env_of({{"AWS_DEFAULT_REGION", "us-west-2"},
                                             {"AWS_ENDPOINT_URL", "http://localhost:4566/"},
                                             {"AWS_ENDPOINT_URL_ECS", "http://ecs.local:1"}}),
                                     &o, &error));
  EXPECT_EQ(o.region, "us-west-2");
  EXPECT_EQ(o.ecs_url(), "http://ecs.local:1");
  EXPECT_EQ(o.elb_url(), "http://localhost:4566");
  ASSERT_TRUE(FleetOptions::from_environment(
      env_of({{"AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING", "https://elb.local"}}), &o, &error));
  EXPECT_EQ(o.elb_url(), "https://elb.local");
  EXPECT_EQ(o.region, "us-east-1");
  EXPECT_FALSE(FleetOptions::from_environment(
      env_of({{"AWS_ENDPOINT_URL_ECS", "http://host/with/path"}}), &o, &error));
  EXPECT_NE(error.find("AWS_ENDPOINT_URL_ECS"), std::string::npos) << error;
}

TEST(AwsFleet, DescribeTasksFindsEachTasksAddress) {
  std::vector<EcsTask> tasks;
  std::vector<std::string> failures;
  std::string error;
  ASSERT_TRUE(parse_describe_tasks(R"({
    "tasks": [
      {"taskArn": "arn:aws:ecs:eu-west-1:1:task/cap/aaaa1111bbbb2222cccc3333dddd4444",
       "lastStatus": "RUNNING", "desiredStatus": "RUNNING", "group": "service:svc",
       "attachments": [{"type": "ElasticNetworkInterface", "details": [
         {"name": "subnetId", "value": "subnet-1"},
         {"name": "privateIPv4Address", "value": "10.0.1.5"}]}]},
      {"taskArn": "arn:aws:ecs:eu-west-1:1:task/cap/eeee", "lastStatus": "PENDING",
       "desiredStatus": "RUNNING",
       "containers": [{"networkInterfaces": [{"privateIpv4Address": "10.0.1.6"}]}]},
      {"taskArn": "arn:aws:ecs:eu-west-1:1:task/cap/ffff", "lastStatus": "PROVISIONING",
       "desiredStatus": "RUNNING"}],
    "failures": [{"arn": "arn:aws:ecs:eu-west-1:1:task/cap/gone", "reason": "MISSING"}]})",
                                   &tasks, &failures, &error))
      << error;
  ASSERT_EQ(tasks.size(), 3u);
  EXPECT_EQ(tasks[0].id, "aaaa1111bbbb2222cccc3333dddd4444");
  EXPECT_EQ(tasks[0].private_ip, "10.0.1.5");
  EXPECT_EQ(tasks[0].group, "service:svc");
  EXPECT_EQ(tasks[1].private_ip, "10.0.1.6");
  EXPECT_EQ(tasks[1].last_status, "PENDING");
  EXPECT_EQ(tasks[2].private_ip, "");
  EXPECT_EQ(failures, std::vector<std::string>{"arn:aws:ecs:eu-west-1:1:task/cap/gone: MISSING"});
  EXPECT_FALSE(parse_describe_tasks("<html>", &tasks, &failures, &error));
  EXPECT_EQ(error, "the answer is not a JSON object");
}

TEST(AwsFleet, TargetHealthAnswers) {
  std::vector<TargetHealth> list;
  std::string error;
  ASSERT_TRUE(parse_target_health(R"(<?xml version="1.0"?>
<DescribeTargetHealthResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
  <DescribeTargetHealthResult><TargetHealthDescriptions>
    <member><HealthCheckPort>8080</HealthCheckPort>
      <Target><Id>10.0.1.5</Id><Port>8080</Port></Target>
      <TargetHealth><State>draining</State><Reason>Target.DeregistrationInProgress</Reason>
        <Description>Target deregistration is in progress</Description></TargetHealth></member>
    <member><Target><Id>10.0.1.6</Id><Port>8080</Port></Target>
      <TargetHealth><State>healthy</State></TargetHealth></member>
  </TargetHealthDescriptions></DescribeTargetHealthResult>
  <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>
</DescribeTargetHealthResponse>)",
                                  &list, &error))
      << error;
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].id, "10.0.1.5");
  EXPECT_EQ(list[0].port, 8080);
  EXPECT_EQ(list[0].state, "draining");
  EXPECT_EQ(list[0].reason, "Target.DeregistrationInProgress");
  EXPECT_EQ(list[1].state, "healthy");
  EXPECT_FALSE(parse_target_health("not xml <", &list, &error));
  EXPECT_NE(error.find("not XML"), std::string::npos);
}

TEST(AwsFleet, ErrorsAreNamedAndSorted) {
  AwsError e = parse_aws_error(
      "ECS ListTasks",
      reply(
          400,
          R"({"__type":"com.amazonaws.ecs#ClusterNotFoundException","message":"Cluster not found."})"));
  EXPECT_EQ(e.kind, AwsFailure::NotFound);
  EXPECT_EQ(e.code, "ClusterNotFoundException");
  EXPECT_EQ(e.message, "ECS ListTasks: not found (ClusterNotFoundException: Cluster not found.)");
  e = parse_aws_error("ELB RegisterTargets",
                      reply(403,
                            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                            "<Message>User: arn:aws:iam::1:user/d is not authorized</Message>"
                            "</Error></ErrorResponse>"));
  EXPECT_EQ(e.kind, AwsFailure::AccessDenied);
  EXPECT_EQ(e.message,
            "ELB RegisterTargets: access denied (AccessDenied: User: arn:aws:iam::1:user/d is "
            "not authorized)");
  e = parse_aws_error("ECS ListTasks",
                      reply(400, R"({"message":"The security token is invalid."})",
                            {{"x-amzn-ErrorType", "UnrecognizedClientException:http://x"}}));
  EXPECT_EQ(e.kind, AwsFailure::Credentials);
  EXPECT_EQ(e.code, "UnrecognizedClientException");
  e = parse_aws_error("ECS ListTasks", HttpReply{0, {}, {}, "connection refused", false});
  EXPECT_EQ(e.kind, AwsFailure::Unreachable);
  e = parse_aws_error("ECS ListTasks", reply(500, "oops"));
  EXPECT_EQ(e.kind, AwsFailure::Other);
  EXPECT_EQ(e.message, "ECS ListTasks: AWS answered HTTP 500 (HTTP 500)");
  EXPECT_EQ(failure_name(AwsFailure::AccessDenied), "access denied");
}

class FleetClientTest : public ::testing::Test {
 protected:
  ScriptedHttp http;
  AwsCredentialsProvider creds{
      http, env_of({{"AWS_ACCESS_KEY_ID", "AKIDTEST"}, {"AWS_SECRET_ACCESS_KEY", "s3cret"}})};
  FleetClient fleet{test_options(), creds, http};
};

TEST_F(FleetClientTest, ServiceTasksReadsEveryPageAndKeepsTheServicesTasks) {
  http.replies.push_back(reply(200, R"({"taskArns":["arn:t/1","arn:t/2"],"nextToken":"p2"})"));
  http.replies.push_back(reply(200, R"({"taskArns":["arn:t/3"]})"));
  http.replies.push_back(reply(200, R"({"tasks":[
    {"taskArn":"arn:t/1","lastStatus":"RUNNING","desiredStatus":"RUNNING","group":"service:svc"},
    {"taskArn":"arn:t/2","lastStatus":"RUNNING","desiredStatus":"RUNNING","group":"family:x"},
    {"taskArn":"arn:t/3","lastStatus":"RUNNING","desiredStatus":"RUNNING"}],"failures":[]})"));
  std::vector<EcsTask> tasks;
  AwsError error;
  ASSERT_TRUE(fleet.service_tasks("cap", "svc", &tasks, &error)) << error.message;
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].id, "1");
  EXPECT_EQ(tasks[1].id, "3");
  ASSERT_EQ(http.calls.size(), 3u);
  EXPECT_NE(http.calls[1].body.find(R"("nextToken":"p2")"), std::string::npos);
  EXPECT_EQ(header(http.calls[2], "x-amz-target"),
            "AmazonEC2ContainerServiceV20141113.DescribeTasks");
  EXPECT_EQ(http.calls[2].body, R"({"cluster":"cap","tasks":["arn:t/1","arn:t/2","arn:t/3"]})");
  for (auto& c : http.calls) {
    std::string auth = header(c, "authorization");
    EXPECT_TRUE(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")) << auth;
    EXPECT_NE(auth.find("/eu-west-1/ecs/aws4_request"), std::string::npos) << auth;
    EXPECT_EQ(auth.find("s3cret"), std::string::npos);
    EXPECT_FALSE(header(c, "x-amz-date").empty());
  }
}

TEST_F(FleetClientTest, ElbCallsAreSignedForElasticLoadBalancing) {
  http.replies.push_back(reply(200, "<DeregisterTargetsResponse/>"));
  AwsError error;
  ASSERT_TRUE(fleet.deregister_target(kTargetGroup, "10.0.1.5", 8080, &error)) << error.message;
  ASSERT_EQ(http.calls.size(), 1u);
  EXPECT_NE(header(http.calls[0], "authorization").find("/eu-west-1/elasticloadbalancing/"),
            std::string::npos);
  EXPECT_TRUE(http.calls[0].body.starts_with("Action=DeregisterTargets&"));
}

TEST_F(FleetClientTest, TheWholeGroupsHealthAsksForNoTarget) {
  http.replies.push_back(reply(
      200, "<DescribeTargetHealthResponse><DescribeTargetHealthResult><TargetHealthDescriptions>"
           "<member><Target><Id>10.0.1.5</Id><Port>8080</Port></Target><TargetHealth><State>"
           "healthy</State></TargetHealth></member></TargetHealthDescriptions>"
           "</DescribeTargetHealthResult></DescribeTargetHealthResponse>"));
  std::vector<TargetHealth> all;
  AwsError error;
  ASSERT_TRUE(fleet.target_group_health(kTargetGroup, &all, &error)) << error.message;
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].state, "healthy");
  EXPECT_EQ(http.calls[0].body.find("Targets.member"), std::string::npos);
  EXPECT_NE(http.calls[0].body.find("Action=DescribeTargetHealth&"), std::string::npos);
}

TEST_F(FleetClientTest, ATargetTheGroupDoesNotListIsUnused) {
  http.replies.push_back(
      reply(200,
            "<DescribeTargetHealthResponse><DescribeTargetHealthResult><TargetHealthDescriptions/>"
            "</DescribeTargetHealthResult></DescribeTargetHealthResponse>"));
  TargetHealth h;
  AwsError error;
  ASSERT_TRUE(fleet.target_health(kTargetGroup, "10.0.1.9", 8080, &h, &error)) << error.message;
  EXPECT_EQ(h.state, "unused");
  EXPECT_EQ(h.reason, "Target.NotRegistered");
}

TEST_F(FleetClientTest, ThrottlingIsRetriedAndRefusalsAreNot) {
  http.replies.push_back(reply(400, R"({"__type":"ThrottlingException","message":"slow down"})"));
  http.replies.push_back(reply(503, "busy"));
  http.replies.push_back(reply(200, R"({"taskArns":[]})"));
  std::vector<EcsTask> tasks;
  AwsError error;
  ASSERT_TRUE(fleet.service_tasks("cap", "svc", &tasks, &error)) << error.message;
  EXPECT_EQ(http.calls.size(), 3u);
  EXPECT_TRUE(tasks.empty());

  http.calls.clear();
  http.replies.push_back(
      reply(400, R"({"__type":"AccessDeniedException","message":"not authorized"})"));
  EXPECT_FALSE(fleet.service_tasks("cap", "svc", &tasks, &error));
  EXPECT_EQ(http.calls.size(), 1u);
  EXPECT_EQ(error.kind, AwsFailure::AccessDenied);
  EXPECT_EQ(error.message, "ECS ListTasks: access denied (AccessDeniedException: not authorized)");
}

TEST_F(FleetClientTest, AnUnreachableEndpointIsNamed) {
  std::vector<EcsTask> tasks;
  AwsError error;
  EXPECT_FALSE(fleet.service_tasks("cap", "svc", &tasks, &error));
  EXPECT_EQ(http.calls.size(), 3u);  // every attempt
  EXPECT_EQ(error.kind, AwsFailure::Unreachable);
  EXPECT_EQ(error.message,
            "ECS ListTasks: the endpoint http://127.0.0.1:5000 cannot be reached (nothing "
            "scripted)");
}

TEST(AwsFleetCredentials, MissingCredentialsAreSaid) {
  ScriptedHttp http;
  AwsCredentialsProvider creds{http, env_of({{"HOME", "/nonexistent"}})};
  FleetClient fleet{test_options(), creds, http};
  std::vector<EcsTask> tasks;
  AwsError error;
  EXPECT_FALSE(fleet.service_tasks("cap", "svc", &tasks, &error));
  EXPECT_EQ(error.kind, AwsFailure::Credentials);
  EXPECT_TRUE(error.message.starts_with("ECS ListTasks: no AWS credentials: ")) << error.message;
  EXPECT_TRUE(http.calls.empty());
}

}  // namespace
}  // namespace cap::store
