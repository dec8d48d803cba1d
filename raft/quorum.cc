#include "raft/quorum.h"

#include <algorithm>

#include "runtime/base/assert.h"

namespace nori::raft {

MajorityConfig::MajorityConfig(std::vector<NodeId> voters) : voters_(std::move(voters)) {
  std::sort(voters_.begin(), voters_.end());
  voters_.erase(std::unique(voters_.begin(), voters_.end()), voters_.end());
  NORI_ASSERT(voters_.empty() || voters_.front() != kNoNode, "voter id 0");
}

bool MajorityConfig::contains(NodeId id) const {
  return std::binary_search(voters_.begin(), voters_.end(), id);
}

std::vector<NodeId> QuorumConfig::all_voters() const {
  std::vector<NodeId> out;
  std::set_union(incoming_.voters().begin(), incoming_.voters().end(), outgoing_.voters().begin(),
                 outgoing_.voters().end(), std::back_inserter(out));
  return out;
}

namespace detail {
uint64_t kth_largest(uint64_t* values, size_t n, size_t k) {
  NORI_ASSERT(k >= 1 && k <= n, "k {} of {}", k, n);
  // n is tiny (voters): insertion sort, descending.
  for (size_t i = 1; i < n; ++i) {
    uint64_t v = values[i];
    size_t j = i;
    while (j > 0 && values[j - 1] < v) {
      values[j] = values[j - 1];
      --j;
    }
    values[j] = v;
  }
  return values[k - 1];
}
}  // namespace detail

}  // namespace nori::raft
