// The AWS calls the console needs to follow an ECS service and roll deployments through its
// load balancer: ECS ListTasks and DescribeTasks (JSON 1.1 protocol, X-Amz-Target
// AmazonEC2ContainerServiceV20141113.*) and Elastic Load Balancing v2 DescribeTargetHealth,
// RegisterTargets and DeregisterTargets (query protocol, form-encoded
// POST, XML answers). Calls are signed with Signature V4 (net/sigv4.h) using credentials
// from an AwsCredentialsProvider, sent with the project's HTTP client, and retried with
// backoff when AWS throttles, answers 5xx or cannot be reached.
//
// Endpoints: AWS_ENDPOINT_URL_ECS, AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2 (or
// AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING), else AWS_ENDPOINT_URL, else the public
// endpoints https://ecs.REGION.amazonaws.com and
// https://elasticloadbalancing.REGION.amazonaws.com. Region: AWS_REGION, else
// AWS_DEFAULT_REGION, else us-east-1.
//
// Every failure comes as an AwsError: its kind (access denied, not found, unreachable,
// bad credentials...) and a message naming the call, AWS's error code and AWS's message.
// Secrets never reach a message.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cap/services.h"
#include "store/aws_credentials.h"

namespace cap::store {

enum class AwsFailure { None, AccessDenied, NotFound, Unreachable, Credentials, Throttled, Other };

/// "access denied", "not found", "unreachable", "credentials", "throttled", "error".
std::string_view failure_name(AwsFailure kind);

struct AwsError {
  AwsFailure kind = AwsFailure::None;
  std::string code;     // AWS's error code ("ClusterNotFoundException"), may be empty
  std::string message;  // whole sentence: "ECS ListTasks: access denied (AccessDenied...: ...)"
};

struct FleetOptions {
  std::string region = "us-east-1";
  std::string ecs_endpoint;  // scheme://host[:port]; empty: https://ecs.REGION.amazonaws.com
  std::string elb_endpoint;  // empty: https://elasticloadbalancing.REGION.amazonaws.com
  std::string ca_file;       // AWS_CA_BUNDLE
  int timeout_ms = 15000;    // per HTTP request
  int attempts = 3;          // tries per call when AWS throttles, fails with 5xx or is unreachable

  /// Region, endpoints and CA bundle from the environment (see above). False with `error`
  /// when an endpoint is not http[s]://host[:port].
  static bool from_environment(const GetEnv& env, FleetOptions* out, std::string* error);
  /// The endpoints actually used (the defaults filled in).
  std::string ecs_url() const;
  std::string elb_url() const;
};

/// One ECS task as DescribeTasks reports it.
struct EcsTask {
  std::string arn;
  std::string id;  // the last part of the ARN
  std::string last_status, desired_status;
  std::string group;       // "service:NAME" for a service's tasks
  std::string private_ip;  // from the ENI attachment (awsvpc), else the first container's
                           // network interface; empty when the task has none yet
};

/// One target's state as DescribeTargetHealth reports it.
struct TargetHealth {
  std::string id;  // the IP address (target type ip) or instance id
  int port = 0;
  std::string state;  // initial, healthy, unhealthy, unused, draining, unavailable...
  std::string reason, description;
};

// -- Request building and answer parsing (pure; the client below uses them).

/// An unsigned ECS call: POST ENDPOINT/ with Content-Type application/x-amz-json-1.1 and
/// X-Amz-Target AmazonEC2ContainerServiceV20141113.ACTION.
HttpCall ecs_request(const FleetOptions& options, std::string_view action, std::string body);
/// An unsigned ELBv2 call: POST ENDPOINT/ with a form body Action=ACTION&Version=2015-12-01
/// followed by `params` (names and values percent-encoded).
HttpCall elb_request(const FleetOptions& options, std::string_view action,
                     const std::vector<std::pair<std::string, std::string>>& params);
/// The JSON body of ListTasks for a service's running tasks.
std::string list_tasks_body(const std::string& cluster, const std::string& service,
                            const std::string& next_token);
/// The JSON body of DescribeTasks.
std::string describe_tasks_body(const std::string& cluster, const std::vector<std::string>& arns);
/// The form parameters naming one target: Targets.member.1.Id and .Port.
std::vector<std::pair<std::string, std::string>> target_params(const std::string& target_group_arn,
                                                               const std::string& id, int port);

/// ListTasks' answer: task ARNs and the next page's token ("" on the last page).
bool parse_list_tasks(std::string_view body, std::vector<std::string>* arns,
                      std::string* next_token, std::string* error);
/// DescribeTasks' answer: the tasks, and the failures it lists ("ARN: reason").
bool parse_describe_tasks(std::string_view body, std::vector<EcsTask>* tasks,
                          std::vector<std::string>* failures, std::string* error);
/// DescribeTargetHealth's answer.
bool parse_target_health(std::string_view body, std::vector<TargetHealth>* out, std::string* error);
/// A failed answer (JSON {"__type","message"} or XML <Error><Code>/<Message>, or the
/// x-amzn-ErrorType header) as an AwsError whose message starts with `call`.
AwsError parse_aws_error(std::string_view call, const HttpReply& reply);

// -- The client.

class FleetClient {
 public:
  /// `credentials` and `http` must outlive the client. `http` should verify TLS (with
  /// options.ca_file as extra trust anchors).
  FleetClient(FleetOptions options, AwsCredentialsProvider& credentials, HttpClient& http);

  /// The service's tasks (ListTasks with serviceName and desiredStatus RUNNING, every page,
  /// then DescribeTasks in batches of 100), keeping only tasks whose group is
  /// "service:SERVICE" when ECS reports a group. False with `error`.
  bool service_tasks(const std::string& cluster, const std::string& service,
                     std::vector<EcsTask>* out, AwsError* error);
  /// One target's health. A target the group does not know comes back with state "unused"
  /// or "unavailable" (AWS's own answer), not as an error.
  bool target_health(const std::string& arn, const std::string& id, int port, TargetHealth* out,
                     AwsError* error);
  /// Every target the group holds (DescribeTargetHealth without targets): the registered
  /// ones, and those draining.
  bool target_group_health(const std::string& arn, std::vector<TargetHealth>* out, AwsError* error);
  bool register_target(const std::string& arn, const std::string& id, int port, AwsError* error);
  bool deregister_target(const std::string& arn, const std::string& id, int port, AwsError* error);

  const FleetOptions& options() const { return options_; }

 private:
  bool describe_health(const std::vector<std::pair<std::string, std::string>>& params,
                       std::vector<TargetHealth>* out, AwsError* error);
  /// Signs and sends with retries; the 2xx body in `body`.
  bool send(HttpCall call, std::string_view service, std::string_view what, std::string* body,
            AwsError* error);

  FleetOptions options_;
  AwsCredentialsProvider& credentials_;
  HttpClient& http_;
};

}  // namespace cap::store
