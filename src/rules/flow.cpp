// The "Flow" group: rules that choose where a request goes next (DESIGN §4).
//
// Each rule is a small immutable class built once per node by its factory; everything that
// can be decided at load (case tables, constant mode names, limits) is decided there, so
// execute only evaluates parameters and picks a chain point.
#include <cmath>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cap/engine.h"
#include "rules/groups.h"

namespace cap::rules {
namespace {

ParamSpec param(std::string name, ParamType type, bool required, Value def, std::string doc,
                std::vector<std::string> choices = {}) {
  ParamSpec p;
  p.name = std::move(name);
  p.type = type;
  p.required = required;
  p.default_value = std::move(def);
  p.doc = std::move(doc);
  p.choices = std::move(choices);
  return p;
}

std::string join_quoted(const std::vector<std::string>& names) {
  std::string out;
  for (auto& n : names) {
    if (!out.empty()) out += ", ";
    out += "'" + n + "'";
  }
  return out;
}

// ------------------------------------------------------------------------------ IfCondition

class IfCondition final : public Rule {
 public:
  explicit IfCondition(const Param& condition) : condition_(condition) {}
  int execute(ExecContext& ctx) const override {
    Value scratch;
    return condition_.eval(ctx, scratch).truthy() ? 0 : 1;
  }

 private:
  Param condition_;
};

// ----------------------------------------------------------------------------------- Switch

class Switch final : public Rule {
 public:
  Switch(const Param& value, const std::vector<std::string>& chain_points) : value_(value) {
    // Index 0 is "default"; every other chain point is a case named by its value.
    for (size_t i = 1; i < chain_points.size(); ++i)
      cases_.emplace(chain_points[i], static_cast<int>(i));
  }
  int execute(ExecContext& ctx) const override {
    std::string text;
    value_.render(ctx, text);
    auto it = cases_.find(text);
    return it == cases_.end() ? 0 : it->second;
  }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  Param value_;
  std::unordered_map<std::string, int, Hash, std::equal_to<>> cases_;
};

// ----------------------------------------------------------------------------- SetCompleted

class SetCompleted final : public Rule {
 public:
  int execute(ExecContext& ctx) const override {
    ctx.complete();
    return kNoChain;
  }
};

// ------------------------------------------------------------------------------ RuleSetExit

// The executor handles exit nodes itself (it returns to the calling node's chain point of
// the same name); this object only exists so the node compiles like any other.
class RuleSetExit final : public Rule {
 public:
  int execute(ExecContext&) const override { return kNoChain; }
};

// ---------------------------------------------------------------------------- FailSafePoint

class FailSafePoint final : public Rule {
 public:
  explicit FailSafePoint(uint32_t error_slot) : error_slot_(error_slot) {}
  int execute(ExecContext& ctx) const override {
    try {
      ctx.run_chain(0);
    } catch (const EvalError& e) {
      ctx.vars.set(error_slot_, Value(e.what()));
      ctx.run_chain(1);
    }
    return kHandled;
  }

 private:
  uint32_t error_slot_;
};

// ---------------------------------------------------------------------------------- ForEach

class ForEach final : public Rule {
 public:
  ForEach(const Param& list, uint32_t item_slot, uint32_t index_slot, const Param& max_items,
          double constant_max)
      : list_(list),
        item_slot_(item_slot),
        index_slot_(index_slot),
        max_items_(max_items),
        constant_max_(constant_max) {}

  int execute(ExecContext& ctx) const override {
    // A copy, not a reference: the chain may change the variable the list came from. Lists
    // and maps are shared, so this is a reference-count increment.
    Value held = list_.value(ctx);
    if (held.is_null()) return finish(ctx);
    if (!held.is_list() && !held.is_map()) {
      throw EvalError("parameter 'list' must be a list, a map or null, got " +
                      std::string(type_name(held.type())) + " '" + held.to_text() + "'");
    }
    size_t count = held.is_list() ? held.as_list().size() : held.as_map().size();
    double max = constant_max_ >= 0 ? constant_max_ : max_items_.number(ctx);
    if (static_cast<double>(count) > max) {
      throw EvalError("parameter 'list' has " + std::to_string(count) +
                      " items, more than max_items (" + Value(max).to_text() + ")");
    }
    if (held.is_list()) {
      const List& items = held.as_list();
      for (size_t i = 0; i < items.size() && !ctx.completed(); ++i) {
        ctx.vars.set(item_slot_, items[i]);
        ctx.vars.set(index_slot_, Value(static_cast<uint64_t>(i)));
        ctx.run_chain(0);
      }
    } else {
      for (auto& [key, value] : held.as_map()) {
        if (ctx.completed()) break;
        ctx.vars.set(item_slot_, value);
        ctx.vars.set(index_slot_, Value(key));
        ctx.run_chain(0);
      }
    }
    return finish(ctx);
  }

