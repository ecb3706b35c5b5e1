// ServeContent: answers with a static file from the configuration's content/ folder, for
// content rule sets (cap.json "content_ruleset") and any other rule set.
#include <algorithm>
#include <cctype>
#include <memory>
#include <string>
#include <unordered_map>

#include "cap/engine.h"
#include "rules/groups.h"

namespace cap::rules {

namespace {

std::string_view mime_type(std::string_view path) {
  static const std::unordered_map<std::string_view, std::string_view> types = {
      {"html", "text/html; charset=utf-8"},  {"htm", "text/html; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},    {"js", "text/javascript; charset=utf-8"},
      {"mjs", "text/javascript; charset=utf-8"}, {"json", "application/json"},
      {"txt", "text/plain; charset=utf-8"},  {"csv", "text/csv; charset=utf-8"},
      {"xml", "application/xml"},            {"svg", "image/svg+xml"},
      {"png", "image/png"},                  {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},                {"gif", "image/gif"},
      {"webp", "image/webp"},                {"ico", "image/x-icon"},
      {"pdf", "application/pdf"},            {"woff", "font/woff"},
      {"woff2", "font/woff2"},               {"wasm", "application/wasm"},
      {"map", "application/json"},           {"md", "text/markdown; charset=utf-8"}};
  auto slash = path.rfind('/');
  auto dot = path.rfind('.');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash))
    return "application/octet-stream";
  std::string ext(path.substr(dot + 1));
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto it = types.find(ext);
  return it == types.end() ? std::string_view("application/octet-stream") : it->second;
}

/// FNV-1a: a strong-enough validator for files that change only with a new configuration.
std::string etag_of(std::string_view body) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : body) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[24];
  std::snprintf(buf, sizeof buf, "\"%016llx\"", static_cast<unsigned long long>(h));
  return buf;
}

struct ContentFile {
  std::string body, content_type, etag;
};

class ServeContentRule : public Rule {
 public:
  ServeContentRule(std::unordered_map<std::string, ContentFile> files, const Params& p)
      : files_(std::move(files)),
        path_(p["path"]),
        prefix_(p["prefix"]),
        index_(p["index"]),
        cache_control_(p["cache_control"]) {}

  int execute(ExecContext& ctx) const override {
    std::string path = path_.text(ctx);
    std::string prefix = prefix_.text(ctx);
    auto q = path.find('?');
    if (q != std::string::npos) path.resize(q);
    if (!prefix.empty() && path.rfind(prefix, 0) != 0) return kNotFound;
    path.erase(0, prefix.size());
    while (!path.empty() && path.front() == '/') path.erase(0, 1);
    if (path.empty() || path.back() == '/') path += index_.text(ctx);
    if (!safe_relative_path(path)) return kNotFound;
    auto it = files_.find(path);
    if (it == files_.end()) return kNotFound;
    const ContentFile& f = it->second;
    Response& res = ctx.response();
    res.set = true;
    res.add_header("ETag", f.etag);
    std::string cc = cache_control_.text(ctx);
    if (!cc.empty()) res.add_header("Cache-Control", cc);
    const Request* req = ctx.request();
    bool not_modified = false;
    if (req)
      for (auto& [k, v] : req->headers)
        if (k.size() == 13 && std::equal(k.begin(), k.end(), "if-none-match", [](char a, char b) {
              return std::tolower(static_cast<unsigned char>(a)) == b;
            }))
          not_modified = v.find(f.etag) != std::string_view::npos || v == "*";
    if (not_modified) {
      res.status = 304;
      res.content_type.clear();
      res.body.clear();
    } else {
      res.status = 200;
      res.content_type = f.content_type;
      bool head = req && req->method == "HEAD";
      if (head) res.body.clear();
      else res.body = f.body;
    }
    return kServed;
  }

 private:
  static constexpr int kServed = 0, kNotFound = 1;
  std::unordered_map<std::string, ContentFile> files_;
  Param path_, prefix_, index_, cache_control_;
};

}  // namespace

void register_content(RuleRegistry& r) {
  RuleSpec spec;
  spec.name = "ServeContent";
  spec.group = "HTTP";
  spec.doc =
      "Answers with a static file from the configuration's content/ folder: the request path "
      "(less `prefix`) names the file, a path ending in / gets the `index` file, the "
      "Content-Type comes from the file's extension, and an ETag lets browsers revalidate "
      "(If-None-Match gets 304). Takes `served` when a file answered, `not_found` otherwise, "
      "so a content rule set can fall through to the main rule set. The files are read once "
      "when the configuration loads; `..` never leaves the folder.";
  spec.params = {
      {"path", ParamType::String, false, Value("${URI}"), "The path to serve.", {}},
      {"prefix", ParamType::String, false, Value("/"),
       "The URL prefix the content lives under, e.g. /static/; it is removed from the path.", {}},
      {"index", ParamType::String, false, Value("index.html"),
       "The file served for a path that ends in /.", {}},
      {"cache_control", ParamType::String, false, Value("public, max-age=300"),
       "The Cache-Control header sent with each file; empty for none.", {}},
  };
  spec.chain_points = {"served", "not_found"};
  r.add(std::move(spec), [](CompileContext& cc) -> std::unique_ptr<Rule> {
    std::unordered_map<std::string, ContentFile> files;
    for (auto& [path, body] : cc.package().files) {
      if (path.rfind("content/", 0) != 0) continue;
      std::string rel = path.substr(8);
      files.emplace(rel, ContentFile{body, std::string(mime_type(rel)), etag_of(body)});
    }
    if (files.empty()) cc.warning("", "the configuration has no content/ folder: nothing to serve");
    return std::make_unique<ServeContentRule>(std::move(files), cc.params());
  });
}

}  // namespace cap::rules
