// capctl ext pack|validate|test, and --extension for the offline commands.
#include <cstdio>
#include <fstream>
#include <iostream>

#include "cap/engine.h"
#include "cli/commands.h"
#include "ext/extensions.h"

namespace cap::cli {

namespace {

ext::ExtensionSet& loaded_extensions() {
  static ext::ExtensionSet set(catalogue());
  return set;
}

void print_errors(const std::string& path, const std::vector<std::string>& errors) {
  for (auto& e : errors) std::cout << path << ": " << e << "\n";
  std::cerr << "capctl: " << path << ": " << errors.size()
            << (errors.size() == 1 ? " error" : " errors") << "\n";
}

bool write_file(const std::string& out, const std::string& bytes) {
  std::string tmp = out + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f || !f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()))) return false;
  }
  return std::rename(tmp.c_str(), out.c_str()) == 0;
}

std::string shorten(const std::string& s) { return s.size() > 120 ? s.substr(0, 117) + "..." : s; }

/// One line of an extension's tests.jsonl.
struct ExtCase {
  std::string name, rule, request = "GET /";
  Value with = Value(Map()), variables = Value(Map());
  std::string expect_chain, expect_error;
  bool chain_given = false;
  Value expect_vars = Value(Map());
};

bool parse_case(const std::string& line, size_t lineno, ExtCase* c, std::string* err) {
  std::string jerr;
  Value v = json_parse(line, &jerr);
  std::string at = "line " + std::to_string(lineno) + ": ";
  if (!jerr.empty() || !v.is_map()) {
    *err = at + "not a JSON object" + (jerr.empty() ? "" : ": " + jerr);
    return false;
  }
  const Map& m = v.as_map();
  for (auto& [k, val] : m)
    if (k != "name" && k != "rule" && k != "with" && k != "variables" && k != "request" &&
        k != "expect") {
      *err = at + "unknown field '" + k + "' (name, rule, with, variables, request, expect)";
      return false;
    }
  const Value* rule = m.find("rule");
  if (!rule || !rule->is_string()) {
    *err = at + "\"rule\" (the rule to run) is missing";
    return false;
  }
  c->rule = rule->as_string();
  c->name = m.find("name") ? m.find("name")->to_text() : "line " + std::to_string(lineno);
  if (const Value* w = m.find("with")) c->with = *w;
  if (const Value* w = m.find("variables")) c->variables = *w;
  if (const Value* r = m.find("request")) c->request = r->to_text();
  if (!c->with.is_map() || !c->variables.is_map()) {
    *err = at + "\"with\" and \"variables\" must be objects";
    return false;
  }
  const Value* e = m.find("expect");
  if (!e || !e->is_map()) {
    *err = at + "\"expect\" must be an object {\"chain\", \"variables\"} or {\"error\"}";
    return false;
  }
  if (const Value* ch = e->as_map().find("chain")) {
    c->expect_chain = ch->to_text();
    c->chain_given = true;
  }
  if (const Value* er = e->as_map().find("error")) c->expect_error = er->to_text();
  if (const Value* vs = e->as_map().find("variables")) c->expect_vars = *vs;
  return true;
}

/// A configuration that runs `c.rule` once and records the chain point it took in __CHAIN.
Package case_package(const ExtCase& c, const RuleSpec& spec, const std::string& ext_name,
                     const std::string& version) {
  Map cap;
  cap.set("format", Value(1));
  cap.set("name", Value("ext-test"));
  cap.set("ruleset", Value("main"));
  cap.set("globals", c.variables);
  Map exts;
  exts.set(ext_name, Value(version));
  cap.set("extensions", Value(std::move(exts)));
  Map rules, then;
  for (auto& cp : spec.chain_points) {
    List targets;
    targets.push_back(Value("chain_" + cp));
    then.set(cp, Value(std::move(targets)));
    Map with;
    with.set("name", Value("__CHAIN"));
    with.set("value", Value(cp));
    Map node;
    node.set("rule", Value("SetVariable"));
    node.set("with", Value(std::move(with)));
    rules.set("chain_" + cp, Value(std::move(node)));
  }
  Map node;
  node.set("rule", Value(spec.name));
  node.set("with", c.with);
  node.set("then", Value(std::move(then)));
  rules.set("under_test", Value(std::move(node)));
  Map rs;
  rs.set("name", Value("main"));
  rs.set("start", Value("under_test"));
  rs.set("rules", Value(std::move(rules)));
  Package pkg;
  pkg.files["cap.json"] = to_json(Value(std::move(cap)));
  pkg.files["rulesets/main.json"] = to_json(Value(std::move(rs)));
  return pkg;
}

}  // namespace

RuleRegistry& catalogue() {
  static RuleRegistry reg;
  static bool filled = [] {
    register_base_rules(reg);
    return true;
  }();
  (void)filled;
  return reg;
}

LoadOptions load_options() {
  LoadOptions opts;
  opts.check_extension = [](std::string_view name, std::string_view version) {
    std::string problem = loaded_extensions().check(name, version);
    if (!problem.empty() && !loaded_extensions().find(name))
      problem += " (give capctl its package with --extension FILE.zip)";
    return problem;
  };
  return opts;
}

