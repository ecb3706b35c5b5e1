// The console's secrets: the installation key that seals what is stored encrypted (vault
// values, agent management keys, join-token keys), password hashes (argon2id), and random
// tokens. libsodium does the work.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cap::console {

/// Encrypts and decrypts with the installation key (crypto_secretbox: XSalsa20-Poly1305).
class Sealer {
 public:
  /// Loads HOME/installation.key, creating it (32 random bytes, mode 0600) on first start.
  /// False with `error` when it cannot be read or created, or has the wrong size or a mode
  /// that lets others read it.
  bool load(const std::string& home, std::string* error);
  /// nonce + ciphertext, as base64 text.
  std::string seal(std::string_view plaintext) const;
  /// The plaintext, or nullopt when `sealed` was not made with this key or is damaged.
  std::optional<std::string> open(std::string_view sealed) const;

 private:
  std::string key_;
};

/// Initialises libsodium. False when it cannot be.
bool crypto_init();
/// An argon2id hash string (libsodium's encoded form, with its salt and limits).
std::string hash_password(std::string_view password);
/// Whether `password` matches `hash` (constant time).
bool verify_password(std::string_view hash, std::string_view password);
/// `bytes` random bytes as lower-case hex.
std::string random_hex(size_t bytes);
/// A password of 20 characters from an unambiguous alphabet.
std::string random_password();

}  // namespace cap::console
