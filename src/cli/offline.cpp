// validate, pack, run and test: configurations on this machine, no agent involved.
#include <stdlib.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>

#include "cap/engine.h"
#include "cli/commands.h"
#include "net/http_client.h"
#include "store/sql.h"

namespace cap::cli {

namespace fs = std::filesystem;

namespace {

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
  }
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

/// Reads and loads; prints diagnostics to `diag`. Returns null on failure; `usage` is set
/// when the path itself is unusable (exit 2).
std::shared_ptr<const Configuration> load(const std::string& dir, std::ostream& diag,
                                          bool print_warnings, bool* usage) {
  *usage = false;
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    std::cerr << "capctl: " << dir << ": no such folder or file\n";
    *usage = true;
    return nullptr;
  }
  Package pkg;
  std::string err;
  if (!read_path(dir, &pkg, &err)) {
    std::cerr << "capctl: " << err << "\n";
    return nullptr;
  }
  LoadResult r = load_configuration(pkg, catalogue(), load_options());
  for (auto& d : r.diagnostics)
    if (d.severity == Diagnostic::Severity::Error || print_warnings) diag << d.format() << "\n";
  if (!r.ok()) {
    size_t n = r.error_count();
    std::cerr << "capctl: " << dir << ": " << n << (n == 1 ? " error" : " errors") << "\n";
  }
  return r.configuration;
}

/// Without CAP_DB_URL, configurations that name `${env:CAP_DB_URL}` get a SQLite file:
/// `capctl test` an empty one in a temporary folder for each run, so tests repeat (and,
/// without CAP_SHARED_DIR, an empty shared folder there too); `capctl run`
/// $CAP_HOME/capctl.sqlite (default cap-home/), so entries stay between runs.
class OfflineDatabase {
 public:
  explicit OfflineDatabase(bool scratch) {
    std::error_code ec;
    if (scratch) {
      std::string tmpl = (fs::temp_directory_path(ec) / "capctl-test-XXXXXX").string();
      if (::mkdtemp(tmpl.data())) temp_ = tmpl;
    }
    if (std::getenv("CAP_DB_URL")) return;
    std::string folder;
    if (scratch) {
      if (temp_.empty()) return;
      folder = temp_;
    } else {
      const char* home = std::getenv("CAP_HOME");
      folder = home ? home : "cap-home";
      fs::create_directories(folder, ec);
      folder = fs::absolute(folder, ec).string();
    }
    std::string url = "sqlite://" + folder + "/capctl.sqlite";
    ::setenv("CAP_DB_URL", url.c_str(), 1);
    if (!scratch) std::cerr << "capctl: CAP_DB_URL is not set: using " << url << "\n";
  }
  ~OfflineDatabase() {
    std::error_code ec;
    if (!temp_.empty()) fs::remove_all(temp_, ec);
  }
  OfflineDatabase(const OfflineDatabase&) = delete;
  OfflineDatabase& operator=(const OfflineDatabase&) = delete;
  /// The shared folder for a test run without CAP_SHARED_DIR, or "".
  std::string scratch_shared() const { return temp_.empty() ? "" : temp_ + "/shared"; }

 private:
  std::string temp_;
};

struct Host {
  explicit Host(bool scratch_db = false) : offline_db(scratch_db) {}
  OfflineDatabase offline_db;
  SystemClock clock;
  StderrLogger logger{LogLevel::Warn};
  MemoryVault vault;
  net::HttpClientPool http;  // HttpClient and HttpServerExecute call out for real
  std::unique_ptr<LocalFiles> files;
  std::unique_ptr<store::SqlHub> sql;
  HostServices services() {
    const char* shared = std::getenv("CAP_SHARED_DIR");
    std::string scratch = offline_db.scratch_shared();
    files = std::make_unique<LocalFiles>(shared            ? std::string(shared)
                                         : scratch.empty() ? std::string("cap-home/shared")
                                                           : scratch);
    const char* user = std::getenv("CAP_DB_USER");
    const char* password = std::getenv("CAP_DB_PASSWORD");
    store::SqlHubOptions sql_options;
    sql_options.credentials = {user ? user : "", password ? password : ""};
    sql = std::make_unique<store::SqlHub>(std::move(sql_options));
    HostServices s;
    s.sql = sql.get();
    s.clock = &clock;
    s.logger = &logger;
    s.vault = &vault;
    s.files = files.get();
    s.http = &http;
    return s;
  }
};

