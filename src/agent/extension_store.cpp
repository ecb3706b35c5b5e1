#include "agent/extension_store.h"

#include <filesystem>
#include <map>
#include <set>

#include "agent/durable_file.h"
#include "agent/logging.h"

namespace cap::agent {

namespace fs = std::filesystem;

namespace {

/// The zips in `dir`, by extension name.
std::map<std::string, std::string> zips_in(const std::string& dir) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  for (auto& entry : fs::directory_iterator(dir, ec)) {
    std::string file = entry.path().filename().string();
    if (!entry.is_regular_file() || !file.ends_with(".zip")) continue;
    out[file.substr(0, file.size() - 4)] = entry.path().string();
  }
  return out;
}

}  // namespace

ExtensionStore::ExtensionStore(std::string home, RuleRegistry& registry, Activator& activator)
    : dir_(std::move(home) + "/extensions"), set_(registry), activator_(activator) {}

void ExtensionStore::load_all() {
  std::string err;
  if (!ensure_dir(dir_, &err)) {
    agent_log().error("extensions: {}; starting without extensions", err);
    return;
  }
  if (!reload(&err)) agent_log().error("extensions: {}", err);
}

bool ExtensionStore::reload(std::string* error) {
  std::lock_guard lock(mu_);
  std::vector<std::string> problems;
  auto zips = zips_in(dir_);
  for (auto& [name, path] : zips) {
    std::string zip, err;
    if (!read_whole_file(path, &zip, &err)) {
      problems.push_back(name + ": " + err);
      continue;
    }
    auto current = set_.find(name);
    if (current && current->sha256 == ext::sha256_hex(zip)) continue;
    ext::ExtensionSet::Prepared p;
    std::vector<std::string> errors;
    if (!set_.prepare(zip, &p, &errors) || p.package.manifest.name != name) {
      if (errors.empty())
        errors.push_back("the package is extension '" + p.package.manifest.name + "', not '" +
                         name + "'");
      problems.push_back(path + " does not load: " + errors.front());
      continue;
    }
    agent_log().info("extension {} {} loaded ({} rules)", name, p.package.manifest.version,
                     p.package.manifest.rules.size());
    set_.commit(std::move(p));
  }
  for (auto& e : set_.list())
    if (!zips.count(e.name)) {
      set_.remove(e.name);
      agent_log().info("extension {} {} unloaded: its zip is gone", e.name, e.version);
    }
  if (problems.empty()) return true;
  *error = "";
  for (auto& p : problems) *error += (error->empty() ? "" : "; ") + p;
  return false;
}

CommandResult ExtensionStore::install(std::string_view name, std::string_view zip,
                                      Value* installed) {
  std::lock_guard lock(mu_);
  if (!ext::valid_extension_name(name))
    return command_failure(422, "'" + std::string(name) + "' is not a valid extension name",
                           {"1 to 64 of a-z 0-9 - _ ., starting with a letter or digit"});
  ext::ExtensionSet::Prepared p;
  std::vector<std::string> errors;
  if (!set_.prepare(zip, &p, &errors)) {
    agent_log().warn("extension {} refused: {} problems", name, errors.size());
    return command_failure(422, "extension is not valid", errors);
  }
  const ext::Manifest m = p.package.manifest;
  if (m.name != name)
    return command_failure(
        422, "the package is extension '" + m.name + "', not '" + std::string(name) + "'",
        {"PUT it to /v1/extensions/" + m.name});

  auto active = activator_.active_configuration();
  if (active) {
    auto it = active->extensions.find(std::string(name));
    std::string err;
    if (it != active->extensions.end() && !ext::version_satisfies(m.version, it->second, &err))
      return command_failure(
          409,
          "the active configuration '" + active->name + "' requires extension '" +
              std::string(name) + "' " + it->second + ", which " + m.version + " does not satisfy",
          {"deploy a configuration whose cap.json \"extensions\" accepts " + m.version +
           " first (for example \">=" + it->second + "\"), then install it"});
  }

  std::string path = path_of(name), previous_zip, err;
  bool had_file = fs::exists(path);
  if (had_file && !read_whole_file(path, &previous_zip, &err))
    return command_failure(500, "cannot read the installed extension in CAP_HOME", {err});
  if (!ensure_dir(dir_, &err) || !write_file_durably(path, zip, &err)) {
    agent_log().error("cannot store extension {}: {}", name, err);
    return command_failure(500, "cannot write the extension in CAP_HOME", {err});
  }
  auto previous = set_.find(name);
  std::string previous_version = p.previous_version;
  set_.commit(std::move(p));

  if (active && ext::configuration_uses(*active, name)) {
    CommandResult r = activator_.reload_active();
    if (r.status != 200) {
      // Put everything back: the rules, then the file.
      if (previous)
        set_.commit_image(previous->image);
      else
        set_.remove(name);
      std::string restore_err;
      if (had_file)
        write_file_durably(path, previous_zip, &restore_err);
      else
        fs::remove(path);
      agent_log().warn("extension {} {} refused: the active configuration does not load with it",
                       name, m.version);
      return command_failure(409,
                             "the active configuration '" + active->name + "' does not load with " +
                                 std::string(name) + " " + m.version + "; nothing was changed",
                             r.details);
    }
  }
  agent_log().info("extension {} {} installed{}", name, m.version,
                   previous_version.empty() ? "" : " (was " + previous_version + ")");
  Value v = Value(ext::describe(*set_.find(name)));
  Map out = v.as_map();
  out.set("previous_version", previous_version.empty() ? Value() : Value(previous_version));
  *installed = Value(std::move(out));
  return CommandResult{};
}

CommandResult ExtensionStore::remove(std::string_view name, Value* removed) {
  std::lock_guard lock(mu_);
  auto e = set_.find(name);
  if (!e) return command_failure(404, "extension '" + std::string(name) + "' is not installed");
  auto active = activator_.active_configuration();
  if (active && ext::configuration_uses(*active, name))
    return command_failure(409,
                           "the active configuration '" + active->name + "' uses extension '" +
                               std::string(name) + "'",
                           {"deploy a configuration that does not use it first, then remove it"});
  std::error_code ec;
  fs::remove(path_of(name), ec);
  if (ec) return command_failure(500, "cannot remove the extension from CAP_HOME", {ec.message()});
  set_.remove(name);
  agent_log().info("extension {} {} removed", name, e->version);
  *removed = Value(ext::describe(*e));
  return CommandResult{};
}

Value ExtensionStore::summary() const {
  List out;
  for (auto& e : set_.list()) {
    Map m;
    m.set("name", Value(e.name));
    m.set("version", Value(e.version));
    out.push_back(Value(std::move(m)));
  }
  return Value(std::move(out));
}

}  // namespace cap::agent
