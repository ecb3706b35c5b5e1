// Crash-safe files: a write either lands whole or leaves the old file untouched.
//
// write_file_durably writes a temporary file beside the target, fsyncs it, renames it over
// the target and fsyncs the folder, so after a crash at any moment the target holds the old
// or the new content, never a torn mix.
#pragma once

#include <string>
#include <string_view>

namespace cap::agent {

/// Writes `data` to `path` crash-safely with permissions `mode`. False with `error`.
bool write_file_durably(const std::string& path, std::string_view data, std::string* error,
                        unsigned mode = 0644);
/// Reads a whole file. False with `error` when it cannot be read.
bool read_whole_file(const std::string& path, std::string* out, std::string* error);
/// Creates `dir` (and its parents) when missing, with `mode`. False with `error`.
bool ensure_dir(const std::string& dir, std::string* error, unsigned mode = 0755);
/// Renames `path` to `path.corrupt` (or .corrupt.N when taken), keeping a bad file for
/// inspection; returns the new name or "" when it could not be moved.
std::string set_aside_as_corrupt(const std::string& path);

}  // namespace cap::agent
