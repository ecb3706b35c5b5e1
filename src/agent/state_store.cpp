#include "agent/state_store.h"

#include <ctime>
#include <filesystem>

#include "agent/durable_file.h"
#include "net/signing.h"

namespace cap::agent {

namespace fs = std::filesystem;

const HistoryEntry* AgentState::find(std::string_view id) const {
  for (auto& e : history)
    if (e.id == id) return &e;
  return nullptr;
}

std::string iso8601_utc(int64_t ms) {
  time_t secs = static_cast<time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

bool valid_configuration_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
      return false;
  return true;
}

StateStore::StateStore(std::string home)
    : home_(std::move(home)),
      state_path_(home_ + "/state.json"),
      configurations_dir_(home_ + "/configurations") {}

bool StateStore::open(std::string* error) {
  return ensure_dir(home_, error, 0700) && ensure_dir(configurations_dir_, error, 0700);
}

std::string StateStore::configuration_path(const std::string& id) const {
  return configurations_dir_ + "/" + id + ".zip";
}

namespace {

bool is_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

/// Parses the state document; false with `why` when a field is missing or wrong.
bool parse_state(const Value& doc, AgentState* out, std::string* why) {
  if (!doc.is_map()) {
    *why = "not a JSON object";
    return false;
  }
  const Map& m = doc.as_map();
  const Value* format = m.find("format");
  if (!format || !format->is_number() || format->as_number() != 1) {
    *why = "missing or unknown \"format\"";
    return false;
  }
  const Value* active = m.find("active");
  const Value* mode = m.find("mode");
  const Value* stopped = m.find("stopped");
  const Value* sequence = m.find("sequence");
  const Value* history = m.find("history");
  if (!active || !(active->is_string() || active->is_null()) || !mode || !mode->is_string() ||
      !stopped || !stopped->is_bool() || !sequence || !sequence->is_number() || !history ||
      !history->is_list()) {
    *why = "a field is missing or has the wrong type";
    return false;
  }
  AgentState s;
  s.active = active->is_string() ? active->as_string() : "";
  s.mode = mode->as_string();
  s.stopped = stopped->as_bool();
  s.sequence = static_cast<uint64_t>(sequence->as_number());
  for (const Value& e : history->as_list()) {
    const Value* id = e.is_map() ? e.as_map().find("id") : nullptr;
    const Value* name = e.is_map() ? e.as_map().find("name") : nullptr;
    const Value* sha = e.is_map() ? e.as_map().find("sha256") : nullptr;
    const Value* at = e.is_map() ? e.as_map().find("activated_at_ms") : nullptr;
    if (!id || !id->is_string() || !valid_configuration_id(id->as_string()) || !name ||
        !name->is_string() || !sha || !sha->is_string() || !is_hex64(sha->as_string()) || !at ||
        !at->is_number()) {
      *why = "a history entry is incomplete";
      return false;
    }
    s.history.push_back(HistoryEntry{id->as_string(), name->as_string(), sha->as_string(),
                                     static_cast<int64_t>(at->as_number())});
  }
  if (!s.active.empty() && !s.find(s.active)) {
    *why = "the active configuration " + s.active + " is not in the history";
    return false;
  }
  *out = std::move(s);
  return true;
}

Value state_to_value(const AgentState& s) {
  Map m;
  m.set("format", Value(1));
  m.set("active", s.active.empty() ? Value() : Value(s.active));
  m.set("mode", Value(s.mode));
  m.set("stopped", Value(s.stopped));
  m.set("sequence", Value(s.sequence));
  List history;
  for (auto& e : s.history) {
    Map h;
    h.set("id", Value(e.id));
    h.set("name", Value(e.name));
    h.set("sha256", Value(e.sha256));
    h.set("activated_at_ms", Value(e.activated_at_ms));
    h.set("activated_at", Value(iso8601_utc(e.activated_at_ms)));
    history.push_back(Value(std::move(h)));
  }
  m.set("history", Value(std::move(history)));
  return Value(std::move(m));
}

}  // namespace

AgentState StateStore::load(std::vector<std::string>* problems) {
  std::error_code ec;
  if (!fs::exists(state_path_, ec)) return {};
  std::string text, error;
  if (!read_whole_file(state_path_, &text, &error)) {
    problems->push_back(error + "; starting blank");
    return {};
  }
  std::string parse_error, why;
  Value doc = json_parse(text, &parse_error);
  AgentState s;
  if (!parse_error.empty())
    why = "it does not parse (" + parse_error + ")";
  else if (!parse_state(doc, &s, &why))
    why = "it is not a valid state file: " + why;
  if (!why.empty()) {
    std::string aside = set_aside_as_corrupt(state_path_);
    problems->push_back("the state file " + state_path_ + " is torn or corrupt: " + why +
                        (aside.empty() ? "" : "; kept as " + aside) + "; starting blank");
    return {};
  }
  for (auto& e : s.history) known_ids_.insert(e.id);
  return s;
}

bool StateStore::save(const AgentState& state, std::string* error) {
  std::string text = to_json(state_to_value(state));
  text.push_back('\n');
  if (!write_file_durably(state_path_, text, error, 0600)) return false;
  // The zips the history no longer names go; zips this store never knew (left from a torn
  // state file) and *.corrupt files stay for inspection.
  for (auto& id : known_ids_)
    if (!state.find(id)) {
      std::error_code ec;
      fs::remove(configuration_path(id), ec);
    }
  known_ids_.clear();
  for (auto& e : state.history) known_ids_.insert(e.id);
  return true;
}

std::string StateStore::new_id(AgentState& state, std::string_view sha256_hex) {
  ++state.sequence;
  return std::string(sha256_hex.substr(0, 12)) + "-" + std::to_string(state.sequence);
}

bool StateStore::write_configuration(const std::string& id, std::string_view zip,
                                     std::string* error) {
  return write_file_durably(configuration_path(id), zip, error, 0600);
}

bool StateStore::read_configuration(const std::string& id, const std::string& expected_sha256,
                                    std::string* zip, std::string* error) {
  std::string path = configuration_path(id);
  if (!read_whole_file(path, zip, error)) return false;
  std::string actual = net::sha256_hex(*zip);
  if (actual != expected_sha256) {
    std::string aside = set_aside_as_corrupt(path);
    *error = "configuration " + id + " is corrupt: " + path + " has sha256 " + actual +
             ", the state file recorded " + expected_sha256 +
             (aside.empty() ? "" : "; kept as " + aside);
    zip->clear();
    return false;
  }
  return true;
}

void StateStore::record_activation(AgentState& state, HistoryEntry entry) {
  std::erase_if(state.history, [&](const HistoryEntry& e) { return e.id == entry.id; });
  state.history.push_back(std::move(entry));
  while (state.history.size() > kKeptConfigurations) state.history.erase(state.history.begin());
}

}  // namespace cap::agent
