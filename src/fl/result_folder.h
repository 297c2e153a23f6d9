// ResultFolder: folds one site's result into the round's StreamingSum while the result
// streams in, so the server never holds a whole client update. The bytes folded so far
// are journaled to an unlinked temp file; if the upload breaks off, Cancel() replays the
// journal with the negated weight, so the round's average never includes half an update.
// Without a journal (a round that could not survive losing a result anyway) a broken
// result that folded anything leaves the sum unusable, and Cancel says so.
//
//   ResultFolder folder(sum, body_size, {.weight = 100, .site = "site-1", ...});
//   for (chunk : body) EMBER_RETURN_IF_ERROR(folder.Write(chunk));
//   EMBER_RETURN_IF_ERROR(folder.Finish());   // or folder.Cancel() if the stream broke
//
// Thread-safety: one owner calls Write/Finish/Cancel in order; several folders may fold
// into the same StreamingSum concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "tensor/safetensors_stream.h"
#include "tensor/streaming_sum.h"

namespace ember::fl {

struct FoldOptions {
  double weight = 1.0;
  const std::regex* exclude = nullptr;  // tensors matching it are skipped
  std::string journal_dir;              // where the rollback journal lives (a temp file)
  bool journal = true;                  // false: no rollback (see the top of this file)
  std::string site;                     // for messages
};

class ResultFolder {
 public:
  ResultFolder(tensor::StreamingSum& sum, uint64_t body_size, FoldOptions options);
  ~ResultFolder();
  ResultFolder(const ResultFolder&) = delete;
  ResultFolder& operator=(const ResultFolder&) = delete;

  // Folds `chunk` (the next bytes of the safetensors body). A bad header is rejected
  // before anything is folded.
  Status Write(std::span<const uint8_t> chunk);
  // REQUIRES: every byte arrived. Commits the weight of each tensor the result carried.
  Status Finish();
  // Takes back everything folded so far. Idempotent; Finish after Cancel is an error.
  // DataLoss if the journal could not be written or read, or there was none and bytes
  // were folded: the round's sum is then unusable.
  Status Cancel();

 private:
  // One pass over body bytes (the live stream, or the journal on rollback).
  class Pass;
  Status Journal(std::span<const uint8_t> chunk);
  Status Validate(const tensor::SafetensorsHeader& header) const;

  tensor::StreamingSum& sum_;
  const uint64_t body_size_;
  const FoldOptions options_;
  tensor::SafetensorsStreamParser parser_;
  std::unique_ptr<Pass> pass_;
  int journal_fd_ = -1;
  uint64_t journaled_ = 0;
  bool finished_ = false;
  bool cancelled_ = false;
  bool journal_broken_ = false;
  bool validated_ = false;
};

}  // namespace ember::fl
