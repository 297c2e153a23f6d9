#include "fl/global_model.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace ember::fl {

Result<GlobalModel> GlobalModel::FromBytes(std::string image) {
  GlobalModel m;
  m.body_ = cell::BytesBody(std::move(image));
  std::span<const uint8_t> bytes(m.body_->contiguous(), m.body_->size());
  EMBER_ASSIGN_OR_RETURN(tensor::SafetensorsView view, tensor::SafetensorsView::Parse(bytes));
  m.view_ = std::make_shared<tensor::SafetensorsView>(std::move(view));
  return m;
}

Result<GlobalModel> GlobalModel::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open model file " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  auto m = FromBytes(ss.str());
  if (!m.ok()) return m.status().WithContext(path);
  return m;
}

Status GlobalModel::Save(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Internal("cannot create " + tmp + ": " + std::strerror(errno));
  const uint8_t* p = body_->contiguous();
  uint64_t left = body_->size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status s = Status::Internal("writing " + tmp + ": " + std::strerror(errno));
      ::close(fd);
      return s;
    }
    p += n;
    left -= static_cast<uint64_t>(n);
  }
  if (::close(fd) != 0 || std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::Internal("saving " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace ember::fl
