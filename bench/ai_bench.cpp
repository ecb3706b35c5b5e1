// In-process cost of AiAgent's own work per model step, without the model: examples/
// support-agent answers /ask through Runtime::handle with a model that answers at once
// from memory (an HttpClient returning prepared OpenAI answers), so what is measured is
// building each request's JSON (system prompt, messages, the tools' schemas), reading the
// answer, checking the arguments and running the tool rule set (the FAQ's CsvLookup).
// `make bench` runs it with the engine benchmarks.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cap/engine.h"

namespace {

/// Answers every model call with the next of `answers_`, in a cycle; counts the bytes of
/// the requests it was sent.
class PreparedModel : public cap::HttpClient {
 public:
  explicit PreparedModel(std::vector<std::string> answers) : answers_(std::move(answers)) {}
  cap::HttpReply call(const cap::HttpCall& call) override {
    request_bytes_ += call.body.size();
    cap::HttpReply r;
    r.status = 200;
    r.body = answers_[next_];
    next_ = (next_ + 1) % answers_.size();
    return r;
  }
  uint64_t request_bytes() const { return request_bytes_; }

 private:
  std::vector<std::string> answers_;
  size_t next_ = 0;
  uint64_t request_bytes_ = 0;
};

std::string tool_call_answer(int n) {
  return R"({"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_)" +
         std::to_string(n) +
         R"(","type":"function","function":{"name":"faq","arguments":"{\"topic\":\"returns\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":300,"completion_tokens":12}})";
}

const char* kTextAnswer =
    R"({"choices":[{"index":0,"message":{"role":"assistant","content":"You can return it within 30 days; the label is free."},"finish_reason":"stop"}],"usage":{"prompt_tokens":420,"completion_tokens":14}})";

/// Runs /ask on examples/support-agent with a model that calls the FAQ tool `tool_steps`
/// times, then answers: tool_steps + 1 model calls per request.
void run_agent(benchmark::State& state, int tool_steps) {
  ::setenv("CAP_DB_URL", "sqlite::memory:", 0);  // the example names ${env:CAP_DB_URL}
  cap::RuleRegistry registry;
  cap::register_base_rules(registry);
  cap::Package pkg;
  std::string err;
  if (!cap::read_folder(std::string(CAP_SOURCE_DIR) + "/examples/support-agent", &pkg, &err)) {
    std::fprintf(stderr, "%s\n", err.c_str());
    std::abort();
  }
  auto loaded = cap::load_configuration(pkg, registry);
  if (!loaded.ok()) {
    for (auto& d : loaded.diagnostics) std::fprintf(stderr, "%s\n", d.format().c_str());
    std::abort();
  }
  std::vector<std::string> answers;
  for (int i = 0; i < tool_steps; ++i) answers.push_back(tool_call_answer(i));
  answers.push_back(kTextAnswer);
  PreparedModel model(answers);
  cap::SystemClock clock;
  cap::StderrLogger logger{cap::LogLevel::Error};
  cap::MemoryVault vault;
  vault.put("openai", {{"api_key", "sk-bench"}});
  cap::HostServices services;
  services.clock = &clock;
  services.logger = &logger;
  services.vault = &vault;
  services.http = &model;
  cap::Runtime runtime(loaded.configuration, services);
  cap::Workspace ws;
  cap::Response res;
  cap::Request req;
  req.method = "GET";
  req.target = "/ask?q=Can+I+return+my+shoes%3F";
  req.remote_addr = "10.0.0.1";
  req.headers = {{"Host", "bench.local"}, {"Accept", "application/json"}};
  uint64_t bad = 0;
  for (auto _ : state) {
    res.reset();
    cap::Outcome o = runtime.handle(req, res, ws);
    if (o.failed || res.status != 200) ++bad;
    benchmark::DoNotOptimize(res.body.data());
  }
  if (bad) state.SkipWithError(("unexpected responses: " + res.body).c_str());
  double steps = static_cast<double>(tool_steps + 1);
  state.counters["model_calls/req"] = benchmark::Counter(steps);
  state.counters["time/model_call"] =
      benchmark::Counter(steps * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["req_bytes/call"] =
      benchmark::Counter(static_cast<double>(model.request_bytes()) /
                         (steps * static_cast<double>(state.iterations())));
}

void BM_AiAgentAnswer(benchmark::State& state) { run_agent(state, 0); }
BENCHMARK(BM_AiAgentAnswer);

void BM_AiAgentOneTool(benchmark::State& state) { run_agent(state, 1); }
BENCHMARK(BM_AiAgentOneTool);

void BM_AiAgentFourTools(benchmark::State& state) { run_agent(state, 4); }
BENCHMARK(BM_AiAgentFourTools);

}  // namespace
