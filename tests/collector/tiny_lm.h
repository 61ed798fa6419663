#pragma once

// A tiny causal LM and a padded batch for the collector's tests.
#include <torch/torch.h>

namespace lossguard::collector {

constexpr std::int64_t kVocab = 37, kDim = 16, kTime = 16;

// A tiny causal LM: each position sees the mean of the embeddings up to it. Padding sits at the end
// of a sequence, so it never changes the logits of real tokens, as in a real causal transformer.
struct TinyLmImpl : torch::nn::Module {
  TinyLmImpl()
      : embed(register_module("embed", torch::nn::Embedding(kVocab, kDim))),
        head(register_module("head", torch::nn::Linear(kDim, kVocab))) {}
  torch::Tensor forward(const torch::Tensor& ids) {
    auto e = embed(ids);
    auto positions = torch::arange(1, ids.size(1) + 1, torch::kFloat32).view({1, -1, 1});
    return head(torch::tanh(e.cumsum(1) / positions + e));
  }
  torch::nn::Embedding embed;
  torch::nn::Linear head;
};
TORCH_MODULE(TinyLm);

// Eight sequences of different lengths, right-padded: label-token counts differ per sequence,
// which is exactly when the normalisation bugs show.
struct Data {
  torch::Tensor ids, labels;
};
inline Data MakeData() {
  torch::manual_seed(7);
  std::vector<std::int64_t> lengths = {3, 16, 5, 12, 7, 16, 2, 9};
  auto ids = torch::randint(1, kVocab, {8, kTime});
  auto labels = ids.clone();
  for (std::int64_t i = 0; i < 8; ++i) {
    ids[i].slice(0, lengths[i]).fill_(0);
    labels[i].slice(0, lengths[i]).fill_(-100);
  }
  return {ids, labels};
}

inline TinyLm FreshModel() {
  torch::manual_seed(42);
  return TinyLm();
}

}  // namespace lossguard::collector
