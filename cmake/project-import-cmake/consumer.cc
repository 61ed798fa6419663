// Uses the installed collector: the normalised loss of a tiny batch, and a record for the wire.
#include <lossguard/collector/loss.h>
#include <lossguard/wire/step_record.h>
#include <torch/torch.h>

#include <cstdio>

int main() {
  torch::manual_seed(0);
  auto logits = torch::randn({2, 5, 11});
  auto labels = torch::randint(0, 11, {2, 5});
  double loss = lossguard::collector::CausalLmCrossEntropy(logits, labels).item<double>();
  lossguard::wire::StepRecord record;
  record.run = "consumer";
  record.loss = loss;
  std::printf("%s\n", lossguard::wire::CanonicalJson(record).c_str());
  return loss > 0 ? 0 : 1;
}
