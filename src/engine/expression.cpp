// The expression language: Pratt parser, constant folding, evaluation, templates.
// The built-in functions (len, contains, matches, ...) are in functions.cpp, the lexer in
// expression_lexer.cpp.
//
// A compiled expression is a tree of immutable nodes. Each node's eval returns a reference
// to a value that outlives the call (a variable, a constant, a static) or to the `scratch`
// it was handed; children get scratch values of the parent's own frame, so a result that
// points into one of those is copied up before the frame ends.
#include "cap/expression.h"

#include <re2/re2.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>

#include "expression_lexer.h"
#include "functions.h"

namespace cap {

namespace detail {

/// A node of a compiled expression. Immutable after compilation; shared by all threads.
class ExprNode {
 public:
  virtual ~ExprNode() = default;
  /// Evaluates; see the file comment for where the returned reference may point.
  virtual const Value& eval(EvalContext& ctx, Value& scratch) const = 0;
  /// The value of a constant node, else nullptr.
  virtual const Value* constant_value() const { return nullptr; }
  /// The slot of a variable node, else -1.
  virtual int64_t slot() const { return -1; }
  virtual void children(std::vector<const ExprNode*>&) const {}
  int depth = 1;  // height of the subtree, bounded at compile time
};

const Value kNullValue;
const Value kTrueValue(true);
const Value kFalseValue(false);

}  // namespace detail

namespace {

using detail::boolean;
using detail::CompileError;
using detail::ExprNode;
using detail::kFalseValue;
using detail::kNullValue;
using detail::kTrueValue;
using detail::Lexer;
using detail::Tok;
using detail::Token;
namespace fn = detail::fn;
using NodePtr = std::unique_ptr<ExprNode>;

constexpr int kMaxDepth = 256;

// ---------------------------------------------------------------------------------------
// Nodes

class ConstNode final : public ExprNode {
 public:
  explicit ConstNode(Value v) : v_(std::move(v)) {}
  const Value& eval(EvalContext&, Value&) const override { return v_; }
  const Value* constant_value() const override { return &v_; }

 private:
  Value v_;
};

class VarNode final : public ExprNode {
 public:
  explicit VarNode(uint32_t slot) : slot_(slot) {}
  const Value& eval(EvalContext& ctx, Value&) const override { return ctx.vars.get(slot_); }
  int64_t slot() const override { return slot_; }

 private:
  uint32_t slot_;
};

class NotNode final : public ExprNode {
 public:
  explicit NotNode(NodePtr x) : x_(std::move(x)) {}
  const Value& eval(EvalContext& ctx, Value&) const override {
    Value s;
    return boolean(!x_->eval(ctx, s).truthy());
  }
  void children(std::vector<const ExprNode*>& out) const override { out.push_back(x_.get()); }

 private:
  NodePtr x_;
};

class LogicNode final : public ExprNode {
 public:
  LogicNode(bool is_and, NodePtr l, NodePtr r) : and_(is_and), l_(std::move(l)), r_(std::move(r)) {}
  const Value& eval(EvalContext& ctx, Value&) const override {
    Value s;
    bool left = l_->eval(ctx, s).truthy();
    if (and_ ? !left : left) return boolean(left);
    Value t;
    return boolean(r_->eval(ctx, t).truthy());
  }
  void children(std::vector<const ExprNode*>& out) const override {
    out.push_back(l_.get());
    out.push_back(r_.get());
  }

 private:
  bool and_;
  NodePtr l_, r_;
};

enum class CmpOp { Eq, Ne, Lt, Le, Gt, Ge };

class CompareNode final : public ExprNode {
 public:
  CompareNode(CmpOp op, NodePtr l, NodePtr r) : op_(op), l_(std::move(l)), r_(std::move(r)) {}
  const Value& eval(EvalContext& ctx, Value&) const override {
    Value ls, rs;
    const Value& l = l_->eval(ctx, ls);
    const Value& r = r_->eval(ctx, rs);
    switch (op_) {
      case CmpOp::Eq:
        return boolean(l.equals(r));
      case CmpOp::Ne:
        return boolean(!l.equals(r));
      default:
        break;
    }
    bool ok = false;
    int c = l.compare(r, &ok);
    if (!ok) return kFalseValue;  // values that do not order compare false
    switch (op_) {
      case CmpOp::Lt:
        return boolean(c < 0);
      case CmpOp::Le:
        return boolean(c <= 0);
      case CmpOp::Gt:
        return boolean(c > 0);
      default:
        return boolean(c >= 0);
    }
  }
  void children(std::vector<const ExprNode*>& out) const override {
    out.push_back(l_.get());
    out.push_back(r_.get());
  }

