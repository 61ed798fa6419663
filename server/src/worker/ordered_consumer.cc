#include "worker/ordered_consumer.h"

#include <stdexcept>

namespace lossguard::worker {

OrderedConsumer::OrderedConsumer() : thread_([this] { Run(); }) {}

OrderedConsumer::~OrderedConsumer() {
  Cancel();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void OrderedConsumer::Begin(std::size_t size, std::function<bool(std::size_t)> consume) {
  if (in_batch_) throw std::logic_error("OrderedConsumer::Begin while a batch is in progress");
  {
    std::lock_guard lock(mutex_);
    active_ = true;
    stopped_ = false;
    size_ = size;
    ready_ = consumed_ = 0;
    consume_ = std::move(consume);
    error_ = nullptr;
  }
  in_batch_ = true;
  wake_.notify_one();
}

void OrderedConsumer::Publish(std::size_t ready) {
  {
    std::lock_guard lock(mutex_);
    ready_ = ready;
  }
  wake_.notify_one();
}

std::size_t OrderedConsumer::Stop(std::exception_ptr& error) {
  std::unique_lock lock(mutex_);
  stopped_ = true;
  if (!working_) active_ = false;
  done_.wait(lock, [this] { return !active_; });
  in_batch_ = false;
  consume_ = nullptr;
  error = error_;
  return consumed_;
}

std::size_t OrderedConsumer::Finish() {
  if (!in_batch_) throw std::logic_error("OrderedConsumer::Finish without a batch");
  std::exception_ptr error;
  const std::size_t consumed = Stop(error);
  if (error) std::rethrow_exception(error);
  return consumed;
}

void OrderedConsumer::Cancel() {
  if (!in_batch_) return;
  std::exception_ptr ignored;  // the batch is abandoned: its producer's own error is the one
  Stop(ignored);
}

void OrderedConsumer::Run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] {
      return stopping_ || (active_ && (consumed_ < ready_ || consumed_ == size_));
    });
    if (stopping_) return;
    bool more = consumed_ < size_;
    // Consume what is ready without the lock (the producer publishes meanwhile).
    const std::size_t ready = ready_;
    std::size_t next = consumed_;
    working_ = true;
    lock.unlock();
    std::exception_ptr error;
    try {
      while (more && next < ready && consume_(next)) ++next;
      more = more && next == ready;  // false once consume_ declined item `next`
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    working_ = false;
    consumed_ = next;
    error_ = error;
    if (error || !more || stopped_ || consumed_ == size_) {
      active_ = false;
      done_.notify_one();
    }
  }
}

}  // namespace lossguard::worker
