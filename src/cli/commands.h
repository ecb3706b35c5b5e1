// The capctl commands. Each returns the process exit status (0, 1 or 2).
#pragma once

#include <string>
#include <vector>

namespace cap::cli {

struct RunOptions {
  std::string request;
  std::vector<std::string> headers;
  std::string body;
  std::string remote_addr = "127.0.0.1";
  bool trace = false;
};

int cmd_validate(const std::string& dir);
int cmd_pack(const std::string& dir, const std::string& out);
int cmd_run(const std::string& dir, const RunOptions& opts);
int cmd_test(const std::string& dir, const std::string& data);
int cmd_rules(bool markdown);

}  // namespace cap::cli