 private:
  CmpOp op_;
  NodePtr l_, r_;
};

enum class ArithOp { Add, Sub, Mul, Div, Mod };

const char* arith_symbol(ArithOp op) {
  switch (op) {
    case ArithOp::Add:
      return "+";
    case ArithOp::Sub:
      return "-";
    case ArithOp::Mul:
      return "*";
    case ArithOp::Div:
      return "/";
    case ArithOp::Mod:
      return "%";
  }
  return "?";
}

class ArithNode final : public ExprNode {
 public:
  ArithNode(ArithOp op, NodePtr l, NodePtr r) : op_(op), l_(std::move(l)), r_(std::move(r)) {}
  const Value& eval(EvalContext& ctx, Value& scratch) const override {
    Value ls, rs;
    const Value& l = l_->eval(ctx, ls);
    const Value& r = r_->eval(ctx, rs);
    if (op_ == ArithOp::Add) {
      if (l.is_string() || r.is_string()) {
        std::string s;
        l.append_text(s);
        r.append_text(s);
        scratch = Value(std::move(s));
        return scratch;
      }
      if (l.is_list() && r.is_list()) {
        List joined;
        joined.reserve(l.as_list().size() + r.as_list().size());
        joined.insert(joined.end(), l.as_list().begin(), l.as_list().end());
        joined.insert(joined.end(), r.as_list().begin(), r.as_list().end());
        scratch = Value(std::move(joined));
        return scratch;
      }
    }
    double x = 0, y = 0;
    if (!fn::arith_operand(l, &x) || !fn::arith_operand(r, &y))
      throw EvalError(std::string("cannot apply '") + arith_symbol(op_) + "' to " +
                      type_name(l.type()) + " and " + type_name(r.type()));
    double v = 0;
    switch (op_) {
      case ArithOp::Add:
        v = x + y;
        break;
      case ArithOp::Sub:
        v = x - y;
        break;
      case ArithOp::Mul:
        v = x * y;
        break;
      case ArithOp::Div:
        if (y == 0) throw EvalError("division by zero");
        v = x / y;
        break;
      case ArithOp::Mod:
        if (y == 0) throw EvalError("division by zero");
        v = std::fmod(x, y);
        break;
    }
    scratch = Value(v);
    return scratch;
  }
  void children(std::vector<const ExprNode*>& out) const override {
    out.push_back(l_.get());
    out.push_back(r_.get());
  }

 private:
  ArithOp op_;
  NodePtr l_, r_;
};

class NegNode final : public ExprNode {
 public:
  explicit NegNode(NodePtr x) : x_(std::move(x)) {}
  const Value& eval(EvalContext& ctx, Value& scratch) const override {
    Value s;
    const Value& v = x_->eval(ctx, s);
    double d = 0;
    if (!fn::arith_operand(v, &d))
      throw EvalError(std::string("cannot negate a ") + type_name(v.type()));
    scratch = Value(-d);
    return scratch;
  }
  void children(std::vector<const ExprNode*>& out) const override { out.push_back(x_.get()); }

 private:
  NodePtr x_;
};

// Indexing and member access share the lookup; `held` is the parent's scratch for the
// container, so an element found inside it is copied out before that scratch dies.
const Value& lookup_result(const Value* found, const Value& container, const Value& held,
                           Value& scratch) {
  if (found == &scratch) return scratch;
  if (&container == &held && found != &kNullValue) {
    scratch = *found;
    return scratch;
  }
  return *found;
}

const Value* map_member(const Value& obj, std::string_view key) {
  const Value* v = obj.as_map().find(key);
  return v ? v : &kNullValue;
}

class IndexNode final : public ExprNode {
 public:
  IndexNode(NodePtr obj, NodePtr key) : obj_(std::move(obj)), key_(std::move(key)) {}
  const Value& eval(EvalContext& ctx, Value& scratch) const override {
    Value os, ks;
    const Value& obj = obj_->eval(ctx, os);
    if (obj.is_null()) return kNullValue;
    const Value& key = key_->eval(ctx, ks);
    return lookup_result(find(obj, key, scratch), obj, os, scratch);
  }
  void children(std::vector<const ExprNode*>& out) const override {
    out.push_back(obj_.get());
    out.push_back(key_.get());
  }

