#include "store/aws_fleet.h"

#include <algorithm>
#include <boost/algorithm/string/predicate.hpp>
#include <boost/json.hpp>
#include <boost/property_tree/ptree.hpp>
#include <boost/property_tree/xml_parser.hpp>
#include <boost/url/parse.hpp>
#include <chrono>
#include <random>
#include <sstream>
#include <thread>

#include "net/sigv4.h"

namespace cap::store {

namespace json = boost::json;
namespace pt = boost::property_tree;
namespace sigv4 = net::sigv4;

namespace {

constexpr std::string_view kEcsTargetPrefix = "AmazonEC2ContainerServiceV20141113.";
constexpr std::string_view kElbVersion = "2015-12-01";

std::string header_of(const HttpReply& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (boost::algorithm::iequals(k, name)) return v;
  return {};
}

/// Checks an endpoint override; "" stays "".
bool check_endpoint(std::string* url, std::string_view names, std::string* error) {
  while (!url->empty() && url->back() == '/') url->pop_back();
  if (url->empty()) return true;
  auto u = boost::urls::parse_uri(*url);
  bool http = u && (boost::algorithm::iequals(u->scheme(), "http") ||
                    boost::algorithm::iequals(u->scheme(), "https"));
  if (!http || u->host().empty() || !u->encoded_path().empty() || u->has_query()) {
    *error =
        "the endpoint " + std::string(names) + " must be http[s]://host[:port], not '" + *url + "'";
    return false;
  }
  return true;
}

std::string form_encode(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string out;
  for (auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    out += sigv4::uri_encode(k) + "=" + sigv4::uri_encode(v);
  }
  return out;
}

/// The first element named `name` at any depth (depth first), or null.
const pt::ptree* find_element(const pt::ptree& tree, std::string_view name) {
  for (auto& [k, child] : tree) {
    if (k == name) return &child;
    if (auto* found = find_element(child, name)) return found;
  }
  return nullptr;
}

std::string element_text(const pt::ptree& tree, std::string_view name) {
  auto* e = find_element(tree, name);
  return e ? e->data() : std::string();
}

bool parse_xml(std::string_view body, pt::ptree* out, std::string* error) {
  try {
    std::istringstream in{std::string(body)};
    pt::read_xml(in, *out, pt::xml_parser::trim_whitespace);
    return true;
  } catch (const pt::xml_parser_error& e) {
    *error = "the answer is not XML: " + std::string(e.message());
    return false;
  }
}

bool parse_json_object(std::string_view body, json::object* out, std::string* error) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    *error = "the answer is not a JSON object";
    return false;
  }
  *out = std::move(v.as_object());
  return true;
}

std::string json_string(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

bool throttling(std::string_view code) {
  return code == "Throttling" || code == "ThrottlingException" ||
         code == "TooManyRequestsException" || code == "RequestLimitExceeded" ||
         code == "ServerException" || code == "InternalFailure" || code == "ServiceUnavailable";
}

AwsFailure classify(int status, std::string_view code) {
  if (code == "UnrecognizedClientException" || code == "InvalidClientTokenId" ||
      code == "SignatureDoesNotMatch" || code == "InvalidSignatureException" ||
      code == "IncompleteSignature" || code == "ExpiredToken" || code == "ExpiredTokenException" ||
      code == "MissingAuthenticationToken")
    return AwsFailure::Credentials;
  if (code.find("AccessDenied") != std::string_view::npos || code == "UnauthorizedOperation" ||
      code == "AuthorizationError" || status == 403)
    return AwsFailure::AccessDenied;
  if (code.find("NotFound") != std::string_view::npos || code == "InvalidTarget" || status == 404)
    return AwsFailure::NotFound;
  if (throttling(code) || status == 429) return AwsFailure::Throttled;
  return AwsFailure::Other;
}

}  // namespace

std::string_view failure_name(AwsFailure kind) {
  switch (kind) {
    case AwsFailure::None:
      return "none";
    case AwsFailure::AccessDenied:
      return "access denied";
    case AwsFailure::NotFound:
      return "not found";
    case AwsFailure::Unreachable:
      return "unreachable";
    case AwsFailure::Credentials:
      return "credentials";
    case AwsFailure::Throttled:
      return "throttled";
    case AwsFailure::Other:
      break;
  }
  return "error";
}

