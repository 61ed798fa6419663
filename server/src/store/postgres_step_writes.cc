#include "store/postgres_step_writes.h"

#include <cstring>
#include <unordered_map>

namespace lossguard::store {

namespace {

constexpr const char* kArrays = R"sql(
unnest(CAST(?1 AS BIGINT[]), CAST(?2 AS BIGINT[]), CAST(?3 AS BIGINT[]),
       CAST(?4 AS DOUBLE PRECISION[]), CAST(?5 AS DOUBLE PRECISION[]),
       CAST(?6 AS DOUBLE PRECISION[]), CAST(?7 AS BIGINT[]), CAST(?8 AS TEXT[]))
  AS v(v_run, v_step, v_rank, v_loss, v_grad_norm, v_ref_loss, v_tokens, v_record))sql";

std::string InsertSql() {
  return std::string(R"sql(
INSERT INTO steps (run_id, step, rank, loss, grad_norm, ref_loss, tokens, record, received_at)
SELECT v_run, v_step, v_rank, v_loss, v_grad_norm, v_ref_loss, v_tokens, v_record,
       CAST(?9 AS DOUBLE PRECISION)
FROM )sql") +
         kArrays + R"sql(
ON CONFLICT DO NOTHING RETURNING run_id, step, rank)sql";
}

std::string ReplaceSql() {
  return std::string(R"sql(
UPDATE steps SET loss = v_loss, grad_norm = v_grad_norm, ref_loss = v_ref_loss, tokens = v_tokens,
                 record = v_record, received_at = CAST(?9 AS DOUBLE PRECISION),
                 version = steps.version + 1
FROM )sql") +
         kArrays + R"sql(
WHERE steps.run_id = v_run AND steps.step = v_step AND steps.rank = v_rank AND steps.record <> v_record
RETURNING steps.run_id, steps.step, steps.rank)sql";
}

struct Key {
  std::int64_t run, step, rank;
  bool operator==(const Key&) const = default;
};
struct KeyHash {
  std::size_t operator()(const Key& k) const {
    std::size_t h = std::hash<std::int64_t>()(k.run);
    h = h * 1000003 ^ std::hash<std::int64_t>()(k.step);
    return h * 1000003 ^ std::hash<std::int64_t>()(k.rank);
  }
};

// A one-dimensional array in PostgreSQL's binary (send/receive) format, one column of a chunk: no
// text to escape on this side nor to parse on the server's. Element type OIDs from pg_type.h.
class BinaryArray {
 public:
  static constexpr std::uint32_t kInt8 = 20, kFloat8 = 701, kText = 25;
  explicit BinaryArray(std::uint32_t element_type) : element_type_(element_type) {}

  void Add(std::int64_t value) {
    Length(8);
    Big64(static_cast<std::uint64_t>(value));
  }
  void Add(std::optional<std::int64_t> value) { value ? Add(*value) : Null(); }
  void Add(double value) {  // NaN and +-Inf are IEEE bit patterns like any other
    std::uint64_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    Length(8);
    Big64(bits);
  }
  void Add(std::optional<double> value) { value ? Add(*value) : Null(); }
  void Add(std::string_view text) {
    Length(static_cast<std::int32_t>(text.size()));
    body_.append(text);
  }
  std::string Finish() const {
    std::string out;
    out.reserve(20 + body_.size());
    auto big32 = [&](std::uint32_t v) {
      for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
    };
    big32(1);  // dimensions
    big32(has_null_ ? 1 : 0);
    big32(element_type_);
    big32(count_);  // length of the dimension
    big32(1);       // its lower bound
    return out + body_;
  }

 private:
  void Null() {
    Length(-1);
    has_null_ = true;
  }
  void Length(std::int32_t length) {
    ++count_;
    const auto v = static_cast<std::uint32_t>(length);
    for (int shift = 24; shift >= 0; shift -= 8) body_ += static_cast<char>((v >> shift) & 0xff);
  }
  void Big64(std::uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8) body_ += static_cast<char>((v >> shift) & 0xff);
  }

  std::uint32_t element_type_;
  std::uint32_t count_ = 0;
  bool has_null_ = false;
  std::string body_;
};

class ArrayStepWrites final : public StepWrites {
 public:
  explicit ArrayStepWrites(Database& db) : insert_(db, InsertSql()), replace_(db, ReplaceSql()) {}