 private:
  // The element, &kNullValue when missing, or &scratch holding a computed one.
  static const Value* find(const Value& obj, const Value& key, Value& scratch) {
    switch (obj.type()) {
      case Type::List:
      case Type::String: {
        double d = 0;
        if (!fn::arith_operand(key, &d))
          throw EvalError(std::string("a ") + type_name(obj.type()) +
                          " index must be a number, got " + type_name(key.type()));
        if (!(d >= 0) || d != std::floor(d)) return &kNullValue;
        if (obj.is_list()) {
          const List& l = obj.as_list();
          return d < static_cast<double>(l.size()) ? &l[static_cast<size_t>(d)] : &kNullValue;
        }
        const std::string& s = obj.as_string();
        if (d >= static_cast<double>(s.size())) return &kNullValue;
        scratch = Value(std::string(1, s[static_cast<size_t>(d)]));
        return &scratch;
      }
      case Type::Map: {
        if (key.is_string()) return map_member(obj, key.as_string());
        if (key.is_number()) {
          std::string k;
          key.append_text(k);
          return map_member(obj, k);
        }
        throw EvalError(std::string("a map key must be a string, got ") + type_name(key.type()));
      }
      default:
        throw EvalError(std::string("cannot index a ") + type_name(obj.type()));
    }
  }

  NodePtr obj_, key_;
};

class MemberNode final : public ExprNode {
 public:
  MemberNode(NodePtr obj, std::string name) : obj_(std::move(obj)), name_(std::move(name)) {}
  const Value& eval(EvalContext& ctx, Value& scratch) const override {
    Value os;
    const Value& obj = obj_->eval(ctx, os);
    if (obj.is_null()) return kNullValue;
    if (!obj.is_map())
      throw EvalError("cannot read member '" + name_ + "' of a " + type_name(obj.type()));
    return lookup_result(map_member(obj, name_), obj, os, scratch);
  }
  void children(std::vector<const ExprNode*>& out) const override { out.push_back(obj_.get()); }

 private:
  NodePtr obj_;
  std::string name_;
};

class ListNode final : public ExprNode {
 public:
  explicit ListNode(std::vector<NodePtr> items) : items_(std::move(items)) {}
  const Value& eval(EvalContext& ctx, Value& scratch) const override {
    List l;
    l.reserve(items_.size());
    for (const auto& item : items_) {
      Value s;
      const Value& v = item->eval(ctx, s);
      l.push_back(&v == &s ? std::move(s) : v);
    }
    scratch = Value(std::move(l));
    return scratch;
  }
  void children(std::vector<const ExprNode*>& out) const override {
    for (const auto& i : items_) out.push_back(i.get());
  }

 private:
  std::vector<NodePtr> items_;
};

class MapNode final : public ExprNode {
 public:
  MapNode(std::vector<std::string> keys, std::vector<NodePtr> items)
      : keys_(std::move(keys)), items_(std::move(items)) {}
  const Value& eval(EvalContext& ctx, Value& scratch) const override {
    Map m;
    m.reserve(items_.size());
    for (size_t i = 0; i < items_.size(); ++i) {
      Value s;
      const Value& v = items_[i]->eval(ctx, s);
      m.set(keys_[i], &v == &s ? std::move(s) : v);
    }
    scratch = Value(std::move(m));
    return scratch;
  }
  void children(std::vector<const ExprNode*>& out) const override {
    for (const auto& i : items_) out.push_back(i.get());
  }

