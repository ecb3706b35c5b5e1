#include "store/snapshot_format.h"

#include <set>

#include "cap/package.h"
#include "cap/value.h"
#include "net/signing.h"

namespace cap::store {

namespace {

constexpr std::string_view kPointerMagic = "cap-snapshot-pointer 1\n";
constexpr std::string_view kMeta = "snapshot.json";
constexpr std::string_view kConfiguration = "configuration.zip";
constexpr std::string_view kMode = "mode.json";
constexpr std::string_view kVault = "vault.sealed";
constexpr std::string_view kExtensionsDir = "extensions/";

const std::string* string_field(const Map& m, std::string_view name) {
  const Value* v = m.find(name);
  return v && v->is_string() ? &v->as_string() : nullptr;
}

}  // namespace

bool valid_extension_file_name(std::string_view name) {
  if (name.empty() || name.size() > 200 || name[0] == '.') return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return false;
  return true;
}

bool write_snapshot(const Snapshot& s, std::string* zip, std::string* error) {
  if (s.configuration_zip.empty()) {
    *error = "a snapshot needs an active configuration";
    return false;
  }
  Package pkg;
  pkg.files.emplace(std::string(kConfiguration), s.configuration_zip);
  Map mode;
  mode.set("mode", Value(s.mode));
  mode.set("stopped", Value(s.stopped));
  pkg.files.emplace(std::string(kMode), to_json(Value(std::move(mode))) + "\n");
  if (!s.vault_sealed.empty()) pkg.files.emplace(std::string(kVault), s.vault_sealed);
  List extensions;
  for (const auto& [name, bytes] : s.extensions) {
    if (!valid_extension_file_name(name)) {
      *error = "extension file name '" + name + "' is not valid";
      return false;
    }
    pkg.files.emplace(std::string(kExtensionsDir) + name, bytes);
    extensions.push_back(Value(name));
  }
  Map members;
  for (const auto& [name, bytes] : pkg.files) members.set(name, Value(net::sha256_hex(bytes)));

  Map meta;
  meta.set("format", Value(kSnapshotFormat));
  meta.set("agent_version", Value(s.agent_version));
  meta.set("agent_name", Value(s.agent_name));
  meta.set("created_at", Value(s.created_at));
  Map cfg;
  cfg.set("name", Value(s.configuration_name));
  cfg.set("sha256", Value(net::sha256_hex(s.configuration_zip)));
  meta.set("configuration", Value(std::move(cfg)));
  meta.set("mode", Value(s.mode));
  meta.set("stopped", Value(s.stopped));
  meta.set("extensions", Value(std::move(extensions)));
  meta.set("vault", Value(!s.vault_sealed.empty()));
  meta.set("members", Value(std::move(members)));
  pkg.files.emplace(std::string(kMeta), to_json(Value(std::move(meta))) + "\n");
  return write_zip(pkg, zip, error);
}

bool read_snapshot(std::string_view zip, Snapshot* out, std::string* error,
                   std::vector<SnapshotMember>* members_out) {
  Package pkg;
  std::string why;
  if (!read_zip(zip, &pkg, &why)) {
    *error = "corrupt snapshot: " + why;
    return false;
  }
  const std::string* meta_text = pkg.find(kMeta);
  if (!meta_text) {
    *error = "corrupt snapshot: it holds no snapshot.json (is it a snapshot?)";
    return false;
  }
  std::string parse_error;
  Value meta_value = json_parse(*meta_text, &parse_error);
  if (!parse_error.empty() || !meta_value.is_map()) {
    *error = "corrupt snapshot: snapshot.json is not a JSON object" +
             (parse_error.empty() ? "" : " (" + parse_error + ")");
    return false;
  }
  const Map& meta = meta_value.as_map();
  const Value* format = meta.find("format");
  if (!format || !format->is_number()) {
    *error = "corrupt snapshot: snapshot.json has no \"format\"";
    return false;
  }
  if (format->as_number() != kSnapshotFormat) {
    *error = "unknown snapshot format " + to_json(*format) + " (this build reads format " +
             std::to_string(kSnapshotFormat) + "; use a newer cap-agent)";
    return false;
  }
  const Value* members = meta.find("members");
  if (!members || !members->is_map()) {
    *error = "corrupt snapshot: snapshot.json has no \"members\" object";
    return false;
  }
  // Every listed member is there with its hash; nothing else is there.
  std::set<std::string> listed;
  std::vector<SnapshotMember> list;
  for (const auto& [name, hash] : members->as_map()) {
    listed.insert(name);
    const std::string* bytes = pkg.find(name);
    if (!bytes) {
      *error = "corrupt snapshot: member " + name + " is listed in snapshot.json but missing";
      return false;
    }
    if (!hash.is_string()) {
      *error = "corrupt snapshot: the sha256 of member " + name + " is not a string";
      return false;
    }
    std::string actual = net::sha256_hex(*bytes);
    if (actual != hash.as_string()) {
      *error = "hash mismatch: member " + name + " has sha256 " + actual +
               ", snapshot.json records " + hash.as_string();
      return false;
    }
    list.push_back(SnapshotMember{name, bytes->size(), actual});
  }
  for (const auto& [name, bytes] : pkg.files)
    if (name != kMeta && !listed.count(name)) {
      *error = "corrupt snapshot: member " + name + " is not listed in snapshot.json";
      return false;
    }

  Snapshot s;
  s.format = kSnapshotFormat;
  for (auto [field, target] :
       {std::pair{"agent_version", &s.agent_version}, std::pair{"agent_name", &s.agent_name},
        std::pair{"created_at", &s.created_at}})
    if (const std::string* v = string_field(meta, field)) *target = *v;
  const std::string* cfg = pkg.find(kConfiguration);
  if (!cfg) {
    *error = "corrupt snapshot: it holds no configuration.zip";
    return false;
  }
  s.configuration_zip = *cfg;
  const std::string* mode_text = pkg.find(kMode);
  if (!mode_text) {
    *error = "corrupt snapshot: it holds no mode.json";
    return false;
  }
  Value mode = json_parse(*mode_text, &parse_error);
  const Value* m = mode.is_map() ? mode.as_map().find("mode") : nullptr;
  const Value* st = mode.is_map() ? mode.as_map().find("stopped") : nullptr;
  if (!parse_error.empty() || !m || !m->is_string() || (st && !st->is_bool())) {
    *error = "corrupt snapshot: mode.json must be {\"mode\": \"NAME\", \"stopped\": false}";
    return false;
  }
  s.mode = m->as_string();
  s.stopped = st && st->as_bool();
  if (const std::string* v = pkg.find(kVault)) s.vault_sealed = *v;
  for (const auto& [name, bytes] : pkg.files) {
    if (!name.starts_with(kExtensionsDir)) continue;
    std::string file = name.substr(kExtensionsDir.size());
    if (!valid_extension_file_name(file)) {
      *error = "corrupt snapshot: member " + name + " is not a valid extension file name";
      return false;
    }
    s.extensions.emplace(file, bytes);
  }
  for (const auto& [name, bytes] : pkg.files)
    if (name != kMeta && name != kConfiguration && name != kMode && name != kVault &&
        !name.starts_with(kExtensionsDir)) {
      *error = "corrupt snapshot: unexpected member " + name;
      return false;
    }

  // The configuration reads, and every extension it needs is in the snapshot.
  Package config;
  if (!read_zip(s.configuration_zip, &config, &why)) {
    *error = "corrupt snapshot: configuration.zip: " + why;
    return false;
  }
  const std::string* cap_json = config.find("cap.json");
  Value manifest = cap_json ? json_parse(*cap_json, &parse_error) : Value();
  if (!cap_json || !manifest.is_map()) {
    *error = "corrupt snapshot: configuration.zip has no readable cap.json";
    return false;
  }
  if (const std::string* n = string_field(manifest.as_map(), "name")) s.configuration_name = *n;
  if (const Value* ext = manifest.as_map().find("extensions"); ext && ext->is_map()) {
    for (const auto& [name, version] : ext->as_map())
      if (!s.extensions.count(name + ".zip")) {
        *error = "missing extension: the configuration '" + s.configuration_name +
                 "' needs extension '" + name + "'" +
                 (version.is_string() ? " " + version.as_string() : "") +
                 ", but the snapshot holds no extensions/" + name + ".zip";
        return false;
      }
  }
  if (members_out) *members_out = std::move(list);
  *out = std::move(s);
  return true;
}

std::string make_snapshot_pointer(std::string_view url) {
  return std::string(kPointerMagic) + std::string(url) + "\n";
}

bool read_snapshot_pointer(std::string_view data, std::string* url) {
  if (!data.starts_with(kPointerMagic) || data.size() > 4096) return false;
  std::string_view rest = data.substr(kPointerMagic.size());
  while (!rest.empty() && (rest.back() == '\n' || rest.back() == '\r' || rest.back() == ' '))
    rest.remove_suffix(1);
  if (rest.empty() || rest.find('\n') != std::string_view::npos) return false;
  *url = std::string(rest);
  return true;
}

}  // namespace cap::store
