#include "store/step_row.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "lossguard/wire/json_numbers.h"

namespace lossguard::store {

namespace {

constexpr char kMicroFormat = 1;
constexpr unsigned char kHasLossSum = 1;
constexpr unsigned char kLossAsFloat = 2;     // the loss is a float32 value: 4 bytes, not 8
constexpr unsigned char kLossSumAsFloat = 4;  // the same for the loss_sum
constexpr unsigned char kKnownFlags = kHasLossSum | kLossAsFloat | kLossSumAsFloat;

// Whether `value` is a float32 value, bit for bit (-0.0 and the infinities included; any NaN, which
// canonical JSON writes as "NaN" whatever its payload). Trainers compute losses in float32 tensors:
// what they send is usually one.
bool IsFloat32(double value) {
  if (std::isnan(value)) return true;
  if (!std::isinf(value) && std::fabs(value) > std::numeric_limits<float>::max()) return false;
  const double back = static_cast<float>(value);
  return std::memcmp(&back, &value, sizeof value) == 0;
}

void PutBytes(std::string& out, std::uint64_t bits, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xff);
}

bool GetBytes(std::string_view& in, std::uint64_t& bits, int bytes) {
  if (in.size() < static_cast<std::size_t>(bytes)) return false;
  bits = 0;
  for (int i = bytes - 1; i >= 0; --i) bits = bits << 8 | static_cast<unsigned char>(in[i]);
  in.remove_prefix(static_cast<std::size_t>(bytes));
  return true;
}

// A number as 4 bytes (float32) when `as_float`, else 8 (float64); little-endian IEEE 754.
void PutNumber(std::string& out, double value, bool as_float) {
  if (as_float) {
    const auto narrow = static_cast<float>(value);
    std::uint32_t bits;
    std::memcpy(&bits, &narrow, sizeof bits);
    PutBytes(out, bits, 4);
  } else {
    std::uint64_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    PutBytes(out, bits, 8);
  }
}

bool GetNumber(std::string_view& in, double& value, bool as_float) {
  std::uint64_t bits = 0;
  if (!GetBytes(in, bits, as_float ? 4 : 8)) return false;
  if (as_float) {
    const auto narrow_bits = static_cast<std::uint32_t>(bits);
    float narrow;
    std::memcpy(&narrow, &narrow_bits, sizeof narrow);
    value = narrow;
  } else {
    std::memcpy(&value, &bits, sizeof value);
  }
  return true;
}

void PutVarint(std::string& out, std::uint64_t value) {
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7f) | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
}

