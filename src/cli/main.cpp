// capctl: validate, pack, run and test configurations offline; print the rule catalogue.
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
  if (*validate) return cap::cli::cmd_validate(dir);
  if (*pack) return cap::cli::cmd_pack(dir, out);
  if (*runc) return cap::cli::cmd_run(dir, run);
  if (*test) return cap::cli::cmd_test(dir, data);
  if (*rules) return cap::cli::cmd_rules(markdown);
  return 2;
}
