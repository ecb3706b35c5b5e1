#include "agent/snapshot.h"

#include <filesystem>

#include "agent/durable_file.h"
#include "agent/logging.h"
#include "store/object_store.h"
#include "store/snapshot_format.h"

#if defined(CAP_HAVE_SODIUM)
#include <sodium.h>
#endif

namespace cap::agent {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kSealMagic = "CAPVAULT1\n";

/// Reads every regular file of the extensions folder (none when it does not exist).
bool read_extensions(const std::string& dir, std::map<std::string, std::string>* out,
                     std::string* error) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return true;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file()) continue;
    std::string name = e.path().filename().string();
    if (!store::valid_extension_file_name(name)) {
      *error = "the extensions folder holds '" + name +
               "', which is not a valid extension file name (A-Z a-z 0-9 . _ -)";
      return false;
    }
    std::string bytes;
    if (!read_whole_file(e.path().string(), &bytes, error)) return false;
    out->emplace(name, std::move(bytes));
  }
  if (ec) {
    *error = dir + ": " + ec.message();
    return false;
  }
  return true;
}

/// The extensions folder swapped whole: staged beside it, then renamed into place; the old
/// folder is kept until commit() so that revert() can put it back.
class ExtensionsSwap {
 public:
  explicit ExtensionsSwap(std::string dir)
      : dir_(std::move(dir)), staged_(dir_ + ".restoring"), previous_(dir_ + ".previous") {}

  bool stage(const std::map<std::string, std::string>& files, std::string* error) {
    std::error_code ec;
    // A swap torn by a crash between its two renames left only the old folder aside.
    if (!fs::exists(dir_, ec) && fs::exists(previous_, ec)) fs::rename(previous_, dir_, ec);
    fs::remove_all(staged_, ec);
    if (!ensure_dir(staged_, error, 0700)) return false;
    for (const auto& [name, bytes] : files)
      if (!write_file_durably(staged_ + "/" + name, bytes, error, 0600)) return false;
    return true;
  }
  bool swap_in(std::string* error) {
    std::error_code ec;
    fs::remove_all(previous_, ec);
    had_previous_ = fs::exists(dir_, ec);
    if (had_previous_) {
      fs::rename(dir_, previous_, ec);
      if (ec) {
        *error = "cannot move " + dir_ + " aside: " + ec.message();
        return false;
      }
    }
    fs::rename(staged_, dir_, ec);
    if (ec) {
      *error = "cannot move the restored extensions into " + dir_ + ": " + ec.message();
      if (had_previous_) fs::rename(previous_, dir_, ec);
      return false;
    }
    swapped_ = true;
    return true;
  }
  void revert() {
    std::error_code ec;
    if (swapped_) {
      fs::remove_all(dir_, ec);
      if (had_previous_) fs::rename(previous_, dir_, ec);
      swapped_ = false;
    }
    fs::remove_all(staged_, ec);
  }
  void commit() {
    std::error_code ec;
    fs::remove_all(previous_, ec);
    swapped_ = false;
  }

 private:
  std::string dir_, staged_, previous_;
  bool had_previous_ = false;
  bool swapped_ = false;
};

}  // namespace

#if defined(CAP_HAVE_SODIUM)

namespace {

constexpr unsigned char kPersonal[crypto_generichash_blake2b_PERSONALBYTES] = {
    'c', 'a', 'p', '-', 's', 'n', 'a', 'p', '-', 'v', 'a', 'u', 'l', 't', '-', '1'};

void derive_key(std::string_view mgmt_key, const unsigned char* salt, unsigned char* key) {
  crypto_generichash_blake2b_salt_personal(key, crypto_secretbox_KEYBYTES,
                                           reinterpret_cast<const unsigned char*>(mgmt_key.data()),
                                           mgmt_key.size(), nullptr, 0, salt, kPersonal);
}

}  // namespace

bool seal_vault_for_snapshot(std::string_view plain, std::string_view mgmt_key, std::string* sealed,
                             std::string* error) {
  if (sodium_init() < 0) {
    *error = "libsodium cannot start";
    return false;
  }
  constexpr size_t kSalt = crypto_generichash_blake2b_SALTBYTES;
  std::string out(kSealMagic);
  size_t head = out.size();
  out.resize(head + kSalt + crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + plain.size());
  auto* salt = reinterpret_cast<unsigned char*>(out.data() + head);
  auto* nonce = salt + kSalt;
  randombytes_buf(salt, kSalt);
  randombytes_buf(nonce, crypto_secretbox_NONCEBYTES);
  unsigned char key[crypto_secretbox_KEYBYTES];
  derive_key(mgmt_key, salt, key);
  crypto_secretbox_easy(nonce + crypto_secretbox_NONCEBYTES,
                        reinterpret_cast<const unsigned char*>(plain.data()), plain.size(), nonce,
                        key);
  sodium_memzero(key, sizeof key);
  *sealed = std::move(out);
  return true;
}

