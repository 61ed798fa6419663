#pragma once
// The demo trainer's checkpoints (included by main.cc only, so that LibTorch is compiled once).

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "lossguard/collector/guard.h"
#include "model.h"

namespace lossguard::demo {

// The demo's own checkpoints, what the guard rolls back to: the model and the optimizer after a
// step, in DIR/step-N.model.pt and DIR/step-N.optimizer.pt (step -1: the initial state), the last
// `keep` of them kept. Without a directory nothing is saved (a rollback policy then stops).
class Checkpoints {
 public:
  Checkpoints(std::string dir, std::int64_t keep) : dir_(std::move(dir)), keep_(keep) {
    if (!dir_.empty()) std::filesystem::create_directories(dir_);
  }

  void Save(std::int64_t step, Gpt& model, torch::optim::AdamW& optimizer,
            collector::Guard& guard) {
    if (dir_.empty()) return;
    torch::save(model, Path(step, "model"));
    torch::save(optimizer, Path(step, "optimizer"));
    guard.Checkpointed(step);
    saved_.push_back(step);
    while (static_cast<std::int64_t>(saved_.size()) > keep_) {
      RemoveFiles(saved_.front());
      guard.CheckpointRemoved(saved_.front());
      saved_.erase(saved_.begin());
    }
  }

  void Restore(std::int64_t step, Gpt& model, torch::optim::AdamW& optimizer) {
    torch::load(model, Path(step, "model"));
    torch::load(optimizer, Path(step, "optimizer"));
    // Later checkpoints belong to the abandoned trajectory (the guard forgot them too).
    while (!saved_.empty() && saved_.back() > step) {
      RemoveFiles(saved_.back());
      saved_.pop_back();
    }
  }

  std::string Path(std::int64_t step, const char* what) const {
    return dir_ + "/step-" + std::to_string(step) + "." + what + ".pt";
  }
  const std::string& dir() const { return dir_; }

 private:
  void RemoveFiles(std::int64_t step) const {
    std::filesystem::remove(Path(step, "model"));
    std::filesystem::remove(Path(step, "optimizer"));
  }

  std::string dir_;
  std::int64_t keep_;
  std::vector<std::int64_t> saved_;
};

}  // namespace lossguard::demo
