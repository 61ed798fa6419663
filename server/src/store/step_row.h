#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "lossguard/wire/step_record.h"
#include "store/database.h"

namespace lossguard::store {

// How a step record is kept in its `steps` row (schema v7): a typed column for every field of wire
// format v1, the micro-batches as one compact binary value, and `rest`, a JSON object holding what
// the typed columns cannot hold exactly: the fields this version does not know, and a negative
// zero (SQLite stores -0.0 in a REAL column as the integer 0). The row gives the record back
// exactly: CanonicalJson(ReadStepValues(row)) == CanonicalJson(record), so every answer the API
// builds from a row is the one it built from the record's canonical JSON before v7, at about a
// third of the bytes (no JSON text per row).
//
// The value columns, in the order BindStepValues binds and ReadStepValues reads them.
inline constexpr const char* kStepValueColumns =
    "loss, grad_norm, ref_loss, tokens, world_size, ga_steps, micro_batch_size, vocab_size, lr, "
    "nonfinite_grads, time, micro, rest";
inline constexpr int kStepValueColumnCount = 13;

// The two values of a row that need encoding, computed outside the write lock.
struct EncodedStepValues {
  std::optional<std::string> micro;  // EncodeMicroBatches(record.micro); nullopt when empty
  std::optional<std::string> rest;   // JSON object text; nullopt when the columns hold it all
};
EncodedStepValues EncodeStepValues(const wire::StepRecord& record);

// The value a number column holds for `value`: a negative zero as 0 (EncodeStepValues puts the
// exact value in `rest`); every other value, NaN and the infinities included, as it is.
std::optional<double> ColumnNumber(std::optional<double> value);

// Binds the kStepValueColumnCount value columns to parameters first, first + 1, ...
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
