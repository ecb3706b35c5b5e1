#include "agent/activation.h"

#include "agent/logging.h"
#include "rules/network.h"
#include "net/signing.h"

namespace cap::agent {

using namespace cap::rules;  // HTTP forwarding helpers and response additions


namespace {

int64_t now_ms() { return SystemClock().now_ms(); }

}  // namespace

CommandResult command_failure(int status, std::string error, std::vector<std::string> details) {
  CommandResult r;
  r.status = status;
  r.error = std::move(error);
  r.details = std::move(details);
  return r;
}

Activator::Activator(StateStore& store, const RuleRegistry& registry, HostServices services,
                     ServingSlot& slot)
    : store_(store), registry_(registry), services_(services), slot_(slot) {}

Activator::Built Activator::build(std::string_view zip, const std::string& sha256) const {
  Built b;
  Package pkg;
  std::string err;
  if (!read_zip(zip, &pkg, &err)) {
    b.problem = command_failure(422, "configuration is not valid", {err});
    return b;
  }
  LoadOptions opts;
  opts.logger = services_.logger;
  opts.check_extension = check_extension_;
  LoadResult loaded = load_configuration(pkg, registry_, opts);
  for (auto& d : loaded.diagnostics) {
    if (d.severity == Diagnostic::Severity::Error)
      b.problem.details.push_back(d.format());
    else
      b.problem.warnings.push_back(d.format());
  }
  if (!loaded.ok()) {
    b.problem.status = 422;
    b.problem.error = "configuration is not valid";
    return b;
  }
  // The configuration was made by the loader and is not shared yet: the host records the
  // hash of the packed form here (Configuration::sha256 is "set by the host").
  const_cast<Configuration&>(*loaded.configuration).sha256 = sha256;
  b.runtime = std::make_shared<Runtime>(loaded.configuration, services_);
  if (post_) {
    std::weak_ptr<Runtime> weak = b.runtime;
    auto* self = const_cast<Activator*>(this);
    b.runtime->set_mode_listener([self, weak](const std::string& mode) {
      self->post_([self, weak, mode] { self->remember_mode(weak, mode); });
    });
  }
  std::string startup_error = b.runtime->startup();
  if (!startup_error.empty()) {
    b.problem = command_failure(422, "the startup rule set failed", {startup_error});
    b.runtime.reset();
    return b;
  }
  return b;
}

std::shared_ptr<Serving> Activator::serving_for(const std::shared_ptr<Runtime>& runtime,
                                                const HistoryEntry& entry, bool stopped) {
  auto s = std::make_shared<Serving>();
  const Configuration& cfg = runtime->configuration();
  s->runtime = runtime;
  s->runtime_serial = ++last_serial_;
  s->id = entry.id;
  s->name = entry.name;
  s->sha256 = entry.sha256;
  s->activated_at_ms = entry.activated_at_ms;
  s->stopped = stopped;
  s->origin = cfg.origin;
  while (!s->origin.empty() && s->origin.back() == '/') s->origin.pop_back();
  s->may_wait = cfg.may_wait;
  s->reads_body = cfg.reads_body;
  s->response_additions = cfg.symbols.find(kResponseAdditionsVariable) >= 0;
  return s;
}

void Activator::restore() {
  std::lock_guard lock(mu_);
  std::vector<std::string> problems;
  state_ = store_.load(&problems);
  for (auto& p : problems) agent_log().error("{}", p);
  if (state_.active.empty()) {
    agent_log().info("no active configuration in {}: starting blank", store_.home());
    return;
  }
  const HistoryEntry* entry = state_.find(state_.active);
  std::string zip, err;
  if (!store_.read_configuration(entry->id, entry->sha256, &zip, &err)) {
    agent_log().error("cannot resume configuration {}: {}; starting blank", entry->id, err);
    state_.active.clear();
    return;
  }
  Built b = build(zip, entry->sha256);
  if (!b.runtime) {
    agent_log().error("cannot resume configuration {}: {}{}; starting blank", entry->id,
                      b.problem.error,
                      b.problem.details.empty() ? "" : ": " + b.problem.details.front());
    state_.active.clear();
    return;
  }
  if (!state_.mode.empty() && !b.runtime->set_mode(state_.mode)) {
    agent_log().warn("configuration {} has no mode '{}' any more: using the default", entry->id,
                     state_.mode);
    state_.mode.clear();
  }
  slot_.publish(serving_for(b.runtime, *entry, state_.stopped));
  agent_log().info("resumed configuration {} ({}){}{}", entry->id, entry->name,
                   state_.mode.empty() ? "" : " in mode " + state_.mode,
                   state_.stopped ? ", stopped" : "");
}

CommandResult Activator::persist_and_publish(AgentState next,
                                             std::shared_ptr<const Serving> serving) {
  std::string err;
  if (!store_.save(next, &err)) {
    agent_log().error("cannot write the state: {}", err);
    return command_failure(500, "cannot write the agent's state in CAP_HOME", {err});
  }
  state_ = std::move(next);
  slot_.publish(std::move(serving));
  CommandResult ok;
  ok.id = state_.active;
  return ok;
}

CommandResult Activator::activate(std::string_view zip, std::string_view mode, bool stopped) {
  std::lock_guard lock(mu_);
  std::string sha256 = net::sha256_hex(zip);
  Built b = build(zip, sha256);
  if (!b.runtime) {
    agent_log().warn("deploy refused: {} ({} errors)", b.problem.error, b.problem.details.size());
    return b.problem;
  }
  if (!mode.empty() && !b.runtime->set_mode(mode))
    return command_failure(422, "the configuration has no mode '" + std::string(mode) + "'");
  AgentState next = state_;
  HistoryEntry entry{StateStore::new_id(next, sha256), b.runtime->configuration().name, sha256,
                     now_ms()};
  std::string err;
  if (!store_.write_configuration(entry.id, zip, &err)) {
    agent_log().error("cannot store configuration {}: {}", entry.id, err);
    return command_failure(500, "cannot write the configuration in CAP_HOME", {err});
  }
  next.active = entry.id;
  next.mode = b.runtime->mode();
  next.stopped = stopped;
  StateStore::record_activation(next, entry);
  CommandResult r = persist_and_publish(std::move(next), serving_for(b.runtime, entry, stopped));
  if (r.status != 200) return r;
  r.warnings = std::move(b.problem.warnings);
  agent_log().info("activated configuration {} ({}, sha256 {})", entry.id, entry.name, sha256);
  return r;
}

CommandResult Activator::rollback(std::string_view id) {
  std::lock_guard lock(mu_);
  // Candidates: the named one, or every previous configuration, newest first; an implicit
  // rollback passes over kept configurations whose files turn out to be damaged.
  std::vector<HistoryEntry> candidates;
  if (id.empty()) {
    for (auto it = state_.history.rbegin(); it != state_.history.rend(); ++it)
      if (it->id != state_.active) candidates.push_back(*it);
    if (candidates.empty())
      return command_failure(404, "there is no previous configuration to roll back to");
  } else {
    const HistoryEntry* target = state_.find(id);
    if (!target)
      return command_failure(404, "no kept configuration has the id '" + std::string(id) + "'",
                             {"GET /v1/configuration/history lists the kept ones"});
    candidates.push_back(*target);
  }
  HistoryEntry entry;
  std::string zip;
  std::vector<std::string> damaged;
  for (auto& c : candidates) {
    std::string err;
    if (store_.read_configuration(c.id, c.sha256, &zip, &err)) {
      entry = c;
      break;
    }
    agent_log().error("rollback to {} refused: {}", c.id, err);
    damaged.push_back(err);
  }
  if (entry.id.empty())
    return command_failure(500, "no kept configuration can be used", std::move(damaged));
  Built b = build(zip, entry.sha256);
  if (!b.runtime) return b.problem;
  entry.activated_at_ms = now_ms();
  AgentState next = state_;
  next.active = entry.id;
  next.mode.clear();
  next.stopped = false;
  StateStore::record_activation(next, entry);
  CommandResult r = persist_and_publish(std::move(next), serving_for(b.runtime, entry, false));
  if (r.status == 200)
    agent_log().info("rolled back to configuration {} ({})", entry.id, entry.name);
  return r;
}

CommandResult Activator::set_stopped(bool stopped) {
  std::lock_guard lock(mu_);
  auto current = slot_.latest();
  if (current->blank()) return command_failure(409, "no configuration is active");
  AgentState next = state_;
  next.stopped = stopped;
  auto s = std::make_shared<Serving>(*current);
  s->stopped = stopped;
  CommandResult r = persist_and_publish(std::move(next), std::move(s));
  if (r.status == 200)
    agent_log().info("rules {} for configuration {}", stopped ? "stopped" : "started", current->id);
  return r;
}

CommandResult Activator::set_mode(std::string_view mode) {
  std::lock_guard lock(mu_);
  auto current = slot_.latest();
  if (current->blank()) return command_failure(409, "no configuration is active");
  std::string previous = current->runtime->mode();
  if (!current->runtime->set_mode(mode)) {
    std::vector<std::string> known{"default"};
    for (auto& [name, rs] : current->runtime->configuration().modes) known.push_back(name);
    std::string list;
    for (auto& k : known) list += (list.empty() ? "" : ", ") + k;
    return command_failure(422, "the configuration has no mode '" + std::string(mode) + "'",
                           {"known modes: " + list});
  }
  AgentState next = state_;
  next.mode = current->runtime->mode();
  std::string err;
  if (!store_.save(next, &err)) {
    current->runtime->set_mode(previous);
    agent_log().error("cannot write the state: {}", err);
    return command_failure(500, "cannot write the agent's state in CAP_HOME", {err});
  }
  state_ = std::move(next);
  agent_log().info("mode set to {}", state_.mode.empty() ? "default" : state_.mode);
  CommandResult r;
  r.id = state_.active;
  return r;
}

void Activator::remember_mode(const std::weak_ptr<Runtime>& weak, const std::string& mode) {
  std::lock_guard lock(mu_);
  auto runtime = weak.lock();
  auto current = slot_.latest();
  if (!runtime || current->blank() || current->runtime != runtime || state_.mode == mode) return;
  AgentState next = state_;
  next.mode = mode;
  std::string err;
  if (!store_.save(next, &err)) {
    agent_log().error("a rule switched the mode to {} but the state cannot be written: {}",
                      mode.empty() ? "default" : mode, err);
    return;
  }
  state_ = std::move(next);
  agent_log().info("mode switched to {} by a rule (saved)", mode.empty() ? "default" : mode);
}

CommandResult Activator::reload_active() {
  std::lock_guard lock(mu_);
  auto current = slot_.latest();
  if (current->blank() || state_.active.empty()) return CommandResult{};
  const HistoryEntry* entry = state_.find(state_.active);
  std::string zip, err;
  if (!entry || !store_.read_configuration(entry->id, entry->sha256, &zip, &err))
    return command_failure(500, "cannot read the active configuration", {err});
  Built b = build(zip, entry->sha256);
  if (!b.runtime) return b.problem;
  std::string mode = current->runtime->mode();
  if (!mode.empty()) b.runtime->set_mode(mode);
  HistoryEntry published = *entry;
  published.activated_at_ms = current->activated_at_ms;
  slot_.publish(serving_for(b.runtime, published, current->stopped));
  agent_log().info("reloaded configuration {} ({}) with the rules installed now", entry->id,
                   entry->name);
  CommandResult r;
  r.id = entry->id;
  return r;
}

std::shared_ptr<const Configuration> Activator::active_configuration() const {
  auto s = slot_.latest();
  return s->blank() ? nullptr : s->runtime->configuration_ptr();
}

Value Activator::history() const {
  std::lock_guard lock(mu_);
  List list;
  for (auto it = state_.history.rbegin(); it != state_.history.rend(); ++it) {
    Map m;
    m.set("id", Value(it->id));
    m.set("name", Value(it->name));
    m.set("sha256", Value(it->sha256));
    m.set("activated_at", Value(iso8601_utc(it->activated_at_ms)));
    m.set("active", Value(it->id == state_.active));
    list.push_back(Value(std::move(m)));
  }
  return Value(std::move(list));
}

bool Activator::active_zip(std::string* zip, std::string* error) const {
  std::lock_guard lock(mu_);
  if (state_.active.empty()) {
    *error = "no configuration is active";
    return false;
  }
  const HistoryEntry* e = state_.find(state_.active);
  return store_.read_configuration(e->id, e->sha256, zip, error);
}

bool Activator::active_state(std::string* zip, std::string* name, std::string* mode, bool* stopped,
                             std::string* error) const {
  std::lock_guard lock(mu_);
  if (state_.active.empty()) {
    *error = "no configuration is active";
    return false;
  }
  const HistoryEntry* e = state_.find(state_.active);
  if (!store_.read_configuration(e->id, e->sha256, zip, error)) return false;
  *name = e->name;
  *mode = state_.mode;
  *stopped = state_.stopped;
  return true;
}

}  // namespace cap::agent
