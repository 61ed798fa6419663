#pragma once
// Peak memory allocated through LibTorch's CPU allocator, for benchmarks and the demo trainer.

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

namespace lossguard::collector {

// While alive, counts the bytes that c10's CPU allocator hands out and takes back on this thread
// (and on the intra-op threads that inherit its debug info), through the allocator's memory
// reporting (the hook torch.profiler's profile_memory uses), not RSS: what a computation allocates,
// whatever the operating system does with the pages. Blocks allocated before it was made and
// freed while it is alive are not seen (LibTorch warns once about them); allocate what you measure
// inside its lifetime. Not for a tensor's CUDA memory (torch.cuda.max_memory_allocated is that).
class AllocationPeak {
 public:
  AllocationPeak()
      : reporter_(std::make_shared<Reporter>()),
        guard_(c10::DebugInfoKind::PROFILER_STATE, reporter_) {}
  AllocationPeak(const AllocationPeak&) = delete;
  AllocationPeak& operator=(const AllocationPeak&) = delete;

  // Highest number of bytes live at once since construction, counting only allocations made
  // meanwhile.
  std::int64_t peak_bytes() const { return reporter_->peak.load(); }

 private:
  struct Reporter : c10::MemoryReportingInfoBase {
    void reportMemoryUsage(void* /*ptr*/, int64_t alloc_size, int64_t /*total_allocated*/,
                           int64_t /*total_reserved*/, c10::Device /*device*/) override {
      const std::int64_t now = live.fetch_add(alloc_size) + alloc_size;
      std::int64_t seen = peak.load();
      while (now > seen && !peak.compare_exchange_weak(seen, now)) {
      }
    }
    bool memoryProfilingEnabled() const override { return true; }
    std::atomic<std::int64_t> live{0}, peak{0};
  };
  std::shared_ptr<Reporter> reporter_;
  c10::DebugInfoGuard guard_;
};

}  // namespace lossguard::collector
