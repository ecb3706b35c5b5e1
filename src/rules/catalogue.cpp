#include "rules/groups.h"

namespace cap {

void register_base_rules(RuleRegistry& registry) {
  rules::register_flow(registry);
  rules::register_text(registry);
  rules::register_data(registry);
  rules::register_http(registry);
}

}  // namespace cap
