// Element types of Ember tensors, named as in the safetensors format.
//
//   EMBER_ASSIGN_OR_RETURN(DType dt, ParseDType("BF16"));
//   size_t bytes = DTypeSize(dt);       // 2
//   std::string_view name = DTypeName(dt);  // "BF16"
//
// Thread-safety: pure functions; callable from any thread.
#pragma once

#include <cstddef>
#include <string_view>

#include "base/status.h"

namespace ember::tensor {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// Every DType, in declaration order (handy for tests and tables).
inline constexpr DType kAllDTypes[] = {DType::kF64, DType::kF32, DType::kF16, DType::kBF16,
                                      DType::kI64, DType::kI32, DType::kI16, DType::kI8,
                                      DType::kU8,  DType::kBool};

// Bytes per element: 8, 4, 2, 2, 8, 4, 2, 1, 1, 1.
size_t DTypeSize(DType dtype);

// The safetensors name: "F64", "F32", "F16", "BF16", "I64", ..., "U8", "BOOL".
std::string_view DTypeName(DType dtype);

// Inverse of DTypeName (exact, case-sensitive, like safetensors). An unknown name gives
// InvalidArgument "unknown dtype 'F8_E4M3' (supported: F64 F32 ...)".
Result<DType> ParseDType(std::string_view name);

// True for F64, F32, F16 and BF16.
bool IsFloatingPoint(DType dtype);

}  // namespace ember::tensor
