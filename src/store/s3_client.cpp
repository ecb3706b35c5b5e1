#include "store/s3_client.h"

#include <algorithm>
#include <boost/url/parse.hpp>
#include <chrono>
#include <random>
#include <thread>

#include "net/sigv4.h"

namespace cap::store {

namespace sigv4 = net::sigv4;

namespace {

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return s;
}

std::string header_of(const HttpReply& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (lower(k) == name) return v;
  return {};
}

bool throttling_code(std::string_view code) {
  return code == "SlowDown" || code == "Throttling" || code == "ThrottlingException" ||
         code == "RequestLimitExceeded" || code == "TooManyRequestsException" ||
         code == "RequestThrottled" || code == "RequestTimeout" ||
         code == "ProvisionedThroughputExceededException" || code == "InternalError";
}

bool parse_size(const GetEnv& env, std::string_view name, size_t min_mb, size_t* out,
                std::string* error) {
  auto v = env(name);
  if (!v || v->empty()) return true;
  size_t mb = 0;
  for (char c : *v) {
    if (c < '0' || c > '9' || mb > 100000) {
      *error = std::string(name) + " must be a whole number of MiB";
      return false;
    }
    mb = mb * 10 + size_t(c - '0');
  }
  if (mb < min_mb) {
    *error = std::string(name) + " must be at least " + std::to_string(min_mb) + " MiB";
    return false;
  }
  *out = mb << 20;
  return true;
}

}  // namespace

std::string xml_text(std::string_view xml, std::string_view tag) {
  std::string open = "<" + std::string(tag) + ">";
  std::string close = "</" + std::string(tag) + ">";
  size_t a = xml.find(open);
  if (a == std::string_view::npos) return {};
  a += open.size();
  size_t b = xml.find(close, a);
  if (b == std::string_view::npos) return {};
  std::string_view raw = xml.substr(a, b - a);
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '&') {
      out.push_back(raw[i]);
      continue;
    }
    size_t semi = raw.find(';', i);
    if (semi == std::string_view::npos) {
      out.push_back('&');
      continue;
    }
    std::string_view ent = raw.substr(i + 1, semi - i - 1);
    if (ent == "amp")
      out.push_back('&');
    else if (ent == "lt")
      out.push_back('<');
    else if (ent == "gt")
      out.push_back('>');
    else if (ent == "quot")
      out.push_back('"');
    else if (ent == "apos")
      out.push_back('\'');
    else if (!ent.empty() && ent[0] == '#') {
      unsigned long cp = ent.size() > 1 && (ent[1] == 'x' || ent[1] == 'X')
                             ? std::stoul(std::string(ent.substr(2)), nullptr, 16)
                             : std::stoul(std::string(ent.substr(1)), nullptr, 10);
      if (cp < 0x80) {
        out.push_back(char(cp));
      } else if (cp < 0x800) {
        out.push_back(char(0xC0 | (cp >> 6)));
        out.push_back(char(0x80 | (cp & 0x3F)));
      } else if (cp < 0x10000) {
        out.push_back(char(0xE0 | (cp >> 12)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
      } else {
        out.push_back(char(0xF0 | (cp >> 18)));
        out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
      }
    } else {
      out.append(raw.substr(i, semi - i + 1));
    }
    i = semi;
  }
  return out;
}

bool S3Options::from_environment(const GetEnv& env, S3Options* out, std::string* error) {
  S3Options o;
  if (auto r = env("AWS_REGION"); r && !r->empty())
    o.region = *r;
  else if (auto d = env("AWS_DEFAULT_REGION"); d && !d->empty())
    o.region = *d;
  if (auto e = env("AWS_ENDPOINT_URL_S3"); e && !e->empty())
    o.endpoint = *e;
  else if (auto g = env("AWS_ENDPOINT_URL"); g && !g->empty())
    o.endpoint = *g;
  while (!o.endpoint.empty() && o.endpoint.back() == '/') o.endpoint.pop_back();
  if (!o.endpoint.empty()) {
    auto u = boost::urls::parse_uri(o.endpoint);
    std::string scheme = u ? lower(std::string(u->scheme())) : "";
    if (!u || (scheme != "http" && scheme != "https") || u->host().empty() ||
        !u->encoded_path().empty() || u->has_query()) {
      *error =
          "the S3 endpoint (AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL) must be "
          "http[s]://host[:port], not '" +
          o.endpoint + "'";
      return false;
    }
  }
  if (auto ca = env("AWS_CA_BUNDLE"); ca && !ca->empty()) o.ca_file = *ca;
  if (!parse_size(env, "CAP_S3_PART_SIZE_MB", 5, &o.part_size, error) ||
      !parse_size(env, "CAP_S3_MULTIPART_MB", 5, &o.multipart_threshold, error))
    return false;
  *out = std::move(o);
  return true;
}

struct S3Client::Call {
  std::string method;
  std::string bucket, key;
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;
  bool bucket_only = false;  // the bucket itself (list), not an object
};

