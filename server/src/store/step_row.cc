#include "store/step_row.h"

#include <cmath>
#include <cstring>
#include <limits>

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

// Adds `value` to `rest` under `field` when the number column cannot hold it exactly.
void KeepExact(std::optional<double> value, std::string_view field, nlohmann::json& rest) {
  if (value && *value == 0 && std::signbit(*value)) {
    rest[std::string(field)] = *value;
  }
}

// Puts the exact values `rest` carries for known fields back; the other keys are unknown fields.
void ApplyRest(const nlohmann::json& rest, wire::StepRecord& record) {
  for (const auto& [key, value] : rest.items()) {
    std::optional<double>* exact = key == "grad_norm"  ? &record.grad_norm
                                   : key == "ref_loss" ? &record.ref_loss
                                   : key == "lr"       ? &record.lr
                                   : key == "time"     ? &record.time
                                                       : nullptr;
    if (key == "loss" && value.is_number()) {
      record.loss = value.get<double>();
    } else if (exact != nullptr && value.is_number()) {
      *exact = value.get<double>();
    } else {
      record.extra[key] = value;
    }
  }
}

}  // namespace

std::optional<double> ColumnNumber(std::optional<double> value) {
  if (value && *value == 0) return 0.0;
  return value;
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
  KeepExact(record.loss, "loss", rest);
  KeepExact(record.grad_norm, "grad_norm", rest);
  KeepExact(record.ref_loss, "ref_loss", rest);
  KeepExact(record.lr, "lr", rest);
  KeepExact(record.time, "time", rest);
  if (!rest.empty()) out.rest = rest.dump();
  return out;
}

void BindStepValues(Statement& statement, int first, const wire::StepRecord& r,
                    const EncodedStepValues& encoded) {
  statement.BindNumber(first, ColumnNumber(r.loss))
      .BindNumber(first + 1, ColumnNumber(r.grad_norm))
      .BindNumber(first + 2, ColumnNumber(r.ref_loss))
      .Bind(first + 3, r.tokens)
      .Bind(first + 4, r.world_size)
      .Bind(first + 5, r.ga_steps)
      .Bind(first + 6, r.micro_batch_size)
      .Bind(first + 7, r.vocab_size)
      .BindNumber(first + 8, ColumnNumber(r.lr))
      .Bind(first + 9, r.nonfinite_grads)
      .BindNumber(first + 10, ColumnNumber(r.time));
  if (encoded.micro) {
    statement.BindBinary(first + 11, *encoded.micro);
  } else {
    statement.BindNull(first + 11);
  }
  statement.Bind(first + 12, encoded.rest ? std::optional<std::string_view>(*encoded.rest)
                                          : std::optional<std::string_view>());
}

wire::StepRecord ReadStepValues(const Statement& row, int first, std::string run, std::int64_t step,
                                std::int64_t rank) {
  wire::StepRecord record;
  record.run = std::move(run);
  record.step = step;
  record.rank = rank;
  record.loss = row.Number(first).value_or(std::nan(""));
  record.grad_norm = row.Number(first + 1);
  record.ref_loss = row.Number(first + 2);
  record.tokens = row.OptionalInt(first + 3);
  record.world_size = row.Int(first + 4);
  record.ga_steps = row.Int(first + 5);
  record.micro_batch_size = row.Int(first + 6);
  record.vocab_size = row.OptionalInt(first + 7);
  record.lr = row.Number(first + 8);
  record.nonfinite_grads = row.OptionalInt(first + 9);
  record.time = row.Number(first + 10);
  const auto where = [&] {
    return "run " + record.run + " step " + std::to_string(step) + " rank " + std::to_string(rank);
  };
  if (!row.IsNull(first + 11)) {
    std::optional<std::vector<wire::MicroBatch>> micro = DecodeMicroBatches(row.Blob(first + 11));
    if (!micro) throw StorageError("stored micro-batches do not decode (" + where() + ")");
    record.micro = std::move(*micro);
  }
  if (!row.IsNull(first + 12)) {
    nlohmann::json rest;
    try {
      rest = wire::ParseJsonText(row.Text(first + 12));
    } catch (const nlohmann::json::exception& e) {
      throw StorageError("stored rest of " + where() + " does not parse: " + e.what());
    }
    if (!rest.is_object()) throw StorageError("stored rest of " + where() + " is not an object");
    ApplyRest(rest, record);
  }
  return record;
}

}  // namespace lossguard::store
