// What the writer carries of pending rollup blocks across batches (Writer::carried_): the changes
// it committed to each block since its pending mark, so that a due block is rolled up from memory
// instead of read back.
#include <limits>
#include <utility>

#include "store/rollup_rows.h"
#include "store/writer.h"

namespace lossguard::store {

namespace {
// Level-1 blocks' ranks carried in memory at most (about 100 MB); beyond it nothing is carried
// until the pending blocks are refreshed, and they are read back.
constexpr std::size_t kMaxCarriedRanks = 1 << 19;
}  // namespace

void Writer::CarriedRank::Add(const wire::StepRecord& record, Analysis::Stored how) {
  const std::uint32_t bit = 1u << (record.step % kRollupWidths[1]);
  // A step stored before (a replaced or duplicate record) or twice in this writer's view: the
  // stored rows are not only what was seen here.
  if (how != Analysis::Stored::kNew || (steps & bit) != 0) exact = false;
  steps |= bit;
  stats.Merge(RecordToBlock(record));
}

void Writer::CarriedRank::Merge(const CarriedRank& other) {
  if ((steps & other.steps) != 0) exact = false;
  exact = exact && other.exact;
  steps |= other.steps;
  stats.Merge(other.stats);
}

Writer::CarriedRanks Writer::MergedRanks(const CarriedRanks& into, const CarriedRanks& more) {
  CarriedRanks::sequence_type merged;
  merged.reserve(into.size() + more.size());
  auto a = into.begin(), b = more.begin();
  while (a != into.end() || b != more.end()) {
    if (b == more.end() || (a != into.end() && a->first < b->first)) {
      merged.push_back(*a++);
    } else if (a == into.end() || b->first < a->first) {
      merged.push_back(*b++);
    } else {
      merged.push_back(*a++);
      merged.back().second.Merge((b++)->second);
    }
  }
  CarriedRanks ranks;
  ranks.adopt_sequence(boost::container::ordered_unique_range, std::move(merged));
  return ranks;
}

std::optional<Writer::CarriedRanks> Writer::CarriedWhole(const StepBlock& block,
                                                         const CarriedBlocks& staged) {
  auto carried = carried_.find(block);
  if (carried == carried_.end()) return std::nullopt;
  // Only for a run of this batch, whose revision was checked (a stale block of another run may
  // have been written by another server since this writer's last batch of it).
  if (auto of_run = staged.lower_bound({block.run_id, std::numeric_limits<std::int64_t>::min()});
      of_run == staged.end() || of_run->first.run_id != block.run_id)
    return std::nullopt;
  auto more = staged.find(block);
  CarriedRanks ranks =
      more == staged.end() ? carried->second : MergedRanks(carried->second, more->second);
  if (ranks.empty()) return std::nullopt;
  for (const auto& [rank, seen] : ranks) {
    if (!seen.Complete()) return std::nullopt;
  }
  return ranks;
}

void Writer::CarryCommitted(const CarriedBlocks& staged, const std::set<StepBlock>& fresh,
                            const std::set<StepBlock>& refreshed,
                            const std::unordered_map<std::int64_t, std::int64_t>& revisions) {
  for (const StepBlock& block : refreshed) {
    if (auto it = carried_.find(block); it != carried_.end()) {
      carried_ranks_ -= it->second.size();
      carried_.erase(it);
    }
  }
  for (const StepBlock& block : fresh) {
    if (auto it = carried_.find(block); it != carried_.end()) {  // stale: refreshed elsewhere
      carried_ranks_ -= it->second.size();
      carried_.erase(it);
    }
    if (carried_ranks_ < kMaxCarriedRanks) carried_.emplace(block, CarriedRanks{});
  }
  for (const auto& [block, ranks] : staged) {
    auto it = carried_.find(block);
    if (it == carried_.end()) continue;  // refreshed blocks were erased above
    carried_ranks_ -= it->second.size();
    it->second = MergedRanks(it->second, ranks);
    carried_ranks_ += it->second.size();
  }
  for (const auto& [run_id, revision] : revisions) carried_revision_[run_id] = revision;
}

void Writer::ForgetCarried(std::int64_t run_id) {
  for (auto it = carried_.lower_bound({run_id, std::numeric_limits<std::int64_t>::min()});
       it != carried_.end() && it->first.run_id == run_id;) {
    carried_ranks_ -= it->second.size();
    it = carried_.erase(it);
  }
  carried_revision_.erase(run_id);
}

}  // namespace lossguard::store
