#include "raft/storage.h"

namespace nori::raft {

namespace {
// Bytes read per storage call while scanning for configuration entries.
constexpr uint64_t kConfigScanBatchBytes = 1 << 20;
}  // namespace

base::Status LogStorage::config_entries(Index lo, std::vector<Entry>& out) const {
  Index last = last_index();
  std::vector<Entry> batch;
  for (Index i = std::max<Index>(lo, first_index()); i <= last;) {
    batch.clear();
    NORI_TRY(entries(i, last + 1, kConfigScanBatchBytes, batch));
    if (batch.empty()) break;  // (entries() returns at least one when lo < hi)
    for (Entry& e : batch) {
      if (e.type == EntryType::kConfig) out.push_back(std::move(e));
    }
    i += batch.size();
  }
  return {};
}

}  // namespace nori::raft
