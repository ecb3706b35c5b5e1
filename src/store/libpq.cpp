#include "store/libpq.h"

#include <dlfcn.h>

#include <mutex>

namespace cap::store {

namespace {

std::mutex g_mu;
LibPq g_api;
bool g_loaded = false;

}  // namespace

bool load_libpq(std::string* error) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (g_loaded) return true;
  void* h = ::dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* why = ::dlerror();
    *error = std::string("PostgreSQL needs libpq (Debian package libpq5): ") +
             (why ? why : "it cannot be loaded");
    return false;
  }
  LibPq api;
  std::string missing;
#define CAP_LIBPQ_LOAD(name)                                          \
  api.name = reinterpret_cast<decltype(api.name)>(::dlsym(h, #name)); \
  if (!api.name && missing.empty()) missing = #name;
  CAP_LIBPQ_FUNCTIONS(CAP_LIBPQ_LOAD)
#undef CAP_LIBPQ_LOAD
  if (!missing.empty()) {
    *error = "PostgreSQL needs libpq 10 or later: the loaded libpq has no " + missing;
    ::dlclose(h);
    return false;
  }
  g_api = api;  // the library stays loaded for the life of the process
  g_loaded = true;
  return true;
}

const LibPq& libpq() { return g_api; }

}  // namespace cap::store
