// Peak memory and time of forward + backward of the collector's losses against LibTorch's, on the
// same inputs in the same run (alternating, medians), CPU:
//   - LinearCrossEntropy(hidden, weight, labels) vs F::linear + F::cross_entropy (the logits
//     materialised), N tokens x D x V;
//   - CausalLmCrossEntropy(logits, labels) vs F::cross_entropy on the same logits.
// Memory is what LibTorch's CPU allocator hands out during the call beyond the inputs (its memory
// reporting, the hook torch.profiler uses), not RSS; the gradients of the inputs are included.
//   build/tests/bench/linear_loss_bench            # the README's table (~70 min, float32 most of
//   it) build/tests/bench/linear_loss_bench --vocab 32000 --dtype float32 --repeats 3
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "lossguard/collector/allocation_peak.h"
#include "lossguard/collector/linear_loss.h"

namespace {

namespace F = torch::nn::functional;
using lossguard::collector::AllocationPeak;

struct Measure {
  double seconds;
  std::int64_t peak_bytes;
};

// One forward + backward of `loss` (its inputs are made inside, as leaves, so that their gradients
// count and the inputs themselves do not).
Measure Once(const std::function<torch::Tensor()>& loss) {
  AllocationPeak peak;
  auto start = std::chrono::steady_clock::now();
  loss().backward();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {seconds, peak.peak_bytes()};
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

struct Row {
  std::string what;
  double ours_s, theirs_s;
  std::int64_t ours_bytes, theirs_bytes;
};

Row Compare(const std::string& what, int repeats, const std::function<torch::Tensor()>& ours,
            const std::function<torch::Tensor()>& theirs) {
  std::vector<double> ours_s, theirs_s;
  std::int64_t ours_bytes = 0, theirs_bytes = 0;
  for (int r = 0; r < repeats; ++r) {  // alternating, so that drift hits both alike
    Measure a = Once(ours);
    Measure b = Once(theirs);
    ours_s.push_back(a.seconds);
    theirs_s.push_back(b.seconds);
    ours_bytes = std::max(ours_bytes, a.peak_bytes);
    theirs_bytes = std::max(theirs_bytes, b.peak_bytes);
  }
  Row row{what, Median(ours_s), Median(theirs_s), ours_bytes, theirs_bytes};
  std::printf(
      "%-44s  ours %9.1f MB %8.3f s | LibTorch %9.1f MB %8.3f s | memory %6.3f  time %5.2f\n",
      row.what.c_str(), static_cast<double>(row.ours_bytes) / 1e6, row.ours_s,
      static_cast<double>(row.theirs_bytes) / 1e6, row.theirs_s,
      static_cast<double>(row.ours_bytes) / static_cast<double>(row.theirs_bytes),
      row.ours_s / row.theirs_s);
  std::fflush(stdout);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"LinearCrossEntropy / CausalLmCrossEntropy vs LibTorch: peak memory and time"};
  std::int64_t tokens = 4096, dim = 512;
  std::vector<std::int64_t> vocabs = {32000, 128256};
  std::vector<std::string> dtypes = {"float32", "bfloat16"};
  std::vector<std::string> parts = {"linear", "logits"};
  int repeats = 3;
  app.add_option("--tokens", tokens, "N, predicted tokens")->capture_default_str();
  app.add_option("--dim", dim, "D, hidden size")->capture_default_str();
  app.add_option("--vocab", vocabs, "V, vocabulary sizes")->capture_default_str();
  app.add_option("--dtype", dtypes, "input dtypes")
      ->check(CLI::IsMember({"float32", "bfloat16"}))
      ->capture_default_str();
  app.add_option("--part", parts, "linear: LinearCrossEntropy; logits: CausalLmCrossEntropy")
      ->check(CLI::IsMember({"linear", "logits"}))
      ->capture_default_str();
  app.add_option("--repeats", repeats, "alternating repeats (medians)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::printf("LibTorch intra-op threads: %d\n", torch::get_num_threads());

  constexpr std::int64_t kSequences = 4;
  for (const std::string& part : parts) {
    for (const std::string& dtype_name : dtypes) {
      const torch::ScalarType dtype = dtype_name == "float32" ? torch::kFloat32 : torch::kBFloat16;
      for (std::int64_t vocab : vocabs) {
        torch::manual_seed(0);
        const std::int64_t time = tokens / kSequences + 1;  // `tokens` predicted after the shift
        torch::Tensor labels = torch::randint(0, vocab, {kSequences, time});
        labels.masked_fill_(torch::rand(labels.sizes()).lt(0.1), -100);
        torch::Tensor shifted_labels = labels.slice(1, 1).reshape({-1});
        const std::string shape = "N=" + std::to_string(tokens) + " D=" + std::to_string(dim) +
                                  " V=" + std::to_string(vocab) + " " + dtype_name;
        if (part == "linear") {
          torch::Tensor hidden = torch::randn({kSequences, time, dim}).to(dtype);
          torch::Tensor weight = (torch::randn({vocab, dim}) * 0.05).to(dtype);
          Compare(
              "LinearCrossEntropy " + shape, repeats,
              [&] {
                return lossguard::collector::LinearCrossEntropy(
                    hidden.detach().requires_grad_(true), weight.detach().requires_grad_(true),
                    torch::Tensor(), labels);
              },
              [&] {
                torch::Tensor logits = F::linear(hidden.detach().requires_grad_(true),
                                                 weight.detach().requires_grad_(true));
                return F::cross_entropy(logits.slice(1, 0, time - 1).reshape({-1, vocab}),
                                        shifted_labels,
                                        F::CrossEntropyFuncOptions().ignore_index(-100));
              });
        } else {
          torch::Tensor logits = torch::randn({kSequences, time, vocab}).to(dtype);
          Compare(
              "CausalLmCrossEntropy " + shape + " (logits given)", repeats,
              [&] {
                return lossguard::collector::CausalLmCrossEntropy(
                    logits.detach().requires_grad_(true), labels);
              },
              [&] {
                torch::Tensor leaf = logits.detach().requires_grad_(true);
                return F::cross_entropy(leaf.slice(1, 0, time - 1).reshape({-1, vocab}),
                                        shifted_labels,
                                        F::CrossEntropyFuncOptions().ignore_index(-100));
              });
        }
      }
    }
  }
  return 0;
}