bool open_vault_from_snapshot(std::string_view sealed, std::string_view mgmt_key,
                              std::string* plain, std::string* error) {
  if (sodium_init() < 0) {
    *error = "libsodium cannot start";
    return false;
  }
  constexpr size_t kSalt = crypto_generichash_blake2b_SALTBYTES;
  const size_t head = kSealMagic.size();
  if (!sealed.starts_with(kSealMagic) ||
      sealed.size() < head + kSalt + crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES) {
    *error = "the vault in the snapshot is damaged (vault.sealed has the wrong form)";
    return false;
  }
  const auto* salt = reinterpret_cast<const unsigned char*>(sealed.data() + head);
  const auto* nonce = salt + kSalt;
  const auto* box = nonce + crypto_secretbox_NONCEBYTES;
  const size_t box_len = sealed.size() - head - kSalt - crypto_secretbox_NONCEBYTES;
  unsigned char key[crypto_secretbox_KEYBYTES];
  derive_key(mgmt_key, salt, key);
  std::string out(box_len - crypto_secretbox_MACBYTES, '\0');
  int rc = crypto_secretbox_open_easy(reinterpret_cast<unsigned char*>(out.data()), box, box_len,
                                      nonce, key);
  sodium_memzero(key, sizeof key);
  if (rc != 0) {
    *error =
        "the vault in the snapshot does not open with this agent's CAP_MGMT_KEY: the snapshot "
        "was captured by an agent with another management key (restore it into agents that "
        "share the key)";
    return false;
  }
  *plain = std::move(out);
  return true;
}

#else

bool seal_vault_for_snapshot(std::string_view, std::string_view, std::string*, std::string* error) {
  *error = "this build has no libsodium";
  return false;
}

bool open_vault_from_snapshot(std::string_view, std::string_view, std::string*,
                              std::string* error) {
  *error = "this build has no libsodium, so it cannot open the vault of a snapshot";
  return false;
}

#endif

SnapshotService::SnapshotService(const Settings& settings, Activator& activator, AgentVault& vault)
    : settings_(settings), activator_(activator), vault_(vault) {}

std::string SnapshotService::extensions_dir() const { return settings_.home + "/extensions"; }

CommandResult SnapshotService::capture(std::string* zip) {
  store::Snapshot s;
  std::string error;
  if (!activator_.active_state(&s.configuration_zip, &s.configuration_name, &s.mode, &s.stopped,
                               &error)) {
    if (error == "no configuration is active")
      return command_failure(409, "no configuration is active: there is nothing to snapshot");
    return command_failure(500, "cannot read the active configuration", {error});
  }
  if (!read_extensions(extensions_dir(), &s.extensions, &error))
    return command_failure(500, "cannot read the installed extensions", {error});
  Value creds = vault_.credentials();
  if (creds.is_map() && !creds.as_map().empty()) {
    if (settings_.mgmt_key.empty())
      return command_failure(503, "the vault cannot be sealed without CAP_MGMT_KEY");
    std::string plain = to_json(creds);
    bool sealed = seal_vault_for_snapshot(plain, settings_.mgmt_key, &s.vault_sealed, &error);
    std::fill(plain.begin(), plain.end(), '\0');
    if (!sealed) return command_failure(500, "cannot seal the vault", {error});
  }
  s.agent_version = CAP_VERSION;
  s.agent_name = settings_.agent_name;
  s.created_at = iso8601_utc(SystemClock().now_ms());
  if (!store::write_snapshot(s, zip, &error))
    return command_failure(500, "cannot write the snapshot", {error});
  // What this agent could not restore itself is refused here rather than found out later.
  store::Snapshot check;
  if (!store::read_snapshot(*zip, &check, &error))
    return command_failure(409, "the agent's state cannot be captured as a restorable snapshot",
                           {error});
  agent_log().info("snapshot captured: configuration {}, {} extensions, vault {}, {} bytes",
                   s.configuration_name, s.extensions.size(),
                   s.vault_sealed.empty() ? "empty" : "sealed", zip->size());
  return {};
}