bool GetVarint(std::string_view& in, std::uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const auto byte = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    value |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

// A number field's column: `loss` (always present) or an optional one.
template <auto kField>
constexpr StepValueColumn NumberColumn(std::string_view name) {
  return {name, ColumnType::kNumber,
          [](const wire::StepRecord& r, const EncodedStepValues&) -> ColumnValue {
            const auto& value = r.*kField;
            if constexpr (std::is_same_v<std::decay_t<decltype(value)>, double>) {
              return value;
            } else {
              return value ? ColumnValue(*value) : ColumnValue();
            }
          },
          [](wire::StepRecord& r, const ColumnValue& stored) {
            const double* number = std::get_if<double>(&stored);
            if constexpr (std::is_same_v<std::decay_t<decltype(r.*kField)>, double>) {
              // A NULL loss is one PostgreSQL could not hold as a number: NaN.
              r.*kField = number ? *number : std::nan("");
            } else {
              r.*kField = number ? std::optional<double>(*number) : std::nullopt;
            }
          }};
}

// An integer field's column: a required one (world_size, ...) or an optional one (tokens, ...).
template <auto kField>
constexpr StepValueColumn IntColumn(std::string_view name) {
  return {name, ColumnType::kInt,
          [](const wire::StepRecord& r, const EncodedStepValues&) -> ColumnValue {
            const auto& value = r.*kField;
            if constexpr (std::is_same_v<std::decay_t<decltype(value)>, std::int64_t>) {
              return value;
            } else {
              return value ? ColumnValue(*value) : ColumnValue();
            }
          },
          [](wire::StepRecord& r, const ColumnValue& stored) {
            const std::int64_t* number = std::get_if<std::int64_t>(&stored);
            if constexpr (std::is_same_v<std::decay_t<decltype(r.*kField)>, std::int64_t>) {
              if (number) r.*kField = *number;
            } else {
              r.*kField = number ? std::optional<std::int64_t>(*number) : std::nullopt;
            }
          }};
}

ColumnValue Bytes(const std::optional<std::string>& bytes) {
  return bytes ? ColumnValue(std::string_view(*bytes)) : ColumnValue();
}

void SetMicro(wire::StepRecord& record, const ColumnValue& stored) {
  const auto* bytes = std::get_if<std::string_view>(&stored);
  if (bytes == nullptr) return;
  std::optional<std::vector<wire::MicroBatch>> micro = DecodeMicroBatches(*bytes);
  if (!micro) throw StorageError("stored micro-batches do not decode");
  record.micro = std::move(*micro);
}

void SetRest(wire::StepRecord& record, const ColumnValue& stored);

constexpr std::array<StepValueColumn, 13> kColumns = {{
    NumberColumn<&wire::StepRecord::loss>("loss"),
    NumberColumn<&wire::StepRecord::grad_norm>("grad_norm"),
    NumberColumn<&wire::StepRecord::ref_loss>("ref_loss"),
    IntColumn<&wire::StepRecord::tokens>("tokens"),
    IntColumn<&wire::StepRecord::world_size>("world_size"),
    IntColumn<&wire::StepRecord::ga_steps>("ga_steps"),
    IntColumn<&wire::StepRecord::micro_batch_size>("micro_batch_size"),
    IntColumn<&wire::StepRecord::vocab_size>("vocab_size"),
    NumberColumn<&wire::StepRecord::lr>("lr"),
    IntColumn<&wire::StepRecord::nonfinite_grads>("nonfinite_grads"),
    NumberColumn<&wire::StepRecord::time>("time"),
    {"micro", ColumnType::kBlob,
     [](const wire::StepRecord&, const EncodedStepValues& e) { return Bytes(e.micro); }, SetMicro},
    {"rest", ColumnType::kText,
     [](const wire::StepRecord&, const EncodedStepValues& e) { return Bytes(e.rest); }, SetRest},
}};
static_assert(kColumns.back().name == "rest", "rest is read last: it corrects the columns before");

bool IsNegativeZero(const ColumnValue& value) {
  const double* number = std::get_if<double>(&value);
  return number && *number == 0 && std::signbit(*number);
}

// Puts the exact values `rest` carries for number columns back; the other keys are unknown fields.
void SetRest(wire::StepRecord& record, const ColumnValue& stored) {
  const auto* text = std::get_if<std::string_view>(&stored);
  if (text == nullptr) return;
  nlohmann::json rest;
  try {
    rest = wire::ParseJsonText(*text);
  } catch (const nlohmann::json::exception& e) {
    throw StorageError(std::string("stored rest does not parse: ") + e.what());
  }
  if (!rest.is_object()) throw StorageError("stored rest is not an object");
  for (const auto& item : rest.items()) {
    const std::string& key = item.key();
    const nlohmann::json& value = item.value();
    const auto exact = std::find_if(kColumns.begin(), kColumns.end(), [&](const auto& column) {
      return column.type == ColumnType::kNumber && column.name == key;
    });
    if (exact != kColumns.end() && value.is_number()) {
      exact->set(record, value.get<double>());
    } else {
      record.extra[key] = value;
    }
  }
}

}  // namespace

std::string_view SqlType(ColumnType type, Backend backend) {
  const bool postgres = backend == Backend::kPostgres;
  switch (type) {
    case ColumnType::kInt:
      return postgres ? "BIGINT" : "INTEGER";
    case ColumnType::kNumber:
      return postgres ? "DOUBLE PRECISION" : "REAL";
    case ColumnType::kText:
      return "TEXT";
    case ColumnType::kBlob:
      return postgres ? "BYTEA" : "BLOB";
  }
  throw std::logic_error("unknown column type");
}

std::span<const StepValueColumn> StepValueColumns() { return kColumns; }

const std::string& StepValueColumnNames() {
  static const std::string names = [] {
    std::string out;
    for (const StepValueColumn& column : kColumns) {
      out += (out.empty() ? "" : ", ") + std::string(column.name);
    }
    return out;
  }();
  return names;
}

std::optional<double> ColumnNumber(std::optional<double> value) {
  if (value && *value == 0) return 0.0;
  return value;
}

ColumnValue StoredValue(const StepValueColumn& column, const wire::StepRecord& record,
                        const EncodedStepValues& encoded) {
  ColumnValue value = column.get(record, encoded);
  if (IsNegativeZero(value)) return 0.0;
  return value;
}

void BindColumnValue(Statement& statement, int index, ColumnType type, const ColumnValue& value) {
  if (const auto* integer = std::get_if<std::int64_t>(&value)) {
    statement.Bind(index, *integer);
  } else if (const auto* number = std::get_if<double>(&value)) {
    statement.BindNumber(index, *number);
  } else if (const auto* bytes = std::get_if<std::string_view>(&value)) {
    if (type == ColumnType::kBlob) {
      statement.BindBinary(index, std::string(*bytes));
    } else {
      statement.Bind(index, *bytes);
    }
  } else {
    statement.BindNull(index);
  }
}

