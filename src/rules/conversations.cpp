#include "rules/conversations.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>

namespace cap::rules {

using llm::Message;
using llm::ToolCall;

namespace {

const char* role_name(Message::Role role) {
  switch (role) {
    case Message::Role::User:
      return "user";
    case Message::Role::Assistant:
      return "assistant";
    case Message::Role::Tool:
      return "tool";
  }
  return "user";
}

std::string text_of(const Map& m, std::string_view key) {
  const Value* v = m.find(key);
  return v && v->is_string() ? v->as_string() : std::string();
}

}  // namespace

std::string messages_to_json(const std::vector<Message>& messages) {
  List list;
  for (const Message& msg : messages) {
    Map m;
    m.set("role", Value(role_name(msg.role)));
    m.set("content", Value(msg.content));
    if (!msg.tool_calls.empty()) {
      List calls;
      for (const ToolCall& c : msg.tool_calls) {
        Map call;
        call.set("id", Value(c.id));
        call.set("name", Value(c.name));
        call.set("arguments", Value(c.arguments_text));
        calls.push_back(Value(std::move(call)));
      }
      m.set("tool_calls", Value(std::move(calls)));
    }
    if (msg.role == Message::Role::Tool) {
      m.set("tool_call_id", Value(msg.tool_call_id));
      m.set("tool_name", Value(msg.tool_name));
      if (msg.tool_error) m.set("tool_error", Value(true));
    }
    list.push_back(Value(std::move(m)));
  }
  return to_json(Value(std::move(list)));
}

bool messages_from_json(std::string_view text, std::vector<Message>* out, std::string* error) {
  std::string err;
  Value v = json_parse(text, &err);
  if (!err.empty() || !v.is_list()) {
    *error = err.empty() ? "the stored conversation is not a JSON list" : err;
    return false;
  }
  out->clear();
  for (const Value& item : v.as_list()) {
    if (!item.is_map()) {
      *error = "a stored message is not a JSON object";
      return false;
    }
    const Map& m = item.as_map();
    Message msg;
    std::string role = text_of(m, "role");
    if (role == "user")
      msg.role = Message::Role::User;
    else if (role == "assistant")
      msg.role = Message::Role::Assistant;
    else if (role == "tool")
      msg.role = Message::Role::Tool;
    else {
      *error = "a stored message has the role '" + role + "'";
      return false;
    }
    msg.content = text_of(m, "content");
    if (const Value* calls = m.find("tool_calls"); calls && calls->is_list()) {
      for (const Value& c : calls->as_list()) {
        if (!c.is_map()) continue;
        ToolCall call;
        call.id = text_of(c.as_map(), "id");
        call.name = text_of(c.as_map(), "name");
        call.arguments_text = text_of(c.as_map(), "arguments");
        std::string parse_error;
        Value args =
            json_parse(call.arguments_text.empty() ? "{}" : call.arguments_text, &parse_error);
        if (parse_error.empty() && args.is_map()) call.arguments = std::move(args);
        msg.tool_calls.push_back(std::move(call));
      }
    }
    msg.tool_call_id = text_of(m, "tool_call_id");
    msg.tool_name = text_of(m, "tool_name");
    const Value* failed = m.find("tool_error");
    msg.tool_error = failed && failed->is_bool() && failed->as_bool();
    out->push_back(std::move(msg));
  }
  return true;
}

bool valid_table_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!letter(name[0])) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return letter(c) || (c >= '0' && c <= '9'); });
}

namespace {

class MemoryConversations : public ConversationStore {
 public:
  static constexpr size_t kMaxConversations = 10000;

  bool load(ExecContext& ctx, const std::string& id, std::vector<Message>* out,
            std::string*) override {
    std::lock_guard lock(mu_);
    out->clear();
    auto it = entries_.find(id);
    if (it == entries_.end()) return true;
    if (it->second.expires_ms <= ctx.now_ms()) {
      entries_.erase(it);
      return true;
    }
    *out = it->second.messages;
    return true;
  }

  bool save(ExecContext& ctx, const std::string& id, const std::vector<Message>& messages,
            int64_t ttl_ms, std::string*) override {
    int64_t now = ctx.now_ms();
    std::lock_guard lock(mu_);
    if (entries_.size() >= kMaxConversations && !entries_.count(id)) {
      // Drop the expired ones, then the one closest to expiry.
      for (auto it = entries_.begin(); it != entries_.end();)
        it = it->second.expires_ms <= now ? entries_.erase(it) : std::next(it);
      if (entries_.size() >= kMaxConversations) {
        auto oldest = std::min_element(entries_.begin(), entries_.end(), [](auto& a, auto& b) {
          return a.second.expires_ms < b.second.expires_ms;
        });
        entries_.erase(oldest);
      }
    }
    entries_[id] = Entry{messages, now + ttl_ms};
    return true;
  }