int load_extensions(const std::vector<std::string>& paths) {
  for (auto& path : paths) {
    ext::ExtensionSet::Prepared p;
    std::vector<std::string> errors;
    if (!loaded_extensions().prepare_path(path, &p, &errors)) {
      print_errors(path, errors);
      return 1;
    }
    loaded_extensions().commit(std::move(p));
  }
  return 0;
}

int cmd_ext_pack(const std::string& dir, const std::string& out) {
  std::string zip;
  std::vector<std::string> errors;
  if (!ext::pack_extension(dir, &zip, &errors)) {
    print_errors(dir, errors);
    std::cerr << "capctl: not packed: fix the errors above first\n";
    return 1;
  }
  if (!write_file(out, zip)) {
    std::cerr << "capctl: cannot write " << out << "\n";
    return 1;
  }
  std::cerr << "capctl: wrote " << out << " (" << zip.size() << " bytes, sha256 "
            << ext::sha256_hex(zip) << ")\n";
  return 0;
}

int cmd_ext_validate(const std::string& path) {
  ext::ExtensionPackage pkg;
  std::vector<std::string> errors;
  if (!ext::read_extension_path(path, &pkg, &errors)) {
    print_errors(path, errors);
    return 1;
  }
  ext::ExtensionSet::Prepared p;
  if (!loaded_extensions().prepare_path(path, &p, &errors)) {
    print_errors(path, errors);
    return 1;
  }
  std::cout << pkg.manifest.name << " " << pkg.manifest.version << ": " << pkg.manifest.rules.size()
            << (pkg.manifest.rules.size() == 1 ? " rule" : " rules") << ", valid\n";
  return 0;
}

int cmd_ext_test(const std::string& path, const std::string& data_in) {
  std::string data = data_in;
  if (data.empty()) data = path + "/tests.jsonl";
  std::ifstream in(data);
  if (!in) {
    std::cerr << "capctl: " << data << ": cannot be read (give the tests with --data FILE.jsonl)\n";
    return 2;
  }
  ext::ExtensionSet::Prepared p;
  std::vector<std::string> errors;
  if (!loaded_extensions().prepare_path(path, &p, &errors)) {
    print_errors(path, errors);
    return 1;
  }
  const ext::Manifest manifest = p.package.manifest;
  loaded_extensions().commit(std::move(p));

  std::vector<ExtCase> cases;
  std::string line;
  size_t lineno = 0;
  bool bad = false;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ExtCase c;
    std::string err;
    if (!parse_case(line, lineno, &c, &err)) {
      std::cerr << "capctl: " << data << ": " << err << "\n";
      bad = true;
      continue;
    }
    cases.push_back(std::move(c));
  }
  if (bad) return 1;

  SystemClock clock;
  StderrLogger logger(LogLevel::Warn);
  MemoryVault vault;
  HostServices services;
  services.clock = &clock;
  services.logger = &logger;
  services.vault = &vault;
  size_t passed = 0;
  for (auto& c : cases) {
    std::vector<std::string> problems;
    const ext::RuleDef* def = nullptr;
    for (auto& r : manifest.rules)
      if (r.spec.name == c.rule) def = &r;
    if (!def) {
      problems.push_back("the extension has no rule '" + c.rule + "'");
    } else {
      LoadResult loaded = load_configuration(
          case_package(c, def->spec, manifest.name, manifest.version), catalogue(), load_options());
      for (auto& d : loaded.diagnostics)
        if (d.severity == Diagnostic::Severity::Error) problems.push_back(d.format());
      if (loaded.ok()) {
        Runtime runtime(loaded.configuration, services);
        Request req;
        size_t sp = c.request.find(' ');
        req.method = c.request.substr(0, sp);
        req.target = sp == std::string::npos ? "/" : c.request.substr(sp + 1);
        req.remote_addr = "127.0.0.1";
        Workspace ws;
        Response res;
        std::string chain;
        Outcome o = runtime.handle(req, res, ws, [&](Variables& vars) {
          chain = vars.get(std::string_view("__CHAIN")).to_text();
          for (auto& [name, want] : c.expect_vars.as_map()) {
            const Value& got = vars.get(std::string_view(name));
            if (!(got == want) || got.type() != want.type())
              problems.push_back(name + " is " + shorten(to_json(got)) + ", expected " +
                                 shorten(to_json(want)));
          }
        });
        if (!c.expect_error.empty()) {
          if (!o.failed)
            problems.insert(problems.begin(),
                            "no error, expected one containing '" + c.expect_error + "'");
          else if (o.error.find(c.expect_error) == std::string::npos)
            problems.insert(problems.begin(), "error '" + shorten(o.error) +
                                                  "', expected one containing '" + c.expect_error +
                                                  "'");
        } else if (o.failed) {
          problems.insert(problems.begin(), "error: " + o.error);
        } else if (c.chain_given && chain != c.expect_chain) {
          problems.insert(problems.begin(),
                          "took chain point '" + chain + "', expected '" + c.expect_chain + "'");
        }
      }
    }
    if (problems.empty()) {
      ++passed;
      std::printf("PASS  %s\n", c.name.c_str());
    } else {
      std::printf("FAIL  %s: %s\n", c.name.c_str(), problems.front().c_str());
      for (size_t i = 1; i < problems.size(); ++i) std::printf("      %s\n", problems[i].c_str());
    }
  }
  std::printf("%zu passed, %zu failed\n", passed, cases.size() - passed);
  return passed == cases.size() ? 0 : 1;
}

}  // namespace cap::cli
