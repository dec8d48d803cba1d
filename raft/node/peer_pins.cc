// reactor-ok-file: a few lines written on a peer's first handshake or removal
// (raft/node/peer_pins.h)
#include "raft/node/peer_pins.h"

#include <filesystem>

#include <sstream>
#include "wal/posix_dir.h"

#include <fmt/format.h>

namespace nori::raft {

base::Status PeerPins::load() {
  pins_.clear();
  return wal::for_each_line(path_, [&](int n, const std::string& line) -> base::Status {
    std::istringstream ls(line);
    NodeId id = 0;
    uint64_t inc = 0;
    std::string rest;
    if (!(ls >> id >> inc) || (ls >> rest) || id == kNoNode || inc == 0) {
      return base::Error(base::ErrorKind::kCorruption,
                         fmt::format("{} line {}: want 'node incarnation'", path_, n));
    }
    pins_[id] = inc;
    return {};
  });
}

base::Result<bool> PeerPins::pin(NodeId peer, uint64_t incarnation) {
  if (incarnation == 0 || pins_.contains(peer)) return false;
  pins_[peer] = incarnation;
  NORI_TRY(save());
  return true;
}

base::Status PeerPins::unpin(NodeId peer) {
  if (pins_.erase(peer) == 0) return {};
  return save();
}

base::Status PeerPins::save() const {
  std::string body;
  for (const auto& [id, inc] : pins_)
    body += fmt::format("{} {}\n", id, inc);
  const std::filesystem::path file(path_);
  const std::string dir = file.has_parent_path() ? file.parent_path().string() : ".";
  return wal::write_file_durably(dir, file.filename().string(), body);
}

}  // namespace nori::raft