bool FleetOptions::from_environment(const GetEnv& env, FleetOptions* out, std::string* error) {
  FleetOptions o;
  auto get = [&](std::string_view name) {
    auto v = env(name);
    return v ? *v : std::string();
  };
  if (!get("AWS_REGION").empty())
    o.region = get("AWS_REGION");
  else if (!get("AWS_DEFAULT_REGION").empty())
    o.region = get("AWS_DEFAULT_REGION");
  std::string common = get("AWS_ENDPOINT_URL");
  o.ecs_endpoint = get("AWS_ENDPOINT_URL_ECS");
  if (o.ecs_endpoint.empty()) o.ecs_endpoint = common;
  o.elb_endpoint = get("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2");
  if (o.elb_endpoint.empty()) o.elb_endpoint = get("AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING");
  if (o.elb_endpoint.empty()) o.elb_endpoint = common;
  if (!check_endpoint(&o.ecs_endpoint, "for ECS (AWS_ENDPOINT_URL_ECS or AWS_ENDPOINT_URL)",
                      error) ||
      !check_endpoint(&o.elb_endpoint,
                      "for Elastic Load Balancing (AWS_ENDPOINT_URL_ELASTIC_LOAD_BALANCING_V2 or "
                      "AWS_ENDPOINT_URL)",
                      error))
    return false;
  o.ca_file = get("AWS_CA_BUNDLE");
  *out = std::move(o);
  return true;
}

std::string FleetOptions::ecs_url() const {
  return ecs_endpoint.empty() ? "https://ecs." + region + ".amazonaws.com" : ecs_endpoint;
}

std::string FleetOptions::elb_url() const {
  return elb_endpoint.empty() ? "https://elasticloadbalancing." + region + ".amazonaws.com"
                              : elb_endpoint;
}

HttpCall ecs_request(const FleetOptions& options, std::string_view action, std::string body) {
  HttpCall c;
  c.method = "POST";
  c.url = options.ecs_url() + "/";
  c.headers = {{"Content-Type", "application/x-amz-json-1.1"},
               {"X-Amz-Target", std::string(kEcsTargetPrefix) + std::string(action)}};
  c.body = std::move(body);
  c.timeout_ms = options.timeout_ms;
  return c;
}

HttpCall elb_request(const FleetOptions& options, std::string_view action,
                     const std::vector<std::pair<std::string, std::string>>& params) {
  std::vector<std::pair<std::string, std::string>> all{{"Action", std::string(action)},
                                                       {"Version", std::string(kElbVersion)}};
  all.insert(all.end(), params.begin(), params.end());
  HttpCall c;
  c.method = "POST";
  c.url = options.elb_url() + "/";
  c.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  c.body = form_encode(all);
  c.timeout_ms = options.timeout_ms;
  return c;
}

std::string list_tasks_body(const std::string& cluster, const std::string& service,
                            const std::string& next_token) {
  json::object o{{"cluster", cluster}, {"serviceName", service}, {"desiredStatus", "RUNNING"}};
  if (!next_token.empty()) o["nextToken"] = next_token;
  return json::serialize(o);
}

std::string describe_tasks_body(const std::string& cluster, const std::vector<std::string>& arns) {
  json::array tasks;
  for (auto& a : arns) tasks.emplace_back(a);
  return json::serialize(json::object{{"cluster", cluster}, {"tasks", tasks}});
}

std::vector<std::pair<std::string, std::string>> target_params(const std::string& target_group_arn,
                                                               const std::string& id, int port) {
  return {{"TargetGroupArn", target_group_arn},
          {"Targets.member.1.Id", id},
          {"Targets.member.1.Port", std::to_string(port)}};
}

bool parse_list_tasks(std::string_view body, std::vector<std::string>* arns,
                      std::string* next_token, std::string* error) {
  json::object o;
  if (!parse_json_object(body, &o, error)) return false;
  auto* list = o.if_contains("taskArns");
  if (!list || !list->is_array()) {
    *error = "the answer has no taskArns list";
    return false;
  }
  for (auto& a : list->as_array())
    if (a.is_string()) arns->emplace_back(a.as_string());
  *next_token = json_string(o, "nextToken");
  return true;
}

