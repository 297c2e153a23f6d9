// Cell::Start and Responder.
#include "cell/cell.h"

#include <fmt/format.h>

#include "cell/cell_impl.h"
#include "wire/message_header.h"

namespace ember::cell {
namespace {

// The deleter of the shared_ptr<Cell> handed to the user: the last user reference stops
// the cell on the user's thread, then lets the implementation go.
struct StopOnRelease {
  std::shared_ptr<CellImpl> impl;
  void operator()(Cell*) {
    impl->Stop();
    impl.reset();
  }
};

}  // namespace

Result<std::shared_ptr<Cell>> Cell::Start(CellOptions options) {
  auto config = base::ConfigOrEnvironment(std::move(options.config));
  if (!config.ok()) return config.status().WithContext(options.name + ": config");
  options.config = std::move(config).value();
  if (options.connect_timeout.count() == 0) options.connect_timeout = options.config->Get(base::kConnectTimeout);
  auto impl = std::make_shared<CellImpl>(std::move(options));
  if (Status s = impl->Init(); !s.ok()) {
    impl->Stop();
    return s;
  }
  Cell* raw = impl.get();
  return std::shared_ptr<Cell>(raw, StopOnRelease{std::move(impl)});
}

Responder::Impl::Impl(std::weak_ptr<CellImpl> cell, ReplyTarget target)
    : cell_(std::move(cell)), target_(std::move(target)) {}

Responder::Impl::~Impl() {
  if (replied_.load()) return;
  auto cell = cell_.lock();
  if (!cell) return;
  cell->SendReply(target_, wire::WireStatusName(StatusCode::kInternal),
                  fmt::format("{}: the handler for '{}' dropped the request without replying", cell->name(),
                              target_.topic),
                  Json::object(), nullptr);
}

void Responder::Impl::Send(std::string_view status, std::string error, Json h, std::shared_ptr<BodySource> body) {
  if (replied_.exchange(true)) return;
  if (auto cell = cell_.lock()) cell->SendReply(target_, status, std::move(error), std::move(h), std::move(body));
}

void Responder::Reply(Json h, std::shared_ptr<BodySource> body) {
  if (impl_) impl_->Send(wire::kStatusOk, "", std::move(h), std::move(body));
}

void Responder::Error(StatusCode code, std::string message) {
  if (!impl_) return;
  if (code == StatusCode::kOk) code = StatusCode::kInternal;  // an error must not read as success
  impl_->Send(wire::WireStatusName(code), std::move(message), Json::object(), nullptr);
}

std::string Responder::peer() const { return impl_ ? impl_->target().src : std::string(); }

}  // namespace ember::cell
