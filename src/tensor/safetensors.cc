#include "tensor/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

namespace ember::tensor {
namespace {

Status ErrnoStatus(const std::string& what, const std::string& path, int err) {
  std::string message = path + ": " + what + ": " + std::strerror(err);
  if (err == ENOENT) return Status::NotFound(std::move(message));
  if (err == ENOSPC || err == EDQUOT) return Status::ResourceExhausted(std::move(message));
  return Status::Internal(std::move(message));
}

bool IsValidUtf8(const std::string& text) {
  try {
    (void)nlohmann::json(text).dump();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

Status CheckName(const std::string& name, std::set<std::string_view>* seen) {
  if (name == kSafetensorsMetadataKey) {
    return Status::InvalidArgument("tensor name '__metadata__' is reserved");
  }
  if (!IsValidUtf8(name)) return Status::InvalidArgument("tensor name is not valid UTF-8");
  if (!seen->insert(name).second) {
    return Status::InvalidArgument("tensor '" + name + "' is given twice");
  }
  return Status::Ok();
}

// Validates the inputs and returns their header entries, in order.
Result<std::vector<TensorInfo>> InfosForWrite(const std::vector<NamedTensor>& tensors,
                                              const std::map<std::string, std::string>& metadata) {
  for (const auto& [key, value] : metadata) {
    if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
      return Status::InvalidArgument("metadata entry '" + key + "' is not valid UTF-8");
    }
  }
  std::set<std::string_view> seen;
  std::vector<TensorInfo> infos;
  infos.reserve(tensors.size());
  for (const NamedTensor& t : tensors) {
    EMBER_RETURN_IF_ERROR(CheckName(t.name, &seen));
    Result<TensorView> checked = TensorView::Make(t.view.dtype, t.view.shape, t.view.bytes);
    if (!checked.ok()) return checked.status().WithContext("tensor '" + t.name + "'");
    infos.push_back(TensorInfo{t.name, t.view.dtype, t.view.shape});
  }
  return infos;
}

Status WaitWritable(int fd) {
  pollfd p{fd, POLLOUT, 0};
  while (poll(&p, 1, -1) < 0) {
    if (errno != EINTR) return ErrnoStatus("poll", "fd " + std::to_string(fd), errno);
  }
  return Status::Ok();
}

Status WriteAll(int fd, std::span<const uint8_t> bytes) {
  constexpr size_t kMaxWrite = size_t{1} << 30;
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), std::min(bytes.size(), kMaxWrite));
    if (n >= 0) {
      bytes = bytes.subspan(size_t(n));
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      EMBER_RETURN_IF_ERROR(WaitWritable(fd));
    } else if (errno != EINTR) {
      return ErrnoStatus("write", "fd " + std::to_string(fd), errno);
    }
  }
  return Status::Ok();
}

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string DirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open directory", dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  return rc == 0 ? Status::Ok() : ErrnoStatus("fsync directory", dir, err);
}

// Writes and fsyncs `tmp`; closes the fd in every case.
Status WriteTempFile(const std::string& tmp, const std::vector<NamedTensor>& tensors,
                     const std::map<std::string, std::string>& metadata) {
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("create", tmp, errno);
  Status status = WriteSafetensorsTo(fd, tensors, metadata);
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoStatus("fsync", tmp, errno);
  if (::close(fd) != 0 && status.ok()) status = ErrnoStatus("close", tmp, errno);
  return status;
}

}  // namespace

Result<SafetensorsView> SafetensorsView::Parse(std::span<const uint8_t> whole) {
  SafetensorsView view;
  EMBER_ASSIGN_OR_RETURN(view.header_, ParseSafetensorsHeader(whole, whole.size()));
  view.bytes_ = whole;
  return view;
}

Result<TensorView> SafetensorsView::Find(std::string_view name) const {
  const TensorInfo* info = header_.Find(name);
  if (!info) return Status::NotFound("no tensor '" + std::string(name) + "'");
  return View(*info);
}

TensorView SafetensorsView::View(const TensorInfo& info) const {
  auto data = bytes_.subspan(header_.data_offset + info.begin, info.end - info.begin);
  return TensorView{info.dtype, info.shape, data};
}

Result<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus("stat", path, err);
  }
  SafetensorsFile file;
  file.path_ = path;
  file.map_size_ = size_t(st.st_size);
  if (file.map_size_ > 0) {  // mmap rejects length 0; the parser reports the short file
    void* map = ::mmap(nullptr, file.map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus("mmap", path, err);
    }
    file.map_ = map;
  }
  ::close(fd);
  std::span<const uint8_t> bytes(static_cast<const uint8_t*>(file.map_), file.map_size_);
  Result<SafetensorsView> view = SafetensorsView::Parse(bytes);
  if (!view.ok()) return view.status().WithContext(path);
  file.view_ = std::move(view).value();
  return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)),
      view_(std::exchange(other.view_, SafetensorsView())) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    Unmap();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_size_ = std::exchange(other.map_size_, 0);
    view_ = std::exchange(other.view_, SafetensorsView());
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { Unmap(); }

void SafetensorsFile::Unmap() {
  if (map_) ::munmap(map_, map_size_);
  map_ = nullptr;
  map_size_ = 0;
}

Status WriteSafetensorsTo(int fd, const std::vector<NamedTensor>& tensors,
                          const std::map<std::string, std::string>& metadata) {
  EMBER_ASSIGN_OR_RETURN(std::vector<TensorInfo> infos, InfosForWrite(tensors, metadata));
  std::string header = EncodeSafetensorsHeader(infos, metadata);
  if (header.size() - 8 > kMaxSafetensorsHeaderSize) {
    return Status::InvalidArgument("header of " + std::to_string(header.size() - 8) +
                                   " bytes exceeds the 100 MiB limit");
  }
  EMBER_RETURN_IF_ERROR(WriteAll(fd, AsBytes(header)));
  for (const NamedTensor& t : tensors) EMBER_RETURN_IF_ERROR(WriteAll(fd, t.view.bytes));
  return Status::Ok();
}

Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  std::string tmp = path + ".tmp";
  Status status = WriteTempFile(tmp, tensors, metadata);
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoStatus("rename to " + path, tmp, errno);
  }
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  return SyncDirectory(DirectoryOf(path));
}

}  // namespace ember::tensor
