#include "net/net_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace cap::net::test {
namespace {

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (tolower(static_cast<unsigned char>(a[i])) != tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

}  // namespace

std::string RawResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequal(k, name)) return v;
  return "";
}

RawClient::RawClient(uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd_);
    fd_ = -1;
    return;
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

RawClient::~RawClient() {
  if (fd_ >= 0) ::close(fd_);
}

bool RawClient::send(std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(size_t(n));
  }
  return true;
}

bool RawClient::fill(std::chrono::steady_clock::time_point until) {
  if (eof_) return false;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      until - std::chrono::steady_clock::now());
  if (left.count() <= 0) return false;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, int(left.count())) <= 0) return false;
  char tmp[65536];
  ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
  if (n <= 0) {
    eof_ = true;
    return false;
  }
  buf_.append(tmp, size_t(n));
  return true;
}

bool RawClient::read_response(RawResponse* out, std::chrono::milliseconds timeout,
                              bool head_request) {
  auto until = std::chrono::steady_clock::now() + timeout;
  size_t end;
  while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
    if (!fill(until)) return false;
  *out = RawResponse();
  out->head = buf_.substr(0, end + 2);
  size_t line_end = out->head.find("\r\n");
  std::string status_line = out->head.substr(0, line_end);
  if (status_line.size() < 12) return false;
  out->status = atoi(status_line.c_str() + 9);
  size_t pos = line_end + 2;
  while (pos < out->head.size()) {
    size_t e = out->head.find("\r\n", pos);
    std::string line = out->head.substr(pos, e - pos);
    pos = e + 2;
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    out->headers.emplace_back(line.substr(0, colon), value);
  }
  buf_.erase(0, end + 4);
  std::string cl = out->header("content-length");
  size_t want = head_request || cl.empty() ? 0 : size_t(std::stoull(cl));
  while (buf_.size() < want)
    if (!fill(until)) return false;
  out->body = buf_.substr(0, want);
  buf_.erase(0, want);
  return true;
}

bool RawClient::wait_closed(std::chrono::milliseconds timeout, std::string* got) {
  auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (!buf_.empty()) {
      if (got) got->append(buf_);
      buf_.clear();
    }
    if (eof_) return true;
    if (!fill(until)) return eof_;
  }
}

std::string RawClient::read_some(std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (fill(until)) {
  }
  std::string s = std::move(buf_);
  buf_.clear();
  return s;
}

RawResponse raw_request(uint16_t port, std::string_view request) {
  RawClient c(port);
  RawResponse r;
  if (c.send(request)) c.read_response(&r);
  return r;
}

TestCert make_test_cert(const std::string& subject_alt_names) {
  TestCert t;
  char tmpl[] = "/tmp/cap-net-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  t.dir = tmpl;
  t.cert_file = t.dir + "/cert.pem";
  t.key_file = t.dir + "/key.pem";

  EVP_PKEY* pkey = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 30);
  X509_set_pubkey(x, pkey);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  X509_EXTENSION* san =
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, subject_alt_names.c_str());
  X509_add_ext(x, san, -1);
  X509_EXTENSION_free(san);
  X509_EXTENSION* bc =
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints, "critical,CA:TRUE");
  X509_add_ext(x, bc, -1);
  X509_EXTENSION_free(bc);
  X509_sign(x, pkey, EVP_sha256());

  FILE* f = fopen(t.cert_file.c_str(), "w");
  PEM_write_X509(f, x);
  fclose(f);
  f = fopen(t.key_file.c_str(), "w");
  PEM_write_PrivateKey(f, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(pkey);
  return t;
}

}  // namespace cap::net::test