struct S3Client::Result {
  HttpReply reply;
  std::string code, message;  // the store's error code and message, when it sent them
  std::string error;
  S3Failure kind = S3Failure::None;
  bool ok() const { return kind == S3Failure::None; }
};

net::ClientOptions S3Client::http_options(const S3Options& options) {
  net::ClientOptions co;
  co.max_response_bytes = 640u << 20;
  co.ca_file = options.ca_file;
  co.retries = 0;  // the S3 client retries itself, with a fresh signature
  return co;
}

S3Client::S3Client(S3Options options, AwsCredentialsProvider& credentials)
    : options_(std::move(options)),
      credentials_(credentials),
      own_http_(std::make_unique<net::HttpClientPool>(http_options(options_))),
      http_(own_http_.get()) {}

S3Client::S3Client(S3Options options, AwsCredentialsProvider& credentials,
                   net::HttpClientPool& http)
    : options_(std::move(options)), credentials_(credentials), http_(&http) {}

S3Client::~S3Client() = default;

S3Client::Result S3Client::send(const Call& call) {
  Result res;
  // Where to send it.
  std::string scheme = "https", host, path;
  const std::string encoded_key = sigv4::uri_encode(call.key, false);
  if (!options_.endpoint.empty()) {
    auto u = boost::urls::parse_uri(options_.endpoint);
    scheme = lower(std::string(u->scheme()));
    host = lower(std::string(u->encoded_host_and_port()));
    const std::string def = scheme == "https" ? ":443" : ":80";
    if (host.ends_with(def)) host.resize(host.size() - def.size());
    path = "/" + call.bucket + (call.bucket_only ? "" : "/" + encoded_key);
  } else if (call.bucket.find('.') == std::string::npos) {
    host = call.bucket + ".s3." + options_.region + ".amazonaws.com";
    path = "/" + (call.bucket_only ? "" : encoded_key);
  } else {
    host = "s3." + options_.region + ".amazonaws.com";
    path = "/" + call.bucket + (call.bucket_only ? "" : "/" + encoded_key);
  }
  const std::string where = scheme + "://" + host;

  std::mt19937 jitter(std::random_device{}());
  for (int attempt = 1; attempt <= std::max(1, options_.attempts); ++attempt) {
    sigv4::Credentials creds;
    std::string cred_error;
    if (!credentials_.get(&creds, &cred_error)) {
      res.kind = S3Failure::Credentials;
      res.error = cred_error;
      return res;
    }
    sigv4::Request req;
    req.method = call.method;
    req.host = host;
    req.path = path;
    req.query = call.query;
    req.headers = call.headers;
    req.body = call.body;
    sigv4::Signed s = sigv4::sign_v4(req, creds, {options_.region, "s3"},
                                     std::chrono::system_clock::now(), sigv4::Options::s3());
    HttpCall hc;
    hc.method = call.method;
    hc.url = where + path + (s.query.empty() ? "" : "?" + s.query);
    hc.headers = call.headers;
    hc.headers.emplace_back("Host", host);
    for (auto& h : s.headers) hc.headers.push_back(h);
    hc.body = std::string(call.body);
    hc.timeout_ms = options_.timeout_ms;
    res = Result{};
    res.reply = http_->call(hc);
    const int st = res.reply.status;
    bool retry = false;
    if (st == 0) {
      res.kind = S3Failure::Unreachable;
      res.error = "cannot reach the S3 endpoint " + where + ": " + res.reply.error;
      retry = true;
    } else if (st >= 200 && st < 300 && res.reply.body.find("<Error>") == std::string::npos) {
      return res;  // success (a 200 holding <Error> is a failed CompleteMultipartUpload)
    } else {
      res.code = xml_text(res.reply.body, "Code");
      res.message = xml_text(res.reply.body, "Message");
      std::string detail = res.code.empty()
                               ? "HTTP " + std::to_string(st)
                               : res.code + (res.message.empty() ? "" : ": " + res.message);
      if (st == 404) {
        res.kind = S3Failure::NotFound;
        res.error = res.code == "NoSuchBucket" ? "no such bucket (" + detail + ")"
                                               : "no such object (" + detail + ")";
        if (res.code.empty() && call.method == "GET") res.error = "no such object (HTTP 404)";
      } else if (st == 403) {
        res.kind = S3Failure::AccessDenied;
        res.error = "access denied (" + detail + ")";
      } else {
        res.kind = S3Failure::Other;
        res.error = "S3 answered HTTP " + std::to_string(st) + " (" + detail + ")";
      }
      retry = st == 500 || st == 502 || st == 503 || st == 504 || st == 429 ||
              throttling_code(res.code);
    }
    if (!retry || attempt == options_.attempts) break;
    int base_ms = 200 << (attempt - 1);
    std::this_thread::sleep_for(
        std::chrono::milliseconds(base_ms / 2 + int(jitter() % unsigned(base_ms / 2 + 1))));
  }
  return res;
}

