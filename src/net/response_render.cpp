#include "net/response_render.h"

#include <time.h>

#include <boost/beast/http/status.hpp>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "net/header_text.h"

namespace cap::net {
namespace {

namespace bhttp = boost::beast::http;

// "Sun, 06 Nov 1994 08:49:37 GMT" (29 characters).
void format_http_date(int64_t t, char* out) {
  static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t tt = time_t(t);
  struct tm tm;
  gmtime_r(&tt, &tm);
  char buf[40];
  snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday % 7],
           tm.tm_mday, kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
           tm.tm_sec);
  memcpy(out, buf, 29);
}

bool valid_name(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c == '\r' || c == '\n' || c == '\0' || c == ':' || c == ' ' || c == '\t') return false;
  return true;
}

std::string_view reason_phrase(int status) {
  auto r = bhttp::obsolete_reason(bhttp::int_to_status(unsigned(status)));
  std::string_view s(r.data(), r.size());
  if (s.empty() || s.front() == '<') return "Unknown";
  return s;
}

// The status lines most responses use, pre-rendered.
std::string_view common_status_line(int status) {
  switch (status) {
    case 200:
      return "HTTP/1.1 200 OK\r\n";
    case 201:
      return "HTTP/1.1 201 Created\r\n";
    case 204:
      return "HTTP/1.1 204 No Content\r\n";
    case 301:
      return "HTTP/1.1 301 Moved Permanently\r\n";
    case 302:
      return "HTTP/1.1 302 Found\r\n";
    case 304:
      return "HTTP/1.1 304 Not Modified\r\n";
    case 400:
      return "HTTP/1.1 400 Bad Request\r\n";
    case 401:
      return "HTTP/1.1 401 Unauthorized\r\n";
    case 403:
      return "HTTP/1.1 403 Forbidden\r\n";
    case 404:
      return "HTTP/1.1 404 Not Found\r\n";
    case 500:
      return "HTTP/1.1 500 Internal Server Error\r\n";
    case 502:
      return "HTTP/1.1 502 Bad Gateway\r\n";
    case 503:
      return "HTTP/1.1 503 Service Unavailable\r\n";
    default:
      return {};
  }
}

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, size_t(res.ptr - buf));
}

// The response headers the server treats itself, told apart by length first.
enum class Owned : uint8_t { None, Server, Connection, Framing, Date };
Owned owned_header(std::string_view name) {
  switch (name.size()) {
    case 4:
      return iequals(name, "date") ? Owned::Date : Owned::None;
    case 6:
      return iequals(name, "server") ? Owned::Server : Owned::None;
    case 10:
      return iequals(name, "connection") ? Owned::Connection : Owned::None;
    case 14:
      return iequals(name, "content-length") ? Owned::Framing : Owned::None;
    case 17:
      return iequals(name, "transfer-encoding") ? Owned::Framing : Owned::None;
    default:
      return Owned::None;
  }
}

}  // namespace

int64_t wall_sec() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return ts.tv_sec;
}

void format_date_line(int64_t t, char* out) {
  memcpy(out, "Date: ", 6);
  format_http_date(t, out + 6);
  memcpy(out + 35, "\r\n", 2);
}

bool response_valid(const ResponseView& r) {
  if (r.status < 200 || r.status > 999) return false;
  if (has_ctl(r.content_type)) return false;
  for (const auto& [name, value] : r.headers)
    if (!valid_name(name) || has_ctl(value)) return false;
  return true;
}

const ResponseView& internal_error() {
  static const ResponseView r{500, "text/plain", {}, "Internal Server Error\n", false};
  return r;
}

// Renders the whole response (head and body) into `out`. Returns whether the connection
// closes after it.
bool render_response(std::string& out, const ResponseView& given, const RenderParams& p) {
  using namespace std::string_view_literals;
  const ResponseView& r = response_valid(given) ? given : internal_error();
  bool close = r.close || !p.keep_alive || p.draining;
  bool own_server = true;
  for (const auto& h : r.headers) {
    Owned o = owned_header(h.first);
    if (o == Owned::Server) own_server = false;
    if (o == Owned::Connection && iequals(h.second, "close")) close = true;
  }
  out.clear();
  if (std::string_view line = common_status_line(r.status); !line.empty()) {
    out.append(line);
  } else {
    out.append("HTTP/1.1 "sv);
    append_uint(out, uint64_t(r.status));
    out.push_back(' ');
    out.append(reason_phrase(r.status));
    out.append("\r\n"sv);
  }
  if (own_server) out.append("Server: cap\r\n"sv);
  out.append(p.date_line, kDateLineSize);
  if (!r.content_type.empty()) {
    out.append("Content-Type: "sv);
    out.append(r.content_type);
    out.append("\r\n"sv);
  }
  for (const auto& [name, value] : r.headers) {
    // The server owns the framing and the connection's fate.
    if (Owned o = owned_header(name); o != Owned::None && o != Owned::Server) continue;
    out.append(name);
    out.append(": "sv);
    out.append(value);
    out.append("\r\n"sv);
  }
  bool bodyless = r.status == 204 || r.status == 304;
  if (!bodyless) {
    if (p.framing == Framing::Chunked) {
      if (p.version == 11)
        out.append("Transfer-Encoding: chunked\r\n"sv);
      else
        close = true;  // an HTTP/1.0 client reads to the end of the connection
    } else {
      out.append("Content-Length: "sv);
      append_uint(out, p.framing == Framing::Length ? p.length : r.body.size());
      out.append("\r\n"sv);
    }
  }
  if (close)
    out.append("Connection: close\r\n"sv);
  else if (p.version == 10)
    out.append("Connection: keep-alive\r\n"sv);
  out.append("\r\n"sv);
  if (!bodyless && !p.head && p.framing == Framing::Whole) out.append(r.body);
  return close;
}

}  // namespace cap::net
