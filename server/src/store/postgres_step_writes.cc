#include "store/postgres_step_writes.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <unordered_map>
#include <variant>

namespace lossguard::store {

namespace {

// The columns of a step row as the writer sends them: one array each, the key's three, then
// StepValueColumns(). A chunk's all-NULL columns (fields no record of it sent: commonly micro,
// rest, time, nonfinite_grads) are left out of its statements, which then write NULL: each array is
// a column of unnest for the database.
struct ArrayColumn {
  std::string_view name;
  ColumnType type;
};
constexpr std::size_t kKeyColumns = 3;

const std::vector<ArrayColumn>& Columns() {
  static const std::vector<ArrayColumn> columns = [] {
    std::vector<ArrayColumn> out = {
        {"run_id", ColumnType::kInt}, {"step", ColumnType::kInt}, {"rank", ColumnType::kInt}};
    for (const StepValueColumn& column : StepValueColumns())
      out.push_back({column.name, column.type});
    if (out.size() > 32) throw std::logic_error("a ColumnSet holds 32 columns");
    return out;
  }();
  return columns;
}
using ColumnSet = std::uint32_t;  // bit i: Columns()[i] is sent

// Element type OIDs (pg_type.h) of the arrays, sent in binary form.
std::uint32_t ElementType(ColumnType type) {
  switch (type) {
    case ColumnType::kInt:
      return 20;  // int8
    case ColumnType::kNumber:
      return 701;  // float8
    case ColumnType::kText:
      return 25;  // text
    case ColumnType::kBlob:
      return 17;  // bytea
  }
  throw std::logic_error("unknown column type");
}

// unnest(CAST(?1 AS T[]), ...) AS v(v_name, ...) over the columns in `sent`; returns the number
// of parameters used.
std::string Arrays(ColumnSet sent, int& parameters) {
  std::string arrays, names;
  parameters = 0;
  for (std::size_t c = 0; c < Columns().size(); ++c) {
    if (!(sent >> c & 1)) continue;
    if (parameters++ > 0) arrays += ", ";
    arrays += "CAST(?" + std::to_string(parameters) + " AS " +
              std::string(SqlType(Columns()[c].type, Backend::kPostgres)) + "[])";
    names += std::string(names.empty() ? "" : ", ") + "v_" + std::string(Columns()[c].name);
  }
  return "unnest(" + arrays + ") AS v(" + names + ")";
}

std::string InsertSql(ColumnSet sent) {
  int parameters = 0;
  const std::string arrays = Arrays(sent, parameters);
  std::string columns;
  for (std::size_t c = 0; c < Columns().size(); ++c) {
    if (sent >> c & 1) columns += std::string(Columns()[c].name) + ", ";
  }
  return "INSERT INTO steps (" + columns + "received_at) SELECT v.*, CAST(?" +
         std::to_string(parameters + 1) + " AS DOUBLE PRECISION) FROM " + arrays +
         " ON CONFLICT DO NOTHING RETURNING run_id, step, rank";
}

std::string ReplaceSql(ColumnSet sent) {
  int parameters = 0;
  const std::string arrays = Arrays(sent, parameters);
  std::string set;
  for (std::size_t c = kKeyColumns; c < Columns().size(); ++c) {
    const std::string name(Columns()[c].name);
    set += name + " = " + (sent >> c & 1 ? "v_" + name : std::string("NULL")) + ", ";
  }
  return "UPDATE steps SET " + set + "received_at = CAST(?" + std::to_string(parameters + 1) +
         " AS DOUBLE PRECISION), version = steps.version + 1 FROM " + arrays +
         " WHERE steps.run_id = v_run_id AND steps.step = v_step AND steps.rank = v_rank";
}

// The stored rows of keys the insert found taken, to compare with the batch's records.
std::string StoredSql() {
  return "SELECT run_id, step, rank, " + StepValueColumnNames() +
         " FROM steps JOIN unnest(CAST(?1 AS BIGINT[]), CAST(?2 AS BIGINT[]), CAST(?3 AS "
         "BIGINT[])) AS k(k_run, k_step, k_rank) ON run_id = k_run AND step = k_step AND rank = "
         "k_rank";
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
// text to escape on this side nor to parse on the server's.
class BinaryArray {
 public:
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
  void Add(const ColumnValue& value) {
    std::visit(
        [this](const auto& v) {
          if constexpr (std::is_same_v<std::decay_t<decltype(v)>, std::monostate>) {
            Null();
          } else {
            Add(v);
          }
        },
        value);
  }
  bool AllNull() const { return nulls_ == count_; }
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
    ++nulls_;
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
  std::uint32_t nulls_ = 0;
  bool has_null_ = false;
  std::string body_;
};

class ArrayStepWrites final : public StepWrites {
 public:
  explicit ArrayStepWrites(Database& db) : db_(db) {}

  void Write(const std::vector<std::int64_t>& run_ids, const std::vector<wire::StepRecord>& records,
             const std::vector<EncodedStepValues>& encoded, double now,
             std::span<Analysis::Stored> how, const StoredThrough& stored_through) override {
    std::unordered_map<Key, std::size_t, KeyHash> chunk;  // key -> index in records
    std::size_t begin = 0;
    for (std::size_t i = 0; i <= records.size(); ++i) {
      // A key seen twice ends the chunk before its second record: within a chunk the rows are
      // independent, and chunks run in order, as the records would one by one.
      if (i < records.size() &&
          chunk.emplace(Key{run_ids[i], records[i].step, records[i].rank}, i).second) {
        continue;
      }
      WriteChunk(Batch{run_ids, records, encoded, now}, begin, i, chunk, how);
      stored_through(i);
      chunk.clear();
      begin = i;
      if (i < records.size()) chunk.emplace(Key{run_ids[i], records[i].step, records[i].rank}, i);
    }
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
                  std::span<Analysis::Stored> out) {
    if (begin == end) return;
    std::fill(out.begin() + static_cast<std::ptrdiff_t>(begin),
              out.begin() + static_cast<std::ptrdiff_t>(end), Analysis::Stored::kDuplicate);
    std::vector<std::size_t> all(end - begin);
    for (std::size_t i = begin; i < end; ++i) all[i - begin] = i;
    {
      const Rows rows = ArraysOf(batch, all);
      CachedStatement insert(db_, SqlFor(insert_sql_, InsertSql, rows.sent));
      Bind(insert, rows, batch.now);
      while (insert.Step()) {
        out[chunk.at(Key{insert.Int(0), insert.Int(1), insert.Int(2)})] = Analysis::Stored::kNew;
      }
    }
    BinaryArray run(ElementType(ColumnType::kInt)), step(ElementType(ColumnType::kInt)),
        rank(ElementType(ColumnType::kInt));
    std::size_t taken = 0;
    for (std::size_t i = begin; i < end; ++i) {
      if (out[i] == Analysis::Stored::kNew) continue;
      run.Add(batch.run_ids[i]);
      step.Add(batch.records[i].step);
      rank.Add(batch.records[i].rank);
      ++taken;
    }
    if (taken == 0) return;
    std::vector<std::size_t> changed;
    {
      CachedStatement stored(db_, StoredSql());
      stored.BindBinary(1, run.Finish()).BindBinary(2, step.Finish()).BindBinary(3, rank.Finish());
      while (stored.Step()) {
        const std::size_t i = chunk.at(Key{stored.Int(0), stored.Int(1), stored.Int(2)});
        if (!StoredRowHolds(stored, 3, batch.records[i])) changed.push_back(i);
      }
    }
    if (changed.empty()) return;
    const Rows rows = ArraysOf(batch, changed);
    CachedStatement replace(db_, SqlFor(replace_sql_, ReplaceSql, rows.sent));
    Bind(replace, rows, batch.now);
    while (replace.Step()) {
    }
    for (std::size_t i : changed) out[i] = Analysis::Stored::kReplaced;
  }

  // The arrays of the records at `indexes`, and which of them a statement sends (the others are
  // all NULL).
  struct Rows {
    std::vector<BinaryArray> arrays;
    ColumnSet sent = 0;
  };
  Rows ArraysOf(const Batch& batch, const std::vector<std::size_t>& indexes) const {
    Rows rows;
    rows.arrays.reserve(Columns().size());
    for (const ArrayColumn& column : Columns()) rows.arrays.emplace_back(ElementType(column.type));
    const std::span<const StepValueColumn> values = StepValueColumns();
    for (std::size_t i : indexes) {
      const wire::StepRecord& r = batch.records[i];
      rows.arrays[0].Add(batch.run_ids[i]);
      rows.arrays[1].Add(r.step);
      rows.arrays[2].Add(r.rank);
      for (std::size_t c = 0; c < values.size(); ++c) {
        rows.arrays[kKeyColumns + c].Add(StoredValue(values[c], r, batch.encoded[i]));
      }
    }
    for (std::size_t c = 0; c < rows.arrays.size(); ++c) {
      if (!rows.arrays[c].AllNull()) rows.sent |= ColumnSet{1} << c;
    }
    return rows;
  }

  static void Bind(Statement& statement, const Rows& rows, double now) {
    int parameter = 1;
    for (std::size_t c = 0; c < rows.arrays.size(); ++c) {
      if (rows.sent >> c & 1) statement.BindBinary(parameter++, rows.arrays[c].Finish());
    }
    statement.BindNumber(parameter, now);
  }

  // The SQL for the columns `sent`, made by `make` once and kept in `made`.
  static const std::string& SqlFor(std::map<ColumnSet, std::string>& made,
                                   std::string (*make)(ColumnSet), ColumnSet sent) {
    auto [it, created] = made.try_emplace(sent);
    if (created) it->second = make(sent);
    return it->second;
  }

  Database& db_;
  std::map<ColumnSet, std::string> insert_sql_, replace_sql_;  // by the columns sent
};

}  // namespace

std::unique_ptr<StepWrites> MakePostgresStepWrites(Database& db) {
  return std::make_unique<ArrayStepWrites>(db);
}

}  // namespace lossguard::store