/// Loads `dir` and runs its startup rule set; returns the exit status on failure, 0 when
/// `out` holds a ready runtime.
int start_runtime(const std::string& dir, Host& host, std::unique_ptr<Runtime>* out) {
  bool usage;
  auto cfg = load(dir, std::cerr, false, &usage);
  if (usage) return 2;
  if (!cfg) return 1;
  auto runtime = std::make_unique<Runtime>(cfg, host.services());
  std::string startup_error = runtime->startup();
  if (!startup_error.empty()) {
    std::cerr << "capctl: startup rule set failed: " << startup_error << "\n";
    return 1;
  }
  *out = std::move(runtime);
  return 0;
}

struct ParsedRequest {
  std::string method, target;
};

std::optional<ParsedRequest> parse_request_line(const std::string& line, std::string* err) {
  auto sp = line.find(' ');
  if (sp == std::string::npos || sp == 0) {
    *err = "request '" + line + "' must look like \"GET /path?query\"";
    return std::nullopt;
  }
  ParsedRequest r{line.substr(0, sp), line.substr(sp + 1)};
  while (!r.target.empty() && r.target.front() == ' ') r.target.erase(0, 1);
  if (r.target.empty() || r.target.front() != '/') {
    *err = "request target '" + r.target + "' must start with /";
    return std::nullopt;
  }
  for (char c : r.method)
    if (!std::isupper(static_cast<unsigned char>(c))) {
      *err = "request method '" + r.method + "' must be an upper-case HTTP method";
      return std::nullopt;
    }
  return r;
}

/// The response as the host would send it: 404 when no rule answered, 500 on errors.
void finish_response(const Outcome& o, Response& res) {
  if (o.failed) {
    res.reset();
    res.set = true;
    res.status = 500;
    res.content_type = "text/plain; charset=utf-8";
    res.body = "internal error\n";
  } else if (!res.set) {
    res.set = true;
    res.status = 404;
    res.content_type = "text/plain; charset=utf-8";
    res.body = "not found\n";
  }
}

void print_response(const Response& res) {
  std::string out = "HTTP/1.1 " + std::to_string(res.status);
  if (*reason_phrase(res.status)) out += std::string(" ") + reason_phrase(res.status);
  out += "\n";
  if (!res.content_type.empty()) out += "content-type: " + res.content_type + "\n";
  for (auto& [k, v] : res.headers) out += k + ": " + v + "\n";
  out += "content-length: " + std::to_string(res.body.size()) + "\n\n";
  out += res.body;
  if (!res.body.empty() && res.body.back() != '\n') out += "\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
}

}  // namespace

/// validate and pack check a configuration, not this machine: an unset CAP_DB_URL stands
/// for the SQLite database that run and test would give it.
void assume_db_url() {
  if (!std::getenv("CAP_DB_URL")) ::setenv("CAP_DB_URL", "sqlite::memory:", 1);
}

int cmd_validate(const std::string& dir) {
  assume_db_url();
  bool usage;
  auto cfg = load(dir, std::cout, true, &usage);
  if (usage) return 2;
  return cfg ? 0 : 1;
}

int cmd_pack(const std::string& dir, const std::string& out) {
  assume_db_url();
  bool usage;
  auto cfg = load(dir, std::cerr, false, &usage);
  if (usage) return 2;
  if (!cfg) {
    std::cerr << "capctl: not packed: fix the errors above first\n";
    return 1;
  }
  std::string zip, err;
  if (!write_zip(cfg->package, &zip, &err)) {
    std::cerr << "capctl: " << err << "\n";
    return 1;
  }
  std::string tmp = out + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f || !f.write(zip.data(), static_cast<std::streamsize>(zip.size()))) {
      std::cerr << "capctl: cannot write " << out << "\n";
      return 1;
    }
  }
  std::error_code ec;
  fs::rename(tmp, out, ec);
  if (ec) {
    std::cerr << "capctl: cannot write " << out << ": " << ec.message() << "\n";
    return 1;
  }
  std::cerr << "capctl: wrote " << out << " (" << cfg->package.files.size() << " files, "
            << zip.size() << " bytes)\n";
  return 0;
}

