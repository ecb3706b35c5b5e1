// Internal to the engine: the Loader that turns a configuration package into a
// Configuration, collecting every error at once. Its methods are in loader.cpp (manifest,
// rule sets, nodes, parameters, cycles) and loader_mcp.cpp (tool parameters, cap.json "mcp").
#pragma once

#include <boost/json.hpp>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cap/engine.h"

namespace cap::detail {

namespace json = boost::json;

/// Whether `s` may name a variable or a rule set parameter: a letter or '_' first, then
/// letters, digits, '_', '-' or '.', at most 200 characters.
bool valid_identifier(std::string_view s);

/// One load of one package: run() once, then read the result. Errors and warnings are
/// collected as Diagnostics (FILE: node ID: PARAM: message) rather than thrown.
class Loader {
 public:
  Loader(const Package& pkg, const RuleRegistry& reg, const LoadOptions& opts)
      : pkg_(pkg),
        reg_(reg),
        opts_(opts),
        cfg_(std::make_shared<Configuration>()),
        env_{cfg_->symbols, opts.getenv} {}

  LoadResult run();

  void error(const std::string& file, const std::string& node, std::string_view param,
             std::string msg) {
    out_.diagnostics.push_back(
        {Diagnostic::Severity::Error, file, node, std::string(param), std::move(msg)});
  }
  void warning(const std::string& file, const std::string& node, std::string_view param,
               std::string msg) {
    out_.diagnostics.push_back(
        {Diagnostic::Severity::Warning, file, node, std::string(param), std::move(msg)});
  }
  CompileEnv& env() { return env_; }
  const Package& package() const { return pkg_; }
  const std::map<std::string, std::string>& databases() const { return cfg_->databases; }
  std::vector<std::string> mode_names;

  std::shared_ptr<DataFile> data_file(const std::string& file, const std::string& node,
                                      std::string_view param, std::string_view path,
                                      DataFile::Parser parse) {
    std::string p(path);
    while (p.rfind("./", 0) == 0) p.erase(0, 2);
    if (!safe_relative_path(p)) {
      error(file, node, param, "data file path '" + p + "' must be relative to the configuration");
      return nullptr;
    }
    const std::string* content = pkg_.find(p);
    if (!content) {
      error(file, node, param, "data file '" + p + "' is not in the configuration");
      return nullptr;
    }
    std::string disk = pkg_.root.empty() ? "" : (std::filesystem::path(pkg_.root) / p).string();
    auto df = std::make_shared<DataFile>(p, disk, *content, std::move(parse));
    std::string err;
    if (!df->load(&err)) {
      error(file, node, param, p + ": " + err);
      return nullptr;
    }
    return df;
  }

 private:
  std::optional<json::value> parse_json(const std::string& file, const std::string& text);
  void load_manifest();
  void declare_ruleset(const std::string& file, const json::value& doc);
  void compute_exits(RuleSet& rs, const json::object& doc);
  void compile_ruleset(RuleSet& rs, const json::object& doc);
  void compile_node(RuleSet& rs, Node& node, const json::object& def);
  bool compile_param(const std::string& file, const std::string& node, const ParamSpec& spec,
                     const json::value& v, Param* out);
  bool compile_any(const std::string& file, const std::string& node, const std::string& pname,
                   const json::value& v, Param* out, int depth);
  void check_cycles();
  void load_tool_params(RuleSet& rs, const json::object& o);
  void load_mcp();
  void load_mcp_session_settings(const json::object& m, McpSettings& mcp);
  const RuleSet* ruleset_ref(const json::object& m, const char* key);

  const Package& pkg_;
  const RuleRegistry& reg_;
  const LoadOptions& opts_;
  std::shared_ptr<Configuration> cfg_;
  CompileEnv env_;
  LoadResult out_;
  json::value manifest_;
  std::vector<std::pair<RuleSet*, json::object>> docs_;
  bool any_rule_reads_body_ = false;
};

}  // namespace cap::detail