bool parse_describe_tasks(std::string_view body, std::vector<EcsTask>* tasks,
                          std::vector<std::string>* failures, std::string* error) {
  json::object o;
  if (!parse_json_object(body, &o, error)) return false;
  auto* list = o.if_contains("tasks");
  if (!list || !list->is_array()) {
    *error = "the answer has no tasks list";
    return false;
  }
  for (auto& tv : list->as_array()) {
    if (!tv.is_object()) continue;
    auto& t = tv.as_object();
    EcsTask task;
    task.arn = json_string(t, "taskArn");
    task.id =
        task.arn.substr(task.arn.rfind('/') == std::string::npos ? 0 : task.arn.rfind('/') + 1);
    task.last_status = json_string(t, "lastStatus");
    task.desired_status = json_string(t, "desiredStatus");
    task.group = json_string(t, "group");
    if (auto* att = t.if_contains("attachments"); att && att->is_array())
      for (auto& a : att->as_array()) {
        if (!a.is_object() || json_string(a.as_object(), "type") != "ElasticNetworkInterface")
          continue;
        if (auto* det = a.as_object().if_contains("details"); det && det->is_array())
          for (auto& d : det->as_array())
            if (d.is_object() && json_string(d.as_object(), "name") == "privateIPv4Address")
              task.private_ip = json_string(d.as_object(), "value");
        if (!task.private_ip.empty()) break;
      }
    if (task.private_ip.empty())
      if (auto* cs = t.if_contains("containers"); cs && cs->is_array())
        for (auto& c : cs->as_array()) {
          if (!c.is_object()) continue;
          if (auto* ni = c.as_object().if_contains("networkInterfaces"); ni && ni->is_array())
            for (auto& n : ni->as_array())
              if (n.is_object() && task.private_ip.empty())
                task.private_ip = json_string(n.as_object(), "privateIpv4Address");
          if (!task.private_ip.empty()) break;
        }
    tasks->push_back(std::move(task));
  }
  if (auto* fl = o.if_contains("failures"); fl && fl->is_array())
    for (auto& f : fl->as_array())
      if (f.is_object())
        failures->push_back(json_string(f.as_object(), "arn") + ": " +
                            json_string(f.as_object(), "reason"));
  return true;
}

bool parse_target_health(std::string_view body, std::vector<TargetHealth>* out,
                         std::string* error) {
  pt::ptree tree;
  if (!parse_xml(body, &tree, error)) return false;
  auto* list = find_element(tree, "TargetHealthDescriptions");
  if (!list) {
    *error = "the answer has no TargetHealthDescriptions";
    return false;
  }
  for (auto& [k, m] : *list) {
    if (k != "member") continue;
    TargetHealth h;
    if (auto* t = find_element(m, "Target")) {
      h.id = element_text(*t, "Id");
      h.port = t->get<int>("Port", 0);
    }
    if (auto* th = find_element(m, "TargetHealth")) {
      h.state = element_text(*th, "State");
      h.reason = element_text(*th, "Reason");
      h.description = element_text(*th, "Description");
    }
    out->push_back(std::move(h));
  }
  return true;
}

AwsError parse_aws_error(std::string_view call, const HttpReply& reply) {
  AwsError e;
  std::string message;
  if (reply.status == 0) {
    e.kind = AwsFailure::Unreachable;
    e.message = std::string(call) + ": the endpoint cannot be reached (" + reply.error + ")";
    return e;
  }
  boost::system::error_code ec;
  json::value v = json::parse(reply.body, ec);
  if (!ec && v.is_object()) {
    auto& o = v.as_object();
    e.code = json_string(o, "__type");
    message = json_string(o, "message");
    if (message.empty()) message = json_string(o, "Message");
  } else {
    pt::ptree tree;
    std::string ignored;
    if (parse_xml(reply.body, &tree, &ignored)) {
      e.code = element_text(tree, "Code");
      message = element_text(tree, "Message");
    }
  }
  if (e.code.empty()) e.code = header_of(reply, "x-amzn-errortype");
  // "com.amazonaws.ecs#ClusterNotFoundException", "AccessDeniedException:http://..."
  if (auto hash = e.code.rfind('#'); hash != std::string::npos) e.code.erase(0, hash + 1);
  if (auto colon = e.code.find(':'); colon != std::string::npos) e.code.resize(colon);
  e.kind = classify(reply.status, e.code);
  std::string detail = e.code.empty() ? "HTTP " + std::to_string(reply.status)
                                      : e.code + (message.empty() ? "" : ": " + message);
  std::string what;
  switch (e.kind) {
    case AwsFailure::AccessDenied:
      what = "access denied";
      break;
    case AwsFailure::Credentials:
      what = "the credentials were refused";
      break;
    case AwsFailure::NotFound:
      what = "not found";
      break;
    case AwsFailure::Throttled:
      what = "throttled";
      break;
    default:
      what = "AWS answered HTTP " + std::to_string(reply.status);
  }
  e.message = std::string(call) + ": " + what + " (" + detail + ")";
  return e;
}

FleetClient::FleetClient(FleetOptions options, AwsCredentialsProvider& credentials,
                         HttpClient& http)
    : options_(std::move(options)), credentials_(credentials), http_(http) {}