int cmd_run(const std::string& dir, const RunOptions& opts) {
  std::string err;
  auto line = parse_request_line(opts.request, &err);
  if (!line) {
    std::cerr << "capctl: " << err << "\n";
    return 2;
  }
  std::vector<std::pair<std::string, std::string>> headers;
  for (auto& h : opts.headers) {
    auto c = h.find(':');
    if (c == std::string::npos || c == 0) {
      std::cerr << "capctl: header '" << h << "' must look like \"Name: value\"\n";
      return 2;
    }
    std::string v = h.substr(c + 1);
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    headers.emplace_back(h.substr(0, c), v);
  }
  Host host;
  std::unique_ptr<Runtime> loaded;
  if (int status = start_runtime(dir, host, &loaded)) return status;
  Runtime& runtime = *loaded;
  Request req;
  req.method = line->method;
  req.target = line->target;
  for (auto& [k, v] : headers) req.headers.emplace_back(k, v);
  req.body = opts.body;
  req.remote_addr = opts.remote_addr;
  if (opts.trace) runtime.arm_trace(1);
  Workspace ws;
  Response res;
  Outcome o = runtime.handle(req, res, ws);
  finish_response(o, res);
  print_response(res);
  if (opts.trace)
    for (auto& t : runtime.traces()) std::cout << "\n" << format_trace(t);
  if (o.failed) {
    std::cerr << "capctl: the request failed: " << o.error << "\n";
    return 1;
  }
  return 0;
}

