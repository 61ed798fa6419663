#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "lossguard/wire/step_record.h"

namespace lossguard::collector {

// A bounded lock-free queue of step records (D. Vyukov's bounded MPMC queue, used here with one
// consumer): every cell carries a sequence number that says whether it is free for the producer of
// a given position or filled for the consumer. Cells are allocated once; a push move-constructs the
// record into its cell, so the hand-off neither locks nor allocates.
class RecordRing {
 public:
  // `capacity` is rounded up to a power of two (at least 2).
  explicit RecordRing(std::size_t capacity);

  // Thread-safe. false when full (the record is left untouched).
  bool TryPush(wire::StepRecord& record);
  // Single consumer. false when empty.
  bool TryPop(wire::StepRecord& out);
  // Records in the queue; exact when no push or pop is in progress.
  std::size_t size() const;
  std::size_t capacity() const { return mask_ + 1; }

 private:
  struct Cell {
    std::atomic<std::size_t> sequence;
    std::optional<wire::StepRecord> record;
  };
  std::size_t mask_;
  std::unique_ptr<Cell[]> cells_;
  alignas(64) std::atomic<std::size_t> enqueue_position_{0};
  alignas(64) std::atomic<std::size_t> dequeue_position_{0};
};

}  // namespace lossguard::collector
