// RefId and ObjectRef: how a receiver learns what to download. The owner registers an
// object with its DownloadService and gets a RefId; it puts an ObjectRef (owner FQCN, ref
// id, size) into any message header, and the receiver pulls from there.
//
//   task.h()["model"] = ObjectRef{cell->name(), ref, body->size()}.ToJson();
//   EMBER_ASSIGN_OR_RETURN(ObjectRef r, ObjectRef::FromJson(msg.h()["model"]));
//   auto d = Download(cell, r.owner, r.ref_id, sink);
//
// Thread-safety: value types; NewRefId may be called from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "cell/message.h"

namespace ember::stream {

// "R" followed by 32 hex digits (128 random bits); unique per registration.
using RefId = std::string;

RefId NewRefId();

struct ObjectRef {
  std::string owner;  // FQCN of the cell that serves the object
  RefId ref_id;
  uint64_t size = 0;

  // {"owner": str, "ref": str, "size": u64}
  cell::Json ToJson() const;
  static Result<ObjectRef> FromJson(const cell::Json& j);
};

}  // namespace ember::stream
