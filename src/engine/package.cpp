#include "cap/package.h"

#include <zip.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "cap/services.h"

namespace cap {

namespace fs = std::filesystem;

namespace {

bool read_file(const fs::path& p, std::string* out) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};
struct ZipFileCloser {
  void operator()(zip_file_t* f) const { zip_fclose(f); }
};

}  // namespace

bool read_folder(const std::string& dir, Package* out, std::string* error,
                 const PackageLimits& limits) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    *error = dir + ": not a folder";
    return false;
  }
  Package pkg;
  pkg.root = fs::absolute(dir, ec).lexically_normal().string();
  uint64_t total = 0;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end;
  if (ec) {
    *error = dir + ": " + ec.message();
    return false;
  }
  for (; it != end; it.increment(ec)) {
    if (ec) {
      *error = dir + ": " + ec.message();
      return false;
    }
    const auto& entry = *it;
    // Lexically: fs::relative would follow a symbolic link to its target, and a link out of
    // the folder would then look like a hidden "../..." entry and be skipped silently
    // instead of refused.
    std::string rel = entry.path().lexically_relative(dir).generic_string();
    if (!rel.empty() && rel[0] == '.') {  // hidden files and folders (.git, editors)
      if (entry.is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (entry.is_symlink()) {
      *error = dir + "/" + rel + ": symbolic links are not allowed in a configuration";
      return false;
    }
    if (!entry.is_regular_file()) continue;
    if (pkg.files.size() >= limits.max_entries) {
      *error = dir + ": more than " + std::to_string(limits.max_entries) + " files";
      return false;
    }
    uint64_t size = entry.file_size(ec);
    if (size > limits.max_entry_bytes) {
      *error = dir + "/" + rel + ": too large (a file of a configuration holds at most " +
               std::to_string(limits.max_entry_bytes >> 20) + " MiB)";
      return false;
    }
    if ((total += size) > limits.max_total_bytes) {
      *error = dir + "/" + rel + ": the configuration is too large (at most " +
               std::to_string(limits.max_total_bytes >> 20) + " MiB in all)";
      return false;
    }
    std::string content;
    if (!read_file(entry.path(), &content)) {
      *error = dir + "/" + rel + ": cannot be read";
      return false;
    }
    pkg.files.emplace(rel, std::move(content));
  }
  *out = std::move(pkg);
  return true;
}

bool read_zip(std::string_view bytes, Package* out, std::string* error,
              const PackageLimits& limits) {
  zip_error_t zerr;
  zip_error_init(&zerr);
  zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &zerr);
  if (!src) {
    *error = std::string("not a zip: ") + zip_error_strerror(&zerr);
    zip_error_fini(&zerr);
    return false;
  }
  std::unique_ptr<zip_t, ZipCloser> z(zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &zerr));
  if (!z) {
    zip_source_free(src);
    *error = std::string("not a valid zip: ") + zip_error_strerror(&zerr);
    zip_error_fini(&zerr);
    return false;
  }
  zip_error_fini(&zerr);
  zip_int64_t n = zip_get_num_entries(z.get(), 0);
  if (n < 0 || static_cast<uint64_t>(n) > limits.max_entries) {
    *error = "zip has too many entries (at most " + std::to_string(limits.max_entries) + ")";
    return false;
  }
  Package pkg;
  uint64_t total = 0;
  for (zip_int64_t i = 0; i < n; ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z.get(), i, 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME)) {
      *error = "zip entry " + std::to_string(i) + " cannot be read";
      return false;
    }
    std::string name = st.name;
    if (!name.empty() && name.back() == '/') continue;  // folder entry
    std::string clean = name;
    while (clean.rfind("./", 0) == 0) clean.erase(0, 2);
    if (!safe_relative_path(clean)) {
      *error = "zip entry '" + name + "' has an absolute path or '..': refused";
      return false;
    }
    if (!(st.valid & ZIP_STAT_SIZE) || st.size > limits.max_entry_bytes ||
        (total += st.size) > limits.max_total_bytes) {
      *error = "zip entry '" + name + "' is too large";
      return false;
    }
    std::unique_ptr<zip_file_t, ZipFileCloser> f(zip_fopen_index(z.get(), i, 0));
    if (!f) {
      *error = "zip entry '" + name + "' cannot be opened: " + zip_strerror(z.get());
      return false;
    }
    std::string content(st.size, '\0');
    zip_int64_t got = st.size ? zip_fread(f.get(), content.data(), st.size) : 0;
    if (got < 0 || static_cast<uint64_t>(got) != st.size) {
      *error = "zip entry '" + name + "' is corrupt";
      return false;
    }
    char extra;
    if (zip_fread(f.get(), &extra, 1) != 0) {
      *error = "zip entry '" + name + "' is larger than its header says";
      return false;
    }
    if (!pkg.files.emplace(clean, std::move(content)).second) {
      *error = "zip has entry '" + clean + "' twice";
      return false;
    }
  }
  // A zip may hold the folder itself (hello/cap.json): strip one common top folder.
  if (!pkg.files.count("cap.json") && !pkg.files.empty()) {
    std::string first = pkg.files.begin()->first;
    auto slash = first.find('/');
    if (slash != std::string::npos) {
      std::string prefix = first.substr(0, slash + 1);
      bool common = true;
      for (auto& [k, v] : pkg.files) common = common && k.rfind(prefix, 0) == 0;
      if (common && pkg.files.count(prefix + "cap.json")) {
        Package stripped;
        for (auto& [k, v] : pkg.files) stripped.files.emplace(k.substr(prefix.size()), std::move(v));
        pkg = std::move(stripped);
      }
    }
  }
  *out = std::move(pkg);
  return true;
}

