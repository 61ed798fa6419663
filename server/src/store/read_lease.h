#pragma once

#include <memory>
#include <mutex>

#include "store/store.h"

namespace lossguard::store {

// A read connection borrowed from the pool, returned on destruction.
class Store::ReadLease {
 public:
  ReadLease(Store& store, std::unique_ptr<Database> db) : store_(store), db_(std::move(db)) {}
  ~ReadLease() {
    if (!db_) return;
    std::lock_guard lock(store_.read_mutex_);
    if (static_cast<int>(store_.idle_readers_.size()) < store_.options_.read_connections) {
      store_.idle_readers_.push_back(std::move(db_));
    }
  }
  ReadLease(ReadLease&& other) noexcept = default;
  Database& operator*() { return *db_; }

 private:
  Store& store_;
  std::unique_ptr<Database> db_;
};

}  // namespace lossguard::store