 private:
  std::vector<std::string> keys_;
  std::vector<NodePtr> items_;
};

class CallNode final : public ExprNode {
 public:
  CallNode(const fn::Function* f, std::vector<NodePtr> args, std::shared_ptr<const RE2> re)
      : f_(f), args_(std::move(args)), re_(std::move(re)) {}
  const Value& eval(EvalContext& ctx, Value& scratch) const override {
    Value tmp[fn::kMaxArgs];
    const Value* a[fn::kMaxArgs] = {};
    size_t n = args_.size();
    for (size_t i = 0; i < n; ++i) a[i] = &args_[i]->eval(ctx, tmp[i]);
    fn::Call call{a, n, ctx, scratch, re_.get()};
    const Value& r = f_->impl(call);
    // A function may hand back one of its arguments; keep it alive past this frame.
    for (size_t i = 0; i < n; ++i) {
      if (&r == &tmp[i]) {
        scratch = std::move(tmp[i]);
        return scratch;
      }
    }
    return r;
  }
  void children(std::vector<const ExprNode*>& out) const override {
    for (const auto& i : args_) out.push_back(i.get());
  }

 private:
  const fn::Function* f_;
  std::vector<NodePtr> args_;
  std::shared_ptr<const RE2> re_;
};

// ---------------------------------------------------------------------------------------
// Parser

enum Prec { kOr = 1, kAnd = 2, kNot = 3, kCompare = 4, kAdd = 5, kMul = 6, kUnary = 7 };

class Parser {
 public:
  Parser(std::string_view src, size_t base, CompileEnv& env)
      : lex_(src, base),
        base_(base),
        env_(env),
        fold_vars_(fold_symbols_),
        fold_ctx_{fold_vars_, fold_services_} {
    cur_ = lex_.next();
  }

  NodePtr parse() {
    if (cur_.kind == Tok::End) fail(cur_.pos, "empty expression");
    NodePtr n = expression(0);
    if (cur_.kind != Tok::End)
      fail(cur_.pos, "unexpected " + describe(cur_) + " after the end of the expression");
    return n;
  }

 private:
  [[noreturn]] void fail(size_t pos, std::string msg) const {
    throw CompileError{base_ + pos + 1, std::move(msg)};
  }

  static std::string describe(const Token& t) {
    if (t.kind == Tok::End) return "end of expression";
    std::string_view s = t.text.substr(0, 40);
    return "'" + std::string(s) + (t.text.size() > 40 ? "...'" : "'");
  }

  void advance() { cur_ = lex_.next(); }

  void expect(Tok k, const char* what) {
    if (cur_.kind != k) {
      if (cur_.kind == Tok::End)
        fail(cur_.pos, std::string("expected ") + what + " before the end");
      fail(cur_.pos, std::string("expected ") + what + ", found " + describe(cur_));
    }
    advance();
  }

  bool is_word(std::string_view w) const { return cur_.kind == Tok::Name && cur_.text == w; }

  struct DepthGuard {
    Parser& p;
    DepthGuard(Parser& parser, size_t pos) : p(parser) {
      if (++p.depth_ > kMaxDepth)
        p.fail(pos, "expression is nested too deeply (more than " + std::to_string(kMaxDepth) +
                        " levels)");
    }
    ~DepthGuard() { --p.depth_; }
  };

  // Records the node's tree depth (bounded, so evaluation never recurses too far) and
  // folds it when its inputs are all constant and it is pure.
  NodePtr finish(NodePtr n, size_t pos, bool pure = true) {
    std::vector<const ExprNode*> kids;
    n->children(kids);
    int depth = 0;
    bool all_constant = true;
    for (const ExprNode* k : kids) {
      depth = std::max(depth, k->depth);
      if (!k->constant_value()) all_constant = false;
    }
    n->depth = depth + 1;
    if (n->depth > kMaxDepth)
      fail(pos,
           "expression is nested too deeply (more than " + std::to_string(kMaxDepth) + " levels)");
    if (!pure || !all_constant) return n;
    try {
      Value scratch;
      const Value& v = n->eval(fold_ctx_, scratch);
      Value folded = &v == &scratch ? std::move(scratch) : v;
      auto c = std::make_unique<ConstNode>(std::move(folded));
      c->depth = 1;
      return c;
    } catch (const EvalError&) {
      return n;  // keep it: the error surfaces when (and if) it is evaluated
    }
  }

