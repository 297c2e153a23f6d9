// IEEE binary16 (F16) and bfloat16 (BF16) conversions, bit patterns held in uint16_t.
//
//   uint16_t h = FloatToHalf(1.5f);        // 0x3E00
//   float f = HalfToFloat(h);              // 1.5f
//   uint16_t b = DoubleToBFloat16(1e40);   // 0x7F80 (+inf: out of range)
//
// Narrowing rounds to nearest, ties to even, exactly once (a double is not rounded to
// float first), overflows to infinity, keeps signed zeros and produces subnormals; NaN
// stays NaN (quiet). Widening is exact.
// Thread-safety: pure functions; callable from any thread.
#pragma once

#include <cstdint>

namespace ember::tensor {

float HalfToFloat(uint16_t bits);
float BFloat16ToFloat(uint16_t bits);

uint16_t DoubleToHalf(double value);
uint16_t DoubleToBFloat16(double value);

inline uint16_t FloatToHalf(float value) { return DoubleToHalf(value); }
inline uint16_t FloatToBFloat16(float value) { return DoubleToBFloat16(value); }

}  // namespace ember::tensor
