#include "corpus.h"

#include <random>
#include <vector>

namespace lossguard::demo {

std::string Corpus(std::size_t characters) {
  const std::vector<std::string> subjects = {
      "the model",     "a trainer",    "the optimizer", "every gradient", "the loss",
      "a small batch", "the engineer", "this run",      "the server",     "a token"};
  const std::vector<std::string> verbs = {"sees",    "counts",  "divides",    "accumulates",
                                          "watches", "reports", "normalises", "scales",
                                          "clips",   "streams"};
  const std::vector<std::string> objects = {
      "the tokens", "every step", "the ranks",        "a warning", "its norm",
      "the labels", "the sum",    "each micro-batch", "the mean",  "a spike"};
  std::mt19937 rng(1234);
  std::string out;
  while (out.size() < characters) {
    out += subjects[rng() % subjects.size()] + " " + verbs[rng() % verbs.size()] + " " +
           objects[rng() % objects.size()] + (rng() % 4 == 0 ? ", and " : ". ");
  }
  return out;
}

}  // namespace lossguard::demo
