// reactor-ok-file: a few lines written on a peer's first handshake or removal
// (raft/node/peer_pins.h)
#include "raft/node/peer_pins.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <sstream>
#include "wal/posix_dir.h"

#include <fmt/format.h>

namespace nori::raft {

namespace {
base::Error io_error(const char* what, const std::string& path) {
  return base::Error(base::ErrorKind::kIo,
                     fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}
}  // namespace

base::Status PeerPins::load() {
  pins_.clear();
  if (::access(path_.c_str(), F_OK) != 0 && errno == ENOENT) return {};
  std::ifstream in(path_);
  if (!in) return io_error("open", path_);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    std::istringstream ls(line);
    NodeId id = 0;
    uint64_t inc = 0;
    std::string rest;
    if (!(ls >> id >> inc) || (ls >> rest) || id == kNoNode || inc == 0) {
      return base::Error(base::ErrorKind::kCorruption,
                         fmt::format("{} line {}: want 'node incarnation'", path_, n));
    }
    pins_[id] = inc;
  }
  return {};
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
