#include "store/store.h"

#include "store/clock.h"
#include "store/connections.h"
#include "store/migrations.h"

namespace lossguard::store {

Store::Store(const StoreLocation& location, StoreOptions options)
    : connections_(std::make_unique<Connections>(location, std::move(options))),
      runs_(*connections_),
      alerts_(*connections_),
      deletion_(*connections_),
      outbox_(*connections_) {}

Store::~Store() = default;

Backend Store::backend() const { return connections_->backend(); }

IngestResult Store::Ingest(const std::vector<wire::StepRecord>& records) {
  // Encoded outside the write lock: the only part of a batch that needs no connection.
  std::vector<EncodedStepValues> encoded;
  encoded.reserve(records.size());
  for (const wire::StepRecord& record : records) encoded.push_back(EncodeStepValues(record));
  const double now = UnixSeconds();
  return connections_->Writing(
      [&](Writer& writer) { return writer.Ingest(records, encoded, now); });
}

int Store::SchemaVersion() {
  return connections_->Reading([](Database& db) { return store::SchemaVersion(db); });
}

}  // namespace lossguard::store
