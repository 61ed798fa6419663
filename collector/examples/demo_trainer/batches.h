#pragma once
// The demo's data: sequence j of step s depends only on (seed, s, j), so that any split of an
// optimizer step's sequences into micro-batches and ranks sees the same sequences.

#include <torch/torch.h>

#include <random>
#include <string>

#include "model.h"

namespace lossguard::demo {

struct Batch {
  torch::Tensor ids, labels;  // [n, kContext]; padding: id 0, label -100
};

inline Batch Sequences(const std::string& corpus, std::uint64_t seed, std::int64_t step,
                       std::int64_t first, std::int64_t n) {
  Batch batch{torch::full({n, kContext}, kPad, torch::kLong),
              torch::full({n, kContext}, -100, torch::kLong)};
  auto ids = batch.ids.accessor<std::int64_t, 2>();
  auto labels = batch.labels.accessor<std::int64_t, 2>();
  for (std::int64_t i = 0; i < n; ++i) {
    std::mt19937_64 rng(seed * 1'000'003 + static_cast<std::uint64_t>(step) * 65'537 +
                        static_cast<std::uint64_t>(first + i));
    std::int64_t length =
        16 + static_cast<std::int64_t>(rng() % (kContext - 15));  // variable: 16..64
    std::size_t start = rng() % (corpus.size() - kContext);
    for (std::int64_t t = 0; t < length; ++t) ids[i][t] = labels[i][t] = TokenId(corpus[start + t]);
  }
  return batch;
}

}  // namespace lossguard::demo