bool FleetClient::send(HttpCall call, std::string_view service, std::string_view what,
                       std::string* body, AwsError* error) {
  std::mt19937 jitter(std::random_device{}());
  for (int attempt = 1;; ++attempt) {
    sigv4::Credentials creds;
    std::string cred_error;
    if (!credentials_.get(&creds, &cred_error)) {
      *error = AwsError{AwsFailure::Credentials, "",
                        std::string(what) + ": no AWS credentials: " + cred_error};
      return false;
    }
    HttpCall signed_call = call;
    std::string sign_error;
    if (!sigv4::sign_call(&signed_call, creds, {options_.region, std::string(service)},
                          std::chrono::system_clock::now(), {}, &sign_error)) {
      *error = AwsError{AwsFailure::Other, "", std::string(what) + ": " + sign_error};
      return false;
    }
    HttpReply reply = http_.call(signed_call);
    if (reply.status >= 200 && reply.status < 300) {
      *body = std::move(reply.body);
      return true;
    }
    *error = parse_aws_error(what, reply);
    if (reply.status == 0)
      error->message = std::string(what) + ": the endpoint " +
                       (service == "ecs" ? options_.ecs_url() : options_.elb_url()) +
                       " cannot be reached (" + reply.error + ")";
    bool retry = error->kind == AwsFailure::Unreachable || error->kind == AwsFailure::Throttled ||
                 reply.status >= 500;
    if (!retry || attempt >= std::max(1, options_.attempts)) return false;
    int base_ms = 200 << (attempt - 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(
        base_ms + int(std::uniform_int_distribution<int>(0, base_ms / 2)(jitter))));
  }
}

bool FleetClient::service_tasks(const std::string& cluster, const std::string& service,
                                std::vector<EcsTask>* out, AwsError* error) {
  std::vector<std::string> arns;
  std::string token, body, perr;
  do {
    if (!send(ecs_request(options_, "ListTasks", list_tasks_body(cluster, service, token)), "ecs",
              "ECS ListTasks", &body, error))
      return false;
    std::string next;
    if (!parse_list_tasks(body, &arns, &next, &perr)) {
      *error = AwsError{AwsFailure::Other, "", "ECS ListTasks: " + perr};
      return false;
    }
    token = next;
  } while (!token.empty());
  out->clear();
  for (size_t first = 0; first < arns.size(); first += 100) {
    std::vector<std::string> batch(arns.begin() + long(first),
                                   arns.begin() + long(std::min(arns.size(), first + 100)));
    if (!send(ecs_request(options_, "DescribeTasks", describe_tasks_body(cluster, batch)), "ecs",
              "ECS DescribeTasks", &body, error))
      return false;
    std::vector<EcsTask> tasks;
    std::vector<std::string> failures;
    if (!parse_describe_tasks(body, &tasks, &failures, &perr)) {
      *error = AwsError{AwsFailure::Other, "", "ECS DescribeTasks: " + perr};
      return false;
    }
    // A task that ended between the two calls is reported MISSING: it is simply gone.
    for (auto& t : tasks)
      if (t.group.empty() || t.group == "service:" + service) out->push_back(std::move(t));
  }
  std::sort(out->begin(), out->end(),
            [](const EcsTask& a, const EcsTask& b) { return a.arn < b.arn; });
  return true;
}

bool FleetClient::describe_health(const std::vector<std::pair<std::string, std::string>>& params,
                                  std::vector<TargetHealth>* out, AwsError* error) {
  std::string body, perr;
  if (!send(elb_request(options_, "DescribeTargetHealth", params), "elasticloadbalancing",
            "ELB DescribeTargetHealth", &body, error))
    return false;
  out->clear();
  if (!parse_target_health(body, out, &perr)) {
    *error = AwsError{AwsFailure::Other, "", "ELB DescribeTargetHealth: " + perr};
    return false;
  }
  return true;
}

bool FleetClient::target_health(const std::string& arn, const std::string& id, int port,
                                TargetHealth* out, AwsError* error) {
  std::vector<TargetHealth> list;
  if (!describe_health(target_params(arn, id, port), &list, error)) return false;
  *out = TargetHealth{id, port, "unused", "Target.NotRegistered", "not listed"};
  for (auto& h : list)
    if (h.id == id) *out = h;
  return true;
}

bool FleetClient::target_group_health(const std::string& arn, std::vector<TargetHealth>* out,
                                      AwsError* error) {
  return describe_health({{"TargetGroupArn", arn}}, out, error);
}

bool FleetClient::register_target(const std::string& arn, const std::string& id, int port,
                                  AwsError* error) {
  std::string body;
  return send(elb_request(options_, "RegisterTargets", target_params(arn, id, port)),
              "elasticloadbalancing", "ELB RegisterTargets", &body, error);
}

bool FleetClient::deregister_target(const std::string& arn, const std::string& id, int port,
                                    AwsError* error) {
  std::string body;
  return send(elb_request(options_, "DeregisterTargets", target_params(arn, id, port)),
              "elasticloadbalancing", "ELB DeregisterTargets", &body, error);
}

}  // namespace cap::store
