#include "stream/object_ref.h"

#include <fmt/format.h>

#include <random>

namespace ember::stream {

RefId NewRefId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("R{:016x}{:016x}", rng(), rng());
}

cell::Json ObjectRef::ToJson() const { return {{"owner", owner}, {"ref", ref_id}, {"size", size}}; }

Result<ObjectRef> ObjectRef::FromJson(const cell::Json& j) {
  if (!j.is_object() || !j.contains("owner") || !j["owner"].is_string() || !j.contains("ref") ||
      !j["ref"].is_string()) {
    return Status::InvalidArgument(fmt::format("not an object ref (want owner, ref, size): {}", j.dump()));
  }
  ObjectRef r{.owner = j["owner"].get<std::string>(), .ref_id = j["ref"].get<std::string>()};
  if (auto it = j.find("size"); it != j.end()) {
    if (!it->is_number_unsigned()) return Status::InvalidArgument("object ref size is not a u64: " + it->dump());
    r.size = it->get<uint64_t>();
  }
  if (r.owner.empty() || r.ref_id.empty()) return Status::InvalidArgument("object ref has an empty owner or ref");
  return r;
}

}  // namespace ember::stream
