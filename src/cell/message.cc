#include "cell/message.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "wire/message_header.h"

namespace ember::cell {
namespace {

// A read-only private mapping of a whole file; unmapped when the last reader lets go.
class MappedFileBody final : public wire::ContiguousBody {
 public:
  MappedFileBody(void* data, uint64_t size) : data_(data), size_(size) {}
  ~MappedFileBody() override { munmap(data_, size_); }
  uint64_t size() const override { return size_; }
  const uint8_t* contiguous() const override { return static_cast<const uint8_t*>(data_); }

 private:
  void* const data_;
  const uint64_t size_;
};

Status ErrnoStatus(const std::string& what, const std::string& path) {
  int e = errno;
  std::string m = fmt::format("{} {}: {}", what, path, std::strerror(e));
  return e == ENOENT ? Status::NotFound(std::move(m)) : Status::Unavailable(std::move(m));
}

}  // namespace

std::shared_ptr<BodySource> BytesBody(std::string bytes) { return wire::BytesBody(std::move(bytes)); }

Result<std::shared_ptr<BodySource>> FileBody(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    Status s = ErrnoStatus("stat", path);
    ::close(fd);
    return s;
  }
  if (st.st_size == 0) {
    ::close(fd);
    return wire::BytesBody("");
  }
  void* data = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  Status map_error = data == MAP_FAILED ? ErrnoStatus("mmap", path) : Status::Ok();
  ::close(fd);  // the mapping stays valid
  if (!map_error.ok()) return map_error;
  ::madvise(data, static_cast<size_t>(st.st_size), MADV_SEQUENTIAL);
  return std::shared_ptr<BodySource>(std::make_shared<MappedFileBody>(data, st.st_size));
}

Message Message::Make(std::string topic, Json h, std::shared_ptr<BodySource> body) {
  Message m;
  m.header["topic"] = std::move(topic);
  m.header["h"] = h.is_null() ? Json::object() : std::move(h);
  m.body = std::move(body);
  return m;
}

const Json& Message::h() const {
  static const Json kEmpty = Json::object();
  auto it = header.find("h");
  return it == header.end() ? kEmpty : *it;
}

Json& Message::h() {
  Json& h = header["h"];
  if (h.is_null()) h = Json::object();
  return h;
}

Status Message::status() const {
  auto it = header.find("status");
  if (it == header.end() || !it->is_string() || *it == wire::kStatusOk) return Status::Ok();
  std::string error = header.value("error", std::string());
  std::string name = it->get<std::string>();
  if (error.empty()) error = name;
  return Status(wire::StatusCodeFromWire(name), std::move(error));
}

}  // namespace ember::cell
