// Passing a request on to the origin and its answer back: what proxy mode and
// HttpServerExecute share.
//
// Towards the origin: the method, the target and the body as received; the headers less the
// hop-by-hop ones (Connection and those it names, Keep-Alive, Proxy-*, TE, Trailer,
// Transfer-Encoding, Upgrade) and Content-Length (the client sets its own); Host kept as the
// client sent it; X-Forwarded-For (appended to), X-Forwarded-Proto and X-Forwarded-Host
// added. Back to the client: the origin's headers less the hop-by-hop ones and
// Content-Length.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cap/request.h"
#include "cap/services.h"

namespace cap::rules {

using HeaderLines = std::vector<std::pair<std::string, std::string>>;

/// Whether `name` must not be forwarded (case-insensitive); `connection` is the value of
/// the message's Connection header, whose tokens name more such headers.
bool is_hop_by_hop(std::string_view name, std::string_view connection);
bool iequals(std::string_view a, std::string_view b);

/// The call that forwards `req` to `origin` ("http://host:port"). `target` replaces the
/// request's target when not empty.
HttpCall forward_call(const Request& req, std::string_view origin, std::string_view target,
                      int timeout_ms);

/// The origin's headers fit to send to the client, appended to `out`.
void headers_for_client(const HttpReply& reply, HeaderLines& out);
/// Drops from an origin's headers, in place, those not fit to send to the client.
void strip_for_client(HeaderLines& headers);

/// Changes to a response on its way back (HttpResponseAddition).
struct ResponseEdit {
  std::vector<std::string> remove;  // header names, case-insensitive
  HeaderLines add;
  bool replace_body = false;
  std::string body;
};
/// Applies an edit to headers and body: removes, then adds, then replaces the body.
void apply_edit(const ResponseEdit& edit, HeaderLines& headers, std::string& body);

}  // namespace cap::rules