  std::vector<Analysis::Stored> Write(const std::vector<std::int64_t>& run_ids,
                                      const std::vector<wire::StepRecord>& records,
                                      const std::vector<std::string>& canonical,
                                      double now) override {
    std::vector<Analysis::Stored> out(records.size(), Analysis::Stored::kDuplicate);
    std::unordered_map<Key, std::size_t, KeyHash> chunk;  // key -> index in records
    std::size_t begin = 0;
    for (std::size_t i = 0; i <= records.size(); ++i) {
      // A key seen twice ends the chunk before its second record: within a chunk the rows are
      // independent, and chunks run in order, as the records would one by one.
      if (i < records.size() &&
          chunk.emplace(Key{run_ids[i], records[i].step, records[i].rank}, i).second) {
        continue;
      }
      WriteChunk(run_ids, records, canonical, now, begin, i, chunk, out);
      chunk.clear();
      begin = i;
      if (i < records.size()) chunk.emplace(Key{run_ids[i], records[i].step, records[i].rank}, i);
    }
    return out;
  }

 private:
  void WriteChunk(const std::vector<std::int64_t>& run_ids,
                  const std::vector<wire::StepRecord>& records,
                  const std::vector<std::string>& canonical, double now, std::size_t begin,
                  std::size_t end, const std::unordered_map<Key, std::size_t, KeyHash>& chunk,
                  std::vector<Analysis::Stored>& out) {
    if (begin == end) return;
    std::vector<std::size_t> all(end - begin);
    for (std::size_t i = begin; i < end; ++i) all[i - begin] = i;
    for (std::size_t i : Run(insert_, run_ids, records, canonical, now, all, chunk)) {
      out[i] = Analysis::Stored::kNew;
    }
    std::vector<std::size_t> existing;
    for (std::size_t i = begin; i < end; ++i) {
      if (out[i] != Analysis::Stored::kNew) existing.push_back(i);
    }
    if (existing.empty()) return;
    for (std::size_t i : Run(replace_, run_ids, records, canonical, now, existing, chunk)) {
      out[i] = Analysis::Stored::kReplaced;
    }
  }

  // Runs `statement` over the records at `indexes`; returns the indexes of the rows it returned.
  static std::vector<std::size_t> Run(Statement& statement,
                                      const std::vector<std::int64_t>& run_ids,
                                      const std::vector<wire::StepRecord>& records,
                                      const std::vector<std::string>& canonical, double now,
                                      const std::vector<std::size_t>& indexes,
                                      const std::unordered_map<Key, std::size_t, KeyHash>& chunk) {
    BinaryArray run(BinaryArray::kInt8), step(BinaryArray::kInt8), rank(BinaryArray::kInt8),
        loss(BinaryArray::kFloat8), grad_norm(BinaryArray::kFloat8), ref_loss(BinaryArray::kFloat8),
        tokens(BinaryArray::kInt8), record(BinaryArray::kText);
    for (std::size_t i : indexes) {
      const wire::StepRecord& r = records[i];
      run.Add(run_ids[i]);
      step.Add(r.step);
      rank.Add(r.rank);
      loss.Add(r.loss);
      grad_norm.Add(r.grad_norm);
      ref_loss.Add(r.ref_loss);
      tokens.Add(r.tokens);
      record.Add(std::string_view(canonical[i]));
    }
    statement.Reset();
    statement.BindBinary(1, run.Finish()).BindBinary(2, step.Finish());
    statement.BindBinary(3, rank.Finish()).BindBinary(4, loss.Finish());
    statement.BindBinary(5, grad_norm.Finish()).BindBinary(6, ref_loss.Finish());
    statement.BindBinary(7, tokens.Finish()).BindBinary(8, record.Finish());
    statement.BindNumber(9, now);
    std::vector<std::size_t> returned;
    while (statement.Step()) {
      returned.push_back(chunk.at(Key{statement.Int(0), statement.Int(1), statement.Int(2)}));
    }
    statement.Reset();
    return returned;
  }

  Statement insert_, replace_;
};

}  // namespace

std::unique_ptr<StepWrites> MakePostgresStepWrites(Database& db) {
  return std::make_unique<ArrayStepWrites>(db);
}

}  // namespace lossguard::store
