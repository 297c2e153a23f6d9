#include "tensor/half.h"

#include <bit>

namespace ember::tensor {
namespace {

// A binary floating-point format narrower than double: 1 sign bit, `kExpBits` exponent
// bits, `kMantBits` stored mantissa bits. F16 is <5, 10>, BF16 is <8, 7>.
template <int kExpBits, int kMantBits>
struct NarrowFormat {
  static constexpr int kMant = kMantBits;
  static constexpr int kBias = (1 << (kExpBits - 1)) - 1;
  static constexpr int kMinExp = 1 - kBias;  // exponent of the smallest normal
  static constexpr int kMaxExp = kBias;
  static constexpr uint32_t kInf = ((1u << kExpBits) - 1) << kMantBits;
  static constexpr uint32_t kQuietNan = kInf | (1u << (kMantBits - 1));
  static constexpr uint32_t kSign = 1u << (kExpBits + kMantBits);
};
using HalfFormat = NarrowFormat<5, 10>;
using BFloat16Format = NarrowFormat<8, 7>;

// Rounds sig * 2^-shift to an integer, ties to even. REQUIRES: shift >= 1.
uint64_t ShiftRoundNearestEven(uint64_t sig, int shift) {
  if (shift >= 64) return 0;  // below half the smallest step
  uint64_t kept = sig >> shift;
  uint64_t rest = sig & ((uint64_t{1} << shift) - 1);
  uint64_t half = uint64_t{1} << (shift - 1);
  if (rest > half || (rest == half && (kept & 1))) ++kept;
  return kept;
}

// Narrows the finite, non-zero magnitude sig * 2^(exp - 52), sig having 53 bits. A
// rounding carry out of the mantissa lands in the exponent field, which is exactly the
// next representable value (the smallest normal, or infinity).
template <typename F>
uint32_t NarrowMagnitude(int exp, uint64_t sig) {
  if (exp > F::kMaxExp) return F::kInf;
  bool subnormal = exp < F::kMinExp;
  int step_exp = (subnormal ? F::kMinExp : exp) - F::kMant;
  uint64_t rounded = ShiftRoundNearestEven(sig, step_exp - (exp - 52));
  uint64_t bits = subnormal ? rounded
                            : (uint64_t(exp + F::kBias - 1) << F::kMant) + rounded;
  return bits >= F::kInf ? F::kInf : uint32_t(bits);
}

template <typename F>
uint16_t NarrowDouble(double value) {
  uint64_t bits = std::bit_cast<uint64_t>(value);
  uint32_t sign = (bits >> 63) ? F::kSign : 0;
  int biased_exp = int((bits >> 52) & 0x7FF);
  uint64_t mantissa = bits & ((uint64_t{1} << 52) - 1);
  if (biased_exp == 0x7FF) return uint16_t(sign | (mantissa ? F::kQuietNan : F::kInf));
  // Zero, and double subnormals (< 2^-1022), are far below both formats' range.
  if (biased_exp == 0) return uint16_t(sign);
  uint64_t sig = mantissa | (uint64_t{1} << 52);
  return uint16_t(sign | NarrowMagnitude<F>(biased_exp - 1023, sig));
}

}  // namespace

float HalfToFloat(uint16_t bits) {
  uint32_t sign = uint32_t(bits & 0x8000) << 16;
  uint32_t exp = (bits >> 10) & 0x1F;
  uint32_t mant = bits & 0x3FF;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float.
    float magnitude = float(mant) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  if (exp == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

float BFloat16ToFloat(uint16_t bits) { return std::bit_cast<float>(uint32_t(bits) << 16); }

uint16_t DoubleToHalf(double value) { return NarrowDouble<HalfFormat>(value); }

uint16_t DoubleToBFloat16(double value) { return NarrowDouble<BFloat16Format>(value); }

}  // namespace ember::tensor
