#pragma once
// The demo's model: a small GPT-style causal LM (token and position embeddings, pre-norm blocks of
// causal self-attention and an MLP, a linear head over the vocabulary). No dropout, so that runs
// that split the same batch differently compute the same losses.

#include <torch/torch.h>

#include <cmath>

#include "corpus.h"

namespace lossguard::demo {

inline constexpr std::int64_t kContext = 64, kDim = 64, kHeads = 4, kLayers = 2;

struct BlockImpl : torch::nn::Module {
  BlockImpl()
      : ln1(register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kDim})))),
        attention(register_module(
            "attention", torch::nn::MultiheadAttention(
                             torch::nn::MultiheadAttentionOptions(kDim, kHeads).dropout(0.0)))),
        ln2(register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kDim})))),
        fc(register_module("fc", torch::nn::Linear(kDim, 4 * kDim))),
        proj(register_module("proj", torch::nn::Linear(4 * kDim, kDim))) {}
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& causal_mask) {
    auto h = ln1(x).transpose(0, 1);  // MultiheadAttention wants [T, B, D]
    auto attended = std::get<0>(attention->forward(h, h, h, torch::Tensor(), false, causal_mask))
                        .transpose(0, 1);
    x = x + attended;
    return x + proj(torch::gelu(fc(ln2(x))));
  }
  torch::nn::LayerNorm ln1;
  torch::nn::MultiheadAttention attention;
  torch::nn::LayerNorm ln2;
  torch::nn::Linear fc, proj;
};
TORCH_MODULE(Block);

struct GptImpl : torch::nn::Module {
  GptImpl()
      : token(register_module("token", torch::nn::Embedding(kVocab, kDim))),
        position(register_module("position", torch::nn::Embedding(kContext, kDim))),
        blocks(register_module("blocks", torch::nn::ModuleList())),
        ln(register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kDim})))),
        head(register_module("head", torch::nn::Linear(kDim, kVocab))) {
    for (int i = 0; i < kLayers; ++i) blocks->push_back(Block());
  }
  // The final hidden states [B, T, kDim], before the head: what a fused loss takes.
  torch::Tensor Hidden(const torch::Tensor& ids) {
    const std::int64_t t = ids.size(1);
    auto x = token(ids) + position(torch::arange(t)).unsqueeze(0);
    auto mask = torch::full({t, t}, -INFINITY).triu(1);
    for (const auto& block : *blocks) x = block->as<Block>()->forward(x, mask);
    return ln(x);
  }
  torch::Tensor forward(const torch::Tensor& ids) { return head(Hidden(ids)); }
  torch::nn::Embedding token, position;
  torch::nn::ModuleList blocks;
  torch::nn::LayerNorm ln;
  torch::nn::Linear head;
};
TORCH_MODULE(Gpt);

}  // namespace lossguard::demo
