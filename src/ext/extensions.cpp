#include "ext/extensions.h"

#include <set>

namespace cap::ext {

namespace {

InstalledExtension info_of(const std::shared_ptr<const Image>& image) {
  InstalledExtension e;
  const Manifest& m = image->manifest();
  e.name = m.name;
  e.version = m.version;
  e.sha256 = image->sha256();
  e.description = m.description;
  for (auto& r : m.rules) e.rules.push_back(r.spec.name);
  e.image = image;
  return e;
}

}  // namespace

bool ExtensionSet::check_conflicts(const Manifest& m, std::vector<std::string>* errors) const {
  size_t before = errors->size();
  for (auto& r : m.rules) {
    auto existing = registry_.find(r.spec.name);
    if (!existing || existing->spec.extension == m.name) continue;
    if (existing->spec.extension.empty())
      errors->push_back("extension.json: rule '" + r.spec.name +
                        "' has the name of a base rule; choose another name");
    else
      errors->push_back("extension.json: rule '" + r.spec.name +
                        "' is already defined by extension '" + existing->spec.extension +
                        "'; choose another name");
  }
  return errors->size() == before;
}

bool ExtensionSet::prepare(std::string_view zip, Prepared* out,
                           std::vector<std::string>* errors) const {
  Prepared p;
  return read_extension(zip, &p.package, errors) && prepare_read(std::move(p), out, errors);
}

bool ExtensionSet::prepare_path(const std::string& path, Prepared* out,
                                std::vector<std::string>* errors) const {
  Prepared p;
  return read_extension_path(path, &p.package, errors) && prepare_read(std::move(p), out, errors);
}

bool ExtensionSet::prepare_read(Prepared p, Prepared* out, std::vector<std::string>* errors) const {
  std::lock_guard lock(mu_);
  if (!check_conflicts(p.package.manifest, errors)) return false;
  if (auto it = installed_.find(p.package.manifest.name); it != installed_.end())
    p.previous_version = it->second.version;
  p.image = make_image(p.package);
  *out = std::move(p);
  return true;
}

void ExtensionSet::commit(Prepared prepared) { commit_image(std::move(prepared.image)); }

void ExtensionSet::commit_image(std::shared_ptr<const Image> image) {
  std::lock_guard lock(mu_);
  const Manifest& m = image->manifest();
  std::set<std::string> now;
  for (size_t i = 0; i < m.rules.size(); ++i) {
    registry_.add(m.rules[i].spec, rule_factory(image, i));
    now.insert(m.rules[i].spec.name);
  }
  if (auto it = installed_.find(m.name); it != installed_.end())
    for (auto& old : it->second.rules)
      if (!now.count(old)) registry_.remove(old);
  installed_[m.name] = info_of(image);
}

bool ExtensionSet::remove(std::string_view name) {
  std::lock_guard lock(mu_);
  auto it = installed_.find(name);
  if (it == installed_.end()) return false;
  for (auto& r : it->second.rules) registry_.remove(r);
  installed_.erase(it);
  return true;
}

std::vector<InstalledExtension> ExtensionSet::list() const {
  std::lock_guard lock(mu_);
  std::vector<InstalledExtension> out;
  for (auto& [k, v] : installed_) out.push_back(v);
  return out;
}

std::optional<InstalledExtension> ExtensionSet::find(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto it = installed_.find(name);
  if (it == installed_.end()) return std::nullopt;
  return it->second;
}

std::string ExtensionSet::check(std::string_view name, std::string_view requirement) const {
  auto e = find(name);
  if (!e)
    return "extension '" + std::string(name) + "' " + std::string(requirement) +
           " is not installed";
  std::string err;
  if (version_satisfies(e->version, requirement, &err)) return "";
  if (!err.empty()) return err;
  return "extension '" + std::string(name) + "' " + std::string(requirement) +
         " is required, but version " + e->version + " is installed";
}

Value ExtensionSet::to_value() const {
  List out;
  for (auto& e : list()) {
    Map m = describe(e);
    m.set("description", Value(e.description));
    out.push_back(Value(std::move(m)));
  }
  return Value(std::move(out));
}

Map describe(const InstalledExtension& e) {
  Map m;
  m.set("name", Value(e.name));
  m.set("version", Value(e.version));
  m.set("sha256", Value(e.sha256));
  List rules;
  for (auto& r : e.rules) rules.push_back(Value(r));
  m.set("rules", Value(std::move(rules)));
  return m;
}

bool configuration_uses(const Configuration& cfg, std::string_view name) {
  if (cfg.extensions.count(std::string(name))) return true;
  for (auto& rs : cfg.rulesets)
    for (auto& n : rs->nodes)
      if (n->type && n->type->spec.extension == name) return true;
  return false;
}

}  // namespace cap::ext