 private:
  static int finish(ExecContext& ctx) {
    if (!ctx.completed()) ctx.run_chain(1);
    return kHandled;
  }
  Param list_;
  uint32_t item_slot_, index_slot_;
  Param max_items_;
  double constant_max_;  // < 0 when max_items is computed per request
};

// ---------------------------------------------------------------------------------- Comment

class Comment final : public Rule {
 public:
  int execute(ExecContext&) const override { return 0; }
};

// ------------------------------------------------------------------------------- SwitchMode

class SwitchMode final : public Rule {
 public:
  SwitchMode(const Param& mode, std::vector<std::string> known)
      : mode_(mode), known_(std::move(known)) {
    if (mode_.is_constant()) {
      constant_ = mode_.constant_value().to_text();
      if (constant_ == "default") constant_.clear();
    }
  }
  int execute(ExecContext& ctx) const override {
    if (mode_.is_constant()) {
      if (!ctx.runtime().set_mode(constant_))
        throw EvalError("mode '" + constant_ + "' is not known to this configuration");
      return 0;
    }
    std::string name = mode_.text(ctx);
    if (name == "default") name.clear();
    if (!ctx.runtime().set_mode(name)) {
      throw EvalError("unknown mode '" + name + "'; known modes: 'default'" +
                      (known_.empty() ? "" : ", " + join_quoted(known_)));
    }
    return 0;
  }