CommandResult SnapshotService::restore(std::string_view zip) {
  store::Snapshot s;
  std::string error;
  if (!store::read_snapshot(zip, &s, &error))
    return command_failure(422, "the snapshot is not valid", {error});

  // The vault must open before anything changes.
  Value creds{Map()};
  if (!s.vault_sealed.empty()) {
    if (!AgentVault::available())
      return command_failure(422,
                             "the snapshot holds a vault, and this cap-agent has no libsodium");
    if (settings_.mgmt_key.empty())
      return command_failure(
          422,
          "the snapshot holds a vault sealed with the management key, and this agent "
          "has no CAP_MGMT_KEY");
    std::string plain;
    if (!open_vault_from_snapshot(s.vault_sealed, settings_.mgmt_key, &plain, &error))
      return command_failure(422, "the snapshot's vault cannot be opened", {error});
    std::string parse_error;
    creds = json_parse(plain, &parse_error);
    std::fill(plain.begin(), plain.end(), '\0');
    if (!parse_error.empty() || !creds.is_map())
      return command_failure(422, "the snapshot's vault opens but does not hold credentials");
  }

  // Extensions: staged, swapped in whole, reloaded.
  ExtensionsSwap extensions(extensions_dir());
  if (!extensions.stage(s.extensions, &error) || !extensions.swap_in(&error)) {
    extensions.revert();
    return command_failure(500, "cannot write the extensions in CAP_HOME", {error});
  }
  auto reload = [&](std::string* why) { return !reload_extensions || reload_extensions(why); };
  if (!reload(&error)) {
    extensions.revert();
    std::string ignored;
    reload(&ignored);
    return command_failure(422, "the snapshot's extensions cannot be loaded", {error});
  }

  // The vault, keeping the old credentials to put back.
  Value old_creds = vault_.credentials();
  bool vault_changed = false;
  if (!(creds.as_map().empty() && old_creds.as_map().empty())) {
    if (!vault_.replace(creds, &error)) {
      extensions.revert();
      std::string ignored;
      reload(&ignored);
      return command_failure(500, "cannot store the snapshot's vault", {error});
    }
    vault_changed = true;
  }

  // The configuration, in its mode, last: it validates before it replaces anything.
  CommandResult r = activator_.activate(s.configuration_zip, s.mode, s.stopped);
  if (r.status != 200) {
    std::string ignored;
    if (vault_changed) vault_.replace(old_creds, &ignored);
    extensions.revert();
    reload(&ignored);
    r.error = "the snapshot's configuration cannot be activated: " + r.error;
    return r;
  }
  extensions.commit();
  agent_log().info(
      "snapshot restored: configuration {} as {}{}, {} extensions, {} vault credentials "
      "(captured {} by {})",
      s.configuration_name, r.id, s.mode.empty() ? "" : " in mode " + s.mode, s.extensions.size(),
      creds.as_map().size(), s.created_at, s.agent_name);
  return r;
}

bool SnapshotService::restore_gold_master(const std::string& url_text, std::string* error) {
  store::ObjectUrl url;
  std::string why;
  if (!store::parse_object_url(url_text, &url, &why)) {
    *error = "not a valid snapshot URL: " + why;
    return false;
  }
  store::ObjectStore objects;
  auto fetch = [&](const store::ObjectUrl& u, std::string* data) {
    store::S3Failure kind = store::S3Failure::None;
    std::string e;
    if (objects.get(u, data, &e, &kind)) return true;
    const char* what = kind == store::S3Failure::NotFound       ? "missing object"
                       : kind == store::S3Failure::AccessDenied ? "access denied"
                       : kind == store::S3Failure::Unreachable  ? "unreachable endpoint"
                       : kind == store::S3Failure::Credentials  ? "no credentials"
                                                                : "cannot download";
    if (e.starts_with(u.text + ": ")) e.erase(0, u.text.size() + 2);
    *error = std::string(what) + ": " + e + (u.text == url_text ? "" : " (at " + u.text + ")");
    return false;
  };
  auto started = std::chrono::steady_clock::now();
  std::string data;
  if (!fetch(url, &data)) return false;
  std::string target;
  if (store::read_snapshot_pointer(data, &target)) {
    store::ObjectUrl next;
    if (!store::parse_object_url(target, &next, &why)) {
      *error = "the pointer object names an invalid URL: " + why;
      return false;
    }
    agent_log().info("gold master {} points to {}", url_text, target);
    if (!fetch(next, &data)) return false;
    if (store::read_snapshot_pointer(data, &target)) {
      *error = "the pointer object names another pointer (" + next.text + "); point to a snapshot";
      return false;
    }
    url = next;
  }
  auto fetched = std::chrono::steady_clock::now();
  CommandResult r = restore(data);
  if (r.status != 200) {
    *error = r.error;
    for (auto& d : r.details) *error += ": " + d;
    if (url.text != url_text) *error += " (at " + url.text + ")";
    return false;
  }
  auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  agent_log().info("gold master {} restored ({} bytes; download {} ms, restore {} ms)", url.text,
                   data.size(), ms(fetched - started),
                   ms(std::chrono::steady_clock::now() - fetched));
  return true;
}

}  // namespace cap::agent