bool S3Client::get(const std::string& bucket, const std::string& key, std::string* data,
                   std::string* error, S3Failure* kind) {
  Call c;
  c.method = "GET";
  c.bucket = bucket;
  c.key = key;
  Result r = send(c);
  if (kind) *kind = r.kind;
  if (!r.ok()) {
    *error = r.error;
    return false;
  }
  *data = std::move(r.reply.body);
  return true;
}

bool S3Client::put(const std::string& bucket, const std::string& key, std::string_view data,
                   std::string* error, S3Failure* kind, const Progress& progress,
                   std::string_view content_type) {
  if (data.size() >= options_.multipart_threshold && data.size() > options_.part_size)
    return put_multipart(bucket, key, data, content_type, error, kind, progress);
  Call c;
  c.method = "PUT";
  c.bucket = bucket;
  c.key = key;
  c.headers.emplace_back("Content-Type", std::string(content_type));
  c.body = data;
  Result r = send(c);
  if (kind) *kind = r.kind;
  if (!r.ok()) {
    *error = r.error;
    return false;
  }
  if (progress) progress(data.size(), data.size());
  return true;
}

bool S3Client::put_multipart(const std::string& bucket, const std::string& key,
                             std::string_view data, std::string_view content_type,
                             std::string* error, S3Failure* kind, const Progress& progress) {
  auto fail = [&](const Result& r, const std::string& step) {
    if (kind) *kind = r.kind;
    *error = step + ": " + r.error;
    return false;
  };
  Call create;
  create.method = "POST";
  create.bucket = bucket;
  create.key = key;
  create.query = {{"uploads", ""}};
  create.headers.emplace_back("Content-Type", std::string(content_type));
  Result r = send(create);
  if (!r.ok()) return fail(r, "starting the multipart upload");
  const std::string upload_id = xml_text(r.reply.body, "UploadId");
  if (upload_id.empty()) {
    if (kind) *kind = S3Failure::Other;
    *error = "starting the multipart upload: the answer holds no UploadId";
    return false;
  }
  auto abort = [&] {
    Call a;
    a.method = "DELETE";
    a.bucket = bucket;
    a.key = key;
    a.query = {{"uploadId", upload_id}};
    send(a);
  };
  std::string complete = "<CompleteMultipartUpload>";
  size_t part = 0;
  for (size_t offset = 0; offset < data.size(); offset += options_.part_size) {
    ++part;
    Call p;
    p.method = "PUT";
    p.bucket = bucket;
    p.key = key;
    p.query = {{"partNumber", std::to_string(part)}, {"uploadId", upload_id}};
    p.body = data.substr(offset, options_.part_size);
    Result pr = send(p);
    if (!pr.ok()) {
      abort();
      return fail(pr, "uploading part " + std::to_string(part));
    }
    std::string etag = header_of(pr.reply, "etag");
    complete += "<Part><PartNumber>" + std::to_string(part) + "</PartNumber><ETag>" + etag +
                "</ETag></Part>";
    if (progress) progress(std::min(data.size(), offset + options_.part_size), data.size());
  }
  complete += "</CompleteMultipartUpload>";
  Call done;
  done.method = "POST";
  done.bucket = bucket;
  done.key = key;
  done.query = {{"uploadId", upload_id}};
  done.headers.emplace_back("Content-Type", "application/xml");
  done.body = complete;
  Result dr = send(done);
  if (!dr.ok()) {
    abort();
    return fail(dr, "completing the multipart upload");
  }
  if (kind) *kind = S3Failure::None;
  return true;
}

bool S3Client::list(const std::string& bucket, const std::string& prefix,
                    std::vector<S3Object>* out, std::string* error, S3Failure* kind) {
  out->clear();
  std::string token;
  for (int page = 0; page < 10000; ++page) {
    Call c;
    c.method = "GET";
    c.bucket = bucket;
    c.bucket_only = true;
    c.query = {{"list-type", "2"}, {"prefix", prefix}};
    if (!token.empty()) c.query.emplace_back("continuation-token", token);
    Result r = send(c);
    if (kind) *kind = r.kind;
    if (!r.ok()) {
      *error = r.error;
      return false;
    }
    std::string_view body = r.reply.body;
    size_t pos = 0;
    while ((pos = body.find("<Contents>", pos)) != std::string_view::npos) {
      size_t end = body.find("</Contents>", pos);
      if (end == std::string_view::npos) break;
      std::string_view item = body.substr(pos, end - pos);
      S3Object o;
      o.key = xml_text(item, "Key");
      std::string size = xml_text(item, "Size");
      o.size = size.empty() ? 0 : std::stoull(size);
      o.last_modified = xml_text(item, "LastModified");
      out->push_back(std::move(o));
      pos = end;
    }
    if (xml_text(body, "IsTruncated") != "true") break;
    token = xml_text(body, "NextContinuationToken");
    if (token.empty()) break;
  }
  std::sort(out->begin(), out->end(),
            [](const S3Object& a, const S3Object& b) { return a.key < b.key; });
  return true;
}

}  // namespace cap::store
