#include "agent/announce.h"

#include <algorithm>
#include <chrono>

#include "agent/logging.h"
#include "cap/value.h"

namespace cap::agent {

Announcer::Announcer(Announcement a, net::HttpClientPool& client)
    : a_(std::move(a)), client_(client) {}

Announcer::~Announcer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Announcer::start() {
  thread_ = std::thread([this] { run(); });
}

void Announcer::run() {
  std::string url = a_.console_url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  url += "/api/v1/agents/announce";
  Map body;
  body.set("id", Value(a_.agent_name));
  body.set("port", Value(int(a_.mgmt_port)));
  body.set("web_port", Value(int(a_.web_port)));
  body.set("version", Value(CAP_VERSION));
  body.set("tls", Value(a_.mgmt_tls));
  if (!a_.advertise_host.empty()) body.set("host", Value(a_.advertise_host));
  HttpCall call;
  call.method = "POST";
  call.url = url;
  call.body = to_json(Value(std::move(body)));
  call.timeout_ms = 30000;
  call.headers.emplace_back("Authorization", "CAP-Join " + a_.join_token);
  call.headers.emplace_back("Content-Type", "application/json");

  std::chrono::seconds pause(1);
  for (int attempt = 1;; ++attempt) {
    HttpReply reply = client_.call(call);
    if (reply.status == 200) {
      agent_log().info("announced to the console at {} as {}", a_.console_url, a_.agent_name);
      return;
    }
    std::string why =
        reply.status == 0 ? reply.error : "it answered " + std::to_string(reply.status);
    std::string detail;
    if (reply.status != 0) {
      std::string err;
      Value v = json_parse(reply.body, &err);
      if (err.empty() && v.is_map())
        if (const Value* e = v.as_map().find("error"); e && e->is_string()) detail = e->as_string();
    }
    bool final =
        reply.status == 400 || reply.status == 401 || reply.status == 403 || reply.status == 404;
    if (final) {
      agent_log().error(
          "the console at {} refused the announcement ({}{}{}); register the agent by hand or "
          "fix CAP_JOIN_TOKEN",
          a_.console_url, why, detail.empty() ? "" : ": ", detail);
      return;
    }
    agent_log().warn(
        "announcing to the console at {} failed (attempt {}: {}{}{}); retrying in {} s",
        a_.console_url, attempt, why, detail.empty() ? "" : ": ", detail, pause.count());
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, pause, [this] { return stop_; })) return;
    pause = std::min(pause * 2, std::chrono::seconds(30));
  }
}

}  // namespace cap::agent
