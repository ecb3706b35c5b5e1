// capctl: validate, pack, run and test configurations offline; print the rule catalogue;
// deploy to an agent and ask it for status, logs, traces and rollbacks; snapshots.
// Exit status: 0 success, 1 the thing checked or asked for failed, 2 bad usage.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"capctl: the CAP command line"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("capctl ") + CAP_VERSION);

  cap::cli::RunOptions run;
  std::string dir, out, data;
  bool markdown = false;
  std::vector<std::string> extension_files;
  auto with_extensions = [&](CLI::App* cmd) {
    cmd->add_option("--extension", extension_files,
                    "an extension package (zip or folder) whose rules the configuration uses; "
                    "repeat for several");
  };

  auto* validate = app.add_subcommand("validate", "Report every error of a configuration");
  validate->add_option("DIR", dir, "configuration folder or zip")->required();

  auto* pack = app.add_subcommand("pack", "Write the wire form (zip) of a configuration");
  pack->add_option("DIR", dir, "configuration folder")->required();
  pack->add_option("-o,--output", out, "the zip to write")->required();

  auto* runc = app.add_subcommand("run", "Run a configuration in-process on one request");
  runc->add_option("DIR", dir, "configuration folder or zip")->required();
  runc->add_option("--request", run.request, "\"METHOD /path?query\"")->required();
  runc->add_option("-H,--header", run.headers, "a request header \"Name: value\"");
  runc->add_option("-d,--data", run.body, "the request body");
  runc->add_option("--remote-addr", run.remote_addr, "the client address");
  runc->add_flag("--trace", run.trace, "print the trace after the response");

  auto* test = app.add_subcommand("test", "Replay recorded requests and check the results");
  test->add_option("DIR", dir, "configuration folder or zip")->required();
  test->add_option("--data", data, "a JSON-lines file of requests and expectations")->required();

  auto* rules = app.add_subcommand("rules", "Print the rule catalogue");
  rules->add_flag("--markdown", markdown, "as a Markdown page (docs/rules.md)");
  bool rules_json = false;
  rules->add_flag("--json", rules_json, "as JSON (the console UI's catalogue)")
      ->excludes("--markdown");
  for (auto* cmd : {validate, pack, runc, test, rules}) with_extensions(cmd);

  std::string ext_path;
  auto* ext = app.add_subcommand("ext", "Build, check and test extension packages");
  ext->require_subcommand(1);
  auto* ext_pack =
      ext->add_subcommand("pack", "Write an extension zip with the sha256 of every member");
  ext_pack->add_option("DIR", ext_path, "extension folder (with extension.json)")->required();
  ext_pack->add_option("-o,--output", out, "the zip to write")->required();
  auto* ext_validate = ext->add_subcommand("validate", "Report every problem of an extension");
  ext_validate->add_option("PATH", ext_path, "extension folder or zip")->required();
  auto* ext_test = ext->add_subcommand("test", "Run an extension's rule tests");
  ext_test->add_option("PATH", ext_path, "extension folder or zip")->required();
  ext_test->add_option("--data", data, "a JSON-lines file of cases (default PATH/tests.jsonl)");

  // Commands that talk to an agent.
  cap::cli::AgentOptions agent;
  auto agent_options = [&](CLI::App* cmd) {
    cmd->add_option("--agent", agent.agent, "the agent's management port, HOST:PORT")->required();
    cmd->add_option("--key-file", agent.key_file,
                    "file holding the management key (default: $CAP_MGMT_KEY)");
  };
  std::string log_file, rollback_to;
  int tail = 0, arm = 0;
  bool json = false;

  auto* deploy = app.add_subcommand("deploy", "Deploy a configuration to an agent");
  deploy->add_option("DIR", dir, "configuration folder or zip")->required();
  agent_options(deploy);

  auto* status = app.add_subcommand("status", "Show an agent's status");
  status->add_flag("--json", json, "print the agent's JSON as it is");
  agent_options(status);

  auto* logs = app.add_subcommand("logs", "List an agent's log files, or print one");
  logs->add_option("FILE", log_file, "a log file name (agent-YYYY-MM-DD.log)");
  logs->add_option("--tail", tail, "only the last N lines")->check(CLI::Range(1, 1000000));
  agent_options(logs);

  auto* trace =
      app.add_subcommand("trace", "Print an agent's recorded transactions, or arm the trace");
  trace->add_option("--arm", arm, "record the next N transactions")->check(CLI::Range(1, 10000));
  agent_options(trace);

  auto* rollback =
      app.add_subcommand("rollback", "Reactivate a previous configuration on an agent");
  rollback->add_option("--to", rollback_to, "the configuration id (default: the previous one)");
  agent_options(rollback);

  auto* snapshot = app.add_subcommand("snapshot", "Capture, restore, inspect and list snapshots");
  snapshot->require_subcommand(1);
  std::string snapshot_url;
  bool latest = false;
  auto* capture = snapshot->add_subcommand("capture", "Write an agent's snapshot to a URL");
  capture->add_option("--to", snapshot_url, "s3://BUCKET/KEY or file:///PATH (or a prefix/)")
      ->required();
  capture->add_flag("--latest", latest, "also point the 'latest' object beside it to it");
  agent_options(capture);
  auto* restore = snapshot->add_subcommand("restore", "Restore a snapshot into an agent");
  restore->add_option("--from", snapshot_url, "s3://BUCKET/KEY or file:///PATH")->required();
  agent_options(restore);
  auto* inspect = snapshot->add_subcommand("inspect", "Verify a snapshot and show what it holds");
  inspect->add_option("URL", snapshot_url, "s3://BUCKET/KEY, file:///PATH or a local file")
      ->required();
  auto* list = snapshot->add_subcommand("list", "List the snapshots under a URL prefix");
  list->add_option("URL", snapshot_url, "s3://BUCKET/PREFIX or file:///FOLDER/")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  if (int status = cap::cli::load_extensions(extension_files)) return status;
  if (*ext_pack) return cap::cli::cmd_ext_pack(ext_path, out);
  if (*ext_validate) return cap::cli::cmd_ext_validate(ext_path);
  if (*ext_test) return cap::cli::cmd_ext_test(ext_path, data);
  if (*validate) return cap::cli::cmd_validate(dir);
  if (*pack) return cap::cli::cmd_pack(dir, out);
  if (*runc) return cap::cli::cmd_run(dir, run);
  if (*test) return cap::cli::cmd_test(dir, data);
  if (*rules) return rules_json ? cap::cli::cmd_rules_json() : cap::cli::cmd_rules(markdown);
  if (*deploy) return cap::cli::cmd_deploy(dir, agent);
  if (*status) return cap::cli::cmd_status(agent, json);
  if (*logs) return cap::cli::cmd_logs(agent, log_file, tail);
  if (*trace) return cap::cli::cmd_trace(agent, arm);
  if (*rollback) return cap::cli::cmd_rollback(agent, rollback_to);
  if (*capture) return cap::cli::cmd_snapshot_capture(agent, snapshot_url, latest);
  if (*restore) return cap::cli::cmd_snapshot_restore(agent, snapshot_url);
  if (*inspect) return cap::cli::cmd_snapshot_inspect(snapshot_url);
  if (*list) return cap::cli::cmd_snapshot_list(snapshot_url);
  return 2;
}
