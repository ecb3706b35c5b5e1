// Helpers for the network tests: a blocking raw TCP client that speaks just enough HTTP to
// check what the server really sends, and a throwaway self-signed certificate.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cap::net::test {

struct RawResponse {
  int status = 0;
  std::string head;  // status line and headers, as received
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// The value of the first header named `name` (case-insensitive), or "".
  std::string header(std::string_view name) const;
};

/// A plain blocking TCP connection to 127.0.0.1:port.
class RawClient {
 public:
  explicit RawClient(uint16_t port);
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  bool send(std::string_view data);
  /// Reads one response (Content-Length or no body). False on close, error or timeout.
  bool read_response(RawResponse* out, std::chrono::milliseconds timeout = std::chrono::seconds(5),
                     bool head_request = false);
  /// Waits until the server closes the connection (true) or `timeout` passes (false). Data
  /// that arrives meanwhile is appended to `*got` when given.
  bool wait_closed(std::chrono::milliseconds timeout, std::string* got = nullptr);
  /// Reads whatever arrives within `timeout`.
  std::string read_some(std::chrono::milliseconds timeout);

 private:
  bool fill(std::chrono::steady_clock::time_point until);
  int fd_ = -1;
  std::string buf_;
  bool eof_ = false;
};

/// Concatenates strings. (GCC 12 at -O3 warns falsely about `"literal" + std::string&&`.)
template <class... A>
std::string cat(const A&... parts) {
  std::string s;
  (s.append(std::string_view(parts)), ...);
  return s;
}

/// One request on a fresh connection; the response, or status 0.
RawResponse raw_request(uint16_t port, std::string_view request);

struct TestCert {
  std::string dir, cert_file, key_file;  // PEM files, valid for localhost and 127.0.0.1
};
/// Makes a self-signed certificate in a new temporary folder, for the names in
/// `subject_alt_names` (OpenSSL's syntax).
TestCert make_test_cert(const std::string& subject_alt_names = "DNS:localhost,IP:127.0.0.1");

}  // namespace cap::net::test
