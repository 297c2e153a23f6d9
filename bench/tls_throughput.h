// TLS throughput for bench/transport_bench: moves `bytes` over one mutual-TLS Ember
// connection on loopback (certificates made by scripts/gen_certs.sh in a temporary
// directory), three times, and returns the best MB/s (MB = 10^6 bytes; as the raw and
// clear figures, which are best-of too), or nullopt with the reason on stderr.
//
//   std::optional<double> tls = MeasureTlsMBps(1ull << 30);
//
// The body is generated on the fly and the receiver counts it without storing it, so
// memory stays at a few connection windows whatever `bytes` is. Thread-safety: call from
// one thread at a time (it runs its own io threads).
#pragma once

#include <cstdint>
#include <optional>

namespace ember::bench {

std::optional<double> MeasureTlsMBps(uint64_t bytes);

}  // namespace ember::bench
