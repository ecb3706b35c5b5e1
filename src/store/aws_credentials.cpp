#include "store/aws_credentials.h"

#include <boost/url/parse.hpp>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>

#include "cap/value.h"

namespace cap::store {
namespace {

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return std::string(s);
}

int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string non_empty(const GetEnv& env, std::string_view name) {
  auto v = env(name);
  return v ? *v : std::string();
}

/// Whether a FULL_URI may be called: https anywhere, http only to loopback and the
/// container link-local addresses (as the AWS SDKs allow).
bool allowed_full_uri(const std::string& uri, std::string* why) {
  auto r = boost::urls::parse_uri(uri);
  if (!r) {
    *why = "it is not a URL";
    return false;
  }
  std::string scheme(r->scheme());
  if (scheme == "https") return true;
  if (scheme != "http") {
    *why = "its scheme must be http or https";
    return false;
  }
  std::string host(r->host_address());
  if (host.rfind("127.", 0) == 0 || host == "::1" || host == "localhost" ||
      host == "169.254.170.2" || host == "169.254.170.23" || host == "fd00:ec2::23")
    return true;
  *why = "plain http is allowed only to loopback or the container credential addresses";
  return false;
}

}  // namespace

GetEnv process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

bool parse_iso8601_ms(std::string_view text, int64_t* ms) {
  std::tm tm{};
  std::istringstream in{std::string(text)};
  in >> std::get_time(&tm, "%Y-%m-%dT%H:%M:%S");
  if (in.fail()) return false;
  int64_t frac_ms = 0;
  int c = in.get();
  if (c == '.') {
    int digits = 0;
    while (std::isdigit(in.peek())) {
      int d = in.get() - '0';
      if (digits < 3) frac_ms = frac_ms * 10 + d;
      ++digits;
    }
    for (; digits < 3; ++digits) frac_ms *= 10;
    c = in.get();
  }
  if (c != 'Z' && !(c == '+' && text.ends_with("+00:00"))) return false;
  *ms = int64_t(timegm(&tm)) * 1000 + frac_ms;
  return true;
}

AwsCredentialsProvider::AwsCredentialsProvider(HttpClient& http, GetEnv env,
                                               std::function<int64_t()> now_ms)
    : http_(http), env_(std::move(env)), now_ms_(now_ms ? std::move(now_ms) : system_now_ms) {}

std::string AwsCredentialsProvider::source() const {
  std::lock_guard lock(mu_);
  return source_;
}

bool AwsCredentialsProvider::get(net::sigv4::Credentials* out, std::string* error) {
  std::lock_guard lock(mu_);
  if (have_ && (expires_ms_ == 0 || now_ms_() < expires_ms_ - kRefreshMarginMs)) {
    *out = cached_;
    return true;
  }
  net::sigv4::Credentials c;
  // 1. The environment.
  std::string id = non_empty(env_, "AWS_ACCESS_KEY_ID");
  std::string secret = non_empty(env_, "AWS_SECRET_ACCESS_KEY");
  if (!id.empty() || !secret.empty()) {
    if (id.empty() || secret.empty()) {
      *error =
          "AWS credentials in the environment are incomplete: set both AWS_ACCESS_KEY_ID "
          "and AWS_SECRET_ACCESS_KEY";
      return false;
    }
    c.access_key_id = id;
    c.secret_access_key = secret;
    c.session_token = non_empty(env_, "AWS_SESSION_TOKEN");
    cached_ = c;
    expires_ms_ = 0;
    have_ = true;
    source_ = "environment";
    *out = c;
    return true;
  }
  // 2. The shared credentials file.
  bool found = false;
  if (!from_shared_file(&c, error, &found)) return false;
  if (found) {
    cached_ = c;
    expires_ms_ = 0;
    have_ = true;
    *out = c;
    return true;
  }
  // 3. The container endpoint (ECS task role).
  int64_t expires = 0;
  if (!from_container(&c, &expires, error, &found)) return false;
  if (found) {
    cached_ = c;
    expires_ms_ = expires;
    have_ = true;
    source_ = "container credentials endpoint";
    *out = c;
    return true;
  }
  *error =
      "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, provide a shared "
      "credentials file (~/.aws/credentials or AWS_SHARED_CREDENTIALS_FILE), or run with a task "
      "role (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)";
  return false;
}

