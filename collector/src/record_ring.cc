#include "record_ring.h"

namespace lossguard::collector {

namespace {
std::size_t PowerOfTwoAtLeast(std::size_t n) {
  std::size_t out = 2;
  while (out < n) out <<= 1;
  return out;
}
}  // namespace

RecordRing::RecordRing(std::size_t capacity)
    : mask_(PowerOfTwoAtLeast(capacity) - 1), cells_(std::make_unique<Cell[]>(mask_ + 1)) {
  for (std::size_t i = 0; i <= mask_; ++i) cells_[i].sequence.store(i, std::memory_order_relaxed);
}

bool RecordRing::TryPush(wire::StepRecord& record) {
  std::size_t position = enqueue_position_.load(std::memory_order_relaxed);
  Cell* cell;
  while (true) {
    cell = &cells_[position & mask_];
    std::size_t sequence = cell->sequence.load(std::memory_order_acquire);
    auto difference = static_cast<std::intptr_t>(sequence) - static_cast<std::intptr_t>(position);
    if (difference == 0) {
      if (enqueue_position_.compare_exchange_weak(position, position + 1,
                                                  std::memory_order_relaxed))
        break;
    } else if (difference < 0) {
      return false;  // the consumer has not freed this cell yet: full
    } else {
      position = enqueue_position_.load(std::memory_order_relaxed);
    }
  }
  cell->record.emplace(std::move(record));
  cell->sequence.store(position + 1, std::memory_order_release);
  return true;
}

bool RecordRing::TryPop(wire::StepRecord& out) {
  std::size_t position = dequeue_position_.load(std::memory_order_relaxed);
  Cell& cell = cells_[position & mask_];
  if (cell.sequence.load(std::memory_order_acquire) != position + 1) return false;
  out = std::move(*cell.record);
  cell.record.reset();
  cell.sequence.store(position + mask_ + 1, std::memory_order_release);
  dequeue_position_.store(position + 1, std::memory_order_relaxed);
  return true;
}

std::size_t RecordRing::size() const {
  return enqueue_position_.load(std::memory_order_acquire) -
         dequeue_position_.load(std::memory_order_acquire);
}

}  // namespace lossguard::collector