  static bool binary_op(const Token& t, int* prec) {
    switch (t.kind) {
      case Tok::OrOr:
        *prec = kOr;
        return true;
      case Tok::AndAnd:
        *prec = kAnd;
        return true;
      case Tok::Eq:
      case Tok::Ne:
      case Tok::Lt:
      case Tok::Le:
      case Tok::Gt:
      case Tok::Ge:
        *prec = kCompare;
        return true;
      case Tok::Plus:
      case Tok::Minus:
        *prec = kAdd;
        return true;
      case Tok::Star:
      case Tok::Slash:
      case Tok::Percent:
        *prec = kMul;
        return true;
      case Tok::Name:
        if (t.text == "or") {
          *prec = kOr;
          return true;
        }
        if (t.text == "and") {
          *prec = kAnd;
          return true;
        }
        return false;
      default:
        return false;
    }
  }

  NodePtr expression(int min_prec) {
    DepthGuard guard(*this, cur_.pos);
    NodePtr left = prefix();
    bool last_was_compare = false;
    while (true) {
      int prec = 0;
      if (!binary_op(cur_, &prec) || prec < min_prec) break;
      Token op = cur_;
      if (prec == kCompare && last_was_compare)
        fail(op.pos, "comparisons cannot be chained; combine them with 'and'");
      advance();
      NodePtr right = expression(prec + 1);
      left = binary(op, std::move(left), std::move(right));
      last_was_compare = prec == kCompare;
    }
    return left;
  }

  NodePtr binary(const Token& op, NodePtr l, NodePtr r) {
    NodePtr n;
    switch (op.kind) {
      case Tok::Eq:
        n = std::make_unique<CompareNode>(CmpOp::Eq, std::move(l), std::move(r));
        break;
      case Tok::Ne:
        n = std::make_unique<CompareNode>(CmpOp::Ne, std::move(l), std::move(r));
        break;
      case Tok::Lt:
        n = std::make_unique<CompareNode>(CmpOp::Lt, std::move(l), std::move(r));
        break;
      case Tok::Le:
        n = std::make_unique<CompareNode>(CmpOp::Le, std::move(l), std::move(r));
        break;
      case Tok::Gt:
        n = std::make_unique<CompareNode>(CmpOp::Gt, std::move(l), std::move(r));
        break;
      case Tok::Ge:
        n = std::make_unique<CompareNode>(CmpOp::Ge, std::move(l), std::move(r));
        break;
      case Tok::Plus:
        n = std::make_unique<ArithNode>(ArithOp::Add, std::move(l), std::move(r));
        break;
      case Tok::Minus:
        n = std::make_unique<ArithNode>(ArithOp::Sub, std::move(l), std::move(r));
        break;
      case Tok::Star:
        n = std::make_unique<ArithNode>(ArithOp::Mul, std::move(l), std::move(r));
        break;
      case Tok::Slash:
        n = std::make_unique<ArithNode>(ArithOp::Div, std::move(l), std::move(r));
        break;
      case Tok::Percent:
        n = std::make_unique<ArithNode>(ArithOp::Mod, std::move(l), std::move(r));
        break;
      case Tok::AndAnd:
        n = std::make_unique<LogicNode>(true, std::move(l), std::move(r));
        break;
      case Tok::OrOr:
        n = std::make_unique<LogicNode>(false, std::move(l), std::move(r));
        break;
      default:  // the words 'and' / 'or'
        n = std::make_unique<LogicNode>(op.text == "and", std::move(l), std::move(r));
        break;
    }
    return finish(std::move(n), op.pos);
  }

  NodePtr prefix() {
    size_t pos = cur_.pos;
    if (cur_.kind == Tok::Bang || is_word("not")) {
      advance();
      NodePtr x = expression(kCompare);
      return finish(std::make_unique<NotNode>(std::move(x)), pos);
    }
    if (cur_.kind == Tok::Minus) {
      advance();
      NodePtr x = expression(kUnary);
      return finish(std::make_unique<NegNode>(std::move(x)), pos);
    }
    return postfix(primary());
  }