 private:
  struct Entry {
    std::vector<Message> messages;
    int64_t expires_ms = 0;
  };
  std::mutex mu_;
  std::map<std::string, Entry> entries_;
};

class DatabaseConversations : public ConversationStore {
 public:
  static constexpr int kTimeoutMs = 10000;
  static constexpr int64_t kSweepEveryMs = 60000;

  DatabaseConversations(std::string database, std::string table, std::string node_id)
      : database_(std::move(database)), node_id_(std::move(node_id)) {
    create_ = "CREATE TABLE IF NOT EXISTS " + table +
              " (scope TEXT NOT NULL, conversation TEXT NOT NULL, messages TEXT NOT NULL, "
              "updated_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, "
              "PRIMARY KEY (scope, conversation))";
    index_ = "CREATE INDEX IF NOT EXISTS " + table + "_expires ON " + table + " (expires_at)";
    select_ = "SELECT messages FROM " + table +
              " WHERE scope = ? AND conversation = ? AND expires_at > ?";
    upsert_ = "INSERT INTO " + table +
              " (scope, conversation, messages, updated_at, expires_at) VALUES (?, ?, ?, ?, ?) "
              "ON CONFLICT (scope, conversation) DO UPDATE SET messages = excluded.messages, "
              "updated_at = excluded.updated_at, expires_at = excluded.expires_at";
    sweep_ = "DELETE FROM " + table + " WHERE expires_at <= ?";
  }

  bool load(ExecContext& ctx, const std::string& id, std::vector<Message>* out,
            std::string* error) override {
    out->clear();
    ensure_table(ctx);
    List args{Value(scope(ctx)), Value(id), Value(ctx.now_ms())};
    SqlResult r = run(ctx, select_, args, error);
    if (!r.ok) return false;
    if (r.rows.empty()) return true;
    const Value* messages = r.rows[0].is_map() ? r.rows[0].as_map().find("messages") : nullptr;
    std::string why;
    if (!messages || !messages->is_string() ||
        !messages_from_json(messages->as_string(), out, &why)) {
      // A row this code did not write: start the conversation afresh rather than fail.
      ctx.logger().log(LogLevel::Warn, "conversation memory: the stored conversation '" + id +
                                           "' cannot be read (" + why + "); starting afresh");
      out->clear();
    }
    return true;
  }

  bool save(ExecContext& ctx, const std::string& id, const std::vector<Message>& messages,
            int64_t ttl_ms, std::string* error) override {
    ensure_table(ctx);
    int64_t now = ctx.now_ms();
    List args{Value(scope(ctx)), Value(id), Value(messages_to_json(messages)), Value(now),
              Value(now + ttl_ms)};
    if (!run(ctx, upsert_, args, error).ok) return false;
    int64_t due = next_sweep_ms_.load(std::memory_order_relaxed);
    if (now >= due && next_sweep_ms_.compare_exchange_strong(due, now + kSweepEveryMs)) {
      std::string ignored;
      List sweep_args{Value(now)};
      run(ctx, sweep_, sweep_args, &ignored);
    }
    return true;
  }

 private:
  std::string scope(ExecContext& ctx) const {
    return ctx.runtime().configuration().name + "/" + node_id_;
  }

  SqlResult run(ExecContext& ctx, const std::string& sql, const List& args,
                std::string* error) const {
    SqlResult r;
    SqlService* service = ctx.services.sql;
    if (!service) {
      r.error = "this host has no SQL service";
    } else {
      const auto& dbs = ctx.runtime().configuration().databases;
      auto it = dbs.find(database_);
      SqlCall call;
      call.database = database_;
      if (it != dbs.end()) call.url = it->second;
      call.sql = sql;
      call.args = &args;
      call.max_rows = 1;
      call.timeout_ms = kTimeoutMs;
      r = service->run(call);
    }
    if (!r.ok) *error = "conversation memory: " + r.error;
    return r;
  }

  /// Creates the table once; tries again on the next call after a failure (the database
  /// was down, or another agent created it at the same moment: the statement that follows
  /// then says whether the table is usable).
  void ensure_table(ExecContext& ctx) {
    if (created_.load(std::memory_order_acquire)) return;
    std::lock_guard lock(create_mu_);
    if (created_.load(std::memory_order_relaxed)) return;
    List none;
    std::string ignored;
    if (!run(ctx, create_, none, &ignored).ok) return;
    run(ctx, index_, none, &ignored);  // only speeds up the sweep
    created_.store(true, std::memory_order_release);
  }

  std::string database_, node_id_;
  std::string create_, index_, select_, upsert_, sweep_;
  std::mutex create_mu_;
  std::atomic<bool> created_{false};
  std::atomic<int64_t> next_sweep_ms_{0};
};

}  // namespace

std::unique_ptr<ConversationStore> memory_conversations() {
  return std::make_unique<MemoryConversations>();
}

std::unique_ptr<ConversationStore> database_conversations(std::string database, std::string table,
                                                          std::string node_id) {
  return std::make_unique<DatabaseConversations>(std::move(database), std::move(table),
                                                 std::move(node_id));
}

}  // namespace cap::rules
