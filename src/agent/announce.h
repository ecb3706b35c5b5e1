// Self-registration (DESIGN §5): with CAP_CONSOLE_URL and CAP_JOIN_TOKEN set, the agent
// announces itself to the console once it serves, so a replaced container needs no manual
// registration. The console checks it can command the agent with the key the join token
// stands for before it keeps the definition.
//
//   POST CAP_CONSOLE_URL/api/v1/agents/announce
//   Authorization: CAP-Join <CAP_JOIN_TOKEN>
//   {"id": NAME, "port": MGMT_PORT, "web_port": WEB_PORT, "version": V, "tls": B[, "host": H]}
//
// "host" is sent only when CAP_ADVERTISE_HOST is set; otherwise the console uses the address
// the announcement came from. The token is never logged.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "net/http_client.h"

namespace cap::agent {

struct Announcement {
  std::string console_url, join_token, agent_name, advertise_host;
  uint16_t mgmt_port = 0, web_port = 0;
  bool mgmt_tls = false;  // the management port speaks HTTPS
};

class Announcer {
 public:
  Announcer(Announcement a, net::HttpClientPool& client);
  /// Stops retrying and joins the thread.
  ~Announcer();
  /// Starts announcing on a thread of its own: retried with a growing pause (1 s to 30 s)
  /// while the console cannot be reached or cannot reach the agent yet; given up with an
  /// error line when the console refuses the token or the announcement.
  void start();

 private:
  void run();
  Announcement a_;
  net::HttpClientPool& client_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace cap::agent
