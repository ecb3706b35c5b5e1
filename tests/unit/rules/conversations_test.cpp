// AiAgent's conversation memory: the stored form of a conversation and the table name check.
// (The stores themselves run against real SQLite and PostgreSQL in
// tests/integration/test_llm_memory.py.)
#include "rules/conversations.h"

#include <gtest/gtest.h>

namespace cap::test {
namespace {

using rules::llm::Message;

TEST(Conversations, MessagesRoundTrip) {
  std::vector<Message> in(4);
  in[0].content = "Where is A-1?";
  in[1].role = Message::Role::Assistant;
  std::string err;
  in[1].tool_calls.push_back(
      {"call_1", "lookup", json_parse(R"({"id":"A-1"})", &err), R"({"id":"A-1"})"});
  in[2].role = Message::Role::Tool;
  in[2].tool_call_id = "call_1";
  in[2].tool_name = "lookup";
  in[2].tool_error = true;
  in[2].content = "error: unknown";
  in[3].role = Message::Role::Assistant;
  in[3].content = "I cannot find it.";

  std::string text = rules::messages_to_json(in);
  std::vector<Message> out;
  ASSERT_TRUE(rules::messages_from_json(text, &out, &err)) << err;
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].role, Message::Role::User);
  EXPECT_EQ(out[0].content, "Where is A-1?");
  ASSERT_EQ(out[1].tool_calls.size(), 1u);
  EXPECT_EQ(out[1].tool_calls[0].id, "call_1");
  EXPECT_EQ(out[1].tool_calls[0].name, "lookup");
  EXPECT_EQ(out[1].tool_calls[0].arguments_text, R"({"id":"A-1"})");
  EXPECT_EQ(to_json(out[1].tool_calls[0].arguments), R"({"id":"A-1"})");
  EXPECT_EQ(out[2].role, Message::Role::Tool);
  EXPECT_EQ(out[2].tool_call_id, "call_1");
  EXPECT_EQ(out[2].tool_name, "lookup");
  EXPECT_TRUE(out[2].tool_error);
  EXPECT_EQ(out[3].content, "I cannot find it.");
  EXPECT_EQ(rules::messages_to_json(out), text);
}

TEST(Conversations, StoredTextThatIsNotAConversation) {
  std::vector<Message> out;
  std::string err;
  EXPECT_FALSE(rules::messages_from_json("{}", &out, &err));
  EXPECT_EQ(err, "the stored conversation is not a JSON list");
  EXPECT_FALSE(rules::messages_from_json("[1]", &out, &err));
  EXPECT_EQ(err, "a stored message is not a JSON object");
  EXPECT_FALSE(rules::messages_from_json(R"([{"role": "system", "content": "x"}])", &out, &err));
  EXPECT_EQ(err, "a stored message has the role 'system'");
  EXPECT_FALSE(rules::messages_from_json("[", &out, &err));
}

TEST(Conversations, TableNames) {
  EXPECT_TRUE(rules::valid_table_name("cap_conversations"));
  EXPECT_TRUE(rules::valid_table_name("_t1"));
  EXPECT_TRUE(rules::valid_table_name(std::string(63, 'a')));
  EXPECT_FALSE(rules::valid_table_name(std::string(64, 'a')));
  EXPECT_FALSE(rules::valid_table_name(""));
  EXPECT_FALSE(rules::valid_table_name("1t"));
  EXPECT_FALSE(rules::valid_table_name("public.t"));
  EXPECT_FALSE(rules::valid_table_name("t; DROP TABLE x"));
}

}  // namespace
}  // namespace cap::test
