// Replaces the global operator new for the replay test: an allocation above
// kMaxAllocationBytes aborts with its size, so "never allocate the claimed size" is
// checked by `make test` too, not only by libFuzzer's -malloc_limit_mb. The array and
// nothrow forms of libstdc++ all call this one.
#include <cstdio>
#include <cstdlib>
#include <new>

#include "base/fuzz/fuzz_harness.h"

void* operator new(std::size_t size) {
  if (size > ember::fuzz::kMaxAllocationBytes) {
    std::fprintf(stderr, "allocation of %zu bytes exceeds the fuzz limit of %zu\n", size,
                 ember::fuzz::kMaxAllocationBytes);
    std::abort();
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}

void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
