// Element kernels shared by the accumulators: load any dtype into a float accumulator
// with a weight (AddAs), and store sum / total into any dtype (StoreMeanAs).
//
//   kernels::AddAs<double>(DType::kF16, src, n, /*weight=*/3.0, acc);
//   kernels::StoreMeanAs(DType::kBF16, acc, n, /*total=*/6.0, dst);
//
// Internal to src/tensor. Thread-safety: pure functions over caller-owned memory.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "tensor/dtype.h"
#include "tensor/half.h"

namespace ember::tensor::kernels {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; big-endian hosts need byte swaps here");

// Element loaders: kSize bytes at p -> a number.
template <typename T>
struct RawLoader {
  static constexpr size_t kSize = sizeof(T);
  static T Load(const uint8_t* p) {
    T value;
    std::memcpy(&value, p, sizeof(T));
    return value;
  }
};
struct HalfLoader {
  static constexpr size_t kSize = 2;
  static float Load(const uint8_t* p) { return HalfToFloat(RawLoader<uint16_t>::Load(p)); }
};
struct BFloat16Loader {
  static constexpr size_t kSize = 2;
  static float Load(const uint8_t* p) { return BFloat16ToFloat(RawLoader<uint16_t>::Load(p)); }
};
struct BoolLoader {
  static constexpr size_t kSize = 1;
  static uint8_t Load(const uint8_t* p) { return *p != 0; }
};

template <typename Loader, typename Acc>
void AddLoaded(const uint8_t* src, size_t count, Acc weight, Acc* dst) {
  for (size_t i = 0; i < count; ++i) dst[i] += weight * Acc(Loader::Load(src + i * Loader::kSize));
}

template <typename Acc>
inline void AddAs(DType dtype, const uint8_t* src, size_t count, Acc weight, Acc* dst) {
  switch (dtype) {
    case DType::kF64: return AddLoaded<RawLoader<double>>(src, count, weight, dst);
    case DType::kF32: return AddLoaded<RawLoader<float>>(src, count, weight, dst);
    case DType::kF16: return AddLoaded<HalfLoader>(src, count, weight, dst);
    case DType::kBF16: return AddLoaded<BFloat16Loader>(src, count, weight, dst);
    case DType::kI64: return AddLoaded<RawLoader<int64_t>>(src, count, weight, dst);
    case DType::kI32: return AddLoaded<RawLoader<int32_t>>(src, count, weight, dst);
    case DType::kI16: return AddLoaded<RawLoader<int16_t>>(src, count, weight, dst);
    case DType::kI8: return AddLoaded<RawLoader<int8_t>>(src, count, weight, dst);
    case DType::kU8: return AddLoaded<RawLoader<uint8_t>>(src, count, weight, dst);
    case DType::kBool: return AddLoaded<BoolLoader>(src, count, weight, dst);
  }
}

// Rounds to nearest (ties away from zero) and clamps to T's range; NaN -> 0.
template <typename T>
T SaturatingRound(double value) {
  if (std::isnan(value)) return 0;
  double rounded = std::round(value);
  const double limit = double(uint64_t{1} << std::numeric_limits<T>::digits);  // max + 1
  if (rounded >= limit) return std::numeric_limits<T>::max();
  if (rounded < (std::is_signed_v<T> ? -limit : 0.0)) return std::numeric_limits<T>::min();
  return T(rounded);
}

template <typename T, typename Acc, typename Convert>
void StoreMean(const Acc* sum, size_t count, double total, uint8_t* dst, Convert convert) {
  for (size_t i = 0; i < count; ++i) {
    T value = convert(double(sum[i]) / total);
    std::memcpy(dst + i * sizeof(T), &value, sizeof(T));
  }
}

template <typename Acc>
inline void StoreMeanAs(DType out, const Acc* sum, size_t n, double total, uint8_t* dst) {
  switch (out) {
    case DType::kF64: return StoreMean<double>(sum, n, total, dst, [](double v) { return v; });
    case DType::kF32:
      return StoreMean<float>(sum, n, total, dst, [](double v) { return float(v); });
    case DType::kF16: return StoreMean<uint16_t>(sum, n, total, dst, DoubleToHalf);
    case DType::kBF16: return StoreMean<uint16_t>(sum, n, total, dst, DoubleToBFloat16);
    case DType::kI64: return StoreMean<int64_t>(sum, n, total, dst, SaturatingRound<int64_t>);
    case DType::kI32: return StoreMean<int32_t>(sum, n, total, dst, SaturatingRound<int32_t>);
    case DType::kI16: return StoreMean<int16_t>(sum, n, total, dst, SaturatingRound<int16_t>);
    case DType::kI8: return StoreMean<int8_t>(sum, n, total, dst, SaturatingRound<int8_t>);
    case DType::kU8: return StoreMean<uint8_t>(sum, n, total, dst, SaturatingRound<uint8_t>);
    case DType::kBool:
      return StoreMean<uint8_t>(sum, n, total, dst, [](double v) { return uint8_t(v >= 0.5); });
  }
}

}  // namespace ember::tensor::kernels
