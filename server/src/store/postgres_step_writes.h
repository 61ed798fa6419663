#pragma once

#include <memory>

#include "store/step_writes.h"

namespace lossguard::store {

// StepWrites for PostgreSQL: the batch goes as arrays, cut into chunks in which every key occurs
// once; per chunk one INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING tells the new keys,
// and one UPDATE ... FROM unnest(...) over the others tells the replaced ones. Two round trips per
// chunk instead of one or two per record.
std::unique_ptr<StepWrites> MakePostgresStepWrites(Database& db);

}  // namespace lossguard::store