  NodePtr postfix(NodePtr n) {
    while (true) {
      size_t pos = cur_.pos;
      if (cur_.kind == Tok::LBracket) {
        advance();
        NodePtr key = expression(0);
        expect(Tok::RBracket, "']'");
        n = finish(std::make_unique<IndexNode>(std::move(n), std::move(key)), pos);
      } else if (cur_.kind == Tok::Dot) {
        advance();
        if (cur_.kind != Tok::Name) fail(cur_.pos, "expected a name after '.'");
        std::string name(cur_.text);
        advance();
        n = finish(std::make_unique<MemberNode>(std::move(n), std::move(name)), pos);
      } else if (cur_.kind == Tok::LParen) {
        fail(pos, "only built-in functions can be called");
      } else {
        return n;
      }
    }
  }

  NodePtr constant(Value v) { return std::make_unique<ConstNode>(std::move(v)); }

  NodePtr primary() {
    Token t = cur_;
    switch (t.kind) {
      case Tok::Number:
        advance();
        return constant(Value(t.num));
      case Tok::String:
        advance();
        return constant(Value(std::move(t.str)));
      case Tok::LParen: {
        advance();
        NodePtr n = expression(0);
        expect(Tok::RParen, "')'");
        return n;
      }
      case Tok::LBracket:
        return list();
      case Tok::LBrace:
        return map();
      case Tok::Name:
        break;
      case Tok::End:
        fail(t.pos, "unexpected end of expression");
      default:
        fail(t.pos, "unexpected " + describe(t));
    }
    if (t.text == "null") {
      advance();
      return constant(Value());
    }
    if (t.text == "true") {
      advance();
      return constant(Value(true));
    }
    if (t.text == "false") {
      advance();
      return constant(Value(false));
    }
    if (t.text == "and" || t.text == "or" || t.text == "not")
      fail(t.pos, "unexpected " + describe(t));
    advance();
    if (cur_.kind == Tok::LParen) return call(t);
    return std::make_unique<VarNode>(env_.symbols.intern(t.text));
  }

  NodePtr list() {
    size_t pos = cur_.pos;
    advance();
    std::vector<NodePtr> items;
    if (cur_.kind != Tok::RBracket) {
      while (true) {
        items.push_back(expression(0));
        if (cur_.kind == Tok::Comma) {
          advance();
          continue;
        }
        expect(Tok::RBracket, "',' or ']'");
        break;
      }
    } else {
      advance();
    }
    return finish(std::make_unique<ListNode>(std::move(items)), pos);
  }

  NodePtr map() {
    size_t pos = cur_.pos;
    advance();
    std::vector<std::string> keys;
    std::vector<NodePtr> items;
    if (cur_.kind != Tok::RBrace) {
      while (true) {
        if (cur_.kind != Tok::String) fail(cur_.pos, "a map key must be a quoted string");
        keys.push_back(std::move(cur_.str));
        advance();
        expect(Tok::Colon, "':'");
        items.push_back(expression(0));
        if (cur_.kind == Tok::Comma) {
          advance();
          continue;
        }
        expect(Tok::RBrace, "',' or '}'");
        break;
      }
    } else {
      advance();
    }
    return finish(std::make_unique<MapNode>(std::move(keys), std::move(items)), pos);
  }

  NodePtr call(const Token& name) {
    const fn::Function* f = fn::find(name.text);
    if (!f) fail(name.pos, "unknown function '" + std::string(name.text) + "'");
    advance();  // '('
    std::vector<NodePtr> args;
    std::vector<size_t> arg_pos;
    if (cur_.kind != Tok::RParen) {
      while (true) {
        arg_pos.push_back(cur_.pos);
        args.push_back(expression(0));
        if (cur_.kind == Tok::Comma) {
          advance();
          continue;
        }
        expect(Tok::RParen, "',' or ')'");
        break;
      }
    } else {
      advance();
    }
    if (args.size() < f->min_args || args.size() > f->max_args)
      fail(name.pos, fn::arity_message(*f, args.size()));
    std::shared_ptr<const RE2> re;
    if (f->regex_arg >= 0) {
      auto ra = static_cast<size_t>(f->regex_arg);
      const Value* pattern = args[ra]->constant_value();
      if (pattern && pattern->is_string()) {
        std::string err;
        re = fn::compile_regex(pattern->as_string(), &err);
        if (!re) fail(arg_pos[ra], "invalid regular expression: " + err);
        if (f->rewrite_arg >= 0) {
          const Value* rw = args[static_cast<size_t>(f->rewrite_arg)]->constant_value();
          if (rw && rw->is_string() && !re->CheckRewriteString(rw->as_string(), &err))
            fail(arg_pos[static_cast<size_t>(f->rewrite_arg)], "invalid replacement: " + err);
        }
      }
    }
    return finish(std::make_unique<CallNode>(f, std::move(args), std::move(re)), name.pos, f->pure);
  }

