#include "store/postgres_step_writes.h"

#include <cstring>
#include <unordered_map>

namespace lossguard::store {

namespace {

// The batch's rows as arrays, one per column, in the order of BinaryArray columns below.
constexpr const char* kArrays = R"sql(
unnest(CAST(?1 AS BIGINT[]), CAST(?2 AS BIGINT[]), CAST(?3 AS BIGINT[]),
       CAST(?4 AS DOUBLE PRECISION[]), CAST(?5 AS DOUBLE PRECISION[]),
       CAST(?6 AS DOUBLE PRECISION[]), CAST(?7 AS BIGINT[]), CAST(?8 AS BIGINT[]),
       CAST(?9 AS BIGINT[]), CAST(?10 AS BIGINT[]), CAST(?11 AS BIGINT[]),
       CAST(?12 AS DOUBLE PRECISION[]), CAST(?13 AS BIGINT[]), CAST(?14 AS DOUBLE PRECISION[]),
       CAST(?15 AS BYTEA[]), CAST(?16 AS TEXT[]))
  AS v(v_run, v_step, v_rank, v_loss, v_grad_norm, v_ref_loss, v_tokens, v_world_size,
       v_ga_steps, v_micro_batch_size, v_vocab_size, v_lr, v_nonfinite_grads, v_time, v_micro,
       v_rest))sql";

std::string InsertSql() {
  return std::string("INSERT INTO steps (run_id, step, rank, ") + kStepValueColumns +
         ", received_at) SELECT v.*, CAST(?17 AS DOUBLE PRECISION) FROM " + kArrays +
         " ON CONFLICT DO NOTHING RETURNING run_id, step, rank";
}

// The stored rows of keys the insert found taken, to compare with the batch's records.
std::string StoredSql() {
  return std::string("SELECT run_id, step, rank, ") + kStepValueColumns +
         " FROM steps JOIN unnest(CAST(?1 AS BIGINT[]), CAST(?2 AS BIGINT[]), CAST(?3 AS "
         "BIGINT[])) AS k(k_run, k_step, k_rank) ON run_id = k_run AND step = k_step AND rank = "
         "k_rank";
}

std::string ReplaceSql() {
  return std::string(R"sql(
UPDATE steps SET loss = v_loss, grad_norm = v_grad_norm, ref_loss = v_ref_loss, tokens = v_tokens,
                 world_size = v_world_size, ga_steps = v_ga_steps,
                 micro_batch_size = v_micro_batch_size, vocab_size = v_vocab_size, lr = v_lr,
                 nonfinite_grads = v_nonfinite_grads, time = v_time, micro = v_micro,
                 rest = v_rest, received_at = CAST(?17 AS DOUBLE PRECISION),
                 version = steps.version + 1
FROM )sql") +
         kArrays + R"sql(
WHERE steps.run_id = v_run AND steps.step = v_step AND steps.rank = v_rank)sql";
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
  static constexpr std::uint32_t kInt8 = 20, kFloat8 = 701, kText = 25, kBytea = 17;
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
  void Add(std::string_view bytes) {  // text, or bytea (whose binary form is its bytes)
    Length(static_cast<std::int32_t>(bytes.size()));
    body_.append(bytes);
  }
  void Add(const std::optional<std::string>& bytes) {
    bytes ? Add(std::string_view(*bytes)) : Null();
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
  explicit ArrayStepWrites(Database& db)
      : insert_(db, InsertSql()), stored_(db, StoredSql()), replace_(db, ReplaceSql()) {}

  std::vector<Analysis::Stored> Write(const std::vector<std::int64_t>& run_ids,
                                      const std::vector<wire::StepRecord>& records,
                                      const std::vector<EncodedStepValues>& encoded,
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
      WriteChunk(Batch{run_ids, records, encoded, now}, begin, i, chunk, out);
      chunk.clear();
      begin = i;
      if (i < records.size()) chunk.emplace(Key{run_ids[i], records[i].step, records[i].rank}, i);
    }
    return out;
  }

 private:
  struct Batch {
    const std::vector<std::int64_t>& run_ids;
    const std::vector<wire::StepRecord>& records;
    const std::vector<EncodedStepValues>& encoded;
    double now;
  };

