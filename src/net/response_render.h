// Rendering an HTTP/1.1 response head (and a whole body) for the server in
// net/http_server.cpp: the status line, the server's own headers (Server, Date, framing,
// Connection), the handler's headers checked and filtered. Internal to cap_net.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "net/http_server.h"

namespace cap::net {

/// Seconds since the epoch on the coarse real-time clock (for the Date header).
int64_t wall_sec();

/// "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n": kDateLineSize characters, no terminator.
constexpr size_t kDateLineSize = 6 + 29 + 2;
void format_date_line(int64_t t, char* out);

/// How the body follows the head: in the same buffer (Whole), or streamed later with a
/// known length, chunked (HTTP/1.1) or delimited by closing the connection (HTTP/1.0).
enum class Framing : uint8_t { Whole, Length, Chunked };

struct RenderParams {
  Framing framing = Framing::Whole;
  uint64_t length = 0;  // Framing::Length
  int version = 11;
  bool keep_alive = true;
  bool head = false;
  bool draining = false;
  const char* date_line = nullptr;  // kDateLineSize characters
};

/// Whether a handler's response can be sent as it is: a status from 200 to 999, and no
/// header name or value (nor the content type) that would split or end a header line.
bool response_valid(const ResponseView& r);

/// The 500 sent in place of a response that is not valid, or of none at all.
const ResponseView& internal_error();

/// Renders the whole response (head, and the body when Framing::Whole) into `out`,
/// replacing what it held; an invalid `given` renders internal_error(). Returns whether the
/// connection closes after it.
bool render_response(std::string& out, const ResponseView& given, const RenderParams& p);

}  // namespace cap::net
