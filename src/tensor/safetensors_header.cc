#include "tensor/safetensors_header.h"

#include <algorithm>
#include <limits>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

namespace ember::tensor {
namespace {

using Json = nlohmann::ordered_json;  // keeps the file's key order

std::string Quoted(std::string_view name) { return "'" + std::string(name) + "'"; }

Status Corrupt(std::string_view tensor, const std::string& problem) {
  return Status::DataLoss("tensor " + Quoted(tensor) + ": " + problem);
}

std::string RangeToString(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// Parses the JSON text, rejecting duplicate top-level keys (a duplicate would silently
// hide one tensor's bytes).
Result<Json> ParseJsonObject(std::span<const uint8_t> text) {
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::key && depth == 1 && duplicate.empty() &&
        !seen.insert(parsed.get<std::string>()).second) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  Json json;
  try {
    json = Json::parse(text.begin(), text.end(), on_event);
  } catch (const Json::exception& e) {
    return Status::DataLoss(std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) {
    return Status::DataLoss("header names tensor " + Quoted(duplicate) + " twice");
  }
  if (!json.is_object()) return Status::DataLoss("header is not a JSON object");
  return json;
}

Result<std::map<std::string, std::string>> ParseMetadata(const Json& json) {
  if (!json.is_object()) return Status::DataLoss("__metadata__ is not a JSON object");
  std::map<std::string, std::string> metadata;
  for (const auto& [key, value] : json.items()) {
    if (!value.is_string()) {
      return Status::DataLoss("__metadata__ value of " + Quoted(key) + " is not a string");
    }
    metadata[key] = value.get<std::string>();
  }
  return metadata;
}

Result<std::vector<int64_t>> ParseShape(std::string_view name, const Json& json) {
  if (!json.is_array()) return Corrupt(name, "shape is not an array");
  std::vector<int64_t> shape;
  shape.reserve(json.size());
  for (const Json& dim : json) {
    if (dim.is_number_integer() && !dim.is_number_unsigned()) {
      return Corrupt(name, "shape has a negative dim " + dim.dump());
    }
    if (!dim.is_number_unsigned() ||
        dim.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) {
      return Corrupt(name, "shape dim " + dim.dump() + " is not a valid size");
    }
    shape.push_back(dim.get<int64_t>());
  }
  return shape;
}

Status ParseOffsets(std::string_view name, const Json& json, TensorInfo* info) {
  if (!json.is_array() || json.size() != 2 || !json[0].is_number_unsigned() ||
      !json[1].is_number_unsigned()) {
    return Corrupt(name, "data_offsets " + json.dump() + " is not a pair of unsigned integers");
  }
  info->begin = json[0].get<uint64_t>();
  info->end = json[1].get<uint64_t>();
  return Status::Ok();
}

const Json* Member(const Json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

// Checks that [begin, end) lies in the data section and holds exactly the tensor.
Status CheckExtent(const TensorInfo& info, uint64_t data_size) {
  std::string range = RangeToString(info.begin, info.end);
  if (info.begin > info.end) return Corrupt(info.name, "data_offsets " + range + " are reversed");
  if (info.end > data_size) {
    return Corrupt(info.name, "data_offsets " + range + " exceed data section of " +
                                  std::to_string(data_size) + " bytes");
  }
  Result<uint64_t> nbytes = CountBytes(info.dtype, info.shape);
  if (!nbytes.ok()) return Corrupt(info.name, nbytes.status().message());
  if (info.end - info.begin != *nbytes) {
    return Corrupt(info.name, "data_offsets " + range + " span " +
                                  std::to_string(info.end - info.begin) + " bytes but " +
                                  std::string(DTypeName(info.dtype)) + " " +
                                  ShapeToString(info.shape) + " needs " + std::to_string(*nbytes));
  }
  return Status::Ok();
}

Result<TensorInfo> ParseTensorEntry(const std::string& name, const Json& json,
                                    uint64_t data_size) {
  if (!json.is_object()) return Corrupt(name, "entry is not a JSON object");
  const Json* dtype = Member(json, "dtype");
  const Json* shape = Member(json, "shape");
  const Json* offsets = Member(json, "data_offsets");
  if (!dtype || !shape || !offsets) return Corrupt(name, "needs dtype, shape and data_offsets");
  if (!dtype->is_string()) return Corrupt(name, "dtype is not a string");
  TensorInfo info;
  info.name = name;
  Result<DType> parsed = ParseDType(dtype->get<std::string>());
  if (!parsed.ok()) return parsed.status().WithContext("tensor " + Quoted(name));
  info.dtype = *parsed;
  EMBER_ASSIGN_OR_RETURN(info.shape, ParseShape(name, *shape));
  EMBER_RETURN_IF_ERROR(ParseOffsets(name, *offsets, &info));
  EMBER_RETURN_IF_ERROR(CheckExtent(info, data_size));
  return info;
}

// REQUIRES: tensors sorted by (begin, end). Empty tensors occupy no bytes.
Status CheckNoOverlap(const std::vector<TensorInfo>& tensors) {
  const TensorInfo* last = nullptr;  // the non-empty tensor ending furthest
  for (const TensorInfo& t : tensors) {
    if (t.begin == t.end) continue;
    if (last && t.begin < last->end) {
      return Status::DataLoss("tensors " + Quoted(last->name) + " " +
                              RangeToString(last->begin, last->end) + " and " + Quoted(t.name) +
                              " " + RangeToString(t.begin, t.end) + " overlap");
    }
    last = &t;
  }
  return Status::Ok();
}

void AppendLittleEndian64(uint64_t value, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(char((value >> (8 * i)) & 0xFF));
}

}  // namespace

const TensorInfo* SafetensorsHeader::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors[it->second];
}

Result<uint64_t> ParseSafetensorsHeaderSize(std::span<const uint8_t> first8, uint64_t total_size) {
  if (total_size < 8) {
    return Status::DataLoss("file holds " + std::to_string(total_size) +
                            " bytes, too few for the 8-byte header size");
  }
  if (first8.size() < 8) return Status::InvalidArgument("need 8 bytes to read the header size");
  uint64_t size = 0;
  for (int i = 7; i >= 0; --i) size = (size << 8) | first8[i];
  if (size > kMaxSafetensorsHeaderSize) {
    return Status::DataLoss("header claims " + std::to_string(size) +
                            " bytes, over the limit of " +
                            std::to_string(kMaxSafetensorsHeaderSize));
  }
  if (size > total_size - 8) {
    return Status::DataLoss("header claims " + std::to_string(size) + " bytes but file holds " +
                            std::to_string(total_size) + " bytes");
  }
  return size;
}

Result<SafetensorsHeader> ParseSafetensorsHeader(std::span<const uint8_t> prefix,
                                                 uint64_t total_size) {
  SafetensorsHeader header;
  EMBER_ASSIGN_OR_RETURN(header.header_size, ParseSafetensorsHeaderSize(prefix, total_size));
  header.data_offset = 8 + header.header_size;
  header.data_size = total_size - header.data_offset;
  if (prefix.size() < header.data_offset) {
    return Status::InvalidArgument("need the first " + std::to_string(header.data_offset) +
                                   " bytes to parse the header, got " +
                                   std::to_string(prefix.size()));
  }
  EMBER_ASSIGN_OR_RETURN(Json json, ParseJsonObject(prefix.subspan(8, header.header_size)));
  for (const auto& [key, value] : json.items()) {
    if (key == kSafetensorsMetadataKey) {
      EMBER_ASSIGN_OR_RETURN(header.metadata, ParseMetadata(value));
      continue;
    }
    EMBER_ASSIGN_OR_RETURN(TensorInfo info, ParseTensorEntry(key, value, header.data_size));
    header.tensors.push_back(std::move(info));
  }
  std::stable_sort(header.tensors.begin(), header.tensors.end(),
                   [](const TensorInfo& a, const TensorInfo& b) {
                     return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
                   });
  EMBER_RETURN_IF_ERROR(CheckNoOverlap(header.tensors));
  for (size_t i = 0; i < header.tensors.size(); ++i) header.index_[header.tensors[i].name] = i;
  return header;
}

std::string EncodeSafetensorsHeader(const std::vector<TensorInfo>& tensors_in_order,
                                    const std::map<std::string, std::string>& metadata) {
  Json root = Json::object();
  if (!metadata.empty()) root[std::string(kSafetensorsMetadataKey)] = metadata;
  uint64_t offset = 0;
  for (const TensorInfo& t : tensors_in_order) {
    uint64_t end = offset + t.nbytes();
    Json entry = Json::object();
    entry["dtype"] = std::string(DTypeName(t.dtype));
    entry["shape"] = t.shape;
    entry["data_offsets"] = Json::array({offset, end});
    root[t.name] = std::move(entry);
    offset = end;
  }
  std::string text = root.dump(-1, ' ', false, Json::error_handler_t::replace);
  text.resize((text.size() + 7) / 8 * 8, ' ');
  std::string out;
  out.reserve(8 + text.size());
  AppendLittleEndian64(text.size(), &out);
  out += text;
  return out;
}

}  // namespace ember::tensor
