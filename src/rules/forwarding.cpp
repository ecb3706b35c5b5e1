#include "rules/forwarding.h"

#include <algorithm>

#include "net/header_text.h"

namespace cap::rules {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool named_in_connection(std::string_view name, std::string_view connection) {
  while (!connection.empty()) {
    size_t comma = connection.find(',');
    std::string_view token = trim(connection.substr(0, comma));
    if (iequals(token, name)) return true;
    if (comma == std::string_view::npos) break;
    connection.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) { return net::iequals(a, b); }

bool is_hop_by_hop(std::string_view name, std::string_view connection) {
  // By length first: most headers are none of these, and most lengths match none.
  std::string_view a, b;
  switch (name.size()) {
    case 2:
      a = "te";
      break;
    case 7:
      a = "trailer", b = "upgrade";
      break;
    case 8:
      a = "trailers";
      break;
    case 10:
      a = "connection", b = "keep-alive";
      break;
    case 16:
      a = "proxy-connection";
      break;
    case 17:
      a = "transfer-encoding";
      break;
    case 18:
      a = "proxy-authenticate";
      break;
    case 19:
      a = "proxy-authorization";
      break;
    default:
      break;
  }
  if (!a.empty() && (iequals(name, a) || (!b.empty() && iequals(name, b)))) return true;
  return !connection.empty() && named_in_connection(name, connection);
}

namespace {

/// The request headers forward_call treats specially, told apart by length first.
enum class Special { None, Connection, Host, Drop, ForwardedFor, ForwardedOther };

Special special(std::string_view name) {
  switch (name.size()) {
    case 4:
      return iequals(name, "host") ? Special::Host : Special::None;
    case 6:  // the agent answers Expect: 100-continue itself; the origin gets the body at once
      return iequals(name, "expect") ? Special::Drop : Special::None;
    case 10:
      return iequals(name, "connection") ? Special::Connection : Special::None;
    case 14:
      return iequals(name, "content-length") ? Special::Drop : Special::None;
    case 15:
      return iequals(name, "x-forwarded-for") ? Special::ForwardedFor : Special::None;
    case 16:
      return iequals(name, "x-forwarded-host") ? Special::ForwardedOther : Special::None;
    case 17:
      return iequals(name, "x-forwarded-proto") ? Special::ForwardedOther : Special::None;
    default:
      return Special::None;
  }
}

}  // namespace

HttpCall forward_call(const Request& req, std::string_view origin, std::string_view target,
                      int timeout_ms) {
  HttpCall call;
  call.method.assign(req.method);
  std::string_view path = target.empty() ? req.target : target;
  call.url.reserve(origin.size() + path.size());
  call.url.assign(origin);
  call.url.append(path);
  call.timeout_ms = timeout_ms;
  call.body.assign(req.body);

  std::string_view connection, host;
  for (auto& [name, value] : req.headers) {
    Special k = special(name);
    if (k == Special::Connection)
      connection = value;
    else if (k == Special::Host)
      host = value;
  }
  call.headers.reserve(req.headers.size() + 3);
  std::string forwarded_for;
  for (auto& [name, value] : req.headers) {
    Special k = special(name);
    if (k == Special::Drop || k == Special::ForwardedOther || is_hop_by_hop(name, connection))
      continue;
    if (k == Special::ForwardedFor) {
      if (!forwarded_for.empty()) forwarded_for += ", ";
      forwarded_for.append(value);
      continue;
    }
    call.headers.emplace_back(std::string(name), std::string(value));
  }
  if (!forwarded_for.empty()) forwarded_for += ", ";
  forwarded_for.append(req.remote_addr);
  call.headers.emplace_back("X-Forwarded-For", std::move(forwarded_for));
  call.headers.emplace_back("X-Forwarded-Proto", std::string(req.scheme));
  if (!host.empty()) call.headers.emplace_back("X-Forwarded-Host", std::string(host));
  return call;
}

void strip_for_client(HeaderLines& headers) {
  std::string connection;  // a copy: erasing moves the strings a view would point into
  for (auto& [name, value] : headers)
    if (iequals(name, "connection")) connection = value;
  std::erase_if(headers, [&](const std::pair<std::string, std::string>& h) {
    return is_hop_by_hop(h.first, connection) || iequals(h.first, "content-length");
  });
}

void headers_for_client(const HttpReply& reply, HeaderLines& out) {
  HeaderLines lines = reply.headers;
  strip_for_client(lines);
  for (auto& h : lines) out.push_back(std::move(h));
}

void apply_edit(const ResponseEdit& edit, HeaderLines& headers, std::string& body) {
  if (!edit.remove.empty())
    std::erase_if(headers, [&](const std::pair<std::string, std::string>& h) {
      return std::any_of(edit.remove.begin(), edit.remove.end(),
                         [&](const std::string& r) { return iequals(h.first, r); });
    });
  for (auto& h : edit.add) headers.push_back(h);
  if (edit.replace_body) body = edit.body;
}

}  // namespace cap::rules
