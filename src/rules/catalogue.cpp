#include "rules/groups.h"
#include "rules/network.h"

namespace cap {

void register_base_rules(RuleRegistry& registry) {
  rules::register_flow(registry);
  rules::register_text(registry);
  rules::register_data(registry);
  rules::register_http(registry);
  rules::register_content(registry);
  rules::register_storage(registry);        // SqlQuery, SqlExecute, FlightRecorder, File*
  rules::register_network_rules(registry);  // HttpClient, HttpServerExecute, HttpResponseAddition
  rules::register_ai(registry);
}

}  // namespace cap
