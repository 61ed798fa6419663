#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "lossguard/wire/step_record.h"
#include "store/database.h"

namespace lossguard::store {

// How a step record is kept in its `steps` row: a typed column for every field of wire format v1,
// the micro-batches as one compact binary value, and `rest`, a JSON object holding what the typed
// columns cannot hold exactly: the fields this version does not know, and a negative zero (SQLite
// stores -0.0 in a REAL column as the integer 0). The row gives the record back exactly:
// CanonicalJson(ReadStepValues(row)) == CanonicalJson(record).
//
// The value columns (every column but the key run_id, step, rank and the bookkeeping version,
// received_at) are defined once, in StepValueColumns(): each with its name, its type and how its
// value comes from a record and goes back into one. Every statement that writes or reads them,
// on either engine, is made from that list; adding a wire field means adding its column there
// (and to the schema, by a migration).

// The two values of a row that need encoding, computed outside the write lock.
struct EncodedStepValues {
  std::optional<std::string> micro;  // EncodeMicroBatches(record.micro); nullopt when empty
  std::optional<std::string> rest;   // JSON object text; nullopt when the columns hold it all
};
EncodedStepValues EncodeStepValues(const wire::StepRecord& record);

// The type a column is declared with: it says how a value is bound and read, and its SQL type on
// each engine.
enum class ColumnType { kInt, kNumber, kText, kBlob };
// "BIGINT", "DOUBLE PRECISION", "TEXT", "BYTEA" on PostgreSQL; SQLite's INTEGER, REAL, TEXT, BLOB.
std::string_view SqlType(ColumnType type, Backend backend);

// One column's value as bound: NULL, an integer, a number (NaN and +-Inf included), or the bytes of
// a text or blob (which one, the column's type says).
using ColumnValue = std::variant<std::monostate, std::int64_t, double, std::string_view>;

struct StepValueColumn {
  std::string_view name;
  ColumnType type;
  // The record's value: NULL for a field the trainer did not send; string_views point into the
  // record or the encoded values.
  ColumnValue (*get)(const wire::StepRecord& record, const EncodedStepValues& encoded);
  // Sets the record's field from a stored value (NULL included). Throws StorageError (without the
  // row's key: ReadStepValues adds it) when a stored value does not decode.
  void (*set)(wire::StepRecord& record, const ColumnValue& stored);
};

// Every value column, in the order statements list them. `rest` is last: its exact values replace
// what the number columns held.
std::span<const StepValueColumn> StepValueColumns();
// Their names, comma-separated, in that order: "loss, grad_norm, ..., rest".
const std::string& StepValueColumnNames();

// The value `column` stores for a record: get()'s, except a negative zero, stored as 0
// (EncodeStepValues puts the exact value in `rest`). Every other number, NaN and the infinities
// included, is stored as it is. Both engines store exactly these values.
ColumnValue StoredValue(const StepValueColumn& column, const wire::StepRecord& record,
                        const EncodedStepValues& encoded);

// The value a number column holds for `value`: a negative zero as 0; every other value, NaN and the
// infinities included, as it is.
std::optional<double> ColumnNumber(std::optional<double> value);

// Binds `value` to parameter `index` as a column of `type` holds it.
void BindColumnValue(Statement& statement, int index, ColumnType type, const ColumnValue& value);

// Binds the StepValueColumns() to parameters first, first + 1, ...
void BindStepValues(Statement& statement, int first, const wire::StepRecord& record,
                    const EncodedStepValues& encoded);

// The record of a row whose value columns start at column `first`. Throws StorageError when the
// stored micro-batches or rest do not decode (corruption: only lossguard writes them).
wire::StepRecord ReadStepValues(const Statement& row, int first, std::string run, std::int64_t step,
                                std::int64_t rank);

// Micro-batches as bytes: a format byte (1), then per micro-batch a flags byte (bit 0: a loss_sum
// follows; bits 1 and 2: the loss, the loss_sum is a float32 value and takes 4 bytes), the loss (4
// or 8 bytes, IEEE 754, little-endian: NaN, infinities and -0.0 kept), the tokens as an unsigned
// LEB128 varint, and the loss_sum (4 or 8 bytes) when present. A float32 trainer's micro-batch
// takes 11 bytes against ~50 as JSON.
std::string EncodeMicroBatches(const std::vector<wire::MicroBatch>& micro);
// nullopt when `bytes` is not such an encoding.
std::optional<std::vector<wire::MicroBatch>> DecodeMicroBatches(std::string_view bytes);

}  // namespace lossguard::store
