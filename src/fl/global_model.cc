#include "fl/global_model.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "fl/file_writer.h"

namespace ember::fl {

namespace {

// A file read with pread: safe for concurrent readers, nothing mapped into the process.
class PreadBody final : public cell::BodySource {
 public:
  PreadBody(int fd, uint64_t size) : fd_(fd), size_(size) {}
  ~PreadBody() override { ::close(fd_); }
  uint64_t size() const override { return size_; }
  Result<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    if (offset >= size_) return size_t{0};
    size_t want = std::min<uint64_t>(out.size(), size_ - offset), done = 0;
    while (done < want) {
      ssize_t n = ::pread(fd_, out.data() + done, want - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Status::DataLoss(std::string("reading the model file: ") + std::strerror(errno));
      done += static_cast<size_t>(n);
    }
    return done;
  }

 private:
  int fd_;
  uint64_t size_;
};

}  // namespace

Result<GlobalModel> GlobalModel::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::NotFound("cannot open model file " + path + ": " + std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  GlobalModel m;
  m.path_ = path;
  m.body_ = std::make_shared<PreadBody>(fd, static_cast<uint64_t>(st.st_size));
  uint8_t first8[8] = {};
  EMBER_ASSIGN_OR_RETURN(size_t got, m.body_->ReadAt(0, first8));
  auto n = tensor::ParseSafetensorsHeaderSize({first8, got}, m.size());
  if (!n.ok()) return n.status().WithContext(path);
  std::vector<uint8_t> prefix(8 + *n);
  EMBER_RETURN_IF_ERROR(m.body_->ReadAt(0, prefix).status());
  auto header = tensor::ParseSafetensorsHeader(prefix, m.size());
  if (!header.ok()) return header.status().WithContext(path);
  m.header_ = std::make_shared<const tensor::SafetensorsHeader>(std::move(header).value());
  return m;
}

Status GlobalModel::ReadTensor(const tensor::TensorInfo& info, uint64_t offset, std::span<uint8_t> out) const {
  EMBER_ASSIGN_OR_RETURN(size_t n, body_->ReadAt(header_->data_offset + info.begin + offset, out));
  if (n != out.size()) return Status::DataLoss(path_ + ": tensor '" + info.name + "' is truncated");
  return Status::Ok();
}

Status GlobalModel::CopyTo(const std::string& path) const {
  EMBER_ASSIGN_OR_RETURN(FileWriter out, FileWriter::Create(path));
  std::vector<uint8_t> buf(1 << 20);
  for (uint64_t off = 0; off < size();) {
    EMBER_ASSIGN_OR_RETURN(size_t n, body_->ReadAt(off, buf));
    EMBER_RETURN_IF_ERROR(out.Append({buf.data(), n}));
    off += n;
  }
  return out.Commit();
}

}  // namespace ember::fl
