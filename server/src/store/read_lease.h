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
    if (!db_ || db_->Broken()) return;  // a lost connection is dropped: the next lease reconnects
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

template <typename Fn>
auto Store::Reading(Fn&& read) {
  for (int attempt = 0;; ++attempt) {
    ReadLease db = Read();
    try {
      return read(*db);
    } catch (const StorageError& e) {
      if (attempt > 0 || !e.unavailable() || !(*db).Broken()) throw;
      std::lock_guard lock(read_mutex_);
      idle_readers_.clear();  // idle as long as this one: lost with it
    }
  }
}

}  // namespace lossguard::store
