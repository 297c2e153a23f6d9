// Reading safetensors images (in memory or mmapped from a file) and writing them
// streamed, tensor by tensor, without building the whole image in memory. The format
// and limits are in tensor/safetensors_header.h and docs/wire-format.md §5.
//
//   EMBER_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open("model.safetensors"));
//   EMBER_ASSIGN_OR_RETURN(TensorView w, file.Find("fc1.weight"));
//   EMBER_RETURN_IF_ERROR(WriteSafetensors("out.safetensors", {{"fc1.weight", w}}, {}));
//
// Thread-safety: SafetensorsView and SafetensorsFile are immutable after construction;
// const methods may be called from any thread. A file is mapped read-only and private;
// WriteSafetensors replaces files by rename, so existing mappings stay valid. Truncating
// a mapped file in place (outside Ember) would fault readers.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "tensor/safetensors_header.h"
#include "tensor/tensor.h"

namespace ember::tensor {

// A parsed safetensors image over bytes the caller owns (and keeps alive).
class SafetensorsView {
 public:
  // Validates the header of `whole` (see ParseSafetensorsHeader).
  static Result<SafetensorsView> Parse(std::span<const uint8_t> whole);

  // Sorted by data offset.
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const SafetensorsHeader& header() const { return header_; }
  std::span<const uint8_t> bytes() const { return bytes_; }

  // NotFound "no tensor 'x'" if absent.
  Result<TensorView> Find(std::string_view name) const;
  // REQUIRES: info is one of tensors().
  TensorView View(const TensorInfo& info) const;

 private:
  friend class SafetensorsFile;
  SafetensorsView() = default;

  std::span<const uint8_t> bytes_;
  SafetensorsHeader header_;
};

// A safetensors file mapped read-only. Move-only; unmaps on destruction. Views returned
// by Find() point into the mapping and must not outlive this object.
class SafetensorsFile {
 public:
  // NotFound if the file does not exist; DataLoss naming the path if it is too short or
  // its header is inconsistent ("m.safetensors: header claims 900 bytes but file holds
  // 10 bytes").
  static Result<SafetensorsFile> Open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  std::span<const uint8_t> bytes() const { return view_.bytes(); }
  const std::vector<TensorInfo>& tensors() const { return view_.tensors(); }
  const std::map<std::string, std::string>& metadata() const { return view_.metadata(); }
  const SafetensorsView& view() const { return view_; }
  Result<TensorView> Find(std::string_view name) const { return view_.Find(name); }

 private:
  SafetensorsFile() = default;
  void Unmap();

  std::string path_;
  void* map_ = nullptr;  // nullptr when nothing is mapped
  size_t map_size_ = 0;
  SafetensorsView view_;
};

struct NamedTensor {
  std::string name;
  TensorView view;
};

// Writes header then tensors, in the given order, to `fd` with write(2), handling short
// writes, EINTR and (with poll) EAGAIN. Validates everything before the first byte is
// written: unique UTF-8 names, not "__metadata__", bytes matching dtype and shape.
// Does not close `fd`. A peer closing a pipe/socket raises SIGPIPE unless ignored.
Status WriteSafetensorsTo(int fd, const std::vector<NamedTensor>& tensors,
                          const std::map<std::string, std::string>& metadata);

// Writes `path + ".tmp"`, fsyncs it, renames it over `path` and fsyncs the directory.
// On failure the previous `path` is left intact and the temporary file is removed.
Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                        const std::map<std::string, std::string>& metadata);

}  // namespace ember::tensor