  Lexer lex_;
  size_t base_;
  CompileEnv& env_;
  Token cur_;
  int depth_ = 0;
  // Constant folding evaluates nodes that read no variables; they still need a context.
  Symbols fold_symbols_;
  Variables fold_vars_;
  HostServices fold_services_;
  EvalContext fold_ctx_;
};

}  // namespace

// ---------------------------------------------------------------------------------------
// Expression

const Value& Expression::eval(EvalContext& ctx, Value& scratch) const {
  if (!root_) return kNullValue;
  return root_->eval(ctx, scratch);
}

bool Expression::is_constant() const { return root_ && root_->constant_value() != nullptr; }

int64_t Expression::variable_slot() const { return root_ ? root_->slot() : -1; }

std::optional<Expression> compile_expression(std::string_view source, CompileEnv& env,
                                             std::string* error) {
  try {
    Parser p(source, 0, env);
    Expression e;
    e.root_ = p.parse();
    return e;
  } catch (const CompileError& ce) {
    if (error) *error = "column " + std::to_string(ce.column) + ": " + ce.message;
    return std::nullopt;
  }
}

// ---------------------------------------------------------------------------------------
// Templates

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// The end of the ${...} that opens at `open` (the index of '$'): the index of its closing
// brace, skipping braces inside quoted strings and nested map literals; npos when none.
size_t template_close(std::string_view s, size_t open) {
  int depth = 0;
  char quote = 0;
  for (size_t j = open + 2; j < s.size(); ++j) {
    char c = s[j];
    if (quote) {
      if (c == '\\')
        ++j;
      else if (c == quote)
        quote = 0;
      continue;
    }
    if (c == '\'' || c == '"')
      quote = c;
    else if (c == '{')
      ++depth;
    else if (c == '}') {
      if (depth == 0) return j;
      --depth;
    }
  }
  return std::string_view::npos;
}

std::string vault_unavailable(std::string_view name) {
  return "vault credential '" + std::string(name) + "' is not available";
}

// Appends a vault secret. The error names the credential, never its value.
void append_vault(EvalContext& ctx, std::string_view name, std::string_view field,
                  std::string& out) {
  if (!ctx.services.vault) throw EvalError(vault_unavailable(name));
  std::optional<std::string> secret = ctx.services.vault->get(name, field);
  if (!secret) throw EvalError(vault_unavailable(name));
  out += *secret;
}

// An error from compiling the inside of ${...}, with its column moved to the template's.
std::string shift_column(const std::string& error, size_t offset) {
  constexpr std::string_view kPrefix = "column ";
  if (error.compare(0, kPrefix.size(), kPrefix) != 0) return error;
  size_t column = 0;
  const char* begin = error.data() + kPrefix.size();
  auto [end, ec] = std::from_chars(begin, error.data() + error.size(), column);
  if (ec != std::errc()) return error;
  return "column " + std::to_string(column + offset) +
         std::string(end, error.data() + error.size());
}

// Evaluates an expression known to be constant.
Value constant_value(const Expression& e) {
  Symbols none;
  Variables vars(none);
  HostServices services;
  EvalContext ctx{vars, services};
  Value scratch;
  const Value& v = e.eval(ctx, scratch);
  return &v == &scratch ? std::move(scratch) : v;
}

}  // namespace

const Value& Template::eval(EvalContext& ctx, Value& scratch) const {
  if (constant_only_) return constant_;
  if (single_) {
    const Segment& s = segments_.front();
    if (s.expr.valid()) return s.expr.eval(ctx, scratch);
    std::string secret;
    append_vault(ctx, s.vault_name, s.vault_field, secret);
    scratch = Value(std::move(secret));
    return scratch;
  }
  std::string out;
  render(ctx, out);
  scratch = Value(std::move(out));
  return scratch;
}