namespace {

struct TestCase {
  size_t line = 0;
  std::string name;
  std::string method, target, body, remote_addr = "127.0.0.1";
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<int> status;
  std::optional<std::string> body_equals, body_contains;
  std::vector<std::pair<std::string, std::string>> expect_headers;
  std::vector<std::pair<std::string, Value>> expect_vars;
};

std::string shorten(std::string s) {
  for (auto& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

bool parse_test_line(const std::string& text, size_t lineno, TestCase* tc, std::string* err) {
  std::string perr;
  Value v = json_parse(text, &perr);
  if (!perr.empty()) {
    *err = "line " + std::to_string(lineno) + ": not valid JSON: " + perr;
    return false;
  }
  if (!v.is_map()) {
    *err = "line " + std::to_string(lineno) + ": must be a JSON object";
    return false;
  }
  const Map& m = v.as_map();
  tc->line = lineno;
  auto str = [&](const char* key, std::string* out) -> bool {
    const Value* f = m.find(key);
    if (!f || f->is_null()) return true;
    if (!f->is_string()) {
      *err = "line " + std::to_string(lineno) + ": \"" + key + "\" must be a string";
      return false;
    }
    *out = f->as_string();
    return true;
  };
  std::string request;
  if (!str("name", &tc->name) || !str("request", &request) || !str("body", &tc->body) ||
      !str("remote_addr", &tc->remote_addr))
    return false;
  if (tc->name.empty()) tc->name = "line " + std::to_string(lineno);
  if (request.empty()) {
    *err = "line " + std::to_string(lineno) + ": \"request\" is required (\"GET /path\")";
    return false;
  }
  std::string rerr;
  auto rl = parse_request_line(request, &rerr);
  if (!rl) {
    *err = "line " + std::to_string(lineno) + ": " + rerr;
    return false;
  }
  tc->method = rl->method;
  tc->target = rl->target;
  if (const Value* h = m.find("headers"); h && !h->is_null()) {
    if (!h->is_map()) {
      *err = "line " + std::to_string(lineno) + ": \"headers\" must be an object";
      return false;
    }
    for (auto& [k, hv] : h->as_map()) tc->headers.emplace_back(k, hv.to_text());
  }
  if (const Value* e = m.find("expect"); e && !e->is_null()) {
    if (!e->is_map()) {
      *err = "line " + std::to_string(lineno) + ": \"expect\" must be an object";
      return false;
    }
    const Map& em = e->as_map();
    for (auto& [k, ev] : em) {
      if (k == "status") {
        if (!ev.is_number()) {
          *err = "line " + std::to_string(lineno) + ": expect.status must be a number";
          return false;
        }
        tc->status = static_cast<int>(ev.as_number());
      } else if (k == "body") {
        tc->body_equals = ev.to_text();
      } else if (k == "body_contains") {
        tc->body_contains = ev.to_text();
      } else if (k == "headers" && ev.is_map()) {
        for (auto& [hk, hv] : ev.as_map()) tc->expect_headers.emplace_back(hk, hv.to_text());
      } else if (k == "variables" && ev.is_map()) {
        for (auto& [vk, vv] : ev.as_map()) tc->expect_vars.emplace_back(vk, vv);
      } else {
        *err = "line " + std::to_string(lineno) + ": unknown expect field \"" + k +
               "\" (status, body, body_contains, headers, variables)";
        return false;
      }
    }
  }
  return true;
}

bool same_value(const Value& a, const Value& b) {
  if (a.type() != b.type()) return false;
  return to_json(a) == to_json(b);
}

}  // namespace

int cmd_test(const std::string& dir, const std::string& data) {
  std::ifstream in(data);
  if (!in) {
    std::cerr << "capctl: " << data << ": cannot be read\n";
    return 2;
  }
  std::vector<TestCase> cases;
  std::string text;
  size_t lineno = 0;
  bool bad = false;
  while (std::getline(in, text)) {
    ++lineno;
    if (std::all_of(text.begin(), text.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); }))
      continue;
    TestCase tc;
    std::string err;
    if (!parse_test_line(text, lineno, &tc, &err)) {
      std::cerr << "capctl: " << data << ": " << err << "\n";
      bad = true;
      continue;
    }
    cases.push_back(std::move(tc));
  }
  if (bad) return 1;
  Host host(true);  // a fresh database for each test run
  std::unique_ptr<Runtime> loaded;
  if (int status = start_runtime(dir, host, &loaded)) return status;
  Runtime& runtime = *loaded;
  Workspace ws;
  size_t passed = 0, width = 4;
  for (auto& c : cases) width = std::max(width, std::min<size_t>(c.name.size(), 50));
  std::printf("%-*s  %-6s  %s\n", static_cast<int>(width), "test", "result", "details");
  for (auto& c : cases) {
    Request req;
    req.method = c.method;
    req.target = c.target;
    for (auto& [k, v] : c.headers) req.headers.emplace_back(k, v);
    req.body = c.body;
    req.remote_addr = c.remote_addr;
    Response res;
    std::vector<std::string> problems;
    Outcome o = runtime.handle(req, res, ws, [&](Variables& vars) {
      for (auto& [name, want] : c.expect_vars) {
        const Value& got = vars.get(std::string_view(name));
        if (!same_value(got, want))
          problems.push_back(name + " is " + shorten(to_json(got)) + ", expected " + shorten(to_json(want)));
      }
    });
    if (o.failed) problems.insert(problems.begin(), "error: " + o.error);
    finish_response(o, res);
    if (c.status && res.status != *c.status)
      problems.insert(problems.begin(), "status " + std::to_string(res.status) + ", expected " + std::to_string(*c.status));
    if (c.body_equals && res.body != *c.body_equals)
      problems.push_back("body '" + shorten(res.body) + "', expected '" + shorten(*c.body_equals) + "'");
    if (c.body_contains && res.body.find(*c.body_contains) == std::string::npos)
      problems.push_back("body '" + shorten(res.body) + "' lacks '" + shorten(*c.body_contains) + "'");
    for (auto& [hk, hv] : c.expect_headers) {
      std::optional<std::string> got;
      if (iequals(hk, "content-type") && !res.content_type.empty()) got = res.content_type;
      for (auto& [k, v] : res.headers)
        if (iequals(k, hk)) got = v;
      if (!got) problems.push_back("no header " + hk);
      else if (*got != hv) problems.push_back("header " + hk + " is '" + shorten(*got) + "', expected '" + shorten(hv) + "'");
    }
    std::string name = c.name.size() > 50 ? c.name.substr(0, 47) + "..." : c.name;
    if (problems.empty()) {
      ++passed;
      std::printf("%-*s  %-6s\n", static_cast<int>(width), name.c_str(), "pass");
    } else {
      std::string details;
      for (auto& p : problems) details += (details.empty() ? "" : "; ") + p;
      std::printf("%-*s  %-6s  %s\n", static_cast<int>(width), name.c_str(), "FAIL", details.c_str());
    }
  }
  std::printf("\n%zu of %zu passed\n", passed, cases.size());
  // The performance data of the run.
  Value stats = runtime.stats();
  std::printf("\nperformance (%s):\n", stats.as_map().find("performance")->to_text().c_str());
  std::printf("  %-28s %-20s %10s %12s\n", "rule set/node", "rule", "count", "avg ns");
  for (auto& rs : stats.as_map().find("rulesets")->as_list()) {
    const Map& rm = rs.as_map();
    for (auto& n : rm.find("nodes")->as_list()) {
      const Map& nm = n.as_map();
      double count = nm.find("count")->as_number();
      if (count == 0) continue;
      std::string id = rm.find("name")->as_string() + "/" + nm.find("id")->as_string();
      std::printf("  %-28s %-20s %10.0f %12.0f\n", id.c_str(), nm.find("rule")->as_string().c_str(),
                  count, nm.find("avg_ns")->as_number());
    }
  }
  return passed == cases.size() ? 0 : 1;
}

}  // namespace cap::cli