bool AwsCredentialsProvider::from_shared_file(net::sigv4::Credentials* out, std::string* error,
                                              bool* found) {
  *found = false;
  std::string path = non_empty(env_, "AWS_SHARED_CREDENTIALS_FILE");
  bool explicit_path = !path.empty();
  if (path.empty()) {
    std::string home = non_empty(env_, "HOME");
    if (home.empty()) return true;
    path = home + "/.aws/credentials";
  }
  std::ifstream in(path);
  if (!in) {
    if (explicit_path) {
      *error = "AWS_SHARED_CREDENTIALS_FILE " + path + " cannot be read";
      return false;
    }
    return true;
  }
  std::string profile = non_empty(env_, "AWS_PROFILE");
  if (profile.empty()) profile = "default";
  std::string line, section;
  net::sigv4::Credentials c;
  bool saw_profile = false;
  while (std::getline(in, line)) {
    std::string t = trim(line);
    if (t.empty() || t[0] == '#' || t[0] == ';') continue;
    if (t.front() == '[' && t.back() == ']') {
      section = trim(std::string_view(t).substr(1, t.size() - 2));
      if (section == profile) saw_profile = true;
      continue;
    }
    if (section != profile) continue;
    size_t eq = t.find('=');
    if (eq == std::string::npos) continue;
    std::string key = trim(std::string_view(t).substr(0, eq));
    std::string value = trim(std::string_view(t).substr(eq + 1));
    if (key == "aws_access_key_id") c.access_key_id = value;
    if (key == "aws_secret_access_key") c.secret_access_key = value;
    if (key == "aws_session_token") c.session_token = value;
  }
  if (!saw_profile) {
    if (profile != "default") {
      *error =
          "the shared credentials file " + path + " has no profile [" + profile + "] (AWS_PROFILE)";
      return false;
    }
    return true;
  }
  if (c.access_key_id.empty() || c.secret_access_key.empty()) {
    *error = "profile [" + profile + "] in " + path +
             " lacks aws_access_key_id or aws_secret_access_key";
    return false;
  }
  *out = c;
  *found = true;
  source_ = "shared credentials file " + path + " (profile " + profile + ")";
  return true;
}

bool AwsCredentialsProvider::from_container(net::sigv4::Credentials* out, int64_t* expires_ms,
                                            std::string* error, bool* found) {
  *found = false;
  std::string relative = non_empty(env_, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  std::string full = non_empty(env_, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
  std::string url;
  if (!relative.empty()) {
    url = "http://169.254.170.2" + relative;
  } else if (!full.empty()) {
    std::string why;
    if (!allowed_full_uri(full, &why)) {
      *error = "AWS_CONTAINER_CREDENTIALS_FULL_URI is refused: " + why;
      return false;
    }
    url = full;
  } else {
    return true;
  }
  *found = true;
  const std::string where = relative.empty() ? "AWS_CONTAINER_CREDENTIALS_FULL_URI"
                                             : "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
  HttpCall call;
  call.method = "GET";
  call.url = url;
  call.timeout_ms = 5000;
  std::string token = non_empty(env_, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
  std::string token_file = non_empty(env_, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
  if (token.empty() && !token_file.empty()) {
    std::ifstream tin(token_file);
    if (!tin) {
      *error = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE " + token_file + " cannot be read";
      return false;
    }
    std::stringstream ss;
    ss << tin.rdbuf();
    token = trim(ss.str());
  }
  if (!token.empty()) call.headers.emplace_back("Authorization", token);
  call.headers.emplace_back("Accept", "application/json");

  HttpReply reply;
  for (int attempt = 0; attempt < 3; ++attempt) {
    reply = http_.call(call);
    if (reply.status == 200 || (reply.status >= 400 && reply.status < 500)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100 << attempt));
  }
  if (reply.status != 200) {
    *error = "the container credentials endpoint (" + where + ") " +
             (reply.status == 0 ? "did not answer: " + reply.error
                                : "answered HTTP " + std::to_string(reply.status));
    return false;
  }
  std::string parse_error;
  Value doc = json_parse(reply.body, &parse_error);
  const Map* m = parse_error.empty() && doc.is_map() ? &doc.as_map() : nullptr;
  auto field = [&](std::string_view name) -> std::string {
    const Value* v = m ? m->find(name) : nullptr;
    return v && v->is_string() ? v->as_string() : std::string();
  };
  out->access_key_id = field("AccessKeyId");
  out->secret_access_key = field("SecretAccessKey");
  out->session_token = field("Token");
  if (out->access_key_id.empty() || out->secret_access_key.empty()) {
    *error = "the container credentials endpoint (" + where +
             ") answered without AccessKeyId and SecretAccessKey";
    return false;
  }
  *expires_ms = 0;
  std::string expiration = field("Expiration");
  if (!expiration.empty() && !parse_iso8601_ms(expiration, expires_ms)) {
    *error = "the container credentials endpoint (" + where +
             ") answered an Expiration that is not an ISO 8601 UTC time";
    return false;
  }
  return true;
}

}  // namespace cap::store
