#pragma once
// The demo trainer's flags.

#include <cstdint>
#include <optional>
#include <string>

namespace lossguard::demo {

struct Config {
  std::string server_url, run = "demo", loss = "correct", out, spool;
  // "fused": LinearCrossEntropy from the hidden states (the logits never exist); "unfused": the
  // model's head, then CausalLmCrossEntropy on the logits.
  std::string loss_impl = "fused";
  bool report_memory = false;  // print the peak bytes allocated during training
  std::optional<std::string> spool_dir;
  std::uint64_t seed = 0;
  std::int64_t micro_batch_size = 8, ga_steps = 1, steps = 150, world_size = 1, rank = 0;
  double lr = 3e-3, lr_spike_factor = 1.0, clip = 1.0;
  std::int64_t lr_spike_at = -1, lr_spike_steps = 1, nan_at = -1, detach_loss_at = -1;
  // The guard (GuardPolicy::Parse's format; empty: none) and its checkpoints: the model and the
  // optimizer after every checkpoint_every steps, the last keep_checkpoints of them kept.
  std::string guard, checkpoint_dir;
  std::int64_t checkpoint_every = 25, keep_checkpoints = 4;
  std::int64_t bad_data_at = -1;  // three steps of random tokens from here (a corrupt shard)
  std::int64_t warmup_steps = 0;  // linear learning-rate warm-up
  std::int64_t ga_change_at = -1, ga_change_to = 1;  // switch ga_steps mid-run
  bool cosine = false;                 // cosine decay to a tenth of --lr after the warm-up
  std::string init_model, save_model;  // fine-tuning: start from / keep the trained weights
  // A rank fault: from skip_all_reduce_from on, rank skip_all_reduce_rank keeps its local
  // gradients (it joins the collective, so nothing hangs, but discards the result).
  std::int64_t skip_all_reduce_rank = -1, skip_all_reduce_from = 0;
  std::string store_file;  // internal: where rank 0 publishes the TCPStore port
  bool quiet = false;
  bool no_collector = false;  // baseline for the overhead benchmark
  std::int64_t flush_timeout_s = 30;
};

}  // namespace lossguard::demo
