// A configuration's files, from a folder or a zip (its wire form).
//
// Reading checks every entry: no absolute paths, no "..", no links out of the folder, no
// NUL bytes, and limits on entry count, entry size and total size, so a hostile zip is
// refused with a clear error before anything is extracted or run.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace cap {

struct PackageLimits {
  size_t max_entries = 10000;
  uint64_t max_entry_bytes = 256ull << 20;
  uint64_t max_total_bytes = 512ull << 20;
};

struct Package {
  /// Relative path ("cap.json", "rulesets/main.json", "data/x.csv") -> content.
  std::map<std::string, std::string, std::less<>> files;
  /// The folder the files came from, when they came from one ("" for a zip); data files
  /// are reloaded from here when they change.
  std::string root;

  const std::string* find(std::string_view path) const {
    auto it = files.find(path);
    return it == files.end() ? nullptr : &it->second;
  }
};

/// Reads a configuration folder. Returns false with `error` on failure.
bool read_folder(const std::string& dir, Package* out, std::string* error,
                 const PackageLimits& limits = {});
/// Reads a zip held in memory.
bool read_zip(std::string_view zip_bytes, Package* out, std::string* error,
              const PackageLimits& limits = {});
/// Reads a folder or a .zip file, whichever `path` is.
bool read_path(const std::string& path, Package* out, std::string* error,
               const PackageLimits& limits = {});
/// Writes the package as a zip (entries sorted, fixed timestamps, so the same files give
/// the same bytes).
bool write_zip(const Package& pkg, std::string* zip_bytes, std::string* error);

}  // namespace cap