std::string EncodeMicroBatches(const std::vector<wire::MicroBatch>& micro) {
  std::string out(1, kMicroFormat);
  out.reserve(1 + micro.size() * 19);
  for (const wire::MicroBatch& mb : micro) {
    const bool loss_float = IsFloat32(mb.loss);
    const bool sum_float = mb.loss_sum && IsFloat32(*mb.loss_sum);
    out += static_cast<char>((mb.loss_sum ? kHasLossSum : 0) | (loss_float ? kLossAsFloat : 0) |
                             (sum_float ? kLossSumAsFloat : 0));
    PutNumber(out, mb.loss, loss_float);
    PutVarint(out, static_cast<std::uint64_t>(mb.tokens));
    if (mb.loss_sum) PutNumber(out, *mb.loss_sum, sum_float);
  }
  return out;
}

std::optional<std::vector<wire::MicroBatch>> DecodeMicroBatches(std::string_view bytes) {
  if (bytes.empty() || bytes.front() != kMicroFormat) return std::nullopt;
  bytes.remove_prefix(1);
  std::vector<wire::MicroBatch> out;
  while (!bytes.empty()) {
    const auto flags = static_cast<unsigned char>(bytes.front());
    bytes.remove_prefix(1);
    wire::MicroBatch mb;
    std::uint64_t tokens = 0;
    if ((flags & ~kKnownFlags) != 0 || ((flags & kLossSumAsFloat) && !(flags & kHasLossSum)) ||
        !GetNumber(bytes, mb.loss, flags & kLossAsFloat) || !GetVarint(bytes, tokens) ||
        tokens > static_cast<std::uint64_t>(wire::kMaxCount)) {
      return std::nullopt;
    }
    mb.tokens = static_cast<std::int64_t>(tokens);
    if ((flags & kHasLossSum) != 0) {
      double sum = 0;
      if (!GetNumber(bytes, sum, flags & kLossSumAsFloat)) return std::nullopt;
      mb.loss_sum = sum;
    }
    out.push_back(mb);
  }
  return out;
}

EncodedStepValues EncodeStepValues(const wire::StepRecord& record) {
  EncodedStepValues out;
  if (!record.micro.empty()) out.micro = EncodeMicroBatches(record.micro);
  nlohmann::json rest = record.extra.is_object() ? record.extra : nlohmann::json::object();
  for (const StepValueColumn& column : kColumns) {
    if (column.type != ColumnType::kNumber) continue;
    const ColumnValue value = column.get(record, out);
    if (IsNegativeZero(value)) rest[std::string(column.name)] = std::get<double>(value);
  }
  if (!rest.empty()) out.rest = rest.dump();
  return out;
}

void BindStepValues(Statement& statement, int first, const wire::StepRecord& record,
                    const EncodedStepValues& encoded) {
  for (std::size_t c = 0; c < kColumns.size(); ++c) {
    BindColumnValue(statement, first + static_cast<int>(c), kColumns[c].type,
                    StoredValue(kColumns[c], record, encoded));
  }
}

wire::StepRecord ReadStepValues(const Statement& row, int first, std::string run, std::int64_t step,
                                std::int64_t rank) {
  wire::StepRecord record;
  record.run = std::move(run);
  record.step = step;
  record.rank = rank;
  for (std::size_t c = 0; c < kColumns.size(); ++c) {
    const StepValueColumn& column = kColumns[c];
    const int index = first + static_cast<int>(c);
    try {
      if (row.IsNull(index)) {
        column.set(record, ColumnValue());
        continue;
      }
      switch (column.type) {
        case ColumnType::kInt:
          column.set(record, row.Int(index));
          break;
        case ColumnType::kNumber: {
          const std::optional<double> number = row.Number(index);
          column.set(record, number ? ColumnValue(*number) : ColumnValue());
          break;
        }
        case ColumnType::kText:
          column.set(record, row.Text(index));
          break;
        case ColumnType::kBlob: {
          const std::string bytes = row.Blob(index);
          column.set(record, std::string_view(bytes));
          break;
        }
      }
    } catch (const StorageError& e) {
      throw StorageError(std::string(e.what()) + " (run " + record.run + " step " +
                         std::to_string(step) + " rank " + std::to_string(rank) + ", column " +
                         std::string(column.name) + ")");
    }
  }
  return record;
}

}  // namespace lossguard::store
