#include "lossguard/analyzers/detectors.h"

namespace lossguard::analyzers {

int RecentCount::Push(bool flag) {
  if (n_ == 0) return 0;
  if (flags_.size() < n_) {
    flags_.push_back(flag);
  } else {
    count_ -= flags_[next_];
    flags_[next_] = flag;
    next_ = (next_ + 1) % n_;
  }
  count_ += flag;
  return count_;
}

}  // namespace lossguard::analyzers
