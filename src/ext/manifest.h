// extension.json: what an extension declares (DESIGN §3, "Extensions").
//
//   { "name": "demo", "version": "1.0.0", "cap": ">=0.1", "description": "...",
//     "rules": [ { "name": "Threshold", "group": "Demo", "doc": "...",
//                  "params": [ { "name": "value", "type": "number", "required": true } ],
//                  "chain_points": ["above", "equal", "below"],
//                  "script": "rules/threshold.lua", "waits": false } ],
//     "credentials": [ { "name": "geo-api", "fields": ["key"], "doc": "..." } ],
//     "limits": { "instructions": 10000000, "memory_mb": 32 },
//     "sha256": { "rules/threshold.lua": "<hex>" } }
//
// `sha256` names every other member of the package with its hash (capctl ext pack writes
// it). `waits` must be true for a rule whose script calls ctx:http or ctx:sql: such rules
// run off the agent's event loops. Parsing reports every problem at once, each naming the
// field ("rules[0].params[1].type: ...").
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "cap/rule.h"

namespace cap::ext {

/// Per-execution limits of an extension's scripts.
struct Limits {
  uint64_t instructions = 10'000'000;   // Lua VM instructions per execution
  uint64_t memory_bytes = 32ull << 20;  // per Lua state (one per extension and thread)
};
/// The most a manifest may ask for.
inline constexpr uint64_t kMaxInstructions = 1'000'000'000;
inline constexpr uint64_t kMaxMemoryBytes = 256ull << 20;

struct RuleDef {
  RuleSpec spec;       // name, group, doc, params, chain points, may_wait, extension
  std::string script;  // the member holding the rule's Lua script
};

struct CredentialDef {
  std::string name, doc;
  std::vector<std::string> fields;
};

struct Manifest {
  std::string name, version, cap, description;
  std::vector<RuleDef> rules;
  std::vector<CredentialDef> credentials;
  Limits limits;
  std::map<std::string, std::string> sha256;  // member path -> lower-case hex
};

/// Parses extension.json. Returns false with every problem in `errors` (each prefixed by
/// the field it concerns).
bool parse_manifest(std::string_view json, Manifest* out, std::vector<std::string>* errors);

/// The manifest as JSON, with `sha256` as given (capctl ext pack writes it this way).
std::string manifest_json(std::string_view original_json,
                          const std::map<std::string, std::string>& sha256);

/// An extension name: 1 to 64 of a-z 0-9 - _ . starting with a letter or digit (it names
/// the file NAME.zip in CAP_HOME/extensions).
bool valid_extension_name(std::string_view name);

/// Versions are MAJOR.MINOR.PATCH numbers (MINOR and PATCH may be left out: "1.2" is
/// 1.2.0). Returns false when `v` is not one.
bool parse_version(std::string_view v, int out[3]);
/// Whether `version` satisfies `requirement`: "1.2.0" (exactly), ">=1.2", ">1.2", "<=2",
/// "<2", "^1.2.0" (same major, at least), "~1.2.0" (same major and minor, at least), "*";
/// several separated by spaces must all hold. False when it does not hold, with `error`
/// set when the requirement or the version does not parse (left empty otherwise).
bool version_satisfies(std::string_view version, std::string_view requirement, std::string* error);

}  // namespace cap::ext
