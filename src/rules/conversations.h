// Where AiAgent keeps its conversations: in the agent's memory (the default), or in a table
// of a configured database, so they survive restarts and redeploys and every agent that
// uses the same database continues the same conversation.
//
// A conversation is the provider-neutral message list of rules/llm_client.h (user
// prompts, answers, tool calls and tool results), never the system prompt or a
// credential. Each is forgotten `ttl_ms` after it was last saved.
//
// The database table (created on first use with CREATE TABLE IF NOT EXISTS, the same
// statement on SQLite and PostgreSQL):
//
//   scope         TEXT    the configuration's name and the node's id ("support-agent/assistant")
//   conversation  TEXT    the conversation id (the AiAgent's `conversation` parameter)
//   messages      TEXT    the messages as a JSON list
//   updated_at    BIGINT  when it was last saved, ms since 1970
//   expires_at    BIGINT  when it is forgotten, ms since 1970
//   PRIMARY KEY (scope, conversation), and an index on expires_at
//
// Expired rows are never read; they are deleted at most once a minute per node.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cap/engine.h"
#include "rules/llm_client.h"

namespace cap::rules {

/// The messages as JSON text (a list of {"role", "content", "tool_calls", ...}).
std::string messages_to_json(const std::vector<llm::Message>& messages);
/// Reads messages_to_json's text; false with `error` when it is not that shape.
bool messages_from_json(std::string_view text, std::vector<llm::Message>* out, std::string* error);

/// A place for conversations. Implementations are thread-safe: one instance serves every
/// request of one AiAgent node.
class ConversationStore {
 public:
  virtual ~ConversationStore() = default;
  /// The conversation `id` (empty when unknown or expired) into `out`. False with `error`
  /// when the store cannot be read (the database is down).
  virtual bool load(ExecContext& ctx, const std::string& id, std::vector<llm::Message>* out,
                    std::string* error) = 0;
  /// Replaces the conversation `id`, to be forgotten `ttl_ms` from now. False with `error`.
  virtual bool save(ExecContext& ctx, const std::string& id,
                    const std::vector<llm::Message>& messages, int64_t ttl_ms,
                    std::string* error) = 0;
};

/// In the process's memory, bounded to 10000 conversations (the ones nearest expiry go
/// first).
std::unique_ptr<ConversationStore> memory_conversations();

/// In `table` of the cap.json database `database`; this node's rows carry the scope
/// "CONFIGURATION/node_id". `table` must be a plain SQL name (valid_table_name).
std::unique_ptr<ConversationStore> database_conversations(std::string database, std::string table,
                                                          std::string node_id);

/// A letter or _, then letters, digits or _, at most 63 characters (PostgreSQL's limit).
bool valid_table_name(std::string_view name);

}  // namespace cap::rules
