#include "fl/result_folder.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ember::fl {

// Turns parser pieces into whole-element AddElements calls with one weight, keeping the
// bytes of an element split between pieces. The same class folds the live stream and
// replays the journal with the negated weight, so both add exactly the same elements.
class ResultFolder::Pass {
 public:
  Pass(tensor::StreamingSum& sum, double weight, const std::regex* exclude)
      : sum_(sum), weight_(weight), exclude_(exclude) {}

  Status OnData(const tensor::TensorInfo& t, uint64_t offset, std::span<const uint8_t> bytes) {
    if (exclude_ && std::regex_search(t.name, *exclude_)) return Status::Ok();
    const int64_t index = sum_.IndexOf(t.name);
    if (index < 0) return Status::Ok();  // Validate() already refused unknown tensors
    if (offset == 0) sent_.push_back(static_cast<size_t>(index));
    const size_t esize = tensor::DTypeSize(t.dtype);
    uint64_t pos = offset;
    if (partial_size_ > 0) {
      const size_t take = std::min(esize - partial_size_, bytes.size());
      std::memcpy(partial_ + partial_size_, bytes.data(), take);
      partial_size_ += take;
      bytes = bytes.subspan(take);
      pos += take;
      if (partial_size_ < esize) return Status::Ok();
      EMBER_RETURN_IF_ERROR(sum_.AddElements(index, t.dtype, pos / esize - 1, {partial_, esize}, weight_));
      partial_size_ = 0;
    }
    const size_t whole = bytes.size() / esize * esize;
    EMBER_RETURN_IF_ERROR(sum_.AddElements(index, t.dtype, pos / esize, bytes.subspan(0, whole), weight_));
    partial_size_ = bytes.size() - whole;
    if (partial_size_ > 0) std::memcpy(partial_, bytes.data() + whole, partial_size_);
    return Status::Ok();
  }
  const std::vector<size_t>& sent() const { return sent_; }

 private:
  tensor::StreamingSum& sum_;
  const double weight_;
  const std::regex* exclude_;
  uint8_t partial_[8] = {};
  size_t partial_size_ = 0;
  std::vector<size_t> sent_;  // tensors whose first piece was folded
};

ResultFolder::ResultFolder(tensor::StreamingSum& sum, uint64_t body_size, FoldOptions options)
    : sum_(sum), body_size_(body_size), options_(std::move(options)), parser_(body_size),
      pass_(std::make_unique<Pass>(sum, options_.weight, options_.exclude)) {
  parser_.on_data = [this](const tensor::TensorInfo& t, uint64_t offset, std::span<const uint8_t> b) {
    if (!validated_) {  // the header is complete once the first piece arrives
      EMBER_RETURN_IF_ERROR(Validate(parser_.header()));
      validated_ = true;
    }
    return pass_->OnData(t, offset, b);
  };
}

ResultFolder::~ResultFolder() {
  if (!finished_ && !cancelled_) (void)Cancel();
}

Status ResultFolder::Validate(const tensor::SafetensorsHeader& header) const {
  for (const auto& t : header.tensors) {
    if (options_.exclude && std::regex_search(t.name, *options_.exclude)) continue;
    const int64_t index = sum_.IndexOf(t.name);
    if (index < 0) return Status::InvalidArgument("tensor '" + t.name + "' is not in the global model");
    const auto& g = sum_.info(index);
    if (g.shape != t.shape) {
      return Status::InvalidArgument("tensor '" + t.name + "' has shape " + tensor::ShapeToString(t.shape) +
                                     ", the global model has " + tensor::ShapeToString(g.shape));
    }
  }
  return Status::Ok();
}

Status ResultFolder::Journal(std::span<const uint8_t> chunk) {
  if (journal_fd_ < 0) {
    std::string path = options_.journal_dir + "/" + options_.site + ".XXXXXX";
    journal_fd_ = ::mkstemp(path.data());
    if (journal_fd_ < 0) return Status::Internal("cannot create rollback journal in " + options_.journal_dir);
    ::unlink(path.c_str());  // the fd keeps it alive; nothing is left behind on a crash
  }
  while (!chunk.empty()) {
    const ssize_t n = ::write(journal_fd_, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::Internal(std::string("writing the rollback journal: ") + std::strerror(errno));
    journaled_ += static_cast<uint64_t>(n);
    chunk = chunk.subspan(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status ResultFolder::Write(std::span<const uint8_t> chunk) {
  if (cancelled_ || finished_) return Status::FailedPrecondition("result already " +
                                                                 std::string(cancelled_ ? "cancelled" : "finished"));
  // Fold, then journal: a chunk the parser refused folded nothing (its checks run before
  // any piece is emitted, and Validate runs before the first piece is folded).
  Status s = parser_.Feed(chunk);
  if (!s.ok()) return s.WithContext(options_.site + " result");
  if (!options_.journal) return Status::Ok();
  s = Journal(chunk);
  if (!s.ok()) journal_broken_ = true;
  return s;
}

Status ResultFolder::Finish() {
  if (cancelled_) return Status::FailedPrecondition("result was cancelled");
  Status s = body_size_ == 0 ? Status::InvalidArgument("empty result body") : parser_.Finish();
  if (!s.ok()) return s.WithContext(options_.site + " result");
  for (size_t index : pass_->sent()) sum_.CommitWeight(index, options_.weight);
  finished_ = true;
  if (journal_fd_ >= 0) ::close(journal_fd_);
  journal_fd_ = -1;
  return Status::Ok();
}

Status ResultFolder::Cancel() {
  if (cancelled_ || finished_) return Status::Ok();
  cancelled_ = true;
  if (journal_broken_) {
    return Status::DataLoss(options_.site + ": the rollback journal failed; the round's sum is unusable");
  }
  if (!options_.journal && !pass_->sent().empty()) {
    return Status::DataLoss(options_.site + ": result broke off after part of it was folded, and the "
                            "round keeps no rollback journal (it has no result to spare above "
                            "min_clients); the round's sum is unusable");
  }
  if (journal_fd_ < 0) return Status::Ok();
  // Replay exactly the journaled bytes with the negated weight.
  Pass undo(sum_, -options_.weight, options_.exclude);
  tensor::SafetensorsStreamParser replay(body_size_);
  replay.on_data = [&undo](const tensor::TensorInfo& t, uint64_t o, std::span<const uint8_t> b) {
    return undo.OnData(t, o, b);
  };
  std::vector<uint8_t> buf(1 << 20);
  uint64_t done = 0;
  while (done < journaled_) {
    const ssize_t n = ::pread(journal_fd_, buf.data(), std::min<uint64_t>(buf.size(), journaled_ - done), done);
    if (n <= 0) break;
    Status s = replay.Feed({buf.data(), static_cast<size_t>(n)});
    if (!s.ok()) return s.WithContext(options_.site + ": replaying the rollback journal");
    done += static_cast<uint64_t>(n);
  }
  ::close(journal_fd_);
  journal_fd_ = -1;
  if (done != journaled_) return Status::DataLoss(options_.site + ": cannot read the rollback journal back");
  return Status::Ok();
}

}  // namespace ember::fl
