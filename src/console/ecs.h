// Following an ECS service (docs/aws.md, "Discovery and rolling updates"): the console
// lists the service's running tasks with the deploy user's credentials, keeps one agent
// definition per task (id "ecs-" + the first 12 characters of the task id, host the task's
// private IP), and rolls deployments through the service's target group: deregister a task,
// wait for draining, deploy, check ready, register it again, wait for healthy, next.
//
// This header holds the settings and the running state; the Console's methods using them
// are in ecs.cpp.
#pragma once

#include <boost/json.hpp>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "net/http_client.h"
#include "store/aws_credentials.h"
#include "store/aws_fleet.h"

namespace cap::console {

struct EcsSettings {
  std::string cluster;              // CAP_ECS_CLUSTER (name or ARN); empty: discovery is off
  std::string service;              // CAP_ECS_SERVICE
  std::string target_group_arn;     // CAP_ECS_TARGET_GROUP_ARN; empty: rolling deploys skip the LB
  std::string group = "ecs";        // CAP_ECS_AGENT_GROUP: the group of the tasks' definitions
  std::string type = "production";  // CAP_ECS_AGENT_TYPE
  std::string key;                  // CAP_ECS_AGENT_KEY or the file CAP_ECS_AGENT_KEY_FILE
  std::string key_vault;   // CAP_ECS_AGENT_KEY_VAULT: the vault credential holding the key instead
  int agent_port = 20001;  // CAP_ECS_AGENT_PORT: the tasks' management port
  int web_port = 8080;     // CAP_ECS_WEB_PORT: the tasks' web port, the targets' port
  int sync_ms = 30000;     // CAP_ECS_SYNC_MS: how often the console looks (0: never)
  int drain_timeout_ms = 330000;    // CAP_ECS_DRAIN_TIMEOUT_MS: longest wait for draining
  int healthy_timeout_ms = 300000;  // CAP_ECS_HEALTHY_TIMEOUT_MS: longest wait for healthy
  int target_poll_ms = 5000;        // CAP_ECS_TARGET_POLL_MS: DescribeTargetHealth interval
  store::FleetOptions aws;          // region and endpoints (AWS_*)

  bool enabled() const { return !cluster.empty(); }
};

/// Reads CAP_ECS_* and the AWS settings. Discovery stays off without CAP_ECS_CLUSTER. False
/// with `error` when a value is not valid, or CAP_ECS_CLUSTER is set without
/// CAP_ECS_SERVICE or a key.
bool ecs_settings_from_env(EcsSettings* out, std::string* error);

/// The agent id for a task id: "ecs-" + its first 12 characters (dashes removed).
std::string ecs_agent_id(const std::string& task_id);

/// What the console keeps while following the service.
struct EcsRuntime {
  explicit EcsRuntime(const EcsSettings& settings);

  net::HttpClientPool http;
  store::AwsCredentialsProvider credentials;
  store::FleetClient fleet;

  std::mutex sync_mu;  // one sync at a time
  std::mutex mu;       // guards what follows
  boost::json::value last_sync;
  bool stop = false;
  std::condition_variable cv;
  std::thread thread;
};

}  // namespace cap::console
