#include "agent/vault.h"

#include <filesystem>

#include "agent/durable_file.h"

#if defined(CAP_HAVE_SODIUM)
#include <sodium.h>
#endif

namespace cap::agent {

AgentVault::AgentVault(std::string home)
    : home_(std::move(home)), creds_(std::make_shared<const Creds>()) {}

bool AgentVault::available() {
#if defined(CAP_HAVE_SODIUM)
  return sodium_init() >= 0;
#else
  return false;
#endif
}

std::optional<std::string> AgentVault::get(std::string_view name, std::string_view field) const {
  std::shared_ptr<const Creds> c = creds_.load(std::memory_order_acquire);
  auto it = c->find(name);
  if (it == c->end()) return std::nullopt;
  auto f = it->second.find(std::string(field));
  if (f == it->second.end()) return std::nullopt;
  return f->second;
}

std::vector<std::string> AgentVault::names() const {
  std::vector<std::string> out;
  for (auto& [name, fields] : *creds_.load()) out.push_back(name);
  return out;
}

namespace {

/// Converts the request body's credentials; false with `error` naming the bad entry.
template <typename Creds>
bool to_creds(const Value& v, Creds* out, std::string* error) {
  if (!v.is_map()) {
    *error =
        "the vault must be a JSON object of NAME -> {\"field\": \"secret\"} or NAME -> \"secret\"";
    return false;
  }
  for (const auto& [name, entry] : v.as_map()) {
    if (name.empty() || name.size() > 200) {
      *error = "a credential name must have 1 to 200 characters";
      return false;
    }
    auto& fields = (*out)[name];
    if (entry.is_string()) {
      fields[""] = entry.as_string();
    } else if (entry.is_map()) {
      for (const auto& [field, secret] : entry.as_map()) {
        if (!secret.is_string()) {
          *error = "credential '" + name + "', field '" + field + "': the secret must be a string";
          return false;
        }
        fields[field] = secret.as_string();
      }
    } else {
      *error = "credential '" + name + "': must be a string or an object of field -> secret";
      return false;
    }
  }
  return true;
}

template <typename Creds>
Value from_creds(const Creds& c) {
  Map m;
  for (auto& [name, fields] : c) {
    Map f;
    for (auto& [field, secret] : fields) f.set(field, Value(secret));
    m.set(name, Value(std::move(f)));
  }
  return Value(std::move(m));
}

}  // namespace

Value AgentVault::credentials() const { return from_creds(*creds_.load()); }

#if defined(CAP_HAVE_SODIUM)

bool AgentVault::key(std::string* key, bool create, std::string* error) const {
  std::string path = home_ + "/vault.key";
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    if (!read_whole_file(path, key, error)) return false;
    if (key->size() != crypto_secretbox_KEYBYTES) {
      *error = "the vault key " + path + " has the wrong size";
      return false;
    }
    return true;
  }
  if (!create) {
    *error = "the vault key " + path + " is missing";
    return false;
  }
  key->assign(crypto_secretbox_KEYBYTES, '\0');
  crypto_secretbox_keygen(reinterpret_cast<unsigned char*>(key->data()));
  return write_file_durably(path, *key, error, 0600);
}

bool AgentVault::load(std::string* error) {
  if (!available()) return true;  // nothing can have been stored
  std::string path = home_ + "/vault.bin";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return true;
  std::string sealed, k;
  if (!read_whole_file(path, &sealed, error) || !key(&k, false, error)) return false;
  if (sealed.size() < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES) {
    *error = "the vault file " + path + " is too short: it is corrupt";
    return false;
  }
  std::string plain(sealed.size() - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES, '\0');
  const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data());
  const auto* box = nonce + crypto_secretbox_NONCEBYTES;
  if (crypto_secretbox_open_easy(reinterpret_cast<unsigned char*>(plain.data()), box,
                                 sealed.size() - crypto_secretbox_NONCEBYTES, nonce,
                                 reinterpret_cast<const unsigned char*>(k.data())) != 0) {
    sodium_memzero(k.data(), k.size());
    *error = "the vault file " + path + " does not decrypt with " + home_ +
             "/vault.key: it is corrupt or from another key";
    return false;
  }
  sodium_memzero(k.data(), k.size());
  std::string parse_error;
  Value doc = json_parse(plain, &parse_error);
  sodium_memzero(plain.data(), plain.size());
  auto creds = std::make_shared<Creds>();
  if (!parse_error.empty() || !to_creds(doc, creds.get(), error)) {
    *error = "the vault file " + path + " decrypts but does not hold credentials";
    return false;
  }
  creds_.store(std::move(creds), std::memory_order_release);
  return true;
}

bool AgentVault::replace(const Value& credentials, std::string* error) {
  auto creds = std::make_shared<Creds>();
  if (!to_creds(credentials, creds.get(), error)) return false;
  if (!available()) {
    *error = "libsodium is not available";
    return false;
  }
  std::string k;
  if (!key(&k, true, error)) return false;
  std::string plain = to_json(from_creds(*creds));
  std::string sealed(crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + plain.size(), '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(sealed.data());
  randombytes_buf(nonce, crypto_secretbox_NONCEBYTES);
  crypto_secretbox_easy(nonce + crypto_secretbox_NONCEBYTES,
                        reinterpret_cast<const unsigned char*>(plain.data()), plain.size(), nonce,
                        reinterpret_cast<const unsigned char*>(k.data()));
  sodium_memzero(plain.data(), plain.size());
  sodium_memzero(k.data(), k.size());
  if (!write_file_durably(home_ + "/vault.bin", sealed, error, 0600)) return false;
  creds_.store(std::move(creds), std::memory_order_release);
  return true;
}

#else  // no libsodium in this build

bool AgentVault::key(std::string*, bool, std::string* error) const {
  *error = "this build has no libsodium";
  return false;
}

bool AgentVault::load(std::string*) { return true; }

bool AgentVault::replace(const Value& credentials, std::string* error) {
  Creds creds;
  if (!to_creds(credentials, &creds, error)) return false;
  *error =
      "this cap-agent was built without libsodium, so it cannot store credentials encrypted; "
      "rebuild with libsodium linked (CAP_HAVE_SODIUM)";
  return false;
}

#endif

}  // namespace cap::agent