 private:
  Param mode_;
  std::vector<std::string> known_;
  std::string constant_;
};

}  // namespace

void register_flow(RuleRegistry& r) {
  const std::string group = "Flow";

  r.add(RuleSpec{"IfCondition",
                 group,
                 "Evaluates an expression and takes `true` when its value is truthy, `false` "
                 "otherwise. Null, false, 0, the empty string and empty lists and maps are "
                 "false; everything else is true. Example condition: "
                 "`URI == '/hello' and METHOD == 'GET'`.",
                 {param("condition", ParamType::Expression, true, Value(),
                        "The expression to test, without ${}: `len(name) > 0`.")},
                 {"true", "false"}},
        [](CompileContext& cc) -> std::unique_ptr<Rule> {
          return std::make_unique<IfCondition>(cc.params()["condition"]);
        });

  RuleSpec switch_spec{
      "Switch",
      group,
      "Renders `value` as text and takes the chain point whose name equals it; every key "
      "you add under `then` other than `default` is a case. When no case matches, "
      "`default` runs. Example: value `${METHOD}` with chain points `GET`, `POST` and "
      "`default`. Matching is exact and case-sensitive.",
      {param("value", ParamType::String, true, Value(),
             "The text to match against the case names: `${METHOD}`.")},
      {"default"}};
  switch_spec.user_chain_points = true;
  r.add(std::move(switch_spec), [](CompileContext& cc) -> std::unique_ptr<Rule> {
    if (cc.chain_points().size() <= 1)
      cc.warning("", "Switch has no cases: add chain points named after the values to match");
    return std::make_unique<Switch>(cc.params()["value"], cc.chain_points());
  });

  r.add(RuleSpec{"SetCompleted",
                 group,
                 "Ends the request's rule processing: no further node runs, not even the "
                 "remaining siblings of this node or the nodes after a rule set that contains "
                 "it. The response set so far is sent; the completion rule set still runs.",
                 {},
                 {}},
        [](CompileContext&) -> std::unique_ptr<Rule> { return std::make_unique<SetCompleted>(); });

  r.add(RuleSpec{"RuleSetExit",
                 group,
                 "Leaves the rule set through the exit named `name`. When the rule set is used "
                 "as a node in another rule set, each exit name becomes a chain point of that "
                 "node, and the nodes under it run next. List every name in the rule set's "
                 "`exits`.",
                 {param("name", ParamType::String, true, Value(),
                        "The exit's name, a constant such as `OK`; becomes a chain point.")},
                 {}},
        [](CompileContext& cc) -> std::unique_ptr<Rule> {
          const Param& name = cc.params()["name"];
          if (!name.present()) return nullptr;  // the loader reported the missing parameter
          if (!name.is_constant()) {
            cc.error("name", "must be a constant exit name, not a template");
            return nullptr;
          }
          if (name.constant_value().to_text().empty()) {
            cc.error("name", "must not be empty");
            return nullptr;
          }
          return std::make_unique<RuleSetExit>();
        });

  r.add(RuleSpec{"FailSafePoint",
                 group,
                 "Runs the nodes under `ok`; when any of them (at any depth, including nested "
                 "rule sets) fails with an error, the rest of `ok` is abandoned, the error "
                 "message is stored in `error_variable` and the nodes under `failed` run "
                 "instead, so the request does not fail. Changes made before the error are "
                 "kept.",
                 {param("error_variable", ParamType::Variable, false, Value("FAILSAFE_ERROR"),
                        "The variable that receives the error message.")},
                 {"ok", "failed"}},
        [](CompileContext& cc) -> std::unique_ptr<Rule> {
          return std::make_unique<FailSafePoint>(cc.params()["error_variable"].slot());
        });

  r.add(RuleSpec{"ForEach",
                 group,
                 "Runs the nodes under `each` once per element of `list`, with `item` set to "
                 "the element and `index` to its position (0, 1, ...). For a map, `item` is "
                 "each value and `index` its key. Null runs no iteration; any other type is an "
                 "error, and so is a list longer than `max_items`. Stops early when a rule "
                 "completes the request; then runs `done`.",
                 {param("list", ParamType::Any, true, Value(),
                        "The list or map to walk: `${ITEMS}`."),
                  param("item", ParamType::Variable, false, Value("ITEM"),
                        "The variable that holds the current element."),
                  param("index", ParamType::Variable, false, Value("INDEX"),
                        "The variable that holds the current position or key."),
                  param("max_items", ParamType::Number, false, Value(10000),
                        "The most elements allowed; a longer list fails the request.")},
                 {"each", "done"}},
        [](CompileContext& cc) -> std::unique_ptr<Rule> {
          const Params& p = cc.params();
          const Param& max = p["max_items"];
          double constant_max = -1;
          if (max.is_constant()) {
            bool ok = false;
            double d = max.constant_value().to_number(&ok);
            if (!ok || d < 0 || std::isnan(d)) {
              cc.error("max_items", "must be a number of 0 or more, got '" +
                                        max.constant_value().to_text() + "'");
              return nullptr;
            }
            constant_max = d;
          }
          if (p["item"].slot() == p["index"].slot()) {
            cc.error("index", "must name another variable than item ('" + p["item"].name() + "')");
            return nullptr;
          }
          return std::make_unique<ForEach>(p["list"], p["item"].slot(), p["index"].slot(), max,
                                           constant_max);
        });

  r.add(RuleSpec{"Comment",
                 group,
                 "Does nothing and goes on to `next`. Use it to explain a part of a rule set "
                 "in the editor, or as a junction that several branches lead to.",
                 {param("text", ParamType::String, false, Value(""),
                        "The note shown in the editor.")},
                 {"next"}},
        [](CompileContext&) -> std::unique_ptr<Rule> { return std::make_unique<Comment>(); });

  r.add(RuleSpec{"SwitchMode",
                 group,
                 "Switches the agent to another mode, so that from the next request on the "
                 "mode's rule set (from `modes` in cap.json) runs instead of the entry rule "
                 "set; `default` (or an empty name) switches back. The current request goes "
                 "on to `next` unchanged. An unknown mode name is an error.",
                 {param("mode", ParamType::String, true, Value(),
                        "A mode name from cap.json `modes`, or `default`.")},
                 {"next"}},
        [](CompileContext& cc) -> std::unique_ptr<Rule> {
          const Param& mode = cc.params()["mode"];
          if (!mode.present()) return nullptr;
          const auto& known = cc.mode_names();
          if (mode.is_constant()) {
            std::string name = mode.constant_value().to_text();
            bool found = name.empty() || name == "default";
            for (auto& k : known) found = found || k == name;
            if (!found) {
              cc.error("mode", "unknown mode '" + name + "'; known modes: 'default'" +
                                   (known.empty() ? "" : ", " + join_quoted(known)));
              return nullptr;
            }
          }
          return std::make_unique<SwitchMode>(mode, known);
        });
}

}  // namespace cap::rules
