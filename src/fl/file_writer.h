// FileWriter: writes a file atomically: bytes go to "<path>.tmp", Commit() renames it
// over <path>. A failure, or destruction without Commit, removes the temp file and leaves
// the previous <path> intact (nothing stored is lost).
//
//   EMBER_ASSIGN_OR_RETURN(FileWriter w, FileWriter::Create(path));
//   EMBER_RETURN_IF_ERROR(w.Append(bytes));
//   EMBER_RETURN_IF_ERROR(w.Commit());
//
// Thread-safety: one owner.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/status.h"

namespace ember::fl {

class FileWriter {
 public:
  static Result<FileWriter> Create(const std::string& path);
  FileWriter(FileWriter&& other) noexcept;
  FileWriter& operator=(FileWriter&&) = delete;
  ~FileWriter();

  Status Append(std::span<const uint8_t> bytes);
  Status Commit();
  uint64_t bytes_written() const { return written_; }

 private:
  FileWriter(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_ = -1;
  uint64_t written_ = 0;
};

}  // namespace ember::fl
