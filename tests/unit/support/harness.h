// Test helper: loads a configuration from inline files with the base catalogue and runs
// requests through a Runtime, the way the agent and capctl do.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cap/engine.h"

namespace cap::test {

class Harness {
 public:
  /// `files`: relative path -> content. A cap.json naming rule set "main" is added when
  /// absent.
  explicit Harness(std::map<std::string, std::string> files);
  /// A configuration with one rule set "main" whose "rules" object is `rules_json` and
  /// whose start node is `start`.
  static Harness rules(const std::string& rules_json, const std::string& start,
                       std::map<std::string, std::string> extra_files = {});

  /// The catalogue every Harness loads with: the base rules, plus what tests add (extension
  /// rules).
  static RuleRegistry& registry();

  bool ok() const { return loaded.ok(); }
  /// Every diagnostic, formatted, one a line.
  std::string errors() const;

  struct Result {
    Response response;
    Outcome outcome;
    std::map<std::string, Value> vars;  // the variables at the end of the request
    const Value& var(const std::string& name) const;
  };
  /// `line` is "METHOD /target"; headers as "Name: value".
  Result request(const std::string& line, const std::vector<std::string>& headers = {},
                 const std::string& body = "");

  LoadResult loaded;
  MemoryVault vault;
  SystemClock clock;
  StderrLogger logger{LogLevel::Error};
  std::unique_ptr<LocalFiles> files;  // the shared folder: dir + "/shared"
  std::unique_ptr<SqlService> sql;    // the agent's SQL service (SQLite or PostgreSQL)
  std::unique_ptr<Runtime> runtime;
  Workspace ws;
  std::string dir;  // a scratch folder the package was written to (data reload tests)
};

}  // namespace cap::test
