// capctl snapshot capture|restore|inspect|list (DESIGN §6, §8): snapshots between agents
// and object stores (s3://BUCKET/KEY, file:///PATH; store/object_store.h). Progress goes to
// stderr, results to stdout. Exit status: 0 done, 1 failed (errors printed), 2 bad usage.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "cli/commands.h"
#include "cli/remote.h"
#include "store/object_store.h"
#include "store/snapshot_format.h"

namespace cap::cli {

namespace {

bool parse_url(const std::string& text, store::ObjectUrl* url) {
  std::string error;
  if (store::parse_object_url(text, url, &error)) return true;
  std::cerr << "capctl: " << error << "\n";
  return false;
}

store::Progress progress_printer(const std::string& what) {
  return [what](uint64_t done, uint64_t total) {
    std::fprintf(stderr, "%s: %.1f of %.1f MiB\n", what.c_str(), double(done) / (1 << 20),
                 double(total) / (1 << 20));
  };
}

/// Downloads a snapshot, following a pointer object once; false after printing why.
bool download(store::ObjectStore& objects, const store::ObjectUrl& url, std::string* data,
              std::string* from) {
  std::string error;
  std::cerr << "downloading " << url.text << "\n";
  if (!objects.get(url, data, &error)) {
    std::cerr << "capctl: " << error << "\n";
    return false;
  }
  *from = url.text;
  std::string target;
  if (store::read_snapshot_pointer(*data, &target)) {
    store::ObjectUrl next;
    if (!parse_url(target, &next)) return false;
    std::cerr << url.text << " points to " << target << "\n";
    if (!objects.get(next, data, &error)) {
      std::cerr << "capctl: " << error << "\n";
      return false;
    }
    if (store::read_snapshot_pointer(*data, &target)) {
      std::cerr << "capctl: " << next.text << " is another pointer; point to a snapshot\n";
      return false;
    }
    *from = next.text;
  }
  std::fprintf(stderr, "downloaded %.1f MiB\n", double(data->size()) / (1 << 20));
  return true;
}

/// "2024-05-01T12:00:00.123Z" -> "20240501T120000Z".
std::string compact_time(const std::string& iso) {
  std::string out;
  for (char c : iso.substr(0, 19))
    if (c != '-' && c != ':') out.push_back(c);
  return out + "Z";
}

}  // namespace

int cmd_snapshot_capture(const AgentOptions& o, const std::string& to, bool latest) {
  store::ObjectUrl url;
  if (!parse_url(to, &url)) return 2;
  AgentTarget t;
  if (!resolve_agent(o, &t)) return 2;
  std::cerr << "capturing a snapshot of " << t.host << ":" << t.port << "\n";
  AgentReply r = agent_call(t, "GET", "/v1/snapshot", "", "");
  if (r.status != 200) {
    print_agent_error(t, r);
    return 1;
  }
  store::Snapshot s;
  std::string error;
  if (!store::read_snapshot(r.body, &s, &error)) {
    std::cerr << "capctl: the agent sent a snapshot that does not verify: " << error << "\n";
    return 1;
  }
  if (url.is_prefix()) {
    std::string name = s.agent_name + "-" + compact_time(s.created_at) + ".zip";
    if (!parse_url(url.text + name, &url)) return 1;
  }
  store::ObjectStore objects;
  std::cerr << "writing " << url.text << " (" << r.body.size() << " bytes)\n";
  if (!objects.put(url, r.body, &error, progress_printer("uploading"))) {
    std::cerr << "capctl: " << error << "\n";
    return 1;
  }
  if (latest) {
    store::ObjectUrl pointer;
    if (!parse_url(url.sibling("latest"), &pointer)) return 1;
    if (!objects.put(pointer, store::make_snapshot_pointer(url.text), &error)) {
      std::cerr << "capctl: the snapshot is written, but the pointer is not: " << error << "\n";
      return 1;
    }
    std::cerr << pointer.text << " now points to it\n";
  }
  std::cout << url.text << "\n";
  return 0;
}

int cmd_snapshot_restore(const AgentOptions& o, const std::string& from) {
  store::ObjectUrl url;
  if (!parse_url(from, &url)) return 2;
  AgentTarget t;
  if (!resolve_agent(o, &t)) return 2;
  store::ObjectStore objects;
  std::string data, source, error;
  if (!download(objects, url, &data, &source)) return 1;
  store::Snapshot s;
  if (!store::read_snapshot(data, &s, &error)) {
    std::cerr << "capctl: " << source << ": " << error << "\n";
    return 1;
  }
  std::cerr << "restoring " << source << " (configuration " << s.configuration_name << ", captured "
            << s.created_at << " by " << s.agent_name << ") into " << t.host << ":" << t.port
            << "\n";
  AgentReply r = agent_call(t, "PUT", "/v1/snapshot", data, "application/zip");
  if (r.status != 200) {
    print_agent_error(t, r);
    return 1;
  }
  std::string perr;
  Value v = json_parse(r.body, &perr);
  const Value* id = v.is_map() ? v.as_map().find("id") : nullptr;
  std::cout << (id ? id->to_text() : std::string()) << "\n";
  return 0;
}

int cmd_snapshot_inspect(const std::string& what) {
  std::string data, source, error;
  if (what.starts_with("s3://") || what.starts_with("file://")) {
    store::ObjectUrl url;
    if (!parse_url(what, &url)) return 2;
    store::ObjectStore objects;
    if (!download(objects, url, &data, &source)) return 1;
  } else {
    std::ifstream in(what, std::ios::binary);
    if (!in) {
      std::cerr << "capctl: " << what << ": no such file\n";
      return 2;
    }
    data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    source = what;
  }
  store::Snapshot s;
  std::vector<store::SnapshotMember> members;
  if (!store::read_snapshot(data, &s, &error, &members)) {
    std::cerr << "capctl: " << source << ": " << error << "\n";
    return 1;
  }
  std::cout << "snapshot      " << source << " (" << data.size() << " bytes)\n"
            << "format        " << s.format << "\n"
            << "agent         " << s.agent_name << " (cap-agent " << s.agent_version << ")\n"
            << "created_at    " << s.created_at << "\n"
            << "configuration " << s.configuration_name << "\n"
            << "mode          " << (s.mode.empty() ? "default" : s.mode)
            << (s.stopped ? " (rules stopped)" : "") << "\n"
            << "extensions    " << s.extensions.size() << "\n"
            << "vault         " << (s.vault_sealed.empty() ? "empty" : "sealed") << "\n"
            << "members (every sha256 verified):\n";
  for (const auto& m : members)
    std::cout << "  " << m.sha256 << "  " << m.size << "  " << m.name << "\n";
  return 0;
}

int cmd_snapshot_list(const std::string& where) {
  store::ObjectUrl url;
  if (!parse_url(where, &url)) return 2;
  store::ObjectStore objects;
  std::vector<store::ObjectInfo> found;
  std::string error;
  if (!objects.list(url, &found, &error)) {
    std::cerr << "capctl: " << error << "\n";
    return 1;
  }
  for (const auto& o : found) {
    std::cout << o.modified << "  " << o.size << "  " << o.url;
    std::string data, target;
    store::ObjectUrl u;
    if (o.url.ends_with("/latest") && o.size < 4096 && store::parse_object_url(o.url, &u, &error) &&
        objects.get(u, &data, &error) && store::read_snapshot_pointer(data, &target))
      std::cout << " -> " << target;
    std::cout << "\n";
  }
  if (found.empty()) std::cerr << "no objects under " << url.text << "\n";
  return 0;
}

}  // namespace cap::cli