void Template::render(EvalContext& ctx, std::string& out) const {
  if (constant_only_) {
    constant_.append_text(out);
    return;
  }
  for (const Segment& s : segments_) {
    if (s.expr.valid()) {
      Value scratch;
      s.expr.eval(ctx, scratch).append_text(out);
    } else if (!s.vault_name.empty()) {
      append_vault(ctx, s.vault_name, s.vault_field, out);
    } else {
      out += s.literal;
    }
  }
}

bool Template::is_constant() const { return constant_only_; }

std::optional<Template> compile_template(std::string_view source, CompileEnv& env,
                                         std::string* error) {
  auto fail = [&](size_t column, std::string msg) -> std::optional<Template> {
    if (error) *error = "column " + std::to_string(column) + ": " + msg;
    return std::nullopt;
  };
  Template t;
  std::string literal;
  auto flush = [&] {
    if (literal.empty()) return;
    Template::Segment seg;
    seg.literal = std::move(literal);
    literal.clear();
    t.segments_.push_back(std::move(seg));
  };
  size_t parts = 0;  // ${...} parts seen
  bool whole = false;
  size_t i = 0;
  while (i < source.size()) {
    size_t dollar = source.find("${", i);
    if (dollar == std::string_view::npos) {
      literal.append(source.substr(i));
      break;
    }
    literal.append(source.substr(i, dollar - i));
    size_t close = template_close(source, dollar);
    if (close == std::string_view::npos) return fail(dollar + 1, "unterminated ${");
    ++parts;
    whole = dollar == 0 && close + 1 == source.size();
    std::string_view inner = source.substr(dollar + 2, close - dollar - 2);
    std::string_view body = trim_spaces(inner);
    if (body.empty()) return fail(dollar + 1, "empty ${}");
    if (body.substr(0, 4) == "env:") {
      std::string_view name = trim_spaces(body.substr(4));
      if (name.empty()) return fail(dollar + 1, "missing environment variable name after 'env:'");
      std::optional<std::string> value;
      if (env.getenv) {
        value = env.getenv(name);
      } else if (const char* v = std::getenv(std::string(name).c_str())) {
        value = std::string(v);
      }
      if (!value)
        return fail(dollar + 1, "environment variable " + std::string(name) + " is not set");
      literal += *value;
    } else if (body.substr(0, 6) == "vault:") {
      std::string_view ref = trim_spaces(body.substr(6));
      size_t dot = ref.find('.');
      std::string_view name = trim_spaces(ref.substr(0, dot));
      std::string_view field =
          dot == std::string_view::npos ? std::string_view() : trim_spaces(ref.substr(dot + 1));
      if (name.empty()) return fail(dollar + 1, "missing vault credential name after 'vault:'");
      flush();
      Template::Segment seg;
      seg.vault_name = std::string(name);
      seg.vault_field = std::string(field);
      t.segments_.push_back(std::move(seg));
    } else {
      std::string expr_error;
      std::optional<Expression> e = compile_expression(inner, env, &expr_error);
      if (!e) {
        if (error) *error = shift_column(expr_error, dollar + 2);
        return std::nullopt;
      }
      if (e->is_constant() && !whole) {
        // Render it now: the template keeps only literal text for it.
        constant_value(*e).append_text(literal);
      } else {
        flush();
        Template::Segment seg;
        seg.expr = std::move(*e);
        t.segments_.push_back(std::move(seg));
      }
    }
    i = close + 1;
  }
  flush();
  t.single_ = parts == 1 && whole && t.segments_.size() == 1 && t.segments_[0].literal.empty();
  bool constant = true;
  for (const auto& s : t.segments_)
    if (!s.vault_name.empty() || (s.expr.valid() && !s.expr.is_constant())) constant = false;
  if (constant) {
    t.constant_only_ = true;
    if (t.single_) {
      t.constant_ = constant_value(t.segments_[0].expr);
    } else {
      std::string text;
      for (const auto& s : t.segments_) text += s.literal;
      t.constant_ = Value(std::move(text));
    }
  }
  return t;
}

std::vector<std::string> function_names() { return fn::names(); }

}  // namespace cap
