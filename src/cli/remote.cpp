#include "cli/remote.h"

#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include "net/http_client.h"
#include "net/signing.h"

namespace cap::cli {

bool parse_agent_target(const std::string& spec, const std::string& key, AgentTarget* out,
                        std::string* error) {
  AgentTarget t;
  std::string s = spec;
  if (s.rfind("https://", 0) == 0) {
    t.tls = true;
    s.erase(0, 8);
  } else if (s.rfind("http://", 0) == 0) {
    s.erase(0, 7);
  }
  if (!s.empty() && s.back() == '/') s.pop_back();
  std::string port;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      *error = "expected [IPv6]:PORT";
      return false;
    }
    t.host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string::npos || s.find(':') != colon) {
      *error = "expected HOST:PORT (an IPv6 address goes in brackets: [::1]:20001)";
      return false;
    }
    t.host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (t.host.empty() || t.host.find_first_of(" /?#@") != std::string::npos) {
    *error = "expected HOST:PORT with a host name or address";
    return false;
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1 ||
      std::stoi(port) > 65535) {
    *error = "the port must be a number from 1 to 65535";
    return false;
  }
  t.port = uint16_t(std::stoi(port));
  if (key.empty()) {
    *error = "no management key: set CAP_MGMT_KEY or pass --key-file FILE";
    return false;
  }
  t.key = key;
  *out = std::move(t);
  return true;
}

bool load_agent_key(const std::string& key_file, std::string* key, std::string* error) {
  if (!key_file.empty()) return net::read_key_file(key_file, key, error);
  const char* env = std::getenv("CAP_MGMT_KEY");
  if (!env || !*env) {
    *error = "no management key: set CAP_MGMT_KEY or pass --key-file FILE";
    return false;
  }
  *key = env;
  return true;
}

AgentReply agent_call(const AgentTarget& target, const std::string& method, const std::string& path,
                      const std::string& body, const std::string& content_type, int timeout_ms) {
  if (target.key.empty()) {
    AgentReply r;
    r.error = "no management key: set CAP_MGMT_KEY or pass --key-file FILE";
    return r;
  }
  std::string p = path.empty() || path[0] != '/' ? "/" + path : path;
  bool v6 = target.host.find(':') != std::string::npos;
  std::string url = target.tls ? "https://" : "http://";
  url += v6 ? "[" + target.host + "]" : target.host;
  url += ":";
  url += std::to_string(target.port);
  url += p;

  HttpCall call;
  call.method = method;
  call.url = url;
  call.body = body;
  call.timeout_ms = timeout_ms;
  int64_t ts = int64_t(std::time(nullptr));
  call.headers.emplace_back(
      "Authorization", net::sign_request(target.key, method, p, body, ts, net::random_nonce()));
  if (!content_type.empty()) call.headers.emplace_back("Content-Type", content_type);
  call.headers.emplace_back("Accept", "application/json");

  net::ClientOptions o;
  o.ca_file = target.ca_file;
  o.max_idle_per_origin = 1;
  net::HttpClientPool pool(o);
  return pool.call(call);
}

}  // namespace cap::cli
