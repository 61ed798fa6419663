#include <algorithm>
#include <cmath>

#include "format.h"
#include "lossguard/analyzers/detectors.h"

namespace lossguard::analyzers {

namespace {
using Divergence = std::pair<Finding, std::vector<std::int64_t>>;

// The value most ranks report (the lowest such on a tie).
std::int64_t Majority(const std::vector<std::int64_t>& values) {
  std::map<std::int64_t, int> counts;
  for (std::int64_t v : values) ++counts[v];
  return std::max_element(counts.begin(), counts.end(),
                          [](const auto& a, const auto& b) { return a.second < b.second; })
      ->first;
}

std::optional<Divergence> JudgeConfig(const std::vector<wire::StepRecord>& ranks) {
  std::string differs;
  nlohmann::json evidence = nlohmann::json::object();
  std::vector<std::int64_t> diverging;
  auto compare = [&](const char* name, auto field) {
    // Every step of every run comes here: the evidence is built only for a step whose ranks differ.
    const std::int64_t first = ranks.front().*field;
    if (std::all_of(ranks.begin(), ranks.end(),
                    [&](const wire::StepRecord& r) { return r.*field == first; }))
      return;
    std::vector<std::int64_t> values;
    for (const wire::StepRecord& r : ranks) values.push_back(r.*field);
    const std::int64_t majority = Majority(values);
    nlohmann::json per_rank = nlohmann::json::object();
    for (const wire::StepRecord& r : ranks) {
      per_rank[std::to_string(r.rank)] = r.*field;
      if (r.*field == majority) continue;
      if (std::find(diverging.begin(), diverging.end(), r.rank) == diverging.end())
        diverging.push_back(r.rank);
    }
    differs += (differs.empty() ? "" : ", ") + std::string(name) + " " + per_rank.dump();
    evidence[name] = per_rank;
  };
  compare("ga_steps", &wire::StepRecord::ga_steps);
  compare("micro_batch_size", &wire::StepRecord::micro_batch_size);
  compare("world_size", &wire::StepRecord::world_size);
  if (diverging.empty()) return std::nullopt;
  std::sort(diverging.begin(), diverging.end());
  evidence["rule"] = "config";
  evidence["diverging_ranks"] = diverging;
  return Divergence{Finding{Severity::kCritical,
                            "ranks run different configurations at step " +
                                std::to_string(ranks.front().step) + ": " + differs,
                            evidence},
                    diverging};
}

std::optional<Divergence> JudgeGradNorms(const std::vector<wire::StepRecord>& ranks,
                                         double tolerance) {
  std::vector<double> norms;
  for (const wire::StepRecord& r : ranks) {
    if (r.grad_norm && std::isfinite(*r.grad_norm)) norms.push_back(*r.grad_norm);
  }
  if (norms.size() < 2) return std::nullopt;
  std::sort(norms.begin(), norms.end());
  const double median = norms[(norms.size() - 1) / 2];
  std::vector<std::int64_t> diverging;
  double worst = 0;
  for (const wire::StepRecord& r : ranks) {
    if (!r.grad_norm || !std::isfinite(*r.grad_norm)) continue;
    const double off =
        median > 0 ? std::abs(*r.grad_norm / median - 1) : (*r.grad_norm == 0 ? 0 : INFINITY);
    if (off > tolerance) {
      diverging.push_back(r.rank);
      worst = std::max(worst, off);
    }
  }
  if (diverging.empty()) return std::nullopt;
  nlohmann::json per_rank = nlohmann::json::object();  // only for a step that diverged
  for (const wire::StepRecord& r : ranks) {
    if (r.grad_norm && std::isfinite(*r.grad_norm)) per_rank[std::to_string(r.rank)] = *r.grad_norm;
  }
  // Two ranks have no majority: either may be the one that diverged.
  if (norms.size() == 2) {
    diverging.clear();
    for (const wire::StepRecord& r : ranks) {
      if (r.grad_norm && std::isfinite(*r.grad_norm)) diverging.push_back(r.rank);
    }
  }
  return Divergence{
      Finding{Severity::kCritical,
              "grad_norm differs across ranks at step " + std::to_string(ranks.front().step) +
                  " (up to " + FormatNumber(100 * worst) + "% off the median " +
                  FormatNumber(median) + "; after the all-reduce every rank must hold the same " +
                  "gradients): ranks " + nlohmann::json(diverging).dump() +
                  " missed or ran their own all-reduce",
              {{"rule", "grad_norm"},
               {"grad_norms", per_rank},
               {"median", median},
               {"diverging_ranks", diverging}}},
      diverging};
}
}  // namespace

std::optional<Divergence> RankDivergenceDetector::JudgeImbalance(
    const std::vector<wire::StepRecord>& ranks) {
  auto next = totals_.begin();  // `ranks` are in rank order: each rank's totals follow the last's
  for (const wire::StepRecord& r : ranks) {
    if (!r.tokens || !std::isfinite(r.loss)) continue;
    if (next == totals_.end() || next->first != r.rank) next = totals_.try_emplace(next, r.rank);
    Totals& t = (next++)->second;
    t.window.emplace_back(static_cast<double>(*r.tokens), r.loss);
    t.tokens += static_cast<double>(*r.tokens);
    t.loss += r.loss;
    if (t.window.size() > options_.imbalance_window) {
      t.tokens -= t.window.front().first;
      t.loss -= t.window.front().second;
      t.window.pop_front();
    }
  }
  // Compared over full windows only: a few steps of uneven sequences are ordinary.
  std::vector<std::pair<std::int64_t, const Totals*>> full;
  for (const auto& [rank, t] : totals_) {
    if (t.window.size() == options_.imbalance_window) full.emplace_back(rank, &t);
  }
  if (full.size() < 2) return std::nullopt;
  auto spread = [&](auto value) {
    auto [low, high] =
        std::minmax_element(full.begin(), full.end(),
                            [&](const auto& a, const auto& b) { return value(a) < value(b); });
    return std::make_pair(*low, *high);
  };
  auto tokens_of = [](const auto& e) { return e.second->tokens; };
  auto loss_of = [](const auto& e) { return e.second->loss; };
  auto [few, many] = spread(tokens_of);
  auto [low, high] = spread(loss_of);
  const double token_ratio = tokens_of(few) > 0 ? tokens_of(many) / tokens_of(few) : INFINITY;
  const double loss_ratio = loss_of(low) > 0 ? loss_of(high) / loss_of(low) : INFINITY;
  const bool tokens_apart = token_ratio > options_.token_imbalance;
  const bool losses_apart = loss_ratio > options_.loss_imbalance;
  if (!tokens_apart && !losses_apart) return std::nullopt;
  const std::string window = std::to_string(options_.imbalance_window);
  std::string message = "ranks are unevenly loaded over the last " + window + " steps:";
  if (tokens_apart) {
    message += " rank " + std::to_string(many.first) + " had " + FormatNumber(token_ratio) +
               "x the label tokens of rank " + std::to_string(few.first) + ";";
  }
  if (losses_apart) {
    message += " rank " + std::to_string(high.first) + "'s mean loss is " +
               FormatNumber(loss_ratio) + "x rank " + std::to_string(low.first) + "'s;";
  }
  message.back() = '.';
  std::vector<std::int64_t> named;
  if (tokens_apart) named.push_back(many.first);
  if (losses_apart && (named.empty() || named.front() != high.first)) named.push_back(high.first);
  return Divergence{Finding{Severity::kInfo,
                            message,
                            {{"rule", "imbalance"},
                             {"token_ratio", token_ratio},
                             {"loss_ratio", loss_ratio},
                             {"diverging_ranks", named}}},
                    named};
}

std::optional<Divergence> RankDivergenceDetector::Observe(
    const std::vector<wire::StepRecord>& ranks) {
  // One rank has nothing to compare with (most runs report from rank 0 only): no upkeep either.
  if (ranks.size() < 2) return std::nullopt;
  std::optional<Divergence> imbalance = JudgeImbalance(ranks);  // keeps its windows current
  if (auto config = JudgeConfig(ranks)) return config;
  if (auto grads = JudgeGradNorms(ranks, options_.grad_tolerance)) return grads;
  return imbalance;
}

}  // namespace lossguard::analyzers