  // Inserts the chunk's rows; the keys already taken are read back, and those holding another
  // record are rewritten: one statement for a chunk of new keys, three when some were stored.
  void WriteChunk(const Batch& batch, std::size_t begin, std::size_t end,
                  const std::unordered_map<Key, std::size_t, KeyHash>& chunk,
                  std::vector<Analysis::Stored>& out) {
    if (begin == end) return;
    std::vector<std::size_t> all(end - begin);
    for (std::size_t i = begin; i < end; ++i) all[i - begin] = i;
    BindRows(insert_, batch, all);
    while (insert_.Step()) {
      out[chunk.at(Key{insert_.Int(0), insert_.Int(1), insert_.Int(2)})] = Analysis::Stored::kNew;
    }
    insert_.Reset();
    BinaryArray run(BinaryArray::kInt8), step(BinaryArray::kInt8), rank(BinaryArray::kInt8);
    std::size_t taken = 0;
    for (std::size_t i = begin; i < end; ++i) {
      if (out[i] == Analysis::Stored::kNew) continue;
      run.Add(batch.run_ids[i]);
      step.Add(batch.records[i].step);
      rank.Add(batch.records[i].rank);
      ++taken;
    }
    if (taken == 0) return;
    stored_.Reset();
    stored_.BindBinary(1, run.Finish()).BindBinary(2, step.Finish()).BindBinary(3, rank.Finish());
    std::vector<std::size_t> changed;
    while (stored_.Step()) {
      const std::size_t i = chunk.at(Key{stored_.Int(0), stored_.Int(1), stored_.Int(2)});
      if (!StoredRowHolds(stored_, 3, batch.records[i])) changed.push_back(i);
    }
    stored_.Reset();
    if (changed.empty()) return;
    BindRows(replace_, batch, changed);
    while (replace_.Step()) {
    }
    replace_.Reset();
    for (std::size_t i : changed) out[i] = Analysis::Stored::kReplaced;
  }

  // Binds the records at `indexes` as the statement's column arrays (?1-?16) and `now` (?17).
  static void BindRows(Statement& statement, const Batch& batch,
                       const std::vector<std::size_t>& indexes) {
    BinaryArray run(BinaryArray::kInt8), step(BinaryArray::kInt8), rank(BinaryArray::kInt8),
        loss(BinaryArray::kFloat8), grad_norm(BinaryArray::kFloat8), ref_loss(BinaryArray::kFloat8),
        tokens(BinaryArray::kInt8), world_size(BinaryArray::kInt8), ga_steps(BinaryArray::kInt8),
        micro_batch_size(BinaryArray::kInt8), vocab_size(BinaryArray::kInt8),
        lr(BinaryArray::kFloat8), nonfinite_grads(BinaryArray::kInt8), time(BinaryArray::kFloat8),
        micro(BinaryArray::kBytea), rest(BinaryArray::kText);
    // ColumnNumber: the same rows as on SQLite (a -0.0 as 0, its exact value in `rest`).
    for (std::size_t i : indexes) {
      const wire::StepRecord& r = batch.records[i];
      run.Add(batch.run_ids[i]);
      step.Add(r.step);
      rank.Add(r.rank);
      loss.Add(ColumnNumber(r.loss));
      grad_norm.Add(ColumnNumber(r.grad_norm));
      ref_loss.Add(ColumnNumber(r.ref_loss));
      tokens.Add(r.tokens);
      world_size.Add(r.world_size);
      ga_steps.Add(r.ga_steps);
      micro_batch_size.Add(r.micro_batch_size);
      vocab_size.Add(r.vocab_size);
      lr.Add(ColumnNumber(r.lr));
      nonfinite_grads.Add(r.nonfinite_grads);
      time.Add(ColumnNumber(r.time));
      micro.Add(batch.encoded[i].micro);
      rest.Add(batch.encoded[i].rest);
    }
    statement.Reset();
    int parameter = 1;
    for (BinaryArray* array :
         {&run, &step, &rank, &loss, &grad_norm, &ref_loss, &tokens, &world_size, &ga_steps,
          &micro_batch_size, &vocab_size, &lr, &nonfinite_grads, &time, &micro, &rest}) {
      statement.BindBinary(parameter++, array->Finish());
    }
    statement.BindNumber(parameter, batch.now);
  }

  Statement insert_, stored_, replace_;
};

}  // namespace

std::unique_ptr<StepWrites> MakePostgresStepWrites(Database& db) {
  return std::make_unique<ArrayStepWrites>(db);
}

}  // namespace lossguard::store
