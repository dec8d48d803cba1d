// reactor-ok-file: a file of a few lines, written once per joined node (CLUSTER ADDNODE /
// NORI.PEER / NORI.WHOIS) and read at start (kv/peer_book.h)
#include "kv/peer_book.h"

#include <filesystem>

#include <sstream>
#include "wal/posix_dir.h"

namespace nori::kv {

base::Result<std::map<raft::NodeId, PeerClientAddress>> load_peer_book(const std::string& path) {
  std::map<raft::NodeId, PeerClientAddress> out;
  NORI_TRY(wal::for_each_line(path, [&](int n, const std::string& line) -> base::Status {
    std::istringstream ls(line);
    raft::NodeId id = 0;
    std::string host;
    unsigned port = 0;
    std::string rest;
    if (!(ls >> id >> host >> port) || (ls >> rest) || id == raft::kNoNode || port == 0 ||
        port > 65535) {
      return base::Error(base::ErrorKind::kCorruption,
                         fmt::format("{} line {}: want 'id host port'", path, n));
    }
    out[id] = PeerClientAddress{host, static_cast<uint16_t>(port)};
    return {};
  }));
  return out;
}

base::Status save_peer_book(const std::string& path,
                            const std::map<raft::NodeId, PeerClientAddress>& peers) {
  std::string body;
  for (const auto& [id, a] : peers)
    body += fmt::format("{} {} {}\n", id, a.host, a.port);
  const std::filesystem::path file(path);
  const std::string dir = file.has_parent_path() ? file.parent_path().string() : ".";
  return wal::write_file_durably(dir, file.filename().string(), body);
}

}  // namespace nori::kv