bool read_path(const std::string& path, Package* out, std::string* error,
               const PackageLimits& limits) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return read_folder(path, out, error, limits);
  if (!fs::exists(path, ec)) {
    *error = path + ": no such file or folder";
    return false;
  }
  std::string bytes;
  if (fs::file_size(path, ec) > limits.max_total_bytes || !read_file(path, &bytes)) {
    *error = path + ": cannot be read or is too large";
    return false;
  }
  if (!read_zip(bytes, out, error, limits)) {
    *error = path + ": " + *error;
    return false;
  }
  return true;
}

bool write_zip(const Package& pkg, std::string* zip_bytes, std::string* error) {
  zip_error_t zerr;
  zip_error_init(&zerr);
  zip_source_t* buf = zip_source_buffer_create(nullptr, 0, 0, &zerr);
  if (!buf) {
    *error = zip_error_strerror(&zerr);
    zip_error_fini(&zerr);
    return false;
  }
  zip_source_keep(buf);
  zip_t* z = zip_open_from_source(buf, ZIP_TRUNCATE, &zerr);
  if (!z) {
    *error = zip_error_strerror(&zerr);
    zip_error_fini(&zerr);
    zip_source_free(buf);
    return false;
  }
  for (auto& [name, content] : pkg.files) {  // std::map: sorted
    zip_source_t* s = zip_source_buffer(z, content.data(), content.size(), 0);
    zip_int64_t idx = s ? zip_file_add(z, name.c_str(), s, ZIP_FL_ENC_UTF_8) : -1;
    if (idx < 0) {
      if (s) zip_source_free(s);
      *error = std::string("cannot add ") + name + ": " + zip_strerror(z);
      zip_discard(z);
      zip_source_free(buf);
      return false;
    }
    zip_file_set_mtime(z, static_cast<zip_uint64_t>(idx), 315532800 + 86400, 0);  // 1980-01-02
  }
  if (zip_close(z) != 0) {
    *error = std::string("cannot write zip: ") + zip_strerror(z);
    zip_discard(z);
    zip_source_free(buf);
    return false;
  }
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_source_stat(buf, &st) != 0 || zip_source_open(buf) != 0) {
    *error = "cannot read the zip back";
    zip_source_free(buf);
    return false;
  }
  zip_bytes->assign(st.size, '\0');
  zip_int64_t got = zip_source_read(buf, zip_bytes->data(), st.size);
  zip_source_close(buf);
  zip_source_free(buf);
  if (got < 0 || static_cast<zip_uint64_t>(got) != st.size) {
    *error = "cannot read the zip back";
    return false;
  }
  return true;
}

}  // namespace cap
