// The sandboxed Lua 5.4 host that runs extension rules.
//
// Each installed extension version is an Image: its manifest and scripts, immutable and
// shared. A thread that runs one of its rules gets its own Lua state for that Image (made on
// first use, kept while the Image lives), so states are never shared between threads and
// no lock is taken per execution.
//
// The sandbox: only the base, string, table, math, utf8 and coroutine libraries; no io, os,
// package, debug, require, dofile, loadfile, print or string.dump; `load` takes text chunks
// only (bytecode is refused); collectgarbage answers "count" only. Each execution runs under
// a budget of VM instructions (a count hook) and each state under a memory cap (its
// allocator). A script that exceeds either, raises an error, or returns a chain point the
// rule does not have makes the rule throw EvalError naming the extension, the rule and the
// script line: the rule's error path (a FailSafePoint, else the request fails with 500),
// never a crash.
//
// Scripts reach the request and the host only through `ctx` (DESIGN §3): ctx:get(name),
// ctx:set(name, value), ctx:delete(name), ctx:log(level, text), ctx:vault(name [, field])
// (credentials the manifest declares only), ctx:http{url=, method=, headers=, body=,
// timeout_ms=}, ctx:sql(db, sql, args), ctx:read(path), ctx:write(path, data [, append]).
// ctx:http and ctx:sql wait, so only rules declaring "waits": true may call them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "cap/rule.h"
#include "ext/manifest.h"

namespace cap::ext {

/// One extension version, ready to run. Immutable and shared by every thread.
class Image {
 public:
  /// `scripts`: for each rule of `manifest`, in order, its Lua source.
  Image(Manifest manifest, std::vector<std::string> scripts, std::string sha256);
  const Manifest& manifest() const { return manifest_; }
  const std::string& script(size_t rule) const { return scripts_[rule]; }
  /// The sha256 of the package it came from.
  const std::string& sha256() const { return sha256_; }
  /// Unique for the life of the process.
  uint64_t id() const { return id_; }

 private:
  Manifest manifest_;
  std::vector<std::string> scripts_;
  std::string sha256_;
  uint64_t id_;
};

/// Compiles `source` as a text chunk named `chunkname` without running it. False with
/// `error` ("rules/x.lua:3: ...") when it does not compile or is bytecode.
bool check_script(std::string_view source, const std::string& chunkname, std::string* error);

/// The factory of rule number `rule` of `image`: nodes compile their parameters as for
/// native rules; the made Rule keeps the Image alive.
RuleFactory rule_factory(std::shared_ptr<const Image> image, size_t rule);

/// How many Lua states the calling thread holds (for tests: states of Images no longer
/// used are closed on the next state creation of that thread).
size_t thread_state_count();

}  // namespace cap::ext
