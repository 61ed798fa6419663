#include "lossguard/analyzers/detectors.h"

namespace lossguard::analyzers {

int RecentCount::Push(bool flag) {
  flags_.push_back(flag);
  count_ += flag;
  if (flags_.size() > n_) {
    count_ -= flags_.front();
    flags_.pop_front();
  }
  return count_;
}

}  // namespace lossguard::analyzers
